"""Approximate evaluators ε̃ as views of an oracle (paper, Section 4.1).

A spec is ``<evaluator>[@<fraction>]`` — ``mlp``, ``mlp@0.1``, ``mlp@0.01``, ``silhouette`` —
and defaults to the oracle's truth evaluator at fraction 1.0.  The view holds, for every
backbone of the pool, the oracle rows of that evaluator and fraction (one per seed): per run
and backbone one row is drawn at random, score and seconds together, so the evaluation noise
between seeds is part of the simulation.

A failed evaluation row still costs its recorded seconds (0 when none was recorded) and can
never be selected (score −∞).  A pool backbone with no row at all for the evaluator is treated
the same way with 0 seconds, and counted in ``missing``.

The view also carries each row's cost breakdown (``load``, ``extract``, ``fit`` seconds; NaN
where the oracle has none): a successive-halving promotion that keeps the features of a lower
fraction pays ``load + Δextract + fit`` (:mod:`simulate.strategies`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from shared.errors import VibesError, unknown
from shared.evaluator_spec import format_spec, split_spec
from shared.oracle import Oracle


@dataclass(frozen=True)
class EvaluatorView:
    spec: str  # canonical spec, e.g. "mlp@0.1"
    evaluator: str
    fraction: float
    score: np.ndarray  # (B, S) float64; -inf for failed rows; rows beyond n_rows are unused
    seconds: np.ndarray  # (B, S) float64
    n_rows: np.ndarray  # (B,) int, >= 1
    missing: int  # pool backbones with no row for this evaluator
    load: np.ndarray | None = None  # (B, S) float64 load_seconds, NaN where unknown
    extract: np.ndarray | None = None  # (B, S) extract_seconds (nested: fraction f includes < f)
    fit: np.ndarray | None = None  # (B, S) fit_seconds

    @property
    def single(self) -> bool:
        """One row per backbone: every run sees the same ε̃ and τ̃."""
        return bool(np.all(self.n_rows == 1))

    def draw_in_order(self, order: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Scores and seconds in evaluation order for the runs of ``order`` (R, B): one seed's row
        per (run, backbone).  Drawing the row index per position is the same distribution as per
        backbone, because each run's order is a permutation."""
        # score and seconds travel as one complex number: one gather instead of two
        packed = self.score + 1j * self.seconds
        if self.single:
            got = np.take(packed[:, 0], order)
        else:
            pick = rng.integers(0, self.n_rows[order], dtype=np.int64)
            got = np.take(packed.ravel(), order.astype(np.int64) * packed.shape[1] + pick)
        return got.real, got.imag

    def total_seconds(self) -> float:
        """Exhaustive time with the most expensive row of every backbone."""
        return float(np.where(np.isfinite(self.seconds), self.seconds, 0).max(axis=1).sum())

    def min_seconds(self) -> float:
        s = self.seconds[self.seconds > 0]
        return float(s.min()) if s.size else 0.0


def parse_spec(spec: str, oracle: Oracle) -> tuple[str, float]:
    """``'mlp@0.1'`` -> ``('mlp', 0.1)`` (:func:`shared.evaluator_spec.split_spec`; no name = the
    oracle's truth), checked against the oracle's evaluators and fractions."""
    name, fraction = split_spec(spec, default_evaluator=oracle.truth)
    have = oracle.evaluators()
    names = set(have.get_column("evaluator").to_list())
    if name not in names:
        raise unknown("evaluator", name, names)
    fracs = have.filter(pl.col("evaluator") == name).get_column("fraction").to_list()
    if not any(abs(f - fraction) < 1e-12 for f in fracs):
        raise VibesError(f"evaluator {name!r} has no fraction {fraction:g} in this oracle; "
                         f"available: {', '.join(f'{f:g}' for f in sorted(fracs, reverse=True))}")
    return name, fraction


def build_view(oracle: Oracle, pool: pl.DataFrame, spec: str) -> EvaluatorView:
    """The view of ``spec`` over ``pool`` (rows in pool order)."""
    name, fraction = parse_spec(spec, oracle)
    rows = (oracle.frame
            .filter((pl.col("evaluator") == name) & ((pl.col("fraction") - fraction).abs() < 1e-12))
            .select("backbone", "seed",
                    pl.when(pl.col("status") == "ok").then(pl.col("score"))
                    .otherwise(float("-inf")).alias("score"),
                    pl.col("seconds").fill_null(0.0).fill_nan(0.0),
                    *[pl.col(c).cast(pl.Float64).fill_null(float("nan"))
                      for c in ("load_seconds", "extract_seconds", "fit_seconds")])
            .join(pool.select("backbone").with_row_index("_b"), on="backbone", how="inner")
            .sort("_b", "seed")
            .with_columns(pl.int_range(pl.len()).over("_b").alias("_k")))
    b = pool.height
    n_rows_present = (rows.group_by("_b").len())
    n_rows = np.ones(b, dtype=np.int64)
    idx = n_rows_present.get_column("_b").to_numpy()
    n_rows[idx] = n_rows_present.get_column("len").to_numpy()
    s_max = int(n_rows.max()) if b else 1
    score = np.full((b, s_max), -np.inf)
    seconds = np.zeros((b, s_max))
    bi = rows.get_column("_b").to_numpy()
    ki = rows.get_column("_k").to_numpy()
    score[bi, ki] = rows.get_column("score").to_numpy()
    seconds[bi, ki] = rows.get_column("seconds").to_numpy()
    parts = {}
    for col in ("load_seconds", "extract_seconds", "fit_seconds"):
        parts[col] = np.full((b, s_max), np.nan)
        parts[col][bi, ki] = rows.get_column(col).to_numpy()
    return EvaluatorView(format_spec(name, fraction), name, fraction, score, seconds,
                         n_rows, missing=int(b - idx.size), load=parts["load_seconds"],
                         extract=parts["extract_seconds"], fit=parts["fit_seconds"])
