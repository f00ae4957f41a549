"""Simulate strategies (sampler π × evaluator ε̃) against an oracle over a budget grid.

``run_simulation`` is the library entry point behind ``simulate``: it builds the pool (the
backbones with a true score), draws the orders and the evaluator rows, replays Eqs. 3–4 with
:func:`simulate.engine.replay`, and returns the per-run table, the BSECs and the summary.

Randomness: every (strategy, evaluator) pair has its own generator seeded by
``(seed, crc32(strategy), crc32(evaluator))``, so results for one pair do not change when other
pairs are added, and the same seed gives the same bytes.

Memory: runs are replayed in chunks.  The orders are made in chunks of at most
``DRAW_ELEMENTS`` (run, backbone) entries (:meth:`shared.samplers.Sampler.order_chunks`, the
same numbers as one draw over all runs), the evaluator rows of each chunk of ``chunk_runs`` runs
are drawn from the pair's generator in run order (numpy draws them element after element, so
splitting the draw changes nothing), and only the selections at the grid and summary budgets
are kept, (runs, budgets) per pair.  With ``runs_path`` the per-run table streams to Parquet as
it is made (row groups as one ``pyarrow.parquet.write_table`` would cut them, so the file is the
same bytes) instead of being held: peak memory is then bounded by one pair's (runs, budgets)
matrices, not by runs × backbones nor by the number of pairs.

Recommendation (:mod:`simulate.recommend`): at budgets from the oracle's own time scale (round
durations between the cheapest evaluation and the exhaustive time), the grid budgets where the
best choice changes, and ``recommend_at``, the strategy × evaluator with the highest median true
score there, every choice tied with it within the noise, its IQR and the backbone it selects most
often.
"""
from __future__ import annotations

import math
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from shared.durations import parse_duration, parse_durations
from shared.errors import VibesError, unknown
from shared.exactmath import log_spaced
from shared.limits import Limits
from shared.limits import apply as apply_limits
from shared.limits import summarise as summarise_limits
from shared.oracle import Oracle
from shared.samplers import META_RANK, PAPER_SAMPLERS, meta_rank, sampler_of, strategy_rng
from shared.successive_halving import SHConfig, is_sh
from simulate import bsec
from simulate.engine import NO_SELECTION
from simulate.evaluator import EvaluatorView, build_view
from simulate.recommend import change_budgets, recommend, scale_budgets, stop_early, thin, worse_text, worse_with_budget
from simulate.strategies import make_pair
from simulate.workers import check_workers

DEFAULT_BASELINE = "convnext_base.fb_in22k_ft_in1k"
DEFAULT_N_BUDGETS = 100
THREADS = max(1, min(4, os.cpu_count() or 1))  # replay chunks run on this many threads
DRAW_ELEMENTS = 1 << 24  # (run, backbone) entries of orders made at once (64 MiB of int32)
#: runs replayed at once when some K > 1 (measured on timm:sketch, 10,000 runs, K = 8: 3.9 s at 1,000,
#: 3.4 s at 2,500; the draws are the same numbers whatever the chunk)
WORKERS_CHUNK_RUNS = 2500
RUNS_ROW_GROUP = 1024 * 1024  # pyarrow.parquet.write_table's default row group length


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
    runs: pa.Table | None  # strategy, evaluator, run, budget_s, backbone, true_score, n_evaluated
    # (None when streamed to ``runs_path``)
    bsec: pl.DataFrame
    summary: dict
    engine_seconds: float
    recommendation: list[dict] = field(default_factory=list)


def parse_budgets(text: str | None) -> np.ndarray | None:
    """``LO:HI:N`` (N log-spaced budgets, both ends included) or ``T1,T2,...``; every time in the
    one duration grammar (:mod:`shared.durations`: ``90s``, ``10min``, ``1h30m``, plain seconds);
    None → the default grid."""
    if text is None:
        return None
    expected = ("expected LO:HI:N (0 < LO <= HI, durations such as 1s:1d:100, N >= 1 log-spaced budgets) "
                "or a comma list of durations such as 10min,1h,1d")
    try:
        if ":" in text:
            lo, hi, n = text.split(":")
            lo, hi = parse_duration(lo, "--budgets"), parse_duration(hi, "--budgets")
            n = int(n)
            if not (0 < lo <= hi) or n < 1:
                raise ValueError
            values = log_spaced(lo, hi, n)  # the same bits on every CPU (not numpy's SIMD geomspace)
        else:
            values = np.array(parse_durations(text, "--budgets"))
    except (ValueError, VibesError):
        raise VibesError(f"--budgets {text!r}: {expected}") from None
    return np.unique(values)


def asked_budgets(budgets: str | None, recommend_at: str | None) -> list[float] | None:
    """The recommendation's rows the user asked for: ``--recommend-at``'s budgets and those of a
    ``--budgets T1,T2,...`` list (a ``LO:HI:N`` range is the curves' grid, not rows); None: none."""
    listed = parse_budgets(budgets).tolist() if budgets is not None and ":" not in budgets else []
    at = parse_durations(recommend_at, "--recommend-at") if recommend_at is not None else []
    return sorted(set(listed) | set(at)) or None


def _rng(seed: int, strategy: str, evaluator: str) -> np.random.Generator:
    return strategy_rng(seed, strategy, evaluator)


def run_simulation(oracle: Oracle, strategies=None, evaluators=None, n_runs: int = 100,
                   budgets: np.ndarray | None = None, seed: int = 0,
                   baseline: str | None = DEFAULT_BASELINE, chunk_runs: int = 1000,
                   progress=None, *, sh: SHConfig | None = None, priors=None,
                   recommend_at=None, runs_path: str | os.PathLike | None = None,
                   draw_elements: int = DRAW_ELEMENTS, workers=None, limits: Limits | None = None,
                   latency: pl.DataFrame | None = None) -> Simulation:
    """Replay every strategy × evaluator spec ``n_runs`` times over the budget grid.

    ``strategies``: samplers or ``sh:<sampler>`` (default: the paper's five); ``evaluators``:
    specs (default: the truth); ``sh``: successive-halving settings; ``priors``: reference
    oracles for the ``meta`` sampler, a list of ``Oracle`` or ``(label, Oracle)``;
    ``recommend_at``: budgets (seconds) of the recommendation; ``runs_path``: stream the per-run
    table to this Parquet file instead of holding it (``Simulation.runs`` is then None);
    ``workers``: worker counts K (:mod:`simulate.workers`), e.g. ``(1, 4, 8)``: every run is drawn
    once and replayed on each K, and the outputs gain a ``workers`` column (None: one worker and no
    such column, the outputs of a simulation that knows nothing of workers, byte for byte);
    ``limits``: deployment limits (:mod:`shared.limits`; ``latency`` its latency table): backbones
    outside them leave the pool before anything is drawn, so the best possible is the best within."""
    strategies = list(strategies or PAPER_SAMPLERS)
    if n_runs < 1:
        raise VibesError(f"--runs must be >= 1, got {n_runs}")
    samplers = [sampler_of(s) for s in strategies]  # unknown names fail before any work
    ks = (1,) if workers is None else check_workers(workers)
    sh = sh or SHConfig()
    s = _setup(oracle, strategies, samplers, list(evaluators or [oracle.truth]), sh, priors, limits, latency)
    budgets, cheapest = _grid(budgets, s.views, s.sh_views)
    base_score, note = _baseline_score(oracle, s.pool, baseline, s.limits_info is not None)
    s.notes += [note] if note else []
    rec_budgets, rec_sources = _rec_budgets(cheapest, max(v.total_seconds() for v in s.views), recommend_at)
    all_budgets = replay_budgets(budgets, rec_budgets)  # the summary's exact budgets ride along with the grid
    grid_cols = np.searchsorted(all_budgets, budgets)
    extra_cols = np.searchsorted(all_budgets, [bsec.HOUR, bsec.DAY, *rec_budgets])
    out = _Outputs(s, budgets, n_runs, base_score, runs_path, with_workers=workers is not None)
    engine_seconds = 0.0
    try:
        for strategy, row in zip(strategies, s.pairs):
            for pair in row:
                t0 = time.perf_counter()
                by_k = _replay_pair(pair, s.pool, n_runs, _rng(seed, strategy, pair.spec), all_budgets, grid_cols,
                                    extra_cols, chunk_runs, draw_elements, progress, ks)
                engine_seconds += time.perf_counter() - t0
                for k in ks:
                    out.add(strategy, pair, k, *by_k.pop(k))
        out.sink.close()
    except BaseException:
        out.sink.abort()
        raise
    worse = worse_with_more_budget(out.rec_stats, budgets, n_runs,
                                   {v.spec: favourite(v, out.truth, out.names) for v in s.views})
    s.notes += [worse_text(w) for w in worse]
    recommendation = []
    for k in ks:
        rows = _recommendation([r for r in out.rec_stats if r["workers"] == k], rec_budgets, rec_sources, budgets,
                               n_runs)
        recommendation += rows if workers is None else [{"workers": k, **r} for r in rows]
    summary = _summary(oracle, s, out, n_runs, seed, budgets, baseline, base_score, workers, ks, sh)
    summary["recommendation"] = recommendation
    summary["worse_with_budget"] = worse
    runs = pa.concat_tables(out.tables) if runs_path is None else None
    return Simulation(s.pool, budgets, strategies, s.evaluators, n_runs, seed, baseline, base_score,
                      runs, pl.concat(out.curves), summary, engine_seconds, recommendation)


@dataclass
class _Setup:
    """What a simulation replays: the pool (within the limits, with the meta prior where asked), the
    evaluator views, the strategy × evaluator pairs, and the notes so far."""
    strategies: list[str]
    evaluators: list[str]  # canonical specs
    pool: pl.DataFrame
    views: list[EvaluatorView]
    sh_views: dict[str, EvaluatorView]  # successive-halving rungs that are not asked evaluators
    pairs: list[list]
    notes: list[str]
    limits_info: dict | None
    prior_info: list | None


def _setup(oracle: Oracle, strategies, samplers, evaluators, sh: SHConfig, priors, limits, latency) -> _Setup:
    pool = oracle.true_scores()
    if pool.height == 0:
        raise VibesError("the oracle has no backbone with a true score; nothing to simulate")
    pool, limits_info, notes = _within_limits(pool, limits, latency)
    prior_info = None
    if priors or any(s.name == "meta" for s in samplers):
        pool, prior_info, prior_notes = with_meta_rank(oracle, pool, priors or [])
        notes += prior_notes
    cache: dict[str, EvaluatorView] = {}
    views: list[EvaluatorView] = []
    for spec in evaluators:
        views.append(build_view(oracle, pool, spec))
        cache.setdefault(views[-1].spec, views[-1])
    evaluators = [v.spec for v in views]
    notes += [f"evaluator {v.spec}: {v.missing} pool backbone(s) have no row; they cost 0 s and are "
              f"never selected" for v in views if v.missing]
    for sampler in samplers:  # key columns present? (fail before any work)
        sampler.check(pool)
    notes += list(dict.fromkeys(n for n in (s.fallback_note(pool) for s in samplers) if n))
    pairs = [[make_pair(s, oracle, pool, spec, sh, cache) for spec in evaluators] for s in strategies]
    sh_views = {v.spec: v for row in pairs for p in row for v in p.views if v.spec not in evaluators}
    notes += _rung_notes(strategies, pairs, sh_views, sh)
    return _Setup(strategies, evaluators, pool, views, sh_views, pairs, notes, limits_info, prior_info)


def _within_limits(pool: pl.DataFrame, limits: Limits | None, latency) -> tuple[pl.DataFrame, dict | None, list[str]]:
    """The pool within the deployment limits, what summary.json records of them, and a note."""
    if limits is None or not limits.active:
        return pool, None, []
    before = pool.height
    pool, dropped = apply_limits(pool, limits, latency, what="oracle's pool")
    info = {**limits.record(before, pool.height), "left_out": dropped.height}
    note = (f"deployment limits {limits.describe()}: {dropped.height} of {before} backbones leave the "
            f"pool ({summarise_limits(dropped)})" if dropped.height else
            f"deployment limits {limits.describe()}: every backbone meets them")
    return pool, info, [note]


def _rung_notes(strategies, pairs, sh_views: dict, sh: SHConfig) -> list[str]:
    """Notes on the successive-halving rungs: rows missing, and promotions that must pay cold seconds."""
    notes = [f"evaluator {v.spec} (a successive-halving rung): {v.missing} pool backbone(s) have no row; "
             f"they cost 0 s and are never selected" for v in sh_views.values() if v.missing]
    if any(is_sh(s) for s in strategies) and sh.promotion_cost == "incremental":
        rung_views = {v.spec: v for row in pairs for p in row if is_sh(p.strategy) for v in p.views[1:]}
        lacking = sum(int(np.sum(np.isnan(v.load + v.extract + v.fit) & np.isfinite(v.score))) for v in
                      rung_views.values())
        if lacking:
            notes.append(f"successive halving: {lacking} ok row(s) of the upper rungs lack load/extract/fit "
                         f"seconds; promotions to them cost the row's cold seconds")
    return notes


def _grid(budgets, views, sh_views: dict) -> tuple[np.ndarray, float]:
    """The budget grid (given, or the default: cheapest evaluation … exhaustive time) and the cheapest
    evaluation's seconds; a grid wholly below the cheapest evaluation is refused."""
    cheapest = min(min(v.min_seconds() for v in views),
                   min((v.min_seconds() for v in sh_views.values()), default=math.inf))
    if budgets is None:
        lo = cheapest if cheapest > 0 else 1.0
        hi = max(max(v.total_seconds() for v in views), lo)
        budgets = parse_budgets(f"{float(lo)!r}:{float(hi)!r}:{DEFAULT_N_BUDGETS}")
    budgets = np.asarray(budgets, dtype=np.float64)
    if budgets.max() < cheapest:
        raise VibesError(f"every budget (max {budgets.max():g} s) is below the cheapest evaluation "
                         f"({cheapest:g} s): no strategy can select anything; raise --budgets")
    return budgets, cheapest


def _baseline_score(oracle: Oracle, pool: pl.DataFrame, baseline: str | None,
                    limited: bool) -> tuple[float | None, str | None]:
    """The baseline backbone's true score, or None and a note saying why there is no baseline line."""
    if not baseline:
        return None, None
    known = oracle.true_scores().get_column("backbone").to_list()
    if baseline != DEFAULT_BASELINE and baseline not in known:  # a name the user gave: a typo, not a note
        raise unknown("--baseline backbone", baseline, known)
    hit = pool.filter(pl.col("backbone") == baseline)
    if hit.height:
        return float(hit.get_column("true_score")[0]), None
    outside = limited and baseline in set(known)
    return None, (f"baseline {baseline!r} is outside the deployment limits; no baseline line" if outside
                  else f"baseline {baseline!r} is not in the pool; no baseline line")


def _rec_budgets(cheapest: float, exhaustive: float, recommend_at) -> tuple[list[float], list[str]]:
    """The recommendation's budgets (the oracle's time scale and those asked) and why each is there."""
    asked = sorted({float(x) for x in (recommend_at or ())})
    scale = [x for x in scale_budgets(cheapest, exhaustive) if x not in asked]
    rec_budgets = sorted(scale + asked)
    return rec_budgets, ["asked" if x in asked else "scale" for x in rec_budgets]


class _Outputs:
    """Collects, per (strategy, evaluator, workers): the BSEC, the summary row, the recommendation's
    statistics, and the per-run table (held, or streamed to ``runs_path``)."""

    def __init__(self, s: _Setup, budgets: np.ndarray, n_runs: int, base_score, runs_path, with_workers: bool):
        self.s, self.budgets, self.n_runs, self.base_score = s, budgets, n_runs, base_score
        self.with_workers = with_workers  # the workers column only when workers were asked for
        self.truth = s.pool.get_column("true_score").to_numpy()
        self.names = s.pool.get_column("backbone").to_list()
        self.tables: list = []
        self.curves: list[pl.DataFrame] = []
        self.summary_rows: list[dict] = []
        self.rec_stats: list[dict] = []
        self.sink = _RunsSink(runs_path, self.tables)

    def _named(self, idx: np.ndarray) -> list:
        return [self.names[i] if i >= 0 else None for i in idx.tolist()]

    def add(self, strategy: str, pair, k: int, grid_sel, n_ev, extra_sel) -> None:
        """One (strategy, evaluator, workers)'s curves, summary row, recommendation statistics, runs."""
        budgets, truth, t = self.budgets, self.truth, self.budgets.size
        extra_true = _true(extra_sel, truth)
        kw = {"workers": k} if self.with_workers else {}
        c, mode, share = _curve_by_columns(grid_sel, truth, len(self.names))
        self.curves.append(pl.DataFrame({
            "strategy": [strategy] * t, "evaluator": [pair.spec] * t,
            **({"workers": np.full(t, k, dtype=np.int32)} if self.with_workers else {}), "budget_s": budgets,
            "median": c["median"], "q25": c["q25"], "q75": c["q75"],
            "n_runs": np.full(t, self.n_runs, dtype=np.int32),
            "n_selected": c["n_selected"].astype(np.int32),
            "mode_backbone": self._named(mode),
            "mode_share": share,
        }).with_columns(pl.col("median", "q25", "q75").fill_nan(None)))  # not finite -> null
        med_hd = bsec.curve(extra_true[:, :2])["median"]
        self.summary_rows.append({
            "strategy": strategy, "evaluator": pair.spec, **kw,
            "score_1h": _num(med_hd[0]), "score_1d": _num(med_hd[1]),
            "time_to_beat_baseline_s": bsec.time_to_beat(budgets, c["median"], self.base_score),
            "auc_log": _num(bsec.auc_log(budgets, c["median"], float(truth.min()))),
            "final_median": _num(c["median"][-1]),
            "exhaustive_seconds": pair.total_seconds(),
            **pair.describe(),
        })
        rc = bsec.curve(extra_true[:, 2:])
        rmode, rshare = bsec.mode_selection(extra_sel[:, 2:], len(self.names))
        self.rec_stats.append({"strategy": strategy, "evaluator": pair.spec, "workers": k, "median": rc["median"],
                               "q25": rc["q25"], "q75": rc["q75"], "n_selected": rc["n_selected"],
                               "backbone": self._named(rmode), "share": rshare,
                               "grid": {"median": c["median"], "q25": c["q25"], "q75": c["q75"],
                                        "n_selected": c["n_selected"], "backbone": self._named(mode),
                                        "share": share}})
        self._add_runs(strategy, pair.spec, k, grid_sel, n_ev)

    def _add_runs(self, strategy: str, spec: str, k: int, grid_sel, n_ev) -> None:
        for a in range(0, self.n_runs, RUNS_TABLE_RUNS):  # the per-run table, a slice of runs at a time
            z = slice(a, min(a + RUNS_TABLE_RUNS, self.n_runs))
            self.sink.add(_runs_table(strategy, spec, grid_sel[z], _true(grid_sel[z], self.truth), n_ev[z],
                                      self.budgets, self.names, self.s.strategies, self.s.evaluators, first_run=a,
                                      workers=k if self.with_workers else None))


def _summary(oracle: Oracle, s: _Setup, out: _Outputs, n_runs: int, seed: int, budgets: np.ndarray,
             baseline, base_score, workers, ks, sh: SHConfig) -> dict:
    """summary.json without the recommendation."""
    summary = {
        "dataset": oracle.dataset,
        "truth": oracle.truth,
        "weights": oracle.meta.get("weights", "pretrained"),
        "cost_model": oracle.meta.get("cost_model"),  # "modelled: ..." when the oracle's costs are a declared model
        "pool_size": s.pool.height,
        "n_runs": n_runs,
        "seed": seed,
        "budgets": {"n": int(budgets.size), "min_s": float(budgets[0]), "max_s": float(budgets[-1])},
        "baseline": {"backbone": baseline, "true_score": base_score},
        "best_possible": {"backbone": out.names[int(np.argmax(out.truth))], "true_score": float(out.truth.max())},
        "strategies": out.summary_rows,
        "notes": s.notes,
    }
    if workers is not None:
        summary["workers"] = list(ks)
    if s.limits_info is not None:
        summary["limits"] = s.limits_info
    if any(is_sh(st) for st in s.strategies):
        summary["sh"] = sh.as_dict()
    if s.prior_info is not None:
        summary["priors"] = s.prior_info
    return summary


RUNS_TABLE_RUNS = 8192  # runs per slice of the per-run table (bounds its memory)


def with_meta_rank(oracle: Oracle, pool: pl.DataFrame, priors) -> tuple[pl.DataFrame, list[dict], list[str]]:
    """The pool with the ``meta_rank`` column of the ``meta`` sampler, computed from the reference
    oracles ``priors`` (``Oracle`` or ``(label, Oracle)``); each reference's own truth ranks it.
    The oracle under study is refused as its own reference: same dataset name."""
    if not priors:
        raise VibesError("strategy 'meta' needs reference oracles: --prior-oracle PATH|timm:SET "
                         "(repeatable), oracles of other datasets")
    refs, info = [], []
    for item in priors:
        label, ref = item if isinstance(item, tuple) else (None, item)
        label = label or ref.dataset
        if ref.dataset == oracle.dataset:
            raise VibesError(f"--prior-oracle {label}: it is the oracle under study (dataset "
                             f"{oracle.dataset!r}); a prior must come from other datasets")
        scores = ref.true_scores().select("backbone", "true_score")
        refs.append(scores)
        overlap = int(scores.get_column("backbone").is_in(pool.get_column("backbone").implode()).sum())
        info.append({"oracle": str(label), "dataset": ref.dataset, "truth": ref.truth,
                     "pool_size": scores.height, "in_this_pool": overlap})
    prior = meta_rank(pool.get_column("backbone").to_list(), refs)
    absent = int(prior.get_column(META_RANK).null_count())
    notes = []
    if absent:
        notes.append(f"meta prior: {absent} of {pool.height} pool backbone(s) are in no reference oracle; "
                     f"the meta sampler evaluates them last, by name")
    pool = pool.drop(META_RANK, "meta_n", strict=False).join(prior, on="backbone", how="left",
                                                               maintain_order="left")
    return pool, info, notes


def _recommendation(stats: list[dict], rec_budgets: list[float], rec_sources: list[str], grid: np.ndarray,
                    n_runs: int) -> list[dict]:
    """:func:`simulate.recommend.recommend` at the scale and asked budgets (replayed exactly) and at the
    grid budgets where the best choice changes, each choice valued at its best budget b ≤ B (a search
    may stop early: :func:`simulate.recommend.stop_early`, over every grid and recommendation budget);
    of the scale budgets, a few of those with an answer (some choice selects in most runs) are kept."""
    at = sorted([(float(t), "rec", i) for i, t in enumerate(rec_budgets)]
                + [(float(t), "grid", j) for j, t in enumerate(grid)])
    keys = ("median", "q25", "q75", "n_selected", "backbone", "share")
    merged = [stop_early({"strategy": s["strategy"], "evaluator": s["evaluator"],
                          **{k: [(s if where == "rec" else s["grid"])[k][i] for _, where, i in at] for k in keys}},
                         [t for t, _, _ in at]) for s in stats]
    on_grid = [p for p, (_, where, _) in enumerate(at) if where == "grid"]
    changes = set(change_budgets(np.array([at[p][0] for p in on_grid]),
                                 [{k: [m[k][p] for p in on_grid] for k in keys} for m in merged], n_runs))
    changes -= {float(t) for t in rec_budgets}
    rows = [p for p, (t, where, _) in enumerate(at) if where == "rec" or t in changes]
    sources = {p: rec_sources[at[p][2]] if at[p][1] == "rec" else "change" for p in rows}
    answered = [p for p in rows if sources[p] == "scale" and any(math.isfinite(float(m["median"][p])) for m in merged)]
    keep = set(thin([at[p][0] for p in answered]))
    cols = [p for p in rows if sources[p] != "scale" or (p in answered and at[p][0] in keep)]
    merged = [{**m, **{k: [m[k][p] for p in cols] for k in (*keys, "stop_s")}} for m in merged]
    return recommend(merged, [at[p][0] for p in cols], n_runs, [sources[p] for p in cols])


def worse_with_more_budget(rec_stats: list[dict], budgets: np.ndarray, n_runs: int, favourites: dict) -> list[dict]:
    """Each strategy × evaluator (first worker count) whose median falls by more than the noise as its
    budget grows (:func:`simulate.recommend.worse_with_budget`), with its evaluator's favourite
    backbone and that backbone's true score where the strategy is a plain sampler."""
    out, seen = [], set()
    for s in rec_stats:
        if (s["strategy"], s["evaluator"]) in seen:
            continue
        seen.add((s["strategy"], s["evaluator"]))
        w = worse_with_budget(s["grid"], budgets.tolist(), n_runs)
        if w is not None:
            fav = favourites.get(s["evaluator"]) if not is_sh(s["strategy"]) else None
            out.append({"strategy": s["strategy"], "evaluator": s["evaluator"], **w,
                        "favourite": fav[0] if fav else None, "favourite_score": fav[1] if fav else None})
    return out


def favourite(view: EvaluatorView, truth: np.ndarray, names: list[str]) -> tuple[str, float] | None:
    """The backbone an evaluator scores highest (mean ε̃ over its seeds; failed rows never) and its true score."""
    valid = (np.arange(view.score.shape[1])[None, :] < view.n_rows[:, None]) & np.isfinite(view.score)
    n = valid.sum(axis=1)
    mean = np.where(n > 0, np.where(valid, view.score, 0.0).sum(axis=1) / np.maximum(n, 1), -np.inf)
    if not np.isfinite(mean).any():
        return None
    i = int(np.argmax(mean))
    return names[i], float(truth[i])


def draw_runs(sampler, view: EvaluatorView, pool: pl.DataFrame, n_runs: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orders and ε̃/τ̃ in evaluation order for one strategy × evaluator: ``(order, e, c)``, all
    runs at once (the tests' and the bench's yardstick; the simulation draws the same numbers in
    chunks).  A deterministic sampler on a single-seed view makes every run the same run: one
    is drawn."""
    n = 1 if (sampler.deterministic and view.single) else n_runs
    order = sampler.orders(pool, n, rng)
    return (order, *view.draw_in_order(order, rng))


def replay_budgets(budgets: np.ndarray, extra=()) -> np.ndarray:
    """The grid plus the summary's exact budgets (1 hour, 1 day, the recommendation's), sorted."""
    return np.unique(np.concatenate([budgets, [bsec.HOUR, bsec.DAY], np.asarray(extra, dtype=np.float64)]))


def _true(sel: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.where(sel >= 0, truth[np.maximum(sel, 0)], np.nan)


CURVE_COLUMNS = 8  # budgets per block of the BSEC statistics (bounds their temporaries)


def _curve_by_columns(sel: np.ndarray, truth: np.ndarray, n_backbones: int):
    """bsec.curve of the true scores of ``sel`` and bsec.mode_selection of ``sel``, a few budgets at
    a time (each budget's statistics are its own column's), so the (runs, budgets) true-score
    matrix is never held whole."""
    parts, modes, shares = [], [], []
    for j in range(0, sel.shape[1], CURVE_COLUMNS):
        block = sel[:, j:j + CURVE_COLUMNS]
        parts.append(bsec.curve(_true(block, truth)))
        m, sh = bsec.mode_selection(block, n_backbones)
        modes.append(m)
        shares.append(sh)
    c = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return c, np.concatenate(modes), np.concatenate(shares)


def _replay_pair(pair, pool, n_runs, rng, budgets, grid_cols, extra_cols, chunk_runs, draw_elements,
                 progress, ks=(1,)) -> dict:
    """Per worker count K: (selected, n_evaluated) at ``budgets[grid_cols]`` and selected at
    ``budgets[extra_cols]``, each (n_runs, ·), for one strategy × evaluator.  The orders come in
    chunks of runs (``draw_elements`` entries at most), the evaluator rows are drawn in run order
    from ``rng`` after all orders (as one draw over all runs would), every chunk is replayed on each
    K (the same draws), and chunks of ``chunk_runs`` runs replay on ``THREADS`` threads."""
    if pair.deterministic:  # one run stands for all
        order = pair.sampler.orders(pool, 1, rng)
        drawn = pair.draw(order, rng)
        out = {}
        for k in ks:
            rep = pair.replay(order, drawn, budgets, k) if k != 1 else pair.replay(order, drawn, budgets)
            out[k] = (np.broadcast_to(rep.selected[:, grid_cols], (n_runs, grid_cols.size)),
                      np.broadcast_to(rep.n_evaluated[:, grid_cols], (n_runs, grid_cols.size)),
                      np.broadcast_to(rep.selected[:, extra_cols], (n_runs, extra_cols.size)))
        if progress:
            progress(n_runs * len(ks))
        return out
    out = {k: (np.empty((n_runs, grid_cols.size), dtype=np.int32), np.empty((n_runs, grid_cols.size), dtype=np.int32),
               np.empty((n_runs, extra_cols.size), dtype=np.int32)) for k in ks}

    def work(a, order, drawn):
        z = slice(a, a + order.shape[0])
        for k in ks:
            rep = pair.replay(order, drawn, budgets, k) if k != 1 else pair.replay(order, drawn, budgets)
            sel, n_ev, extra = out[k]
            sel[z], n_ev[z] = rep.selected[:, grid_cols], rep.n_evaluated[:, grid_cols]
            extra[z] = rep.selected[:, extra_cols]
        if progress:
            progress(order.shape[0] * len(ks))

    if any(k > 1 for k in ks):  # the K-worker schedules step position by position: larger chunks amortise it
        chunk_runs = max(chunk_runs, WORKERS_CHUNK_RUNS)
    draw_runs_ = max(chunk_runs, max(1, draw_elements // max(pool.height, 1)) // chunk_runs * chunk_runs)
    stream = pair.sampler.order_chunks(pool, n_runs, rng, draw_runs_, keep_rng=pair.draws_rows)
    threaded = n_runs > chunk_runs and THREADS > 1  # numpy releases the GIL in the heavy kernels
    with ThreadPoolExecutor(THREADS if threaded else 1) as executor:
        pending: deque = deque()
        for start, orders in stream:
            for a in range(0, orders.shape[0], chunk_runs):
                order = orders[a:a + chunk_runs]
                drawn = pair.draw(order, rng)  # in run order: the same numbers as one draw
                if not threaded:
                    work(start + a, order, drawn)
                    continue
                pending.append(executor.submit(work, start + a, order, drawn))
                while len(pending) > THREADS:  # bounded: memory of a few chunks in flight
                    pending.popleft().result()
            del orders
        for f in pending:
            f.result()
    return out


class _RunsSink:
    """Collects the per-run tables (``path`` None) or streams them to a Parquet file in row groups
    cut exactly as ``pyarrow.parquet.write_table`` of the whole table would (same bytes): a
    temporary file in the same folder, renamed on :meth:`close`, removed on :meth:`abort`."""

    def __init__(self, path, tables: list):
        self.path = Path(path) if path is not None else None
        self.tables = tables
        self.writer = None
        self.buffer: list[pa.Table] = []
        self.n = 0
        self.tmp = None

    def add(self, table: pa.Table) -> None:
        if self.path is None:
            self.tables.append(table)
            return
        if self.writer is None:
            import pyarrow.parquet as pq

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            self.writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
        self.buffer.append(table)
        self.n += table.num_rows
        while self.n >= RUNS_ROW_GROUP:
            whole = pa.concat_tables(self.buffer)
            self.writer.write_table(whole.slice(0, RUNS_ROW_GROUP))
            rest = whole.slice(RUNS_ROW_GROUP)
            self.buffer, self.n = [rest], rest.num_rows

    def close(self) -> None:
        if self.path is None or self.writer is None:
            return
        if self.n:
            self.writer.write_table(pa.concat_tables(self.buffer))
        self.writer.close()
        os.replace(self.tmp, self.path)
        self.buffer, self.writer = [], None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            Path(self.tmp).unlink(missing_ok=True)
            self.writer = None


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _runs_table(strategy, evaluator, sel, true, n_ev, budgets, names, strategies, evaluators,
                first_run: int = 0, workers: int | None = None) -> pa.Table:
    r, t = sel.shape
    n = r * t

    def const(value, vocabulary):
        return pa.DictionaryArray.from_arrays(pa.array(np.full(n, vocabulary.index(value), np.int32)),
                                              pa.array(vocabulary))

    flat = np.ascontiguousarray(sel).ravel()
    backbone = pa.DictionaryArray.from_arrays(
        pa.array(flat, mask=flat == NO_SELECTION, type=pa.int32()), pa.array(names))
    tf = np.ascontiguousarray(true).ravel()
    return pa.table({
        "strategy": const(strategy, strategies),
        "evaluator": const(evaluator, evaluators),
        **({} if workers is None else {"workers": pa.array(np.full(n, workers, np.int32))}),
        "run": pa.array(np.repeat(np.arange(first_run, first_run + r, dtype=np.int32), t)),
        "budget_s": pa.array(np.tile(budgets, r)),
        "backbone": backbone,
        "true_score": pa.array(tf, mask=np.isnan(tf)),
        "n_evaluated": pa.array(np.ascontiguousarray(n_ev).ravel()),
    })
