"""Backbone Selection Efficiency Curves (paper, Section 3.3) and the summary figures.

A BSEC plots ε(b̂) against t_max: here the median and the 25th/75th percentiles over **all**
R runs at that budget, a run that selected nothing counting as −∞ (numpy's default linear
interpolation); a quantile that is not finite is null (NaN here) and is not drawn.
``n_selected`` counts the runs that selected something.  Taking the quantiles over the
selecting runs only would let a few lucky runs (a cheap, good backbone first) lift the median
at small budgets, which then falls as more runs join in; over all runs, a quantile can only
rise when every run's true score can only rise.  That holds for the truth evaluator when ε̃ = ε
(one seed per backbone).  With several seeds a run sees one seed's draw while ε is the seed
mean, so a later backbone whose draw beats the incumbent's can have a lower mean: the curve
may then fall a little, which is evaluation noise, not an artefact of the statistics.  The
summary condenses each curve:

* ``score_1h`` / ``score_1d`` — median true score at a budget of exactly 1 hour / 1 day
  (null when fewer than half the runs selected something by then);
* ``time_to_beat_baseline_s`` — the smallest grid budget whose median is strictly above the
  baseline backbone's true score (null if never, or no baseline in the pool);
* ``auc_log`` — area under the median BSEC over log10(t) across the grid (trapezoids),
  divided by the grid's log10 width (a mean score over log time); budgets where the median is
  null count as the pool's worst true score;
* ``best_possible`` — the best true score in the pool (the exhaustive search's answer).
"""
from __future__ import annotations

import warnings

import numpy as np

from shared.exactmath import log10s

HOUR = 3600.0
DAY = 86400.0


def curve(true_score: np.ndarray) -> dict[str, np.ndarray]:
    """Median / q25 / q75 over all runs (axis 0) of an (R, T) matrix, NaN = no selection (valued
    −∞ in the quantiles); a quantile that is not finite comes back NaN.  ``n_selected`` counts the
    runs with a selection per budget."""
    true_score = np.asarray(true_score, dtype=np.float64)
    selected = ~np.isnan(true_score)
    n_sel = np.sum(selected, axis=0)
    valued = np.where(selected, true_score, -np.inf)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        # interpolating next to −∞ gives −∞ or NaN: both mean "not finite", i.e. null
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.percentile(valued, [25, 50, 75], axis=0)
    q25, med, q75 = np.where(np.isfinite(q), q, np.nan)
    return {"median": med, "q25": q25, "q75": q75, "n_selected": n_sel}


def mode_selection(selected: np.ndarray, n_backbones: int) -> tuple[np.ndarray, np.ndarray]:
    """Per budget: the backbone most often selected (-1 if none) and its share of runs."""
    r, t = selected.shape
    flat = (np.arange(t)[None, :] * (n_backbones + 1) + selected + 1).ravel()
    counts = np.bincount(flat, minlength=t * (n_backbones + 1)).reshape(t, n_backbones + 1)[:, 1:]
    top = counts.argmax(axis=1)
    share = counts[np.arange(t), top] / r
    return np.where(counts.max(axis=1) > 0, top, -1), share


def auc_log(budgets: np.ndarray, median: np.ndarray, floor: float) -> float:
    if budgets.size < 2 or budgets[0] <= 0:
        return float("nan")
    x = log10s(budgets)  # correctly rounded: the area reads the same on every CPU
    y = np.where(np.isnan(median), floor, median)
    area = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
    return area / float(x[-1] - x[0])


def time_to_beat(budgets: np.ndarray, median: np.ndarray, baseline: float | None) -> float | None:
    if baseline is None or not np.isfinite(baseline):
        return None
    above = np.flatnonzero(np.nan_to_num(median, nan=-np.inf) > baseline)
    return float(budgets[above[0]]) if above.size else None
