"""A league across datasets: the same strategies replayed on many oracles (``simulate league``).

"Which strategy should I use?" is a question about datasets one has not seen, so it is answered
over many: every strategy (sampler π) × evaluator ε̃ × worker count K is replayed on every oracle
of the league on one common budget grid (budgets mean the same on every oracle), and per oracle,
strategy, evaluator, K and budget t_max the league records (``league.parquet``):

* ``median, q25, q75`` — of the true score of the selection over the runs (as ``bsec.parquet``);
* ``best_possible`` — the oracle's best true score (within the deployment limits);
* ``regret`` = ``best_possible − median`` (null where the median is: most runs select nothing yet);
* ``benchmark_backbone, benchmark_score`` — the oracle's **benchmark pick**: the first backbone of
  the ``meta`` order computed from the *other* oracles of the league (leave one out; ties by name),
  i.e. the generic recommendation a practitioner would take from a benchmark instead of searching;
* ``p_beat_benchmark`` — the share of runs whose selection's true score exceeds the benchmark
  pick's (a run without a selection does not).

``meta`` inside a league is leave-one-out automatically: its prior for an oracle comes from the
others.  A strategy an oracle cannot run (its metadata is missing, e.g. ``imagenet-top1`` on a
table without ImageNet results) is left out for that oracle with one note, never an error for
the whole league; an evaluator an oracle does not have likewise.

The answer (:func:`league_answer`): per K and budget, the strategy × evaluator with the lowest
median regret across the oracles (a null median counted as regret = best possible, i.e. scored 0),
how often it beats the benchmark pick (``p_beat_benchmark`` averaged over the oracles), and the
benchmark pick's own median regret for comparison.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl

from shared.durations import ROUND_SECONDS
from shared.errors import VibesError
from shared.exactmath import log_spaced
from shared.oracle import Oracle
from shared.samplers import PAPER_SAMPLERS, meta_rank, sampler_of
from simulate.evaluator import parse_spec
from simulate.quality import evaluate as evaluate_quality
from simulate.recommend import thin
from simulate.simulation import run_simulation

#: the league's default strategies: the paper's five and the leave-one-out meta prior
DEFAULT_STRATEGIES = (*PAPER_SAMPLERS, "meta")
DEFAULT_N_BUDGETS = 40
ANSWER_POINTS = 6  # round budgets the answer is given at, at most
KEY = ["oracle", "strategy", "evaluator", "workers", "budget_s"]


@dataclass
class League:
    table: pl.DataFrame  # one row per (oracle, strategy, evaluator, workers, budget_s)
    oracles: list[str]
    budgets: np.ndarray
    answer_budgets: list[float]
    notes: list[str] = field(default_factory=list)
    engine_seconds: float = 0.0
    settings: dict = field(default_factory=dict)
    cost_models: list[str] = field(default_factory=list)  # the oracles' declared cost models ("modelled: …")
    quality: pl.DataFrame | None = None  # per oracle, how each evaluator spec and static baseline ranks

    def quality_summary(self) -> pl.DataFrame | None:
        """Per spec: the median over the oracles of τ-b, ρ, weighted τ and top-1 regret, and how many
        oracles it was measured on (:func:`quality_summary`)."""
        return None if self.quality is None else quality_summary(self.quality)

    @cached_property
    def answer(self) -> list[dict]:
        """:func:`league_answer` at the answer budgets (stdout, league.json and league.html read it)."""
        return league_answer(self.table, self.answer_budgets)

    def benchmarks(self) -> pl.DataFrame:
        return (self.table.group_by("oracle", maintain_order=True)
                .agg(pl.col("benchmark_backbone", "benchmark_score", "best_possible").first()))


def benchmark_pick(pool: pl.DataFrame, others: list[Oracle]) -> tuple[str, float]:
    """The first backbone of the ``meta`` order over ``pool`` computed from the ``others`` (mean
    normalised rank there, ascending; absent from every other oracle: last; ties by name), and its
    true score in ``pool``."""
    ranks = meta_rank(pool.get_column("backbone").to_list(),
                      [o.true_scores().select("backbone", "true_score") for o in others])
    first = (ranks.join(pool.select("backbone", "true_score"), on="backbone")
             .sort(["meta_rank", "backbone"], nulls_last=True).row(0, named=True))
    return first["backbone"], float(first["true_score"])


def league_budgets(oracles: list[Oracle], n: int = DEFAULT_N_BUDGETS) -> np.ndarray:
    """One grid for every oracle: log-spaced from the cheapest single evaluation of any oracle to the
    longest exhaustive time (every backbone once, by the truth) of any, plus the round durations the
    answer is given at."""
    lo, hi = math.inf, 0.0
    for o in oracles:
        ok = o.frame.filter((pl.col("status") == "ok") & (pl.col("seconds") > 0))
        if ok.height:
            lo = min(lo, float(ok.get_column("seconds").min()))
            per = ok.group_by("evaluator", "fraction", "backbone").agg(pl.col("seconds").max())
            hi = max(hi, float(per.group_by("evaluator", "fraction").agg(pl.col("seconds").sum())
                               .get_column("seconds").max()))
    if not math.isfinite(lo):
        raise VibesError("no oracle of the league has an evaluation with positive seconds")
    grid = log_spaced(lo, max(hi, lo), n)
    round_ones = [x for x in ROUND_SECONDS if grid[0] <= x <= grid[-1]]
    return np.unique(np.concatenate([grid, thin(round_ones, ANSWER_POINTS)]))


def answer_budgets(grid: np.ndarray, given: bool = False) -> list[float]:
    """The budgets the answer is given at, at most :data:`ANSWER_POINTS`, log-evenly spaced: of budgets
    the user ``given``, those; of the default grid, its round durations (:data:`shared.durations.ROUND_SECONDS`)."""
    values = [float(x) for x in grid]
    round_ones = [x for x in values if x in ROUND_SECONDS]
    return thin(values if given or not round_ones else round_ones, ANSWER_POINTS)


def runnable(oracle: Oracle, label: str, strategies, evaluators) -> tuple[list[str], list[str], list[str]]:
    """The strategies and evaluator specs this oracle can run, and a note for each left out."""
    pool, notes = oracle.true_scores(), []
    keep_s = []
    for s in strategies:
        sampler = sampler_of(s)
        if sampler.name == "meta":  # leave-one-out: its column is made from the other oracles
            keep_s.append(s)
            continue
        try:
            sampler.check(pool)
            keep_s.append(s)
        except VibesError as exc:
            notes.append(f"{label}: strategy {s} left out ({exc})")
    keep_e = []
    for spec in evaluators or [oracle.truth]:
        try:
            parse_spec(spec, oracle)  # the evaluator and fraction exist in this oracle
            keep_e.append(spec)
        except VibesError as exc:
            notes.append(f"{label}: evaluator {spec} left out ({exc})")
    return keep_s, keep_e, notes


def oracle_rows(label: str, oracle: Oracle, others: list[Oracle], strategies, evaluators, n_runs: int,
                budgets: np.ndarray, seed: int, workers, **kw) -> tuple[pl.DataFrame | None, list[str], float]:
    """One oracle's league rows (None when nothing could run), its notes and its engine seconds."""
    strategies, evaluators, notes = runnable(oracle, label, strategies, evaluators)
    if not strategies or not evaluators:
        return None, notes + [f"{label}: left out (no strategy × evaluator can run on it)"], 0.0
    pool = oracle.true_scores()
    bench, bench_score = benchmark_pick(pool, others)
    try:
        sim = run_simulation(oracle, strategies, evaluators, n_runs, budgets, seed, baseline=None,
                             priors=[(o.dataset, o) for o in others], workers=workers, **kw)
    except VibesError as exc:
        return None, notes + [f"{label}: left out ({exc})"], 0.0
    by = ["strategy", "evaluator", "workers", "budget_s"]
    beat = (pl.from_arrow(sim.runs).with_columns(pl.col("strategy", "evaluator").cast(pl.String))
            .group_by(by).agg((pl.col("true_score") > bench_score).fill_null(False).mean()
                              .alias("p_beat_benchmark")))
    best = float(sim.summary["best_possible"]["true_score"])
    rows = (sim.bsec.join(beat, on=by, how="left")
            .select(pl.lit(label).alias("oracle"), *by, "median", "q25", "q75",
                    pl.lit(best).alias("best_possible"), (best - pl.col("median")).alias("regret"),
                    pl.lit(bench).alias("benchmark_backbone"), pl.lit(bench_score).alias("benchmark_score"),
                    "p_beat_benchmark"))
    notes += [f"{label}: {n}" for n in sim.summary["notes"] if "gets worse with more budget" not in n]
    return rows, notes, sim.engine_seconds


def oracle_quality(label: str, oracle: Oracle, others: list[Oracle]) -> pl.DataFrame:
    """How well each evaluator spec of the oracle and each static baseline (params, GMACs, … and the
    leave-one-out ``meta`` prior) ranks its pool like its truth (:func:`simulate.quality.evaluate`)."""
    return evaluate_quality(oracle, others).table.select(pl.lit(label).alias("oracle"), pl.all())


def quality_summary(quality: pl.DataFrame) -> pl.DataFrame:
    """Per (spec, kind): medians over the oracles of τ-b, ρ, weighted τ and top-1 regret, and n_oracles;
    the truth first, then by median weighted τ (best first)."""
    metrics = ["kendall_tau_b", "spearman_rho", "weighted_tau", "top1_regret"]
    return (quality.group_by("spec", "kind", maintain_order=True)
            .agg(*[pl.col(m).median() for m in metrics], pl.col("oracle").n_unique().alias("n_oracles"))
            .sort([pl.col("kind") != "truth", "weighted_tau"], descending=[False, True], nulls_last=True))


def run_league(oracles: list[tuple[str, Oracle]], strategies=None, evaluators=None, n_runs: int = 100,
               budgets: np.ndarray | None = None, seed: int = 0, workers=(1,), progress=None, **kw) -> League:
    """Replay every strategy × evaluator × K on every oracle (``(label, Oracle)``, two at least: the
    benchmark pick and ``meta`` of each come from the others).  ``kw``: more run_simulation settings
    (sh, limits, latency)."""
    if len(oracles) < 2:
        raise VibesError(f"a league needs two oracles at least (each one's benchmark pick comes from the "
                         f"others); got {len(oracles)}")
    if n_runs < 1:
        raise VibesError(f"--runs must be >= 1, got {n_runs}")
    strategies = list(strategies or DEFAULT_STRATEGIES)
    for s in strategies:
        sampler_of(s)  # an unknown name fails before any work
    grid = np.asarray(budgets if budgets is not None else league_budgets([o for _, o in oracles]), dtype=np.float64)
    parts, quality, notes, engine = [], [], [], 0.0
    for i, (label, oracle) in enumerate(oracles):
        others = [o for j, (_, o) in enumerate(oracles) if j != i]
        rows, n, secs = oracle_rows(label, oracle, others, strategies, evaluators, n_runs, grid, seed,
                                    list(workers), **kw)
        notes += n
        engine += secs
        if rows is not None:
            parts.append(rows)
            quality.append(oracle_quality(label, oracle, others))
        if progress is not None:
            progress(1)
    if not parts:
        raise VibesError("the league is empty: no oracle could run any strategy × evaluator (see the notes above)"
                         if notes else "the league is empty")
    table = pl.concat(parts, how="vertical_relaxed").sort(KEY, maintain_order=True)
    models = sorted({str(o.meta["cost_model"]) for _, o in oracles if o.meta.get("cost_model")})
    return League(table, [label for label, _ in oracles], grid, answer_budgets(grid, budgets is not None),
                  group_notes(notes), engine,
                  {"strategies": strategies, "evaluators": list(evaluators or []), "runs": n_runs, "seed": seed,
                   "workers": list(workers)}, models, pl.concat(quality, how="diagonal_relaxed"))


def group_notes(notes: list[str]) -> list[str]:
    """``label: text`` notes that say the same text of several oracles, said once with their count."""
    by_text: dict[str, list[str]] = {}
    for note in notes:
        label, sep, text = note.partition(": ")
        by_text.setdefault(text if sep else note, []).append(label if sep else "")
    return [f"{labels[0]}: {text}" if len(labels) == 1 and labels[0] else
            f"{len(labels)} oracles ({', '.join(labels[:3])}{', …' if len(labels) > 3 else ''}): {text}"
            for text, labels in by_text.items()]


def league_curves(table: pl.DataFrame) -> pl.DataFrame:
    """Per K, strategy × evaluator and budget: the median regret across the oracles (a null median
    counted as regret = best possible), the mean p_beat_benchmark and how many oracles it ran on."""
    return (table.with_columns(pl.col("regret").fill_null(pl.col("best_possible")).alias("_r"))
            .group_by("workers", "strategy", "evaluator", "budget_s")
            .agg(pl.col("_r").median().alias("median_regret"), pl.col("p_beat_benchmark").mean(),
                 pl.len().alias("n_oracles")))


def benchmark_median_regret(table: pl.DataFrame) -> float:
    """The benchmark pick's regret (best possible − its true score), median over the oracles."""
    return float(table.group_by("oracle").agg(pl.col("best_possible", "benchmark_score").first())
                 .select((pl.col("best_possible") - pl.col("benchmark_score")).median()).item())


def league_answer(table: pl.DataFrame, budgets: list[float]) -> list[dict]:
    """Per K and answer budget B: the strategy × evaluator × stopping time b ≤ B with the lowest median
    regret across the oracles (a search may stop early and keep its incumbent, so the answer never gets
    worse with more budget; ties: the higher mean p_beat_benchmark, the earlier b, then by name), its
    mean p_beat_benchmark at b, how many oracles it ran on, the runner-up, and the benchmark pick's
    median regret."""
    curves = league_curves(table)
    bench = benchmark_median_regret(table)
    out = []
    for k in sorted(curves.get_column("workers").unique().to_list()):
        for b in budgets:
            best = (curves.filter((pl.col("workers") == k) & (pl.col("budget_s") <= b))
                    .sort(["median_regret", "p_beat_benchmark", "budget_s", "strategy", "evaluator"],
                          descending=[False, True, False, False, False])
                    .unique(["strategy", "evaluator"], keep="first", maintain_order=True))
            if best.height == 0:
                continue
            top = best.row(0, named=True)
            out.append({"workers": int(k), "budget_s": float(b), "strategy": top["strategy"],
                        "evaluator": top["evaluator"], "stop_s": float(top["budget_s"]),
                        "median_regret": top["median_regret"], "p_beat_benchmark": top["p_beat_benchmark"],
                        "n_oracles": int(top["n_oracles"]), "benchmark_median_regret": float(bench),
                        "runner_up": None if best.height < 2 else
                        {c: best.row(1, named=True)[c] for c in ("strategy", "evaluator", "median_regret")}})
    return out
