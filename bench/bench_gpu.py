"""Every GPU claim of the project measured in one command (issue #18), on the device it finds.

Six parts, each through the project's own code path, random weights (nothing is downloaded):

  a. **sweep** -- a GMACs-stratified sample of the runnable pool (``precompute.estimate.runnable_pool``,
     ``stratified_sample``, seed 0, the machine's memory guard) timed by ``measure_sample`` (the sweep's
     own ``evaluate_backbone``, the ``SweepConfig`` of a ``precompute run``: fractions 1.0, 0.1, 0.01 x
     3 seeds x mlp, silhouette, knn, ridge, logme, hscore) on ``synthetic:50000@224``, each backbone at
     its native input size: per backbone seconds and their load / extract / fit breakdown
     (``backbone_timing``), their median, and the whole-pool sweep projected from them
     (``precompute.estimate.project``, as ``precompute estimate`` does: log-log fit on GMACs, bootstrap
     range, shards within 24 h).
  b. **extract vs forward** -- ``extract_features`` over the sweep's own image order (train images;
     host->device copy and preprocessing included) against a forward-only loop over tensors already on
     the device (same model, batch, autocast, channels-last): ``bench_precompute.extract_vs_forward``,
     best of 2, for the lowest, middle and highest GMACs backbones part a measured (else of its sample).
  c. **heads** -- ``precompute.heads.time_sequential_vs_batched`` on the device at the dataset's train
     size and the sample's median feature width: 3 seeds one after the other against the sweep's own
     pattern (seed 0 alone + seeds 1-2 in one batched call) and all three batched.
  d. **proxies** -- knn, ridge, logme and hscore at 50,000 x 2,048 synthetic features (10 classes,
     80/20 split: ``bench_evaluators.synthetic``), as float32 tensors on the device; best of up to 3
     timed calls (device-synchronised), after untimed calls on 1,000 and 5,000 rows.
  e. **live search** -- ``precompute.search.run_search`` (strategy cycling, evaluator mlp@0.1, seed 0,
     a 2-minute budget) on ``synthetic:50000@224`` over a small pool (runnable, <= 25 M parameters):
     evaluations done, seconds spent, median ``wall_seconds / seconds`` (``wall_ratio``).
  f. **check** -- ``precompute.check.run_check`` over the backbones whose shipped ``check_status`` is
     ``timeout`` (the CPU could not check them), one architecture each first, smallest first, then the
     rest: per-backbone timeout 60 s (``--check-timeout``), as many as the part's cap holds.

The budget (``--budget``, default ``8min``; the project's duration grammar, ``shared.durations``):
``setup = min(60 s, 10 %)`` is left for imports, the pool, generating the dataset (7.5 GB of uint8 at
50,000 x 224 px) and the device warm-up; of the rest R, part e gets its search budget
``min(2 min, 0.28 R)`` + 35 s (the search generates its dataset again), b 5 %, c 8 %, d 5 %, f 10 %,
and a what is left (at least 25 %; all shrink alike when that floor overfills R, and without part a
the others share R in their proportions).  How each part keeps to its cap:
  a. the sample has 16 strata when its cap holds 16 x 30 s, else 12; the backbones are measured in a
     spread order (the middle stratum, the lowest, the highest, then van der Corput), a backbone whose
     time predicted from those measured so far (the same log-log fit) exceeds what is left is not
     started (``status`` ``skipped``, with ``predicted_seconds``), and the one in flight is stopped at
     the cap on its measured seconds (``precompute.clock.budget``, as a live search stops;
     ``stopped``).  The median and the projection use what ran.  At 8 min part a has about 156 s:
     with backbones near the 30 s target that is about 5 of the 12 (12 x 30 s and a 2-minute search
     alone fill 8 minutes); ``--budget 15min`` gives part a about 7.5 min.
  b. fewer images per backbone (from part a's measured images/s), and backbones not started past the cap;
  c. the heads' epochs: one untimed 2-epoch run calibrates seconds per epoch, the timed run has the
     protocol's 200 epochs when they fit, else as many as fit (``epochs``; ``protocol_seconds`` scales
     to 200, flagged ``scaled``);
  d. timed calls stop when the next would pass the cap; a proxy whose full-size time, extrapolated
     from the 1,000- and 5,000-row calls (power law, exponent clamped to [1, 2]), exceeds what is left
     is not timed (``skipped``);
  e. the search budget itself;
  f. each backbone's timeout is ``min(--check-timeout, what is left)``; none starts with < 5 s left.
Each part's cap is scaled by ``min(1, left / planned caps of the parts still to run)`` when it starts
(never below a quarter), so a part that overran squeezes the ones after it.  Execution order: a, b, c,
d, f, e (the dataset of a and b is freed before e).

``--smoke``: the same code paths on the CPU at toy sizes, to keep this script working (tests): dataset
``synthetic:600@32``, input size 32, 3 backbones of <= 5 M parameters and <= 0.01 effective GMACs,
images for b 250, proxies at 500 x 64, search budget 5 s over that small part of the pool, check over
its 2 smallest backbones (input size 32, timeout 30 s).  Its budget defaults to 10 min so that a loaded
machine never trims the toy sizes (the run takes well under a minute on 2 cores).  Not GPU figures.

Without CUDA the full run measures the CPU (1 torch thread unless ``--threads``, as
bench_precompute), says so, and judges no target.  On CUDA (and not ``--smoke``) the issue's targets
are judged: median sweep cost per backbone <= 30 s on synthetic:50000@224; extraction >= 0.8 of a
plain forward; each proxy <= 2 s at 50,000 x 2,048 (the targets are for an H100-class GPU: the JSON
names the one that ran).  Each part is guarded: an exception is recorded in its ``error`` and the
others still run; the JSON is rewritten after every part.  Exit status 1 when a part failed.

JSON (``--json``, default ``out/bench-gpu.json``; seconds are wall-clock, device-synchronised):
  bench "bench-gpu"; version 1; smoke (bool); complete (false while running or when interrupted)
  device (torch device, e.g. "cuda"); device_name; gpu (bool: CUDA used); note (str|null: why no GPU
    figure); torch, cuda (torch.version.cuda: the CUDA torch was built with|null), cudnn (int|null), timm,
    python (versions);
    gpu_memory_gb (float|null); host; cpu_count; threads (torch intra-op threads)
  budget_s (s); setup_s (s, allowance); parts_selected (letters); plan: {dataset, input_size
    (px|null: native), sample (strata), max_params_m (M|null), max_gmacs (GMACs|null: the pool part a
    samples, smoke only), batch_size, ratio_images, ratio_repeat, proxy_rows, proxy_dim, proxy_repeat,
    heads_epochs, search_budget_s (s), search_max_params_m (M), check_timeout_s (s), check_max
    (count|null), caps_s: {letter: planned cap (s)}}
  started (ISO time); setup_seconds (s: imports to the first part); wall_seconds (s, whole run);
    within_budget (bool)
  parts: {letter: part}; every part has title, ok (bool), error ("<ExcType>: <message>"|null),
    traceback (str|null), skipped (str|null: why it did not run), wall_seconds (s), cap_seconds (s), and:
    a: dataset, n_train, n_test (images), input_size (px|null), fractions, seeds, evaluators, weights,
       dataset_seconds (s: generating or loading it, untimed), images_extracted_per_backbone (images), pool {pool,
       runnable, part (counts), left_out {reason: count}, memory_guard_params_m (M)}, sample_size,
       measured (backbones started), n_ok, median_backbone_seconds (s),
       median_load_seconds, median_extract_seconds, median_fit_seconds (s, medians over ok backbones),
       backbones: [{backbone, eff_gmacs, gmacs (GMACs), params_m (M), stratum, stratum_size, status
       (ok|failed|stopped|skipped), seconds, load_seconds, extract_seconds, fit_seconds, cpu_seconds (s),
       rows, error, predicted_seconds (s|null)}], projection: {Projection.as_dict(): total_seconds,
       low_seconds, high_seconds (s), total_hours, low_hours, high_hours (h on this device), n_pool,
       n_fitted, slope, intercept, smear, r2, shards, shards_high (within within_hours), ...}|null,
       projection_error (str|null), projection_note
    b: source (which backbones), images (per backbone, the largest), repeat, batch_size,
       extract_vs_forward (median of the ratios forward s / extract s),
       backbones: [{backbone, images, batch_size, input_size (px), extract_seconds, forward_seconds (s),
       extract_images_per_s, forward_images_per_s, ratio}|{backbone, error}|{backbone, skipped}]
    c: time_sequential_vs_batched's keys: head, n_train, dim, n_classes, seeds, epochs,
       sequential_seconds, sweep_seconds, batched_seconds (s), *_cpu_seconds (s), *_scores, speedup
       (sequential / sweep), speedup_all_batched, agree; plus protocol_epochs (200), scaled (bool),
       protocol_seconds {sequential, sweep, batched} (s at 200 epochs), calibration {epochs, seconds}
    d: rows, dim, n_train, n_test, classes, repeat, proxies: {name: {seconds (s, best), all_seconds,
       cpu_seconds (s), score, calibration {rows: [r1, r2], seconds: [s1, s2], exponent,
       predicted_seconds}, skipped (str|null)}}
    e: dataset, strategy, evaluator, budget_s (s), spent_s (s, summed charges), n_evaluated, n_failed,
       n_backbones, finished ("budget"|"pool"), pool_size, wall_ratio (median wall_seconds / seconds),
       median_evaluation_seconds (s), search_wall_seconds (s: the run_search call),
       evaluation_wall_seconds (s: inside evaluations), incumbent {backbone, score}|null, stopped {...}|null
    f: candidates (names tried, in order), timeout_in_pool (count of check_status timeout), checked,
       per_backbone_timeout_s (s), input_size, status_counts {status: n}, rows: [{backbone, status,
       reason, params_m, input_size, feature_dim, load_seconds, extract_seconds, wall_seconds (s),
       peak_mb (MiB), constant_features, timeout_s (s: the timeout it ran under), cap_limited (bool: that
       timeout was what was left of the cap)}], not_checked (count), cap_limited_timeouts (count: timeouts
       that say nothing of the backbone), threads (the worker's torch threads)
  targets: {judged (bool), why (str|null), device_name, checks: [{target, value, limit, met (bool|null)}]}

``--dataset`` and ``--input-size`` time another size (parts a, b, c, e; f takes the input size); the
median target is then not judged.

Usage: python bench/bench_gpu.py [--budget 8min] [--parts a,b,c,d,e,f] [--smoke] [--json PATH]
       [--dataset synthetic:50000@224] [--input-size N] [--device auto] [--threads N]
       [--check-timeout 60s] [--seed 0]
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_precompute, bench_evaluators

from shared.durations import format_duration, parse_duration  # noqa: E402
from shared.errors import VibesError  # noqa: E402
from shared.protocol import DEFAULT_EVALUATORS, DEFAULT_FRACTIONS, DEFAULT_SEEDS  # noqa: E402

PARTS = {"a": "sweep sample: per-backbone seconds (load/extract/fit) and the whole-pool projection",
         "b": "extraction throughput vs a plain forward of the same batches",
         "c": "heads: the sweep's pattern (seed 0 + batched rest) vs sequential",
         "d": "proxies (knn, ridge, logme, hscore) at 50,000 x 2,048 (smoke: 500 x 64)",
         "e": "live search (cycling, mlp@0.1, 2 min; smoke: 5 s)",
         "f": "precompute check of the backbones the CPU could not check"}
RUN_ORDER = ("a", "b", "c", "d", "f", "e")  # a and b share the dataset; it is freed before e
PROXIES = ("knn", "ridge", "logme", "hscore")
EVALUATORS = tuple(DEFAULT_EVALUATORS)  # mlp, silhouette and the four proxies: what `precompute run` does
PROTOCOL_EPOCHS = 200
FULL_DATASET = "synthetic:50000@224"
TARGET_MEDIAN_S = 30.0
TARGET_RATIO = 0.8
TARGET_PROXY_S = 2.0
SHARES = {"b": 0.05, "c": 0.08, "d": 0.05, "f": 0.10}  # of the budget after setup; a gets the rest
SEARCH_SHARE = 0.28
A_FLOOR = 0.25
MIN_SCALE = 0.25
CHECK_MIN_LEFT_S = 5.0
CALIBRATION_EPOCHS = 2


# ----------------------------------------------------------------------------------- the plan
@dataclass
class Plan:
    """Sizes and time caps of one run (see the module docstring)."""

    smoke: bool
    budget_s: float
    setup_s: float
    dataset: str
    input_size: int | None
    sample: int
    max_params_m: float | None  # the part of the pool part a samples (smoke only)
    max_gmacs: float | None
    batch_size: int
    ratio_images: int
    ratio_repeat: int
    proxy_rows: int
    proxy_dim: int
    proxy_repeat: int
    heads_epochs: int
    search_budget_s: float
    search_max_params_m: float
    check_timeout_s: float
    check_max: int | None
    caps_s: dict[str, float] = field(default_factory=dict)


def make_plan(budget_s: float, smoke: bool, selected: list[str], check_timeout_s: float | None = None,
              dataset: str | None = None, input_size: int | None = None) -> Plan:
    setup = min(60.0, 0.1 * budget_s)
    rest = budget_s - setup
    caps: dict[str, float] = {}
    search = min(5.0 if smoke else 120.0, SEARCH_SHARE * rest)
    for p in selected:
        if p == "e":
            caps[p] = search + (10.0 if smoke else 35.0)
        elif p in SHARES:
            caps[p] = SHARES[p] * rest
    if "a" in selected:
        caps["a"] = max(A_FLOOR * rest, rest - sum(caps.values()))
    else:  # no part a to take the rest: b, c, d and f share it in their proportions (e keeps its budget)
        others = [p for p in caps if p != "e"]
        free = rest - caps.get("e", 0.0)
        total = sum(caps[p] for p in others)
        if others and free > total:
            caps.update({p: caps[p] * free / total for p in others})
    total = sum(caps.values())
    if total > rest:  # a small budget: part a's floor pushed the sum over, everything shrinks alike
        caps = {p: c * rest / total for p, c in caps.items()}
        search *= rest / total
    a_cap = caps.get("a", 0.0)
    if smoke:
        return Plan(smoke=True, budget_s=budget_s, setup_s=setup, dataset=dataset or "synthetic:600@32",
                    input_size=input_size or 32, sample=3, max_params_m=5.0, max_gmacs=0.01, batch_size=256,
                    ratio_images=250, ratio_repeat=2, proxy_rows=500, proxy_dim=64, proxy_repeat=2,
                    heads_epochs=PROTOCOL_EPOCHS, search_budget_s=search, search_max_params_m=5.0,
                    check_timeout_s=check_timeout_s or 30.0, check_max=2, caps_s=caps)
    return Plan(smoke=False, budget_s=budget_s, setup_s=setup, dataset=dataset or FULL_DATASET, input_size=input_size,
                sample=16 if a_cap >= 16 * TARGET_MEDIAN_S else 12, max_params_m=None, max_gmacs=None,
                batch_size=256, ratio_images=8192, ratio_repeat=2, proxy_rows=50_000, proxy_dim=2048,
                proxy_repeat=3, heads_epochs=PROTOCOL_EPOCHS, search_budget_s=search, search_max_params_m=25.0,
                check_timeout_s=check_timeout_s or 60.0, check_max=None, caps_s=caps)


def spread_order(k: int) -> list[int]:
    """0..k-1 (strata sorted by GMACs) in the order part a measures them: the middle, the lowest,
    the highest, then the van der Corput sequence, so that any prefix spreads over the GMACs range."""
    order: list[int] = []
    for i in ((k - 1) // 2, 0, k - 1):
        if 0 <= i < k and i not in order:
            order.append(i)
    j = 1
    while len(order) < k:
        q, denom, n = 0.0, 1.0, j
        while n:
            denom *= 2
            q += (n & 1) / denom
            n >>= 1
        i = min(k - 1, int(q * k))
        if i not in order:
            order.append(i)
        j += 1
    return order


def predict_seconds(ok_rows: list[dict], gmacs: float) -> float | None:
    """Seconds for a backbone of ``gmacs`` from the log-log fit over the ok rows (None: < 2 distinct GMACs)."""
    from precompute.estimate import fit_loglog

    pts = [(r["eff_gmacs"], r["seconds"]) for r in ok_rows if r["eff_gmacs"] and r["seconds"]]
    if len({g for g, _ in pts}) < 2 or not gmacs or gmacs <= 0:
        return None
    x, y = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
    a, b, smear = (float(v[0]) for v in fit_loglog(x[None], y[None]))
    return smear * math.exp(a + b * math.log(gmacs)) if math.isfinite(b) else None


def _median(values) -> float | None:
    v = [float(x) for x in values if x is not None]
    return statistics.median(v) if v else None


def _error(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class _CapReached(Exception):
    """Part f: what is left of the cap holds no further backbone (raised from run_check's echo)."""


# -------------------------------------------------------------------------- shared state
class Context:
    """What the parts share, made on first use: the pool, the sample, the dataset, part a's rows."""

    def __init__(self, plan: Plan, device: str, seed: int):
        self.plan, self.device, self.seed = plan, device, seed
        self._pool = self._runnable = self._part = self._sample = self._ds = None
        self.left_out: dict[str, int] = {}
        self.guard_params_m: float | None = None
        self.dataset_seconds: float | None = None
        self.measured: list[dict] | None = None  # part a's ok rows
        self.extracted_images: int | None = None  # images part a extracts per backbone

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def pool(self):
        if self._pool is None:
            from precompute.pool import build_pool

            self._pool = build_pool(progress=False)
        return self._pool

    def runnable(self):
        if self._runnable is None:
            from precompute.estimate import runnable_pool

            self._runnable, self.left_out = runnable_pool(self.pool(), self.plan.input_size)
        return self._runnable

    def part(self):
        """The runnable pool part a samples: all of it, or (smoke) the tiny backbones."""
        if self._part is None:
            import polars as pl

            out = self.runnable()
            if self.plan.max_params_m is not None:
                out = out.filter(pl.col("params_m") <= self.plan.max_params_m)
            if self.plan.max_gmacs is not None:
                out = out.filter(pl.col("eff_gmacs") <= self.plan.max_gmacs)
            if self.plan.smoke and "check_status" in out.columns:
                out = out.filter(pl.col("check_status") == "ok")
            self._part = out
        return self._part

    def sample(self):
        if self._sample is None:
            from precompute.estimate import memory_guard_gb, stratified_sample

            self.guard_params_m = memory_guard_gb(self.device) * 1e9 / 4 / 1e6
            self._sample = stratified_sample(self.part(), self.plan.sample, self.seed, max_params_m=self.guard_params_m)
        return self._sample

    def dataset(self):
        if self._ds is None:
            from precompute.datasets import load_dataset

            t0 = time.perf_counter()
            self._ds = load_dataset(self.plan.dataset)
            self.dataset_seconds = time.perf_counter() - t0
        return self._ds

    def drop_dataset(self) -> None:
        self._ds = None
        gc.collect()

    def sweep_config(self):
        from precompute.sweep import SweepConfig

        return SweepConfig(dataset=self.dataset().name, fractions=DEFAULT_FRACTIONS, seeds=DEFAULT_SEEDS,
                           evaluators=EVALUATORS, weights="random", device=self.device,
                           batch_size=self.plan.batch_size, input_size=self.plan.input_size)

    def extraction_plan(self, cfg):
        from precompute.datasets import subset_plan
        from precompute.sweep import extraction_plan

        ds = self.dataset()
        plans = subset_plan(ds, list(cfg.fractions), cfg.seed_list)
        n_train = len(ds.train_labels)
        return extraction_plan(plans, cfg.fractions, n_train, n_train + len(ds.test_labels), cfg.needs_test())


def settle(device: str) -> None:
    """After a part: wait for the device, and give its cached memory back (part f's workers need it)."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------ the parts
def part_sweep(ctx: Context, cap: float, out: dict) -> None:
    """a. The sample through ``measure_sample``, one backbone at a time within the cap; projection."""
    import polars as pl

    from precompute import clock
    from precompute.estimate import measure_sample, project

    plan = ctx.plan
    sample = ctx.sample()
    ds = ctx.dataset()
    cfg = ctx.sweep_config()
    ctx.extracted_images = len(ctx.extraction_plan(cfg).order)
    out.update(dataset=ds.name, n_train=len(ds.train_labels), n_test=len(ds.test_labels),
               input_size=plan.input_size, fractions=list(cfg.fractions), seeds=cfg.seeds,
               evaluators=list(cfg.evaluators), weights=cfg.weights, dataset_seconds=ctx.dataset_seconds,
               images_extracted_per_backbone=ctx.extracted_images,
               pool={"pool": ctx.pool().height, "runnable": ctx.runnable().height, "part": ctx.part().height,
                     "left_out": ctx.left_out, "memory_guard_params_m": ctx.guard_params_m},
               sample_size=sample.height)
    print(f"  {ds.name}: {len(ds.train_labels)} train + {len(ds.test_labels)} test (ready in "
          f"{format_duration(ctx.dataset_seconds or 0.0)}, untimed); input size {plan.input_size or 'native'}; "
          f"{cfg.seeds} seeds x fractions {list(cfg.fractions)} x {','.join(cfg.evaluators)}; sample "
          f"{sample.height} of {ctx.part().height} (one per GMACs stratum, seed {ctx.seed})")
    rows_by_idx: dict[int, dict] = {}
    ok_rows: list[dict] = []
    t0 = time.perf_counter()
    order = spread_order(sample.height)
    for j, idx in enumerate(order):
        srow = sample.row(idx, named=True)
        base = {k: srow.get(k) for k in ("backbone", "eff_gmacs", "gmacs", "params_m", "stratum", "stratum_size")}
        left = cap - (time.perf_counter() - t0)
        pred = predict_seconds(ok_rows, srow["eff_gmacs"])
        tag = f"  [{j + 1}/{sample.height}] {srow['backbone']}:"
        if left <= 0 or (pred is not None and pred > left):
            why = (f"the part's cap was reached ({format_duration(cap)})" if left <= 0 else
                   f"predicted {format_duration(pred)} > {format_duration(left)} left of the part's cap")
            rows_by_idx[idx] = {**base, "status": "skipped", "error": why, "predicted_seconds": pred}
            print(f"{tag} not measured: {why}")
            continue
        try:
            with clock.budget(left):
                m = measure_sample(cfg, sample.slice(idx, 1), ds, echo=None)
            r = {**m.row(0, named=True), "predicted_seconds": pred}
        except clock.OverBudget as stop:
            r = {**base, "status": "stopped", "seconds": stop.spent, "predicted_seconds": pred,
                 "error": f"stopped at the part's cap after {stop.spent:.1f} measured s (at {stop.where})"}
        except Exception as exc:  # noqa: BLE001 - evaluate_backbone records backbone problems; anything else here
            r = {**base, "status": "failed", "seconds": None, "predicted_seconds": pred, "error": _error(exc)}
        rows_by_idx[idx] = r
        if r["status"] == "ok":
            ok_rows.append(r)
        parts = ", ".join(f"{k} {r[k + '_seconds']:.1f}" for k in ("load", "extract", "fit")
                          if r.get(k + "_seconds") is not None)
        print(f"{tag} {r['status']} {format_duration(r['seconds'] or 0.0)} ({parts})"
              + (f"  {r['error']}" if r.get("error") else ""))
    keys = ("backbone", "eff_gmacs", "gmacs", "params_m", "stratum", "stratum_size", "status", "seconds",
            "load_seconds", "extract_seconds", "fit_seconds", "cpu_seconds", "rows", "error", "predicted_seconds")
    backbones = [{k: rows_by_idx[i].get(k) for k in keys} for i in range(sample.height) if i in rows_by_idx]
    ctx.measured = ok_rows
    out.update(measured=sum(r["status"] != "skipped" for r in backbones), n_ok=len(ok_rows), backbones=backbones,
               median_backbone_seconds=_median(r["seconds"] for r in ok_rows),
               median_load_seconds=_median(r["load_seconds"] for r in ok_rows),
               median_extract_seconds=_median(r["extract_seconds"] for r in ok_rows),
               median_fit_seconds=_median(r["fit_seconds"] for r in ok_rows))
    if ok_rows:
        print(f"  median per backbone {format_duration(out['median_backbone_seconds'])} over {len(ok_rows)} ok "
              f"of {sample.height} sampled (load {out['median_load_seconds']:.2f} s, extract "
              f"{out['median_extract_seconds']:.2f} s, fit {out['median_fit_seconds']:.2f} s, medians)")
    out["projection"] = out["projection_error"] = None
    try:
        frame = pl.DataFrame([{k: r.get(k) for k in ("backbone", "eff_gmacs", "seconds", "status", "stratum_size")}
                              for r in backbones if r["status"] in ("ok", "failed")],
                             schema={"backbone": pl.String, "eff_gmacs": pl.Float64, "seconds": pl.Float64,
                                     "status": pl.String, "stratum_size": pl.Int64}, orient="row")
        proj = project(frame, ctx.runnable(), within_hours=24.0, seed=ctx.seed)
        out["projection"] = {**proj.as_dict(), "unit": f"hours on {ctx.device}"}
        print(f"  whole runnable pool ({proj.n_pool} backbones): {proj.total_seconds / 3600:.3g} h on {ctx.device} "
              f"(90 % range {(proj.low_seconds or 0) / 3600:.3g} - {(proj.high_seconds or 0) / 3600:.3g} h; "
              f"fit on {proj.n_fitted}, R^2 {proj.r2:.2f}); shards within 24 h: {proj.shards}")
    except VibesError as exc:
        out["projection_error"] = _error(exc)
        print(f"  no projection: {exc}")
    out["projection_note"] = ("smoke: toy sizes, a few tiny backbones; the projection only exercises the code"
                              if plan.smoke else "as `precompute estimate`: log-log fit of seconds on effective "
                              "GMACs over the ok backbones, Duan smearing, 90 % bootstrap range")


def part_extract(ctx: Context, cap: float, out: dict) -> None:
    """b. ``extract_vs_forward`` on the lowest, middle and highest GMACs backbones part a measured."""
    from bench_precompute import extract_vs_forward

    plan = ctx.plan
    ds = ctx.dataset()
    cfg = ctx.sweep_config()
    n_train = len(ds.train_labels)
    full = ctx.extraction_plan(cfg).order
    order = full[full < n_train]  # the sweep's own order over the train images (no concatenation needed)
    if ctx.measured:
        pool_rows = sorted(ctx.measured, key=lambda r: r["eff_gmacs"])
        source = "part a's ok backbones"
    else:
        pool_rows = [dict(r) for r in ctx.sample().sort("eff_gmacs").iter_rows(named=True)]
        source = "part a's sample (part a gave no ok backbone)"
    k = min(3, len(pool_rows))
    picks = [pool_rows[i] for i in sorted({round(j * (len(pool_rows) - 1) / max(1, k - 1)) for j in range(k)})] \
        if k else []
    bs, repeat = plan.batch_size, plan.ratio_repeat
    out.update(repeat=repeat, batch_size=bs, source=source, backbones=[])
    t0 = time.perf_counter()
    for i, row in enumerate(picks):
        left = cap - (time.perf_counter() - t0)
        share = left / (len(picks) - i)
        n = min(plan.ratio_images, len(order))
        why = "the part's cap was reached" if left <= 0 else None
        if why is None and row.get("extract_seconds") and ctx.extracted_images:
            rate = ctx.extracted_images / row["extract_seconds"]  # part a's images/s for this backbone
            passes = 1 + 2 * repeat  # the warm forward, then extract + forward per repeat
            fit = int(rate * max(0.0, share - (row.get("load_seconds") or 0.0)) / passes)
            n = min(n, fit if fit < bs else fit // bs * bs)  # whole batches when there is more than one
            if n < min(bs, len(order), plan.ratio_images):
                why = (f"one batch predicted {format_duration(passes * bs / rate)} > "
                       f"{format_duration(share)}, this backbone's share of the part's cap")
        if why is not None:
            out["backbones"].append({"backbone": row["backbone"], "skipped": why})
            print(f"  {row['backbone']}: not measured ({why})")
            continue
        try:
            r = extract_vs_forward(row["backbone"], cfg, ds.train_images, order[:n], repeat)
        except Exception as exc:  # noqa: BLE001 - one backbone's failure is recorded, the others still run
            out["backbones"].append({"backbone": row["backbone"], "error": _error(exc)})
            print(f"  {row['backbone']}: FAILED {_error(exc)}")
            continue
        out["backbones"].append(r)
        print(f"  {row['backbone']} ({r['images']} images at {r['input_size']} px): extract "
              f"{r['extract_images_per_s']:.0f} vs forward {r['forward_images_per_s']:.0f} images/s "
              f"-> {r['ratio']:.2f}")
    ratios = [r["ratio"] for r in out["backbones"] if "ratio" in r]
    out["images"] = max((r["images"] for r in out["backbones"] if "images" in r), default=None)
    out["extract_vs_forward"] = _median(ratios)
    if not ratios:
        why = "; ".join(f"{r['backbone']}: {r.get('error') or r.get('skipped')}" for r in out["backbones"])
        raise RuntimeError(f"no backbone was timed: {why or 'none to pick'}")


def _dataset_sizes(ctx: Context) -> tuple[int, int, int]:
    """(n_train, n_test, n_classes) of the plan's dataset, without generating it when it is not here."""
    from precompute import datasets as D

    if ctx._ds is not None or not ctx.plan.dataset.startswith(D.SYNTHETIC_PREFIX):
        ds = ctx.dataset()
        return len(ds.train_labels), len(ds.test_labels), int(ds.n_classes)
    n, _ = D.parse_synthetic(ctx.plan.dataset)
    labels = np.arange(n, dtype=np.int64) % D.SYNTHETIC_CLASSES  # the split's sizes depend on the counts only
    tr, te = D.stratified_split(labels, D.SYNTHETIC_TEST_FRACTION, seed=0)
    return len(tr), len(te), D.SYNTHETIC_CLASSES


def part_heads(ctx: Context, cap: float, out: dict) -> None:
    """c. ``time_sequential_vs_batched`` at the dataset's train size, the epochs that fit the cap."""
    from precompute.heads import time_sequential_vs_batched

    n_train, n_test, n_classes = _dataset_sizes(ctx)
    dims = [int(x) for x in ctx.sample().get_column("feature_dim").drop_nulls().to_list()]
    dim = int(np.median(dims)) if dims else 768
    kw = dict(n_train=n_train, dim=dim, n_classes=n_classes, seeds=DEFAULT_SEEDS, n_test=n_test, device=ctx.device)
    t0 = time.perf_counter()
    cal = time_sequential_vs_batched(epochs=CALIBRATION_EPOCHS, **kw)  # untimed: calibrates (and warms up)
    cal_s = cal["sequential_seconds"] + cal["sweep_seconds"] + cal["batched_seconds"]
    left = cap - (time.perf_counter() - t0)
    per_epoch = cal_s / CALIBRATION_EPOCHS
    fit = int(0.9 * left / per_epoch) if per_epoch > 0 else ctx.plan.heads_epochs
    epochs = min(ctx.plan.heads_epochs, max(CALIBRATION_EPOCHS, fit))
    r = time_sequential_vs_batched(epochs=epochs, **kw)
    scale = PROTOCOL_EPOCHS / epochs
    out.update(r)
    out.update(protocol_epochs=PROTOCOL_EPOCHS, scaled=epochs != PROTOCOL_EPOCHS,
               protocol_seconds={k: r[f"{k}_seconds"] * scale for k in ("sequential", "sweep", "batched")},
               calibration={"epochs": CALIBRATION_EPOCHS, "seconds": cal_s})
    note = "" if epochs == PROTOCOL_EPOCHS else f" (scaled from {epochs} epochs to {PROTOCOL_EPOCHS})"
    ps = out["protocol_seconds"]
    print(f"  {DEFAULT_SEEDS} seeds, n_train {n_train}, dim {dim}, {epochs} epochs: sequential "
          f"{format_duration(r['sequential_seconds'])}, the sweep's pattern {format_duration(r['sweep_seconds'])} "
          f"-> {r['speedup']:.2f}x, all batched {format_duration(r['batched_seconds'])} -> "
          f"{r['speedup_all_batched']:.2f}x; at {PROTOCOL_EPOCHS} epochs: {ps['sequential']:.1f} / "
          f"{ps['sweep']:.1f} / {ps['batched']:.1f} s{note}")


def _proxy_args(split, spec, m: int | None) -> tuple:
    """The evaluator's arguments: the split (its first ``m`` train rows and ``m // 4`` test rows)."""
    tr_x, tr_y, te_x, te_y = split
    if m is not None:
        k = max(1, m // 4)
        tr_x, tr_y, te_x, te_y = tr_x[:m], tr_y[:m], te_x[:k], te_y[:k]
    return (tr_x, tr_y, te_x, te_y) if spec.needs_test else (tr_x, tr_y, None, None)


def part_proxies(ctx: Context, cap: float, out: dict) -> None:
    """d. The four proxies at full size, best of the timed calls that fit the cap."""
    import torch
    from bench_evaluators import synthetic, time_call

    from precompute.evaluators import EVALUATORS as SPECS

    plan = ctx.plan
    dev = torch.device(ctx.device)
    n, d, classes = plan.proxy_rows, plan.proxy_dim, 10
    split = synthetic(n, d, classes, sep=0.05, test_share=0.2, seed=n * 7919 + d, device=dev)
    out.update(rows=n, dim=d, n_train=len(split[0]), n_test=len(split[2]), classes=classes,
               repeat=plan.proxy_repeat, proxies={})
    cal_rows = sorted({min(len(split[0]), max(100, n // 50)), min(len(split[0]), max(200, n // 10))})
    t0 = time.perf_counter()
    for name in PROXIES:
        spec = SPECS[name]
        if cap - (time.perf_counter() - t0) <= 0:
            out["proxies"][name] = {"skipped": "the part's cap was reached"}
            print(f"  {name:<7} not timed: the part's cap was reached")
            continue
        # untimed: the first calls, and the sizes the full one is extrapolated from
        cal = [time_call(spec.fn, _proxy_args(split, spec, m), classes, dev)[0] for m in cal_rows]
        k = 1.0
        if len(cal_rows) == 2 and cal[0] > 0 and cal[1] > 0:
            k = min(2.0, max(1.0, math.log(cal[1] / cal[0]) / math.log(cal_rows[1] / cal_rows[0])))
        predicted = cal[-1] * (len(split[0]) / cal_rows[-1]) ** k
        row = {"calibration": {"rows": cal_rows, "seconds": cal, "exponent": k, "predicted_seconds": predicted},
               "skipped": None}
        runs = []
        for _ in range(plan.proxy_repeat):
            left = cap - (time.perf_counter() - t0)
            if (min(r[0] for r in runs) if runs else predicted) > left:
                break
            runs.append(time_call(spec.fn, _proxy_args(split, spec, None), classes, dev))
        if not runs:
            row["skipped"] = (f"predicted {format_duration(predicted)} > {format_duration(max(0.0, left))} left "
                              "of the part's cap")
            print(f"  {name:<7} not timed: {row['skipped']}")
        else:
            best = min(runs)
            row.update(seconds=best[0], all_seconds=[r[0] for r in runs], cpu_seconds=best[1], score=best[2])
            print(f"  {name:<7} {best[0]:8.3f} s best of {len(runs)} at {n:,} x {d:,} (score {best[2]:.4f})")
        out["proxies"][name] = row
    del split
    if ctx.cuda:
        torch.cuda.empty_cache()
    missing = [p for p, r in out["proxies"].items() if r.get("seconds") is None]
    if len(missing) == len(PROXIES):
        raise RuntimeError("no proxy could be timed within the part's cap")


def part_search(ctx: Context, cap: float, out: dict) -> None:
    """e. A live search with the plan's budget over a small pool, in a temporary folder."""
    import polars as pl

    from precompute.search import SearchConfig, run_search, wall_ratio

    plan = ctx.plan
    budget = plan.search_budget_s * min(1.0, cap / plan.caps_s["e"]) if plan.caps_s.get("e") else plan.search_budget_s
    small = ctx.part() if plan.smoke else ctx.runnable()
    small = small.filter(pl.col("params_m") <= plan.search_max_params_m)
    pool = ctx.pool().filter(pl.col("backbone").is_in(small.get_column("backbone").to_list()))
    with tempfile.TemporaryDirectory(prefix="bench-gpu-search-") as tmp:
        cfg = SearchConfig(dataset=plan.dataset, weights="random", device=ctx.device, batch_size=plan.batch_size,
                           input_size=plan.input_size, budget=budget, strategy="cycling", evaluator="mlp@0.1",
                           out=str(Path(tmp) / "search"), seed=0)
        print(f"  {plan.dataset}, cycling, mlp@0.1, budget {format_duration(budget)}, pool {pool.height} "
              f"(runnable, <= {plan.search_max_params_m:g} M parameters)")
        res = run_search(cfg, pool, show_progress=False, echo=lambda s: print(f"    {s}"))
    doc = res.doc
    trace = doc.get("trace") or []
    out.update(dataset=doc["dataset"], strategy=doc["strategy"], evaluator=doc["evaluator"], budget_s=doc["budget_s"],
               spent_s=doc["spent_s"], n_evaluated=doc["n_evaluated"], n_failed=doc["n_failed"],
               n_backbones=doc["n_backbones"], finished=doc["finished"], pool_size=doc["pool_size"],
               wall_ratio=wall_ratio(trace), median_evaluation_seconds=_median(e.get("seconds") for e in trace),
               search_wall_seconds=res.wall_seconds, evaluation_wall_seconds=res.evaluation_wall_seconds,
               incumbent=doc.get("incumbent"), stopped=doc.get("stopped"))
    ratio = out["wall_ratio"]
    print(f"  {out['n_evaluated']} evaluations ({out['n_failed']} failed), {out['spent_s']:.1f} s spent of "
          f"{out['budget_s']:.1f} s; median wall/seconds {'-' if ratio is None else f'{ratio:.3f}'}; the call took "
          f"{format_duration(res.wall_seconds)}")


def _order_for_check(frame) -> list[str]:
    """One backbone per architecture first (smallest first), then the rest (smallest first)."""
    rows = sorted(frame.iter_rows(named=True), key=lambda r: (r.get("params_m") or float("inf"), r["backbone"]))
    first, rest, seen = [], [], set()
    for r in rows:
        arch = r.get("architecture") or r["backbone"].split(".", 1)[0]
        (rest if arch in seen else first).append(r["backbone"])
        seen.add(arch)
    return first + rest


def part_check(ctx: Context, cap: float, out: dict) -> None:
    """f. ``run_check`` over the pool's timeout backbones (smoke: the 2 smallest tiny ones) within the cap."""
    import polars as pl

    from precompute.check import CheckConfig, read_check, run_check, status_counts
    from precompute.estimate import memory_guard_gb

    plan = ctx.plan
    pool = ctx.pool()
    timeouts = pool.filter(pl.col("check_status") == "timeout") if "check_status" in pool.columns else pool.head(0)
    if plan.smoke:  # the timeout backbones are giants: a CPU smoke run checks tiny ones on the same path
        names = _order_for_check(ctx.part())[: plan.check_max]
    else:
        names = _order_for_check(timeouts)
    input_size = plan.input_size
    params = dict(pool.select("backbone", "params_m").drop_nulls().iter_rows())
    threads = 1 if not ctx.cuda else max(1, min(8, os.cpu_count() or 1))
    cfg = CheckConfig(device=ctx.device, input_size=input_size, timeout=plan.check_timeout_s, threads=threads,
                      max_memory_gb=memory_guard_gb(ctx.device))
    out.update(candidates=names, timeout_in_pool=timeouts.height, per_backbone_timeout_s=plan.check_timeout_s,
               input_size=input_size, threads=threads)
    if not names:
        out.update(checked=0, status_counts={}, rows=[], not_checked=0)
        print("  no backbone to check")
        return
    t0 = time.perf_counter()
    used: list[float] = []

    def set_timeout() -> None:
        left = cap - (time.perf_counter() - t0)
        if left < CHECK_MIN_LEFT_S:
            raise _CapReached
        cfg.timeout = min(plan.check_timeout_s, left)  # run_check reads it for every backbone
        used.append(cfg.timeout)

    def echo(line: str) -> None:
        print(f"    {line}")
        if len(used) < len(names):
            set_timeout()

    with tempfile.TemporaryDirectory(prefix="bench-gpu-check-") as tmp:
        path = Path(tmp) / "check.parquet"
        try:
            set_timeout()
            run_check(names, cfg, out=path, params=params, echo=echo)
        except _CapReached:
            print(f"  the part's cap ({format_duration(cap)}) holds no further backbone")
        table = read_check(path) if path.exists() else None
    rows = [] if table is None else table.to_dicts()
    keep = ("backbone", "status", "reason", "params_m", "input_size", "feature_dim", "load_seconds",
            "extract_seconds", "wall_seconds", "peak_mb", "constant_features")
    by_name = {r["backbone"]: r for r in rows}
    out_rows = []
    for i, name in enumerate(names[: len(rows)]):
        r = {k: by_name.get(name, {}).get(k) for k in keep}
        r["timeout_s"] = used[i] if i < len(used) else None
        r["cap_limited"] = r["timeout_s"] is not None and r["timeout_s"] < plan.check_timeout_s
        out_rows.append(r)
    counts = {} if table is None else status_counts(table)
    out.update(checked=len(out_rows), status_counts=counts, rows=out_rows, not_checked=len(names) - len(out_rows),
               cap_limited_timeouts=sum(r["cap_limited"] and r["status"] == "timeout" for r in out_rows))
    print(f"  checked {len(out_rows)} of {len(names)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"
          + ("" if plan.smoke else f"; {timeouts.height} backbones of the pool are marked timeout"))
    if not out_rows:
        raise RuntimeError("no backbone was checked within the part's cap")


RUNNERS = {"a": part_sweep, "b": part_extract, "c": part_heads, "d": part_proxies, "e": part_search,
           "f": part_check}


# ---------------------------------------------------------------------------------- output
def jsonable(x):
    """Plain JSON: numpy scalars to Python, tuples to lists, non-finite floats to null."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if x is None or isinstance(x, str):
        return x
    return str(x)


def judge(doc: dict) -> dict:
    """The issue's targets, judged on CUDA at full size only."""
    parts = doc["parts"]
    if doc["smoke"] or not doc["gpu"]:
        why = ("smoke: toy sizes on the CPU, not GPU figures" if doc["smoke"] else
               f"no GPU here ({doc['device']}): the targets are for an H100/H200; run `make bench-gpu` on a "
               "CUDA machine")
        return {"judged": False, "why": why, "device_name": doc["device_name"], "checks": []}
    checks = []

    def add(target, value, limit, le=True):
        met = None if value is None else (value <= limit if le else value >= limit)
        checks.append({"target": target, "value": value, "limit": limit, "met": met})

    a, b, d = parts.get("a", {}), parts.get("b", {}), parts.get("d", {})
    at_target = doc["plan"]["dataset"] == FULL_DATASET and doc["plan"]["input_size"] is None
    add(f"median per-backbone sweep cost <= {TARGET_MEDIAN_S:g} s on {FULL_DATASET} (native input sizes)",
        a.get("median_backbone_seconds") if at_target else None, TARGET_MEDIAN_S)
    add(f"extraction >= {TARGET_RATIO:g} of a plain forward", b.get("extract_vs_forward"), TARGET_RATIO, le=False)
    for name in PROXIES:
        proxy = (d.get("proxies") or {}).get(name) or {}
        add(f"{name} <= {TARGET_PROXY_S:g} s at 50,000 x 2,048", proxy.get("seconds"), TARGET_PROXY_S)
    return {"judged": True, "why": None, "device_name": doc["device_name"], "checks": checks}


def write(doc: dict, path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(doc), indent=1) + "\n")
    os.replace(tmp, path)


def parse_parts(text: str) -> list[str]:
    letters = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    bad = [p for p in letters if p not in PARTS]
    if bad or not letters:
        raise SystemExit(f"error: --parts takes letters of {','.join(PARTS)} separated by commas; got {text!r}")
    return [p for p in PARTS if p in letters]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default=None, help="the whole run's time (default 8min; --smoke 10min)")
    ap.add_argument("--parts", default=",".join(PARTS), help="the parts to run, e.g. a,b,d (default: all)")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on the CPU: the same code paths, no GPU figure")
    ap.add_argument("--json", default="out/bench-gpu.json", help="write the figures here ('' for none)")
    ap.add_argument("--dataset", default=None, help=f"parts a, b, c, e (default {FULL_DATASET}; smoke "
                    "synthetic:600@32); the median target is judged at the default only")
    ap.add_argument("--input-size", type=int, default=None, help="parts a, b, e, f (default: native; smoke 32)")
    ap.add_argument("--device", default=None, help="default: auto (CUDA if available, else CPU); --smoke: cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: 1 on CPU)")
    ap.add_argument("--check-timeout", default=None, help="part f's per-backbone timeout (default 60s; smoke 30s)")
    ap.add_argument("--seed", type=int, default=0, help="the sample's draw")
    args = ap.parse_args(argv)
    wall0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        budget_s = parse_duration(args.budget or ("10min" if args.smoke else "8min"), "--budget")
        check_timeout = parse_duration(args.check_timeout, "--check-timeout") if args.check_timeout else None
    except VibesError as exc:
        raise SystemExit(f"error: {exc}") from None
    selected = parse_parts(args.parts)
    if args.threads is not None and args.threads < 1:
        raise SystemExit("error: --threads must be >= 1")
    if args.input_size is not None and args.input_size < 8:
        raise SystemExit(f"error: --input-size must be an integer >= 8; got {args.input_size}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights: never reach for the hub
    warnings.filterwarnings("ignore", message=r"fraction .* keeps")  # 1 % of a small split: expected

    import timm
    import torch

    from precompute.backbone import resolve_device
    from precompute.estimate import device_info

    try:
        dev = resolve_device(args.device or ("cpu" if args.smoke else "auto"))
    except VibesError as exc:
        raise SystemExit(f"error: {exc}") from None
    threads = args.threads or (1 if dev.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    dev_str, dev_name = device_info(str(dev))
    gpu = dev.type == "cuda"
    if args.dataset is not None:
        from precompute.datasets import resolve

        try:
            resolve(args.dataset)
        except VibesError as exc:
            raise SystemExit(f"error: {exc}") from None
    plan = make_plan(budget_s, args.smoke, selected, check_timeout, args.dataset, args.input_size)
    note = None
    if not gpu:
        note = ("smoke run: toy sizes on the CPU (the same code paths); no GPU figure" if args.smoke else
                "no GPU here: these are CPU figures at the GPU sizes; no GPU target is judged. "
                "Run `make bench-gpu` on a CUDA machine for the GPU figures")
    doc: dict = {
        "bench": "bench-gpu", "version": 1, "smoke": args.smoke, "complete": False, "device": dev_str,
        "device_name": dev_name, "gpu": gpu, "note": note, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "timm": timm.__version__, "python": platform.python_version(),
        "gpu_memory_gb": torch.cuda.get_device_properties(dev).total_memory / 2**30 if gpu else None,
        "host": platform.node(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "budget_s": budget_s, "setup_s": plan.setup_s, "parts_selected": selected,
        "plan": {k: v for k, v in asdict(plan).items() if k not in ("smoke", "budget_s", "setup_s")},
        "started": started, "setup_seconds": None, "wall_seconds": None, "within_budget": None,
        "parts": {p: {"title": t, "ok": False, "error": None, "traceback": None,
                      "skipped": None if p in selected else "not in --parts", "wall_seconds": None,
                      "cap_seconds": None} for p, t in PARTS.items()},
        "targets": None,
    }
    json_path = Path(args.json) if args.json else None
    print(f"bench-gpu on {dev_str} ({dev_name}), torch {torch.__version__} (CUDA {torch.version.cuda}), timm "
          f"{timm.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads; budget "
          f"{format_duration(budget_s)}; parts {','.join(selected)}" + (" [smoke]" if args.smoke else ""))
    if note:
        print(f"NOTE: {note}")
    ctx = Context(plan, dev_str, args.seed)
    deadline = wall0 + budget_s
    doc["setup_seconds"] = time.perf_counter() - wall0
    write(doc, json_path)
    todo = [p for p in RUN_ORDER if p in selected]
    try:
        for i, p in enumerate(todo):
            if p == "e":
                ctx.drop_dataset()  # the search generates its own; two copies of 7.5 GB are not needed
            remaining = sum(plan.caps_s[q] for q in todo[i:])
            left = deadline - time.perf_counter()
            scale = max(MIN_SCALE, min(1.0, left / remaining)) if remaining > 0 else 1.0
            cap = plan.caps_s[p] * scale
            part = doc["parts"][p]
            part["cap_seconds"] = cap
            print(f"\n[{p}] {PARTS[p]} (cap {format_duration(cap)})")
            t0 = time.perf_counter()
            try:
                RUNNERS[p](ctx, cap, part)
                part["ok"] = True
            except Exception as exc:  # noqa: BLE001 - a part's failure is recorded; the others still run
                part["error"] = _error(exc)
                part["traceback"] = traceback.format_exc()[-3000:]
                print(f"  FAILED: {part['error']}")
            finally:
                settle(dev_str)
                part["wall_seconds"] = time.perf_counter() - t0
                write(doc, json_path)
        doc["complete"] = True
    except KeyboardInterrupt:
        print("\ninterrupted: the figures so far are written")
    wall = time.perf_counter() - wall0
    doc.update(wall_seconds=wall, within_budget=wall <= budget_s)
    doc["targets"] = judge(doc)
    write(doc, json_path)

    print("\nsummary")
    for p in PARTS:
        part = doc["parts"][p]
        state = (f"skipped ({part['skipped']})" if part["skipped"] else "ok" if part["ok"]
                 else f"FAILED: {part['error']}")
        took = f" in {format_duration(part['wall_seconds'])}" if part["wall_seconds"] is not None else ""
        print(f"  [{p}] {PARTS[p]}: {state}{took}")
    t = doc["targets"]
    if t["judged"]:
        for c in t["checks"]:
            val = "-" if c["value"] is None else f"{c['value']:.3g}"
            verdict = "not measured" if c["met"] is None else "met" if c["met"] else "NOT met"
            print(f"  target {c['target']}: {val} -> {verdict}")
    else:
        print(f"  targets not judged: {t['why']}")
    print(f"  wall time {format_duration(wall)} of a {format_duration(budget_s)} budget"
          + ("" if wall <= budget_s else " (over: see each part's cap_seconds and wall_seconds)"))
    if json_path is not None:
        print(f"  wrote {json_path}")
    failed = [p for p in selected if not doc["parts"][p]["ok"]]
    return 130 if not doc["complete"] else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
