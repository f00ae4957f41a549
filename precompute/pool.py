"""The backbone pool: every pretrained timm name with its size and complexity, measured without weights.

``build_pool`` builds each model on the ``meta`` device (no memory is allocated for weights, no
initialisation runs on real data) and counts the FLOPs of one forward pass at the pretrained input
size with :class:`torch.utils.flop_counter.FlopCounterMode`; MACs = FLOPs / 2.  ``params_m`` and
``gmacs`` are those of the full model with its pretrained classifier, as timm publishes them (e.g.
resnet50: 25.6 M, 4.1 GMACs at 224); ``feature_dim`` is the width of the pooled pre-logits features
(``num_classes=0``), which is what the precompute phase extracts.

Measurements are cached as Parquet per timm version (incrementally, so an interrupted build
resumes); the pretraining facts (``shared.pretrain.pretrain_frame``) are joined on every call, so
they never go stale in the cache.
"""
from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from shared.errors import VibesError, unknown

DEFAULT_CACHE = f"data/cache/pool-timm-{timm.__version__}.parquet"

#: measured columns, in order (the cache holds exactly these; dtypes as in shared.oracle.COLUMNS)
MEASURED = {
    "backbone": pl.String,
    "architecture": pl.String,
    "params_m": pl.Float64,
    "gmacs": pl.Float64,
    "input_size": pl.Int32,
    "feature_dim": pl.Int32,
    "license": pl.String,
    "error": pl.String,
    "measure_seconds": pl.Float64,
}
PRETRAIN = {"pretrain_dataset": pl.String, "pretrain_images": pl.Float64, "pretrain_method": pl.String}
POOL_COLUMNS = [*[c for c in MEASURED if c != "measure_seconds"], *PRETRAIN]


def _forward_meta(model: torch.nn.Module, size: tuple[int, ...]) -> tuple[int, int | None, torch.Tensor]:
    """One meta-device forward at ``size`` (C, H, W) counting FLOPs; returns (FLOPs, the width of the
    classifier's input = the pre-logits features or None when no classifier input was seen, output)."""
    # frozen: a module returning a parameter as is (cls tokens, attention-pool latents) would
    # otherwise trip FlopCounterMode's module tracker ("Expected gradient function to be set")
    model.requires_grad_(False)
    seen: list[int] = []
    heads = model.get_classifier() if hasattr(model, "get_classifier") else None
    heads = [h for h in (heads if isinstance(heads, (tuple, list)) else [heads]) if isinstance(h, torch.nn.Module)]
    def pre_hook(module, args):
        # only a (B, D) classifier input is the pooled width; attention-pool or conv heads take other shapes
        seen.append(int(args[0].shape[1]) if torch.is_tensor(args[0]) and args[0].ndim == 2 else -1)

    hooks = [h.register_forward_pre_hook(pre_hook) for h in heads[:1]]
    x = torch.empty((1, *size), device="meta")
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return counter.get_total_flops(), (seen[0] if len(set(seen)) == 1 and seen[0] > 0 else None), out


def measure_backbone(name: str) -> dict:
    """Measure one pretrained timm name on the meta device; never raises (errors go to ``error``)."""
    start = time.perf_counter()
    row: dict = {c: None for c in MEASURED}
    row["backbone"] = name
    row["architecture"] = name.split(".", 1)[0]
    try:
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None:
            raise ValueError("no pretrained config")
        size = tuple(cfg.input_size)
        row["input_size"] = int(size[-1])
        row["license"] = cfg.license
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
        model.eval()
        try:
            flops, width, out = _forward_meta(model, size)
        except Exception:
            # some fixed-size archs (ViTs) default to another resolution than the pretrained tag
            with torch.device("meta"):
                model = timm.create_model(name, pretrained=False, img_size=size[-1])
            model.eval()
            flops, width, out = _forward_meta(model, size)
        row["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
        row["gmacs"] = flops / 2e9
        if width is None:  # no single classifier input seen: ask the model itself
            f = out
            if hasattr(model, "reset_classifier"):
                model.reset_classifier(0)
                with torch.no_grad():
                    f = model(torch.empty((1, *size), device="meta"))
            if not torch.is_tensor(f) or f.ndim != 2:
                shape = tuple(f.shape) if torch.is_tensor(f) else type(f).__name__
                raise ValueError(f"no pooled features: the model returns {shape}, expected (1, D)")
            width = int(f.shape[-1])
        row["feature_dim"] = width
        if not flops:
            raise ValueError("no FLOPs counted")
    except Exception as e:  # noqa: BLE001 - the reason is recorded, the name stays in the pool
        row["error"] = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
    row["measure_seconds"] = time.perf_counter() - start
    return row


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=MEASURED, orient="row") if rows else pl.DataFrame(schema=MEASURED)


def _write(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.write_parquet(tmp)
    tmp.replace(path)


def _pretrain(names: list[str]) -> pl.DataFrame:
    """Pretraining facts per backbone, or nulls when ``shared.pretrain`` is not available."""
    try:
        from shared.pretrain import pretrain_frame
    except ImportError:
        return pl.DataFrame({"backbone": names}).with_columns(
            [pl.lit(None, dtype=t).alias(c) for c, t in PRETRAIN.items()]
        )
    frame = pretrain_frame(names)
    return frame.select("backbone", *[pl.col(c).cast(t) for c, t in PRETRAIN.items()])


def build_pool(
    names: Sequence[str] | None = None,
    cache: str | Path | None = DEFAULT_CACHE,
    refresh: bool = False,
    progress: bool = True,
    workers: int = 1,
    flush_every: int = 64,
) -> pl.DataFrame:
    """The pool table (one row per name, in the given order; all pretrained timm names by default).

    Names already in ``cache`` are read from it unless ``refresh``; the others are measured
    (over ``workers`` processes) and appended to the cache every ``flush_every`` names.
    """
    all_names = timm.list_models(pretrained=True)
    if names is None:
        names = all_names
    names = list(dict.fromkeys(names))
    valid = set(all_names)
    for n in names:
        if n not in valid:
            raise unknown("backbone", n, all_names)
    path = Path(cache) if cache is not None else None
    cached = pl.read_parquet(path) if path is not None and path.exists() and not refresh else _frame([])
    if path is not None and refresh and path.exists():
        cached = pl.read_parquet(path).filter(~pl.col("backbone").is_in(names))
    cached = cached.select(list(MEASURED)).cast(MEASURED)
    todo = [n for n in names if n not in set(cached["backbone"].to_list())]

    new_rows: list[dict] = []
    if todo:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="pool", unit="model")

        def flush() -> None:
            if path is not None and new_rows:
                _write(pl.concat([cached, _frame(new_rows)]), path)

        def done(row: dict) -> None:
            new_rows.append(row)
            if bar is not None:
                bar.update(1)
            if len(new_rows) % flush_every == 0:
                flush()

        if workers > 1:
            import multiprocessing as mp

            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
                chunk = max(1, min(16, math.ceil(len(todo) / (4 * workers))))
                for row in ex.map(measure_backbone, todo, chunksize=chunk):
                    done(row)
        else:
            for n in todo:
                done(measure_backbone(n))
        flush()
        if bar is not None:
            bar.close()

    measured = pl.concat([cached, _frame(new_rows)]).unique("backbone", keep="last")
    order = pl.DataFrame({"backbone": names}).with_row_index("_order")
    pool = order.join(measured, on="backbone", how="left").join(_pretrain(names), on="backbone", how="left")
    return pool.sort("_order").select(POOL_COLUMNS)


def _glob_regex(glob: str) -> str:
    """fnmatch-style glob (``*``, ``?``, ``[seq]``) -> an anchored regex for polars."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[" and "]" in glob[i + 1 :]:
            j = glob.index("]", i + 1)
            body = glob[i + 1 : j]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


def read_names_file(path: str | Path) -> list[str]:
    """One backbone name per line; blank lines and ``#`` comments are ignored."""
    p = Path(path)
    if not p.is_file():
        raise VibesError(f"names file {str(p)!r} not found; expected a text file with one timm backbone name per line")
    names = [line.split("#", 1)[0].strip() for line in p.read_text().splitlines()]
    return [n for n in names if n]


def filter_pool(
    pool: pl.DataFrame,
    globs: Sequence[str] = (),
    names_file: str | None = None,
    max_params: float | None = None,
    max_gmacs: float | None = None,
) -> pl.DataFrame:
    """Keep the backbones matching any glob (on the full name or the architecture), listed in
    ``names_file``, with at most ``max_params`` M parameters and ``max_gmacs`` GMACs (a name whose
    size could not be measured fails a size filter)."""
    if isinstance(globs, str):
        globs = [globs]
    out = pool
    described = []
    if globs:
        expr = pl.lit(False)
        for g in globs:
            rx = _glob_regex(g)
            expr = expr | pl.col("backbone").str.contains(rx) | pl.col("architecture").str.contains(rx)
        out = out.filter(expr)
        described.append(f"globs={list(globs)}")
    if names_file is not None:
        wanted = read_names_file(names_file)
        missing = [n for n in wanted if n not in set(pool["backbone"].to_list())]
        if missing:
            raise unknown("backbone", missing[0], pool["backbone"].to_list())
        out = out.filter(pl.col("backbone").is_in(wanted))
        described.append(f"names_file={names_file!r}")
    for col, limit, label in (("params_m", max_params, "max_params"), ("gmacs", max_gmacs, "max_gmacs")):
        if limit is not None:
            if not (isinstance(limit, (int, float)) and limit > 0):
                raise VibesError(f"{label} must be a positive number, got {limit!r}")
            out = out.filter(pl.col(col) <= limit)
            described.append(f"{label}={limit}")
    if out.height == 0:
        raise VibesError(
            f"pool is empty after filters ({', '.join(described) or 'none'}); {pool.height} backbones before filtering"
        )
    return out
