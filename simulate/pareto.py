"""The Pareto view: true score against a deployment cost, and what a search finds under a limit.

* :func:`pareto_front` — the backbones no other beats on both counts (a lower or equal cost and a
  higher true score, or a lower cost and an equal score): the front a deployment limit slides along;
* :func:`thresholds` — limits worth showing: 5, 25 and 100 M parameters for ``params_m`` (the
  sizes practitioners ask for), else three round values at the 10th, 50th and 90th percentile;
* :func:`best_under` — per limit, the best possible backbone within it (the truth's answer);
* :func:`curves_under` — one strategy × evaluator's BSEC re-simulated under each limit (the same
  seed and settings; the pool restricted as ``simulate --max-…`` restricts it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from shared.errors import VibesError
from shared.limits import KINDS, Limits, with_deployment
from simulate.simulation import run_simulation

#: cost column -> the Limits field that limits it
LIMIT_OF = {col: name for name, (col, _unit) in KINDS.items()}
UNIT_OF = {col: unit for _name, (col, unit) in KINDS.items()}


@dataclass
class Deployment:
    """What the Pareto view shows: every backbone's true score and deployment cost (``points``:
    backbone, true_score, the cost column, ``within``: it meets the run's limits), the cost shown,
    the best backbone under each limit, and one strategy's BSEC under each limit."""

    points: pl.DataFrame
    cost: str
    unit: str
    best: list[dict]
    strategy: str
    evaluator: str
    curves: pl.DataFrame
    rows: dict  # per limit (None: no limit of this kind): pool_within, median_at (the median at budget_s)
    budget_s: float  # the budget the table reads the strategy's median at


def pareto_front(points: pl.DataFrame, cost: str, score: str = "true_score") -> pl.Series:
    """Boolean per row: on the front (no other row has cost <= and score >, or cost < and score >=).
    Rows with a null cost are never on it."""
    c = points.get_column(cost).cast(pl.Float64).to_numpy()
    s = points.get_column(score).cast(pl.Float64).to_numpy()
    order = np.lexsort((-s, c))  # by cost ascending, the better score first among equal costs
    known = ~np.isnan(c[order])
    ss = np.where(known, s[order], -np.inf)
    before = np.maximum.accumulate(np.concatenate(([-np.inf], ss[:-1])))  # the best score of every cheaper row
    on = np.zeros(len(c), dtype=bool)
    on[order] = known & (ss > before)
    return pl.Series("on_front", on)


def _round(x: float) -> float:
    """A round number near x (1, 2, 2.5 or 5 × a power of ten)."""
    if x <= 0:
        return x
    e = math.floor(math.log10(x))
    m = x / 10**e
    step = min((1, 2, 2.5, 5, 10), key=lambda v: abs(v - m))
    return float(step * 10**e)


def thresholds(values: pl.Series, cost: str) -> list[float]:
    """Limits to show for ``cost``: 5, 25, 100 M params within the pool's range (the sizes asked
    for), else (other costs, or a pool all on one side of them) round values at the 10th, 50th and
    90th percentiles (linear interpolation); only limits some
    backbone meets and some does not (none when every value is the same)."""
    v = values.drop_nulls().cast(pl.Float64)
    if v.len() == 0:
        return []
    lo, hi = float(v.min()), float(v.max())
    out = [t for t in (5.0, 25.0, 100.0) if lo <= t < hi] if cost == "params_m" else []
    if not out:
        out = sorted({_round(float(v.quantile(q, "linear"))) for q in (0.1, 0.5, 0.9)})
        out = [t for t in out if lo <= t < hi]
    return out


def best_under(points: pl.DataFrame, cost: str, limits: list[float], score: str = "true_score") -> list[dict]:
    """Per limit: the best backbone with ``cost`` <= it (ties: the cheaper, then the name), its
    score and cost, and how many backbones are within."""
    out = []
    for t in limits:
        within = points.filter(pl.col(cost).cast(pl.Float64) <= t)
        if within.height == 0:
            out.append({"limit": t, "backbone": None, "true_score": None, "cost": None, "n_within": 0})
            continue
        top = within.sort([score, cost, "backbone"], descending=[True, False, False]).row(0, named=True)
        out.append({"limit": t, "backbone": top["backbone"], "true_score": float(top[score]),
                    "cost": float(top[cost]), "n_within": within.height})
    return out


def curves_under(oracle, strategy: str, evaluator: str, cost: str, limits: list[float], n_runs: int, seed: int,
                 budgets: np.ndarray, sh=None, latency: pl.DataFrame | None = None, base: Limits | None = None
                 ) -> tuple[pl.DataFrame, dict]:
    """``strategy`` × ``evaluator``'s BSEC under each limit on ``cost`` (on top of ``base``): the
    simulation's own bsec rows with a ``limit`` column (None: no limit of this kind), and per limit
    its summary row (score at 1 h, time to beat...)."""
    frames, rows = [], {}
    for t in [None, *limits]:
        fields = dict(base.as_dict()) if base is not None else {}
        if t is not None:
            fields[LIMIT_OF[cost]] = t
        try:
            sim = run_simulation(oracle, [strategy], [evaluator], n_runs, budgets, seed, baseline=None, sh=sh,
                                 limits=Limits(**fields) if fields else None, latency=latency)
        except VibesError:  # nothing within this limit
            continue
        frames.append(sim.bsec.with_columns(pl.lit(t, pl.Float64).alias("limit"),
                                            pl.lit(sim.pool.height).alias("pool_within")))
        rows[t] = {**sim.summary["strategies"][0], "pool_within": sim.pool.height}
    return (pl.concat(frames) if frames else pl.DataFrame()), rows


def deployment_view(sim, oracle, latency: pl.DataFrame | None, limits: Limits | None, sh=None,
                    runs: int = 200) -> Deployment | None:
    """The Pareto view of a simulation: the cost shown is the latency when a latency table is given,
    else the parameters; the strategy is the recommendation's at its middle budget (one worker)."""
    cost = "latency_ms" if latency is not None else "params_m"
    points = with_deployment(oracle.true_scores(), latency)
    if cost not in points.columns or points.get_column(cost).null_count() == points.height:
        return None
    within = set(sim.pool.get_column("backbone").to_list())
    points = points.with_columns(pl.col("backbone").is_in(list(within)).alias("within"))
    recs = [r for r in sim.summary.get("recommendation") or []
            if r.get("workers", 1) == 1 and r["strategy"] is not None and r.get("source") != "change"]
    if not recs:
        return None
    top = recs[(len(recs) - 1) // 2]
    limits_shown = thresholds(points.filter(pl.col("within")).get_column(cost), cost)
    best = best_under(points.filter(pl.col("within")), cost, limits_shown)
    at = float(top["budget_s"])
    budgets = np.unique(np.append(sim.budgets, at))
    curves, by_limit = curves_under(oracle, top["strategy"], top["evaluator"], cost, limits_shown,
                                    min(runs, sim.n_runs), sim.seed, budgets, sh, latency, limits)
    for t, row in by_limit.items():
        there = curves.filter((pl.col("budget_s") == at) & (pl.col("limit").is_null() if t is None
                                                          else pl.col("limit") == t))
        row["median_at"] = there.get_column("median")[0] if there.height else None
    return Deployment(points.select("backbone", "true_score", cost, "within"), cost, UNIT_OF[cost], best,
                      top["strategy"], top["evaluator"], curves, by_limit, at)


__all__ = ["Deployment", "deployment_view", "LIMIT_OF", "UNIT_OF", "pareto_front", "thresholds", "best_under",
           "curves_under"]
