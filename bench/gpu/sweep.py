"""a. **sweep** -- a GMACs-stratified sample of the runnable pool (``precompute.estimate.runnable_pool``,
``stratified_sample``, seed 0, the machine's memory guard) timed by ``measure_sample`` (the sweep's own
``evaluate_backbone``, the ``SweepConfig`` of a ``precompute run``: fractions 1.0, 0.1, 0.01 x 3 seeds x
mlp, silhouette, knn, ridge, logme, hscore) on ``synthetic:50000@224``, each backbone at its native
input size: per backbone seconds and their load / extract / fit breakdown (``backbone_timing``), their
median, and the whole-pool sweep projected from them (``precompute.estimate.project``, as ``precompute
estimate`` does: log-log fit on GMACs, bootstrap range, shards within 24 h)."""
from __future__ import annotations

import math
import time

import numpy as np

from bench.gpu.common import error_text, median
from bench.gpu.context import Context
from precompute import clock
from shared.durations import format_duration, hours
from shared.errors import VibesError

#: the sample row's keys a row of part a's ``backbones`` starts from
SAMPLE_KEYS = ("backbone", "eff_gmacs", "gmacs", "params_m", "stratum", "stratum_size")
ROW_KEYS = (*SAMPLE_KEYS, "status", "seconds", "load_seconds", "extract_seconds", "fit_seconds", "cpu_seconds",
            "rows", "error", "predicted_seconds")


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
    from precompute.estimate import fit_loglog  # lazy: torch and polars stay out of `--help` and the tests

    pts = [(r["eff_gmacs"], r["seconds"]) for r in ok_rows if r["eff_gmacs"] and r["seconds"]]
    if len({g for g, _ in pts}) < 2 or not gmacs or gmacs <= 0:
        return None
    x, y = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
    a, b, smear = (float(v[0]) for v in fit_loglog(x[None], y[None]))
    return smear * math.exp(a + b * math.log(gmacs)) if math.isfinite(b) else None


def _describe(ctx: Context, cfg, sample, ds, out: dict) -> None:
    plan = ctx.plan
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


def _measure_one(cfg, sample, idx: int, ds, left: float, pred: float | None) -> dict:
    """One backbone through ``measure_sample`` within ``left`` measured seconds: its row."""
    from precompute.estimate import measure_sample  # lazy: torch

    base = {k: sample.row(idx, named=True).get(k) for k in SAMPLE_KEYS}
    try:
        with clock.budget(left):
            m = measure_sample(cfg, sample.slice(idx, 1), ds, echo=None)
        return {**m.row(0, named=True), "predicted_seconds": pred}
    except clock.OverBudget as stop:
        return {**base, "status": "stopped", "seconds": stop.spent, "predicted_seconds": pred,
                "error": f"stopped at the part's cap after {stop.spent:.1f} measured s (at {stop.where})"}
    except Exception as exc:  # noqa: BLE001 - evaluate_backbone records backbone problems; anything else here
        return {**base, "status": "failed", "seconds": None, "predicted_seconds": pred, "error": error_text(exc)}


def _measure(cfg, sample, ds, cap: float) -> tuple[list[dict], list[dict]]:
    """The sample in spread order within the cap: (its rows in stratum order, the ok rows in measured order)."""
    rows_by_idx: dict[int, dict] = {}
    ok_rows: list[dict] = []
    t0 = time.perf_counter()
    for j, idx in enumerate(spread_order(sample.height)):
        srow = sample.row(idx, named=True)
        left = cap - (time.perf_counter() - t0)
        pred = predict_seconds(ok_rows, srow["eff_gmacs"])
        tag = f"  [{j + 1}/{sample.height}] {srow['backbone']}:"
        if left <= 0 or (pred is not None and pred > left):
            why = (f"the part's cap was reached ({format_duration(cap)})" if left <= 0 else
                   f"predicted {format_duration(pred)} > {format_duration(left)} left of the part's cap")
            rows_by_idx[idx] = {**{k: srow.get(k) for k in SAMPLE_KEYS}, "status": "skipped", "error": why,
                                "predicted_seconds": pred}
            print(f"{tag} not measured: {why}")
            continue
        r = rows_by_idx[idx] = _measure_one(cfg, sample, idx, ds, left, pred)
        if r["status"] == "ok":
            ok_rows.append(r)
        parts = ", ".join(f"{k} {r[k + '_seconds']:.1f}" for k in ("load", "extract", "fit")
                          if r.get(k + "_seconds") is not None)
        print(f"{tag} {r['status']} {format_duration(r['seconds'] or 0.0)} ({parts})"
              + (f"  {r['error']}" if r.get("error") else ""))
    backbones = [{k: rows_by_idx[i].get(k) for k in ROW_KEYS} for i in range(sample.height) if i in rows_by_idx]
    return backbones, ok_rows


def _medians(out: dict, backbones: list[dict], ok_rows: list[dict], sampled: int) -> None:
    out.update(measured=sum(r["status"] != "skipped" for r in backbones), n_ok=len(ok_rows), backbones=backbones,
               median_backbone_seconds=median(r["seconds"] for r in ok_rows),
               median_load_seconds=median(r["load_seconds"] for r in ok_rows),
               median_extract_seconds=median(r["extract_seconds"] for r in ok_rows),
               median_fit_seconds=median(r["fit_seconds"] for r in ok_rows))
    if ok_rows:
        print(f"  median per backbone {format_duration(out['median_backbone_seconds'])} over {len(ok_rows)} ok "
              f"of {sampled} sampled (load {out['median_load_seconds']:.2f} s, extract "
              f"{out['median_extract_seconds']:.2f} s, fit {out['median_fit_seconds']:.2f} s, medians)")


def _project(ctx: Context, backbones: list[dict], out: dict) -> None:
    """The whole runnable pool's sweep projected from the ok and failed rows, as ``precompute estimate``."""
    import polars as pl

    from precompute.estimate import project  # lazy: torch

    out["projection"] = out["projection_error"] = None
    try:
        frame = pl.DataFrame([{k: r.get(k) for k in ("backbone", "eff_gmacs", "seconds", "status", "stratum_size")}
                              for r in backbones if r["status"] in ("ok", "failed")],
                             schema={"backbone": pl.String, "eff_gmacs": pl.Float64, "seconds": pl.Float64,
                                     "status": pl.String, "stratum_size": pl.Int64}, orient="row")
        proj = project(frame, ctx.runnable(), within_hours=24.0, seed=ctx.seed)
        out["projection"] = {**proj.as_dict(), "unit": f"hours on {ctx.device}"}
        print(f"  whole runnable pool ({proj.n_pool} backbones): {hours(proj.total_seconds)} h on {ctx.device} "
              f"(90 % range {hours(proj.low_seconds)} - {hours(proj.high_seconds)} h; "
              f"fit on {proj.n_fitted}, R^2 {proj.r2:.2f}); shards within 24 h: {proj.shards}")
    except VibesError as exc:
        out["projection_error"] = error_text(exc)
        print(f"  no projection: {exc}")
    out["projection_note"] = ("smoke: toy sizes, a few tiny backbones; the projection only exercises the code"
                              if ctx.plan.smoke else "as `precompute estimate`: log-log fit of seconds on effective "
                              "GMACs over the ok backbones, Duan smearing, 90 % bootstrap range")


def part_sweep(ctx: Context, cap: float, out: dict) -> None:
    """a. The sample through ``measure_sample``, one backbone at a time within the cap; projection."""
    sample = ctx.sample()
    ds = ctx.dataset()
    cfg = ctx.sweep_config()
    _describe(ctx, cfg, sample, ds, out)
    backbones, ok_rows = _measure(cfg, sample, ds, cap)
    ctx.measured = ok_rows
    _medians(out, backbones, ok_rows, sample.height)
    _project(ctx, backbones, out)
