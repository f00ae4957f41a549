"""Simulate strategies (sampler π × evaluator ε̃) against an oracle over a budget grid.

``run_simulation`` is the library entry point behind ``simulate``: it builds the pool (the
backbones with a true score), draws the orders and the evaluator rows, replays Eqs. 3–4 with
:func:`simulate.engine.replay`, and returns the per-run table, the BSECs and the summary.

Randomness: every (strategy, evaluator) pair has its own generator seeded by
``(seed, crc32(strategy), crc32(evaluator))``, so results for one pair do not change when other
pairs are added, and the same seed gives the same bytes.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from shared.errors import VibesError
from shared.oracle import Oracle
from shared.samplers import PAPER_SAMPLERS, get_sampler, strategy_rng
from simulate import bsec
from simulate.engine import NO_SELECTION, replay_in_order
from simulate.evaluator import EvaluatorView, build_view

DEFAULT_BASELINE = "convnext_base.fb_in22k_ft_in1k"
DEFAULT_N_BUDGETS = 100
THREADS = max(1, min(4, os.cpu_count() or 1))  # replay chunks run on this many threads


@dataclass
class Simulation:
    pool: pl.DataFrame  # backbone, true_score, metadata
    budgets: np.ndarray
    strategies: list[str]
    evaluators: list[str]
    n_runs: int
    seed: int
    baseline: str | None
    baseline_score: float | None
    runs: pa.Table  # strategy, evaluator, run, budget_s, backbone, true_score, n_evaluated
    bsec: pl.DataFrame
    summary: dict
    engine_seconds: float


def parse_budgets(text: str | None) -> np.ndarray | None:
    """``LO:HI:N`` (N log-spaced, both ends included) or ``S1,S2,...`` seconds; None → default."""
    if text is None:
        return None
    try:
        if ":" in text:
            lo, hi, n = text.split(":")
            lo, hi, n = float(lo), float(hi), int(n)
            if not (0 < lo <= hi) or n < 1:
                raise ValueError
            values = np.geomspace(lo, hi, n) if n > 1 else np.array([lo])
            values[0], values[-1] = lo, hi  # exact ends
        else:
            values = np.array([float(x) for x in text.split(",") if x.strip()])
            if values.size == 0 or np.any(values <= 0):
                raise ValueError
    except ValueError:
        raise VibesError(f"--budgets {text!r}: expected LO:HI:N (0 < LO <= HI seconds, N >= 1 "
                         f"log-spaced budgets) or a comma list of positive seconds") from None
    return np.unique(values)


def _rng(seed: int, strategy: str, evaluator: str) -> np.random.Generator:
    return strategy_rng(seed, strategy, evaluator)


def run_simulation(oracle: Oracle, strategies=None, evaluators=None, n_runs: int = 100,
                   budgets: np.ndarray | None = None, seed: int = 0,
                   baseline: str | None = DEFAULT_BASELINE, chunk_runs: int = 1000,
                   progress=None) -> Simulation:
    strategies = list(strategies or PAPER_SAMPLERS)
    evaluators = list(evaluators or [oracle.truth])
    if n_runs < 1:
        raise VibesError(f"--runs must be >= 1, got {n_runs}")
    samplers = [get_sampler(s) for s in strategies]  # unknown names fail before any work
    pool = oracle.true_scores()
    if pool.height == 0:
        raise VibesError("the oracle has no backbone with a true score; nothing to simulate")
    views: list[EvaluatorView] = [build_view(oracle, pool, spec) for spec in evaluators]
    evaluators = [v.spec for v in views]
    notes = [f"evaluator {v.spec}: {v.missing} pool backbone(s) have no row; they cost 0 s and are "
             f"never selected" for v in views if v.missing]
    for sampler in samplers:  # key columns present? (fail before any work)
        sampler.check(pool)
    cheapest = min(v.min_seconds() for v in views)
    if budgets is None:
        lo = cheapest if cheapest > 0 else 1.0
        hi = max(max(v.total_seconds() for v in views), lo)
        budgets = parse_budgets(f"{float(lo)!r}:{float(hi)!r}:{DEFAULT_N_BUDGETS}")
    budgets = np.asarray(budgets, dtype=np.float64)
    if budgets.max() < cheapest:
        raise VibesError(f"every budget (max {budgets.max():g} s) is below the cheapest evaluation "
                         f"({cheapest:g} s): no strategy can select anything; raise --budgets")
    truth = pool.get_column("true_score").to_numpy()
    names = pool.get_column("backbone").to_list()
    base_score = None
    if baseline:
        hit = pool.filter(pl.col("backbone") == baseline)
        if hit.height:
            base_score = float(hit.get_column("true_score")[0])
        else:
            notes.append(f"baseline {baseline!r} is not in the pool; no baseline line")
    # the summary's exact budgets ride along with the grid
    all_budgets = replay_budgets(budgets)
    grid_cols = np.searchsorted(all_budgets, budgets)
    h_col, d_col = np.searchsorted(all_budgets, [bsec.HOUR, bsec.DAY])

    engine_seconds = 0.0
    tables, curves, summary_rows = [], [], []
    n_b, t = pool.height, budgets.size
    for strategy, sampler in zip(strategies, samplers):
        for view in views:
            t0 = time.perf_counter()
            sel, n_ev = _replay_pair(sampler, view, pool, n_runs, _rng(seed, strategy, view.spec),
                                     all_budgets, chunk_runs, progress)
            true_all = np.where(sel >= 0, truth[np.maximum(sel, 0)], np.nan)
            engine_seconds += time.perf_counter() - t0
            grid_sel, grid_true = sel[:, grid_cols], true_all[:, grid_cols]
            c = bsec.curve(grid_true)
            mode, share = bsec.mode_selection(grid_sel, n_b)
            curves.append(pl.DataFrame({
                "strategy": [strategy] * t, "evaluator": [view.spec] * t, "budget_s": budgets,
                "median": c["median"], "q25": c["q25"], "q75": c["q75"],
                "n_runs": np.full(t, n_runs, dtype=np.int32),
                "n_selected": c["n_selected"].astype(np.int32),
                "mode_backbone": [names[i] if i >= 0 else None for i in mode.tolist()],
                "mode_share": share,
            }).with_columns(pl.col("median", "q25", "q75").fill_nan(None)))  # not finite -> null
            med_hd = bsec.curve(true_all[:, [h_col, d_col]])["median"]
            summary_rows.append({
                "strategy": strategy, "evaluator": view.spec,
                "score_1h": _num(med_hd[0]), "score_1d": _num(med_hd[1]),
                "time_to_beat_baseline_s": bsec.time_to_beat(budgets, c["median"], base_score),
                "auc_log": _num(bsec.auc_log(budgets, c["median"], float(truth.min()))),
                "final_median": _num(c["median"][-1]),
                "exhaustive_seconds": view.total_seconds(),
            })
            tables.append(_runs_table(strategy, view.spec, grid_sel, grid_true, n_ev[:, grid_cols],
                                      budgets, names, strategies, evaluators))
    runs = pa.concat_tables(tables)
    bsec_frame = pl.concat(curves)
    summary = {
        "dataset": oracle.dataset,
        "truth": oracle.truth,
        "weights": oracle.meta.get("weights", "pretrained"),
        "pool_size": pool.height,
        "n_runs": n_runs,
        "seed": seed,
        "budgets": {"n": int(t), "min_s": float(budgets[0]), "max_s": float(budgets[-1])},
        "baseline": {"backbone": baseline, "true_score": base_score},
        "best_possible": {"backbone": names[int(np.argmax(truth))], "true_score": float(truth.max())},
        "strategies": summary_rows,
        "notes": notes,
    }
    return Simulation(pool, budgets, strategies, evaluators, n_runs, seed, baseline, base_score,
                      runs, bsec_frame, summary, engine_seconds)


def draw_runs(sampler, view: EvaluatorView, pool: pl.DataFrame, n_runs: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orders and ε̃/τ̃ in evaluation order for one strategy × evaluator: ``(order, e, c)``.
    A deterministic sampler on a single-seed view makes every run the same run: one is drawn."""
    n = 1 if (sampler.deterministic and view.single) else n_runs
    order = sampler.orders(pool, n, rng)
    return (order, *view.draw_in_order(order, rng))


def replay_budgets(budgets: np.ndarray) -> np.ndarray:
    """The grid plus the summary's exact budgets (1 hour, 1 day), sorted."""
    return np.unique(np.concatenate([budgets, [bsec.HOUR, bsec.DAY]]))


def _replay_pair(sampler, view, pool, n_runs, rng, budgets, chunk_runs, progress):
    """(selected, n_evaluated), each (n_runs, T), for one strategy × evaluator."""
    order, e, c = draw_runs(sampler, view, pool, n_runs, rng)  # all draws happen here
    if order.shape[0] < n_runs:  # one run stands for all
        rep = replay_in_order(order, e, c, budgets)
        if progress:
            progress(n_runs)
        return (np.broadcast_to(rep.selected, (n_runs, budgets.size)),
                np.broadcast_to(rep.n_evaluated, (n_runs, budgets.size)))
    sel = np.empty((n_runs, budgets.size), dtype=np.int32)
    n_ev = np.empty_like(sel)

    def work(a):  # chunks bound the memory of the (runs, B) temporaries
        z = slice(a, min(a + chunk_runs, n_runs))
        rep = replay_in_order(order[z], e[z], c[z], budgets)
        sel[z], n_ev[z] = rep.selected, rep.n_evaluated
        if progress:
            progress(z.stop - z.start)

    starts = range(0, n_runs, chunk_runs)
    if len(starts) > 1 and THREADS > 1:  # numpy releases the GIL in the heavy kernels
        with ThreadPoolExecutor(THREADS) as executor:
            list(executor.map(work, starts))
    else:
        for a in starts:
            work(a)
    return sel, n_ev


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _runs_table(strategy, evaluator, sel, true, n_ev, budgets, names, strategies, evaluators) -> pa.Table:
    r, t = sel.shape
    n = r * t

    def const(value, vocabulary):
        return pa.DictionaryArray.from_arrays(pa.array(np.full(n, vocabulary.index(value), np.int32)),
                                              pa.array(vocabulary))

    flat = sel.ravel()
    backbone = pa.DictionaryArray.from_arrays(
        pa.array(flat, mask=flat == NO_SELECTION, type=pa.int32()), pa.array(names))
    tf = true.ravel()
    return pa.table({
        "strategy": const(strategy, strategies),
        "evaluator": const(evaluator, evaluators),
        "run": pa.array(np.repeat(np.arange(r, dtype=np.int32), t)),
        "budget_s": pa.array(np.tile(budgets, r)),
        "backbone": backbone,
        "true_score": pa.array(tf, mask=np.isnan(tf)),
        "n_evaluated": pa.array(n_ev.ravel()),
    })
