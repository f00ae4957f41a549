"""``precompute estimate``: time a GMACs-stratified sample of the pool here, project the whole sweep.

A user decides from this whether to start a sweep that may take weeks, so every number says how it
was obtained:

1. **Sample** (:func:`stratified_sample`): the runnable backbones of the pool (no build error, known
   GMACs, not excluded by ``precompute check``) are sorted by their *effective* GMACs (the pool's
   GMACs at the native input size, times ``(input_size / native)^2`` when ``--input-size`` is given)
   and cut into ``--sample`` strata of equal count; one backbone is drawn per stratum with
   ``numpy.random.default_rng(seed)``.  Same pool and seed, same sample.  A memory guard
   (``--max-memory-gb``, default a quarter of the free memory) keeps giants this machine cannot
   hold out of the draw: their stratum draws from its other members, and the report says so.
2. **Measure** (:func:`measure_sample`): each sampled backbone goes through the sweep's own
   :func:`precompute.sweep.evaluate_backbone` with the :class:`~precompute.sweep.SweepConfig` a
   ``precompute run`` with the same options would use, on the dataset, or, when its data is not at
   hand, on a synthetic stand-in with its sizes (:func:`stand_in`).  The seconds of a backbone are
   the wall time of that call (load + one extraction + every evaluator fit of every seed and
   fraction), after one untimed device warm-up (the sweep's own :func:`precompute.sweep.warm_up`),
   with torch's default threads like ``run`` (``--threads`` to match another setting).
3. **Project** (:func:`project`): an ordinary least-squares fit ``log s = a + b log g`` of seconds
   ``s`` on effective GMACs ``g`` over the sampled backbones that ran; per pool backbone the
   prediction is ``exp(a + b log g) * smear`` with Duan's smearing factor ``smear = mean(exp(
   residual))`` (the mean, not the median, of the log-normal error); the total is their sum.  The
   range is the ``level`` percentile interval of that total over bootstrap resamples of the sample
   (resamples whose GMACs are all equal cannot fit a slope and are dropped).  A model-free check
   sums stratum size x the stratum's measured seconds.
4. **Shards**: the smallest ``--shards n`` for which every shard of ``precompute run --shards n``
   (the sweep's own GMACs-balanced assignment, :func:`precompute.parts.shard_assignment`) finishes
   its predicted seconds within ``--within``, for the central prediction and for the bootstrap
   replicate at the range's upper end.

Counted: what one sweep worker pays per backbone (load, extraction of every image the sweep
extracts, every evaluator of every seed and fraction).  Not counted: weight downloads (run
``precompute fetch`` first; by default the sample uses random weights, whose creation stands in
for reading a weight file), decoding the dataset (once per worker, cached), the worker's device
warm-up (once), writing part files, measuring the pool, queue waits on a cluster.
"""
from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from precompute import backbone as B
from precompute import datasets as D
from precompute import sweep
from precompute import weights as W
from precompute.parts import shard_assignment, write_frame
from shared.durations import DAY, HOUR, format_duration, hours
from shared.errors import VibesError

BOOTSTRAP = 2000
LEVEL = 0.9

#: a stand-in's (n_train, n_test, n_classes) per registry dataset, used when its data is not at hand
#: (resolution: the registry's cache size).  cifar10, gtsrb, flowers102: torchvision's standard
#: splits (flowers102: train only, val unused); eurosat: the committed 80/20 split of 27,000 images.
STAND_IN_SIZES: dict[str, tuple[int, int, int]] = {
    "cifar10": (50_000, 10_000, 10),
    "gtsrb": (39_209, 12_630, 43),
    "flowers102": (1_020, 6_149, 102),
    "eurosat": (21_600, 5_400, 10),
}

#: pool columns whose non-null value marks a backbone ``precompute check`` excluded
EXCLUSION_COLUMNS = ("excluded", "exclude_reason", "excluded_reason", "exclusion", "exclusion_reason")


# -------------------------------------------------------------------------------------- pool
def runnable_pool(pool: pl.DataFrame, input_size: int | None = None) -> tuple[pl.DataFrame, dict[str, int]]:
    """(backbones that can be timed, with ``eff_gmacs``; counts of those left out, by reason)."""
    reasons: dict[str, int] = {}
    out = pool
    excl = [c for c in EXCLUSION_COLUMNS if c in pool.columns]
    for c in excl:
        col = pl.col(c)
        bad = col.is_not_null() & (col.cast(pl.String).str.to_lowercase().is_in(["", "false", "0"]).not_())
        n = out.filter(bad).height
        if n:
            reasons[f"excluded by precompute check ({c})"] = n
        out = out.filter(~bad)
    if "error" in out.columns:
        n = out.filter(pl.col("error").is_not_null()).height
        if n:
            reasons["failed to build in the pool table"] = n
        out = out.filter(pl.col("error").is_null())
    n = out.filter(pl.col("gmacs").is_null() | ~(pl.col("gmacs") > 0)).height
    if n:
        reasons["unknown GMACs"] = n
    out = out.filter(pl.col("gmacs") > 0)
    scale = pl.lit(1.0)
    if input_size is not None:
        scale = (pl.lit(float(input_size)) / pl.col("input_size").cast(pl.Float64)).pow(2).fill_null(1.0)
    return out.with_columns((pl.col("gmacs").cast(pl.Float64) * scale).alias("eff_gmacs")), reasons


def stratified_sample(runnable: pl.DataFrame, n: int, seed: int = 0,
                      max_params_m: float | None = None) -> pl.DataFrame:
    """One backbone per equal-count stratum of effective GMACs (``runnable_pool``'s ``eff_gmacs``),
    ``n`` strata, drawn with ``default_rng(seed)``; sorted by GMACs, with ``stratum`` and
    ``stratum_size``.  All of them when ``n`` >= the pool.  With ``max_params_m`` (the machine's
    memory guard) the draw of each stratum is among its members of at most that many parameters
    (strata are still cut over the whole pool); a stratum with none is left out."""
    if n < 1:
        raise VibesError(f"--sample must be a positive number of backbones; got {n}")
    if runnable.height == 0:
        raise VibesError("no runnable backbone in the pool (every one failed to build or is excluded)")
    k = min(int(n), runnable.height)
    ordered = runnable.sort(["eff_gmacs", "backbone"]).with_row_index("_rank")
    u = np.random.default_rng(seed).random(ordered.height)
    ordered = ordered.with_columns(
        (pl.col("_rank") * k // ordered.height).cast(pl.Int32).alias("stratum"),
        pl.Series("_u", u)).with_columns(pl.len().over("stratum").cast(pl.Int64).alias("stratum_size"))
    if max_params_m is not None:
        ordered = ordered.filter(pl.col("params_m").fill_null(float("inf")) <= max_params_m)
    return (ordered.filter(pl.col("_u") == pl.col("_u").min().over("stratum"))
            .sort("stratum").drop("_rank", "_u"))


def memory_guard_gb(device: str) -> float:
    """Default ``--max-memory-gb``: a quarter of this machine's available memory (and, on CUDA, at
    most half the device's free memory), so that timing a sampled giant never exhausts a shared
    machine: a backbone whose fp32 weights need more is not drawn."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 16 * 2**30
    gb = avail / 4 / 1e9
    if str(device).startswith("cuda"):
        gb = min(gb, torch.cuda.mem_get_info(torch.device(device))[0] / 2 / 1e9)
    return gb


# ----------------------------------------------------------------------------------- dataset
def stand_in(name: str, n_train: int, n_test: int, n_classes: int, size: int):
    """A synthetic :class:`~precompute.datasets.ImageSet` with a real dataset's sizes: random uint8
    images (``datasets.synthetic_arrays``, seed 0 for train, 1 for test), balanced classes."""
    tr_x, tr_y = D.synthetic_arrays(n_train, size, n_classes, seed=0)
    te_x, te_y = D.synthetic_arrays(n_test, size, n_classes, seed=1)
    return D.ImageSet(name, tr_x, tr_y, te_x, te_y, [str(i) for i in range(n_classes)], [],
                    f"synthetic stand-in: random uint8 images at {size}x{size}", "as the real dataset")


def dataset_for_estimate(name: str, data_root: str, cache_dir: str, synthetic: bool = False):
    """(ImageSet, description): the dataset when it is at hand, else a stand-in of its sizes."""
    canonical, spec, _ = D.resolve(name)
    if not synthetic or canonical.startswith("synthetic:"):
        try:
            ds = D.load_dataset(canonical, data_root=data_root, cache_dir=cache_dir)
            return ds, f"{canonical} ({ds.source})"
        except D.DatasetError as err:
            if canonical not in STAND_IN_SIZES:
                raise
            why = f"its data is not at hand ({err})"
    else:
        why = "--synthetic"
    if canonical not in STAND_IN_SIZES:
        raise VibesError(f"no stand-in sizes for {canonical!r}; a synthetic stand-in exists for "
                         f"{', '.join(sorted(STAND_IN_SIZES))}; or pass --dataset synthetic:N@SIZE")
    n_train, n_test, n_classes = STAND_IN_SIZES[canonical]
    size = D.DATASETS[canonical].cache_size
    ds = stand_in(canonical, n_train, n_test, n_classes, size)
    return ds, (f"synthetic stand-in for {canonical}: {n_train} train + {n_test} test random images, "
                f"{n_classes} classes, {size} px ({why})")


# ------------------------------------------------------------------------------- measurement
def backbone_timing(frame: pl.DataFrame, wall: float) -> dict[str, Any]:
    """A backbone's breakdown from its rows: ``load`` (its load_seconds), ``extract`` (the largest
    measured extraction of its rows: every timed segment), ``fit`` (the rest of the wall time:
    every evaluator fit, the untimed extra segment, bookkeeping)."""
    def first(col: str) -> float | None:
        v = frame.get_column(col).drop_nulls()
        return float(v.max()) if v.len() else None

    load, extract = first("load_seconds"), first("extract_seconds")
    ok = bool((frame.get_column("status") == "ok").all())
    err = frame.get_column("error").drop_nulls()
    return {"seconds": wall, "load_seconds": load, "extract_seconds": extract,
            "fit_seconds": max(0.0, wall - (load or 0.0) - (extract or 0.0)),
            "status": "ok" if ok else "failed", "error": None if ok else (err[0] if err.len() else "?"),
            "rows": frame.height}


def _prefetch(name: str) -> None:
    """Put ``name``'s pretrained weights into the cache, untimed; a failure is left for
    ``evaluate_backbone`` to record (offline and not cached: a failed row naming precompute fetch)."""
    try:
        W.ensure_weights(name)
    except Exception:  # noqa: BLE001 - recorded by the timed call
        pass


def measure_sample(cfg, sample: pl.DataFrame, ds, echo: Callable[[str], None] | None = None,
                   do_warm_up: bool = True) -> pl.DataFrame:
    """Run ``evaluate_backbone`` on every sampled backbone (the sweep's path, ``cfg`` as a run's),
    timing each call; one row per backbone with ``backbone_timing``'s columns."""
    dev = B.resolve_device(cfg.device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    plans = D.subset_plan(ds, list(cfg.fractions), cfg.seed_list)
    images = np.concatenate([ds.train_images, ds.test_images])
    plan = sweep.extraction_plan(plans, cfg.fractions, len(ds.train_labels), len(images), cfg.needs_test())
    if do_warm_up:
        sweep.warm_up(dev)  # the sweep's own once-per-worker warm-up, untimed
    rows = []
    for i, row in enumerate(sample.iter_rows(named=True)):
        if cfg.weights == "pretrained" and cfg.pretrained_file is None:
            _prefetch(row["backbone"])  # a download is never in the timed seconds (as in the sweep)
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        res = sweep.evaluate_backbone(cfg, row["backbone"], row, ds, plans, plan, images)
        sync()
        t = backbone_timing(res.frame, time.perf_counter() - t0)
        t["cpu_seconds"] = time.process_time() - c0  # this process's CPU time: less sensitive to other load
        rows.append({"backbone": row["backbone"], "eff_gmacs": row["eff_gmacs"], "gmacs": row["gmacs"],
                     "params_m": row.get("params_m"), "stratum": row.get("stratum"),
                     "stratum_size": row.get("stratum_size"), **t})
        if echo is not None:
            note = "" if t["status"] == "ok" else f"  FAILED: {t['error']}"
            parts = ", ".join(f"{k} {t[k + '_seconds']:.1f}" for k in ("load", "extract", "fit")
                              if t[k + "_seconds"] is not None)
            echo(f"  [{i + 1}/{sample.height}] {row['backbone']}: {format_duration(t['seconds'])} ({parts}; "
                 f"CPU {t['cpu_seconds']:.1f} s){note}")
        del res
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    schema = {"backbone": pl.String, "eff_gmacs": pl.Float64, "gmacs": pl.Float64, "params_m": pl.Float64,
              "stratum": pl.Int32, "stratum_size": pl.Int64, "seconds": pl.Float64,
              "load_seconds": pl.Float64, "extract_seconds": pl.Float64, "fit_seconds": pl.Float64,
              "status": pl.String, "error": pl.String, "rows": pl.Int64, "cpu_seconds": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


# ------------------------------------------------------------------------ the sample's file
#: what ``--out FILE`` writes per sampled backbone, in this order (``simulate --costs-from FILE`` reads it)
SAMPLE_COLUMNS = ("backbone", "seconds", "load_seconds", "extract_seconds", "fit_seconds", "cpu_seconds",
                  "status", "error", "device", "device_name", "dataset", "weights", "input_size",
                  "gmacs", "eff_gmacs", "params_m")
SAMPLE_SUFFIXES = (".csv", ".parquet")


def check_sample_path(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as a costs file to write: a ``.csv`` or ``.parquet`` in an existing folder, or a one-line error."""
    p = Path(path)
    if p.suffix.lower() not in SAMPLE_SUFFIXES:
        raise VibesError(f"{option} {str(p)!r}: expected a .csv or .parquet file name")
    if not p.parent.exists():
        raise VibesError(f"{option} folder {str(p.parent)!r} does not exist")
    if p.is_dir():
        raise VibesError(f"{option} {str(p)!r} is a folder; expected a file name")
    return p


def sample_table(measured: pl.DataFrame, device: str, device_name: str, dataset: str, weights: str,
                 input_size: int | None) -> pl.DataFrame:
    """One row per sampled backbone (:data:`SAMPLE_COLUMNS`): its measured seconds and their breakdown
    (:func:`backbone_timing`), the device (``cuda:0``, ``cpu``) and its name, and how it was timed."""
    extra = {"device": device, "device_name": device_name, "dataset": dataset, "weights": weights}
    frame = measured.with_columns(*[pl.lit(v, dtype=pl.String).alias(k) for k, v in extra.items()],
                                  pl.lit(input_size, dtype=pl.Int32).alias("input_size"))
    return frame.select([c for c in SAMPLE_COLUMNS if c in frame.columns])


def write_sample(table: pl.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``table`` (:func:`sample_table`) as CSV or Parquet by the suffix, atomically (a temporary
    file beside it, then renamed): ``simulate --costs-from FILE`` predicts an oracle's costs on this
    device from it."""
    return write_frame(table, check_sample_path(path))


# -------------------------------------------------------------------------------- projection
def fit_loglog(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise OLS of ``log y`` on ``log x`` for (B, m) arrays -> (intercept, slope, smear), each
    (B,); a row whose x are all equal gets slope NaN (no slope can be fitted)."""
    lx, ly = np.log(np.atleast_2d(x)), np.log(np.atleast_2d(y))
    mx, my = lx.mean(1, keepdims=True), ly.mean(1, keepdims=True)
    sxx = ((lx - mx) ** 2).sum(1)
    sxy = ((lx - mx) * (ly - my)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.where(sxx > 1e-12 * np.maximum(1.0, (lx ** 2).sum(1)), sxy / sxx, np.nan)
    a = my[:, 0] - b * mx[:, 0]
    smear = np.exp(ly - a[:, None] - b[:, None] * lx).mean(1)
    return a, b, smear


@dataclass
class Projection:
    """The projected sweep (seconds on the measuring device) and the shards a deadline needs."""

    n_pool: int
    n_fitted: int
    intercept: float
    slope: float
    smear: float
    r2: float
    total_seconds: float
    low_seconds: float | None
    high_seconds: float | None
    level: float
    n_boot: int
    stratified_seconds: float | None
    within_hours: float
    shards: int | None
    shards_high: int | None
    makespan_seconds: float | None
    makespan_high_seconds: float | None
    max_backbone_seconds: float
    median_sample_seconds: float
    timed_gmacs: tuple[float, float]  # the GMACs range the fit saw
    n_extrapolated: int  # pool backbones outside that range
    extrapolated_seconds: float  # their share of total_seconds
    predicted: np.ndarray = field(repr=False)
    max_measured_seconds: float | None = None  # the slowest sampled backbone that ran, as measured
    max_measured_backbone: str | None = None

    def largest_backbone_text(self) -> str:
        """The largest single backbone, never below what the sample measured (issue #17: the fit can
        predict less for every pool backbone than a sampled one was measured to take)."""
        pred = format_duration(self.max_backbone_seconds)
        if self.max_measured_seconds is None:
            return f"largest single backbone predicted: {pred}"
        meas = f"{format_duration(self.max_measured_seconds)} ({self.max_measured_backbone})"
        if self.max_measured_seconds > self.max_backbone_seconds:
            return f"largest single backbone: {meas} measured; the fit predicts at most {pred} for a pool backbone"
        return f"largest single backbone predicted: {pred} (the largest measured: {meas})"

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "predicted"}
        d["total_hours"] = self.total_seconds / HOUR
        d["low_hours"] = None if self.low_seconds is None else self.low_seconds / HOUR
        d["high_hours"] = None if self.high_seconds is None else self.high_seconds / HOUR
        return d


def makespan(pool_names: Sequence[str], pool_gmacs: np.ndarray, seconds: np.ndarray, n: int) -> float:
    """Largest per-shard sum of ``seconds`` under ``precompute run --shards n``'s assignment."""
    frame = pl.DataFrame({"backbone": list(pool_names), "gmacs": np.asarray(pool_gmacs, float),
                          "seconds": np.asarray(seconds, float)})
    shards = shard_assignment(frame.select("backbone", "gmacs"), n).select("backbone", "shard")
    per = frame.join(shards, on="backbone").group_by("shard").agg(pl.col("seconds").sum())
    return float(per.get_column("seconds").max())


def shards_needed(pool_names: Sequence[str], pool_gmacs: np.ndarray, seconds: np.ndarray,
                  within_s: float) -> tuple[int | None, float | None]:
    """Smallest shard count whose every shard finishes within ``within_s``, and its makespan;
    (None, None) when one backbone alone takes longer."""
    seconds = np.asarray(seconds, float)
    if seconds.size == 0:
        return 1, 0.0
    if seconds.max() > within_s:
        return None, None
    n = max(1, math.ceil(seconds.sum() / within_s))
    while True:
        span = makespan(pool_names, pool_gmacs, seconds, n)
        if span <= within_s * (1 + 1e-9) or n >= seconds.size:  # (float sums of exactly within_s)
            return n, span
        n += 1


def project(measured: pl.DataFrame, pool: pl.DataFrame, within_hours: float, n_boot: int = BOOTSTRAP,
            level: float = LEVEL, seed: int = 0) -> Projection:
    """Fit seconds on effective GMACs over ``measured``'s ok backbones (``measure_sample``'s
    columns ``eff_gmacs``, ``seconds``, ``status``, ``stratum_size``), predict every backbone of
    ``pool`` (``backbone``, ``eff_gmacs``), sum, bootstrap, and size the shards."""
    ok = measured.filter((pl.col("status") == "ok") & (pl.col("seconds") > 0) & (pl.col("eff_gmacs") > 0))
    if ok.height < 2 or ok.get_column("eff_gmacs").n_unique() < 2:
        raise VibesError(f"{ok.height} sampled backbone(s) ran ({measured.height - ok.height} failed); "
                         "a projection needs at least 2 with different GMACs: raise --sample")
    x = ok.get_column("eff_gmacs").to_numpy().astype(float)
    y = ok.get_column("seconds").to_numpy().astype(float)
    g = pool.get_column("eff_gmacs").to_numpy().astype(float)
    names = pool.get_column("backbone").to_list()
    a, b, smear = (float(v[0]) for v in fit_loglog(x[None], y[None]))
    lg = np.log(g)
    predicted = smear * np.exp(a + b * lg)
    total = float(predicted.sum())
    resid = np.log(y) - a - b * np.log(x)
    ss_tot = float(((np.log(y) - np.log(y).mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0

    low = high = None
    high_pred = predicted
    kept = 0
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(x), size=(n_boot, len(x)))
        ba, bb, bs = fit_loglog(x[idx], y[idx])
        good = np.isfinite(bb)
        kept = int(good.sum())
        if kept:
            ba, bb, bs = ba[good], bb[good], bs[good]
            totals = bs * np.exp(ba[:, None] + bb[:, None] * lg[None, :]).sum(1)
            low, high = (float(v) for v in np.quantile(totals, [(1 - level) / 2, (1 + level) / 2]))
            j = int(np.argmin(np.abs(totals - high)))
            high_pred = bs[j] * np.exp(ba[j] + bb[j] * lg)

    strat = None
    if "stratum_size" in ok.columns and ok.get_column("stratum_size").null_count() == 0:
        covered = float(ok.get_column("stratum_size").sum())
        strat = float((ok.get_column("stratum_size") * ok.get_column("seconds")).sum()) * pool.height / covered

    outside = (g < x.min()) | (g > x.max())
    within_s = within_hours * HOUR
    shards, span = shards_needed(names, g, predicted, within_s)
    shards_hi, span_hi = shards_needed(names, g, high_pred, within_s)
    return Projection(n_pool=pool.height, n_fitted=ok.height, intercept=a, slope=b, smear=smear, r2=r2,
                      total_seconds=total, low_seconds=low, high_seconds=high, level=level, n_boot=kept,
                      stratified_seconds=strat, within_hours=within_hours, shards=shards,
                      shards_high=shards_hi, makespan_seconds=span, makespan_high_seconds=span_hi,
                      max_backbone_seconds=float(predicted.max()),
                      median_sample_seconds=float(np.median(measured.get_column("seconds").to_numpy())),
                      timed_gmacs=(float(x.min()), float(x.max())), n_extrapolated=int(outside.sum()),
                      extrapolated_seconds=float(predicted[outside].sum()), predicted=predicted,
                      max_measured_seconds=float(y.max()),
                      max_measured_backbone=str(ok.get_column("backbone")[int(np.argmax(y))])
                      if "backbone" in ok.columns else None)


# ----------------------------------------------------------------------------------- report
COUNTED = ("counted: per backbone what a sweep worker pays, timed around the sweep's own "
           "evaluate_backbone: loading the model, one extraction of every image the sweep extracts, "
           "every evaluator fit for every seed x fraction (the machine's time; the oracle rows' seconds, "
           "which charge each row its own load and extraction, add up to more)")


def not_counted(weights: str) -> str:
    w = ("weight downloads (run `precompute fetch` first; with --weights random, creating the model "
         "stands in for reading its weight file)" if weights == "random" else
         "weight downloads (the sample's weights are fetched into the cache before its clock starts)")
    return (f"not counted: {w}; decoding the dataset (once per worker, then cached); each worker's device "
            "warm-up (once, done untimed before the sample); writing part files; measuring the pool; "
            "queue waits")


def format_report(info: dict[str, Any], measured: pl.DataFrame, proj: Projection) -> str:
    dev = info["device"]
    unit = "GPU-hours" if dev.startswith("cuda") else "device-hours (on this CPU)"
    gmacs_head = f"GMACs@{info['input_size']}" if info["input_size"] else "GMACs"
    lines = [
        f"estimate for {info['dataset']}",
        f"  device {dev} ({info['device_name']}), weights {info['weights']}, input size "
        f"{info['input_size'] or 'native'}, {info['seeds']} seeds x fractions {info['fractions']} x "
        f"{info['evaluators']}",
        f"  pool: {info['pool_size']} backbones, {proj.n_pool} runnable"
        + (f" (left out: {'; '.join(f'{n} {r}' for r, n in info['left_out'].items())})" if info['left_out'] else "")
        + f"; sample: {measured.height}, one per GMACs stratum (seed {info['seed']})",
        "",
        f"  {'backbone':<44}{gmacs_head:>9}{'load s':>8}{'extract s':>10}{'fit s':>8}{'total s':>9}  status",
    ]
    for r in measured.iter_rows(named=True):
        def f(v):
            return "-" if v is None else f"{v:.1f}"
        lines.append(f"  {r['backbone'][:43]:<44}{r['eff_gmacs']:>9.3g}{f(r['load_seconds']):>8}"
                     f"{f(r['extract_seconds']):>10}{f(r['fit_seconds']):>8}{r['seconds']:>9.1f}  {r['status']}")
    secs = measured.get_column("seconds")
    shards = (f"{proj.shards} shard(s) (longest {format_duration(proj.makespan_seconds)})" if proj.shards
              else "no number of shards (one backbone alone takes longer)")
    shards_hi = (f"{proj.shards_high}" if proj.shards_high else "none")
    lines += [
        "",
        f"  per backbone (sample): median {format_duration(proj.median_sample_seconds)}, "
        f"min {format_duration(float(secs.min()))}, max {format_duration(float(secs.max()))}",
        f"  fit: seconds = {math.exp(proj.intercept) * proj.smear:.3g} x GMACs^{proj.slope:.2f} "
        f"(log-log OLS on {proj.n_fitted} backbones, R^2 {proj.r2:.2f}, smearing x{proj.smear:.2f})",
        f"  whole sweep: {hours(proj.total_seconds)} {unit} for {proj.n_pool} backbones"
        + (f" (= {proj.total_seconds / DAY:.1f} days)" if proj.total_seconds >= 2 * DAY else "")
        + f"; {proj.level:.0%} bootstrap range {hours(proj.low_seconds)} - {hours(proj.high_seconds)} h "
          f"({proj.n_boot} resamples)",
    ]
    if proj.stratified_seconds is not None:
        lines.append(f"  model-free check (stratum size x its measured seconds): "
                     f"{hours(proj.stratified_seconds)} h")
    if proj.n_extrapolated:
        lines.append(f"  extrapolated: {proj.n_extrapolated} pool backbones lie outside the timed GMACs range "
                     f"{proj.timed_gmacs[0]:.3g} - {proj.timed_gmacs[1]:.3g}; they are "
                     f"{proj.extrapolated_seconds / proj.total_seconds:.0%} of the projected total")
    if info.get("guard_left_out"):
        lines.append(f"  memory guard: backbones above {info['max_memory_gb']:.1f} GB of fp32 weights are not "
                     f"timed here ({info['guard_left_out']} in the pool); their strata drew from the rest")
    lines += [
        f"  within {info['within']}: --shards {proj.shards or '-'}: {shards}; {shards_hi} at the range's "
        f"upper end; one device per shard, like this one",
        f"  {proj.largest_backbone_text()}",
        f"  {COUNTED}",
        f"  {not_counted(info['weights'])}",
    ]
    n_failed = measured.filter(pl.col("status") != "ok").height
    if n_failed:
        lines.append(f"  {n_failed} sampled backbone(s) failed and are left out of the fit (their pool "
                     "neighbours are still charged the fitted seconds)")
    if info.get("stand_in"):
        lines.append("  timed on random images: scores are at chance; a head with early stopping could "
                     "run other epochs on real data")
    lines.append("  timings on a machine shared with other work are noisy; rerun on a quiet one to confirm")
    return "\n".join(lines)


def device_info(device: str) -> tuple[str, str]:
    dev = str(B.resolve_device(device))
    if dev.startswith("cuda"):
        return dev, torch.cuda.get_device_name(torch.device(dev))
    return dev, f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


__all__ = ["runnable_pool", "stratified_sample", "stand_in",
           "dataset_for_estimate", "measure_sample", "backbone_timing", "fit_loglog", "project",
           "Projection", "shards_needed", "makespan", "format_report", "STAND_IN_SIZES", "SAMPLE_COLUMNS",
           "check_sample_path", "sample_table", "write_sample"]
