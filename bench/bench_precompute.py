"""Benchmark of the precompute sweep on the device it finds, through the sweep's own code path.

Measures in one run (random weights: nothing is downloaded):

  * per backbone load / extract / fit seconds of ``precompute.sweep.evaluate_backbone`` (3 seeds x
    3 fractions x mlp + silhouette, the SweepConfig a ``precompute run`` uses) for a fixed
    GMACs-stratified sample of the pool (``precompute.estimate.stratified_sample``, seed 0), and
    their median (``median_backbone_seconds``);
  * extraction throughput (``precompute.extract.extract_features`` over the dataset's images,
    host->device copy and preprocessing included) as a ratio to a forward-only loop over tensors
    already on the device at the model's input size (same backbone, batch size, autocast and
    memory format; no preprocessing): ``extract_vs_forward`` (median over a few backbones);
  * 3 seeds' heads (``mlp``) trained one after the other against the sweep's own pattern (seed 0
    alone, seeds 1-2 batched; ``precompute.heads.time_sequential_vs_batched``, at the dataset's full
    train size and the sample's median feature width): ``heads_sequential_seconds``,
    ``heads_sweep_seconds`` (and ``heads_batched_seconds``, all three batched, for reference).

Defaults by device:
  * CUDA: ``synthetic:60000@32`` (CIFAR-10's size and resolution), each backbone at its native
    input size, the whole runnable pool stratified (no cap).
  * CPU:  ``synthetic:1800@32`` (1,500 train + 300 test, about digits' size) with ``--input-size 32``,
    sampled from the *affordable* part of the runnable pool: at most ``--max-params 15`` M parameters
    and ``--max-gmacs 0.03`` effective GMACs (the pool's GMACs x (32 / native size)^2; about a fifth
    of the pool), so the default run stays within 10 minutes on a quiet 2-core CPU (measured: about
    20 CPU-seconds per backbone, most of it the 18 heads; ``synthetic:5000@32`` takes about 3x
    longer).  The sample is stratified over GMACs inside that part, so its median is that of
    affordable backbones, not of the pool.
The runnable pool = ``precompute.estimate.runnable_pool``: no build error, known GMACs, not excluded
by ``precompute check``.  On CPU torch runs with ONE intra-op thread (``--threads`` to change): on a
2-core machine shared with other processes, two threads contend and extraction took 5-20x longer
(wall and CPU) than with one in our measurements, which made the figures meaningless.

Targets: on CPU, the sweep's heads >= 2.5x faster than sequential; on an H100-class GPU, median <= 30 s
per backbone and extraction >= 0.8 of forward-only.  Timings on a shared machine are noisy: rerun.

Usage: python bench/bench_precompute.py [--device auto] [--dataset D] [--input-size N] [--sample 24]
       [--pool FILE] [--max-params M] [--max-gmacs G] [--ratio-backbones 3] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from precompute.datasets import load_dataset, subset_plan  # noqa: E402
from shared.durations import format_duration  # noqa: E402
from shared.protocol import DEFAULT_FRACTIONS, DEFAULT_SEEDS  # noqa: E402

CPU_DEFAULTS = {"dataset": "synthetic:1800@32", "input_size": 32, "max_params": 15.0, "max_gmacs": 0.03}
CUDA_DEFAULTS = {"dataset": "synthetic:60000@32", "input_size": None, "max_params": None, "max_gmacs": None}
FRACTIONS = DEFAULT_FRACTIONS
SEEDS = DEFAULT_SEEDS
EVALUATORS = ("mlp", "silhouette")


def affordable(runnable, max_params, max_gmacs):
    import polars as pl

    out = runnable
    if max_params is not None:
        out = out.filter(pl.col("params_m") <= max_params)
    if max_gmacs is not None:
        out = out.filter(pl.col("eff_gmacs") <= max_gmacs)
    return out


def extract_vs_forward(name: str, cfg, images: np.ndarray, order: np.ndarray, repeat: int) -> dict:
    """Seconds of ``extract_features`` over ``order`` vs a forward-only loop over as many images
    already on the device (same model, batch size, autocast, channels-last); best of ``repeat``."""
    import torch

    from precompute.backbone import load_backbone  # lazy: torch and timm load when a backbone is timed
    from precompute.extract import extract_features

    bb = load_backbone(name, weights="random", device=cfg.device, input_size=cfg.input_size)
    dev = bb.device
    cuda = dev.type == "cuda"
    amp = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.bfloat16
    size = tuple(int(s) for s in bb.data_config["input_size"])
    bs = cfg.batch_size
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn((bs, *size), generator=g, device=dev).contiguous(memory_format=torch.channels_last)
    n = len(order)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def forward_only() -> float:
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cuda", dtype=amp, enabled=cuda):
            done = 0
            while done < n:
                k = min(bs, n - done)
                bb.model(x[:k]).float()
                done += k
        sync()
        return time.perf_counter() - t0

    def extract() -> float:
        _, seg = extract_features(bb, images, order, [n], batch_size=bs)
        return float(sum(seg))

    forward_only()  # warm: the first batches of a model pay one-time costs in both loops alike
    ext, fwd = [], []
    for _ in range(repeat):  # interleaved, best of each: a burst of other load hits both alike
        ext.append(extract())
        fwd.append(forward_only())
    ext, fwd = min(ext), min(fwd)
    bb = None  # free the model before the next one
    if cuda:
        torch.cuda.empty_cache()
    return {"backbone": name, "images": n, "batch_size": bs, "input_size": size[-1],
            "extract_seconds": ext, "forward_seconds": fwd, "extract_images_per_s": n / ext,
            "forward_images_per_s": n / fwd, "ratio": fwd / ext}


def heads_timing(n_train: int, n_test: int, dim: int, n_classes: int, device: str) -> dict:
    """The heads in the sweep's own pattern (seed 0 alone, seeds > 0 batched) against each seed
    alone, one after the other (``precompute.heads.time_sequential_vs_batched``)."""
    from precompute.heads import time_sequential_vs_batched  # lazy: torch

    return time_sequential_vs_batched(n_train=n_train, dim=dim, n_classes=n_classes, seeds=SEEDS,
                                      n_test=n_test, device=device)


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dataset", default=None, help="default: synthetic:60000@32 on CUDA, synthetic:1800@32 on CPU")
    ap.add_argument("--input-size", type=int, default=None, help="default: native on CUDA, 32 on CPU")
    ap.add_argument("--native", action="store_true", help="native input sizes even on CPU")
    ap.add_argument("--sample", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", default=None, help="pool file (.parquet/.csv); default: the full pool (build_pool)")
    ap.add_argument("--max-params", type=float, default=None, help="affordable part: at most M params (CPU: 15)")
    ap.add_argument("--max-gmacs", type=float, default=None, help="affordable part: effective GMACs (CPU: 0.03)")
    ap.add_argument("--no-cap", action="store_true", help="sample the whole runnable pool")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--ratio-backbones", type=int, default=3, help="backbones timed extract vs forward-only")
    ap.add_argument("--repeat", type=int, default=None, help="best-of for the ratio (default 2 CPU, 3 CUDA)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: 1 on CPU, see above; torch's own on CUDA)")
    ap.add_argument("--json", default=None, help="write the figures here")
    return ap.parse_args()


def _setup(args: argparse.Namespace) -> SimpleNamespace:
    """The device, the pool's affordable part and its GMACs-stratified sample, the dataset and the sweep's
    configuration; the two header lines printed."""
    import torch

    # lazy: torch, timm and polars load after the arguments are read (`--help` stays light)
    from precompute.backbone import resolve_device
    from precompute.estimate import device_info, memory_guard_gb, runnable_pool, stratified_sample
    from precompute.pool import build_pool, read_pool_file
    from precompute.sweep import SweepConfig

    dev = resolve_device(args.device)
    threads = args.threads or (1 if dev.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    d = CUDA_DEFAULTS if dev.type == "cuda" else CPU_DEFAULTS
    input_size = None if args.native else (args.input_size or d["input_size"])
    caps = (None, None) if args.no_cap else (args.max_params if args.max_params is not None else d["max_params"],
                                             args.max_gmacs if args.max_gmacs is not None else d["max_gmacs"])
    dev_str, dev_name = device_info(str(dev))
    pool = read_pool_file(Path(args.pool)) if args.pool else build_pool(progress=sys.stderr.isatty())
    runnable, left_out = runnable_pool(pool, input_size)
    part = affordable(runnable, *caps)
    guard_m = memory_guard_gb(dev_str) * 1e9 / 4 / 1e6  # never time a backbone this machine cannot hold
    sample = stratified_sample(part, args.sample, args.seed, max_params_m=guard_m)
    ds = load_dataset(args.dataset or d["dataset"])
    cfg = SweepConfig(dataset=ds.name, fractions=FRACTIONS, seeds=SEEDS, evaluators=EVALUATORS, weights="random",
                      device=str(dev), batch_size=args.batch_size, input_size=input_size)
    print(f"bench-precompute on {dev_str} ({dev_name}), {os.cpu_count()} CPUs, torch {torch.__version__}: "
          f"{ds.name} ({len(ds.train_labels)} train + {len(ds.test_labels)} test), input size "
          f"{input_size or 'native'}, {SEEDS} seeds x {len(FRACTIONS)} fractions x {'+'.join(EVALUATORS)}")
    print(f"pool {pool.height}, runnable {runnable.height}"
          + (f" (left out: {left_out})" if left_out else "")
          + f", affordable {part.height} (max params {caps[0]} M, max effective GMACs {caps[1]}); "
          f"sample {sample.height}, one per GMACs stratum (seed {args.seed})")
    return SimpleNamespace(dev=dev, dev_str=dev_str, dev_name=dev_name, input_size=input_size, caps=caps,
                           repeat=args.repeat or (3 if dev.type == "cuda" else 2), pool=pool, runnable=runnable,
                           part=part, guard_m=guard_m, sample=sample, ds=ds, cfg=cfg)


def _extraction_ratios(ok, run: SimpleNamespace, n_backbones: int) -> tuple[list[dict], float | None]:
    """Extraction against forward-only on the lowest, middle and highest GMACs backbones that ran."""
    from precompute.sweep import extraction_plan  # lazy: torch (the module loads it)

    ds = run.ds
    plans = subset_plan(ds, list(FRACTIONS), list(range(SEEDS)))
    images = np.concatenate([ds.train_images, ds.test_images])
    plan = extraction_plan(plans, FRACTIONS, len(ds.train_labels), len(images))
    names = ok.sort("eff_gmacs").get_column("backbone").to_list()
    k = min(n_backbones, len(names))
    picks = [names[i] for i in sorted({round(j * (len(names) - 1) / max(1, k - 1)) for j in range(k)})] if k else []
    ratios = []
    for name in picks:
        r = extract_vs_forward(name, run.cfg, images, plan.order, run.repeat)
        ratios.append(r)
        print(f"  extract vs forward-only, {name}: {r['extract_images_per_s']:.0f} vs "
              f"{r['forward_images_per_s']:.0f} images/s -> {r['ratio']:.2f}")
    return ratios, (float(np.median([r["ratio"] for r in ratios])) if ratios else None)


def _targets(cuda: bool, median: float | None, ratio: float | None, heads: dict, wall: float) -> dict[str, bool]:
    if cuda:
        return {"median <= 30 s per backbone (H100-class)": median is not None and median <= 30,
                "extraction >= 0.8 of forward-only (H100-class)": ratio is not None and ratio >= 0.8}
    return {"the sweep's heads >= 2.5x sequential (CPU)": heads["sequential_seconds"] / heads["sweep_seconds"] >= 2.5,
            "default run within 10 min (CPU)": wall <= 600}


def main() -> int:
    args = _arguments()
    import polars as pl
    import torch

    from precompute.estimate import measure_sample  # lazy: torch

    wall0, cpu0 = time.perf_counter(), time.process_time()
    warnings.filterwarnings("ignore", message=r"fraction .* keeps")  # 1 % of a small test split: expected
    run = _setup(args)
    ds, sample, caps = run.ds, run.sample, run.caps
    t0 = time.perf_counter()
    measured = measure_sample(run.cfg, sample, ds, echo=print)
    sweep_wall = time.perf_counter() - t0
    ok = measured.filter(pl.col("status") == "ok")
    median = float(np.median(ok.get_column("seconds").to_numpy())) if ok.height else None
    print(f"median seconds per backbone: {format_duration(median)} over {ok.height} ok of {measured.height} "
          f"(load {np.median(ok['load_seconds']):.2f} s, extract {np.median(ok['extract_seconds']):.2f} s, "
          f"fit {np.median(ok['fit_seconds']):.2f} s, medians)" if ok.height else "no backbone ran")
    ratios, ratio = _extraction_ratios(ok, run, args.ratio_backbones)

    dim = int(np.median([int(x) for x in sample.get_column("feature_dim").drop_nulls().to_list()] or [768]))
    heads = heads_timing(len(ds.train_labels), len(ds.test_labels), dim, ds.n_classes, str(run.dev))
    seq, swp, bat = heads["sequential_seconds"], heads["sweep_seconds"], heads["batched_seconds"]
    print(f"heads, {SEEDS} seeds, n_train {len(ds.train_labels)}, dim {dim}: sequential {format_duration(seq)}, "
          f"the sweep's pattern (seed 0 alone + {SEEDS - 1} batched) {format_duration(swp)} -> {seq / swp:.2f}x "
          f"(all {SEEDS} batched: {format_duration(bat)} -> {seq / bat:.2f}x)")

    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    targets = _targets(run.dev.type == "cuda", median, ratio, heads, wall)
    doc = {"median_backbone_seconds": median, "extract_vs_forward": ratio, "heads_sequential_seconds": seq,
           "heads_sweep_seconds": swp, "heads_batched_seconds": bat, "device": run.dev_str,
           "device_name": run.dev_name, "cpu_count": os.cpu_count(),
           "threads": torch.get_num_threads(), "host": platform.node(), "torch": torch.__version__,
           "dataset": ds.name, "input_size": run.input_size, "fractions": list(FRACTIONS), "seeds": SEEDS,
           "evaluators": list(EVALUATORS), "weights": "random", "sample_rule": {
               "stratified": "one per equal-count stratum of effective GMACs, default_rng(seed)",
               "seed": args.seed, "max_params_m": caps[0], "max_effective_gmacs": caps[1],
               "memory_guard_params_m": run.guard_m,
               "pool": run.pool.height, "runnable": run.runnable.height, "affordable": run.part.height},
           "sweep_wall_seconds": sweep_wall, "wall_seconds": wall, "cpu_seconds": cpu,
           "backbones": measured.to_dicts(),
           "extract_vs_forward_backbones": ratios, "heads": heads, "targets": targets}
    for t, met in targets.items():
        print(f"target {t}: {'met' if met else 'NOT met'}")
    if run.dev.type != "cuda":
        print("no GPU here: the H100 targets (median <= 30 s, extraction >= 0.8) are not judged; CPU figures above")
    print(f"wall time {format_duration(wall)} (sweep part {format_duration(sweep_wall)}), this process's CPU time "
          f"{format_duration(cpu)}; a shared machine makes these noisy: rerun on a quiet one")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
