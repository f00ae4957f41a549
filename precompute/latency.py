"""``precompute latency``: per-image inference latency and memory of each backbone on this device,
the table ``--max-latency-ms`` / ``--max-memory-mb`` read (``--latency-device FILE``).

Per backbone (random or pretrained weights, as the sweep loads them: :func:`precompute.backbone.load_backbone`):
a batch of ``batch_size`` random images at the model's input size, already on the device and
preprocessed (deployment latency, not data loading), ``warmup`` untimed forward passes, then
``repeats`` timed ones under inference mode (and autocast on CUDA, as the sweep extracts);
``latency_ms`` = the median pass / ``batch_size`` (batch 1: the latency one image waits; larger:
the time per image a throughput-bound deployment pays, as timm's benchmarks report it);
``memory_mb`` = on CUDA, the peak memory allocated during the load and the passes above what was
allocated before (``max_memory_allocated``); on a CPU none (the process's resident memory does not
say it: the allocator reuses what earlier backbones freed), and the limits then take the fp32
weights (:func:`shared.limits.with_deployment`).  A backbone that
fails gets a row with its ``error`` and no latency; the table goes on.
"""
from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence

import polars as pl
import torch

from precompute import backbone as B
from precompute import extract as X
from precompute import sweep

COLUMNS = {"backbone": pl.String, "latency_ms": pl.Float64, "memory_mb": pl.Float64, "batch_size": pl.Int32,
           "input_size": pl.Int32, "device": pl.String, "error": pl.String}


def measure(name: str, device: torch.device, batch_size: int = 1, warmup: int = 3, repeats: int = 10,
            weights: str = "random", input_size: int | None = None) -> dict:
    """One backbone's row (see the module docstring); never raises for the backbone's own failure."""
    row = {"backbone": name, "latency_ms": None, "memory_mb": None, "batch_size": batch_size,
           "input_size": input_size, "device": str(device), "error": None}
    cuda = device.type == "cuda"
    bb = None
    try:
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        bb = B.load_backbone(name, weights=weights, device=device, input_size=input_size)
        size = tuple(int(s) for s in bb.data_config["input_size"][-2:])
        row["input_size"] = size[-1]
        x = torch.randn((batch_size, 3, *size), device=device).contiguous(memory_format=torch.channels_last)
        amp = X.autocast_dtype(device)
        times = []
        with torch.inference_mode(), torch.autocast("cuda", dtype=amp, enabled=cuda):
            for i in range(warmup + repeats):
                if cuda:
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                bb.model(x)
                if cuda:
                    torch.cuda.synchronize(device)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
        row["latency_ms"] = statistics.median(times) * 1000.0 / batch_size
        if cuda:
            row["memory_mb"] = max(0.0, (torch.cuda.max_memory_allocated(device) - base) / 2**20)
    except Exception as exc:  # noqa: BLE001 - the table records it and goes on
        row["error"] = sweep.error_text(exc, 300)
    finally:
        del bb
        if cuda:
            torch.cuda.empty_cache()
    return row


def measure_all(names: Sequence[str], device: str = "auto", batch_size: int = 1, warmup: int = 3,
                repeats: int = 10, weights: str = "random", input_size: int | None = None,
                echo: Callable[[str], None] | None = None) -> pl.DataFrame:
    """The latency table of ``names`` on ``device``, after the sweep's device warm-up."""
    dev = B.resolve_device(device)
    sweep.warm_up(dev)
    rows = []
    for i, n in enumerate(names):
        r = measure(n, dev, batch_size, warmup, repeats, weights, input_size)
        rows.append(r)
        if echo is not None:
            mem = "" if r["memory_mb"] is None else f", {r['memory_mb']:.0f} MB"
            got = f"{r['latency_ms']:.3f} ms/image{mem}" if r["error"] is None else f"failed: {r['error']}"
            echo(f"  [{i + 1}/{len(names)}] {n}: {got}")
    return pl.DataFrame(rows, schema=COLUMNS, orient="row") if rows else pl.DataFrame(schema=COLUMNS)


__all__ = ["COLUMNS", "measure", "measure_all"]
