"""The replay engine: Eqs. 3–4 of the VIBES paper, vectorised over runs and budgets.

For one run with evaluation order π, approximate scores ε̃ and costs τ̃, and a budget t_max:

* Eq. 4 — k = the largest prefix length with  Σ_{i≤k} τ̃(b_π(i)) ≤ t_max;
* Eq. 3 — b̂ = argmax_{i≤k} ε̃(b_π(i)), ties won by the earlier evaluated;
* the strategy is judged by the true score ε(b̂); k = 0 (or nothing scoreable) → no selection.

Vectorisation: the cumulative cost of each (run, position) is located in the sorted budget
grid with one ``searchsorted``; a bincount + cumsum turns that into k for every (run, budget).
The running argmax (earlier wins) is a ``maximum.accumulate`` over strict-improvement
positions.  Work is O(runs × (backbones + budgets)) per chunk of runs; no Python loop touches a
single run, budget or backbone.  :mod:`simulate.reference` is the literal loop it must equal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_SELECTION = -1


@dataclass
class Replay:
    selected: np.ndarray  # (R, T) int32 backbone index, NO_SELECTION where none
    n_evaluated: np.ndarray  # (R, T) int32
    best_eps: np.ndarray  # (R, T) float64, best ε̃ seen (-inf where none)


def replay(order: np.ndarray, eps: np.ndarray, tau: np.ndarray, budgets: np.ndarray) -> Replay:
    """Replay R runs over T budgets.

    order: (R, B) permutations; eps, tau: per-backbone ε̃ and τ̃ for each run, (R, B) indexed by
    backbone (or (B,) when identical for every run); budgets: (T,) ascending seconds.
    A NaN score or a negative cost is a ValueError (−∞ is a valid score: a failed evaluation).
    """
    eps, tau = np.asarray(eps, dtype=np.float64), np.asarray(tau, dtype=np.float64)
    if np.isnan(eps).any():
        raise ValueError(f"replay: {int(np.isnan(eps).sum())} score(s) are NaN; a failed "
                         f"evaluation is -inf, not NaN")
    if (tau < 0).any() or np.isnan(tau).any():
        raise ValueError(f"replay: {int(((tau < 0) | np.isnan(tau)).sum())} cost(s) are negative "
                         f"or NaN; costs are seconds >= 0")
    return replay_in_order(order, in_order(eps, order), in_order(tau, order), budgets)


def in_order(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """values[r, order[r, i]] as an (R, B) array (values may be (B,) or (R, B))."""
    if values.ndim == 1:
        return values[order]
    return np.take_along_axis(values, order, axis=1)


def _check_budgets(budgets) -> np.ndarray:
    budgets = np.asarray(budgets, dtype=np.float64)
    if budgets.ndim != 1 or np.any(np.diff(budgets) < 0):
        raise ValueError("budgets must be a 1-d ascending array")
    return budgets


def prefix_counts(c: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Eq. 4 for every (run, budget): how many of the run's evaluations, costs ``c`` (R, N) in
    evaluation order, fit a budget, i.e. the largest k with  Σ_{i<k} c[i] ≤ t_max.  (R, T) int64."""
    r = c.shape[0]
    t = budgets.size
    cum = np.cumsum(c, axis=1)  # sequential float64 sums, exactly what a loop computes
    # Eq. 4: position k (0-based) is inside budget j iff cum[k] <= budgets[j] iff j >= first[k]
    first = np.searchsorted(budgets, cum, side="left")  # (R, N) in [0, T]
    del cum
    first += (np.arange(r) * (t + 1))[:, None]
    n = np.bincount(first.ravel(), minlength=r * (t + 1)).reshape(r, t + 1)[:, :t].cumsum(axis=1)
    return n


def replay_in_order(order: np.ndarray, e: np.ndarray, c: np.ndarray, budgets: np.ndarray) -> Replay:
    """The engine proper: ``e`` and ``c`` are ε̃ and τ̃ already in evaluation order (position i
    of run r is backbone ``order[r, i]``).  ``c`` is not modified.  Inputs are trusted here (the
    hot path): :func:`replay` and the evaluator views validate them."""
    budgets = _check_budgets(budgets)
    r, b = order.shape
    n = prefix_counts(c, budgets)
    # Eq. 3: running argmax with earlier-wins ties (strict improvements only)
    runmax = np.maximum.accumulate(e, axis=1)
    improved = np.empty((r, b), dtype=bool)
    improved[:, 0] = e[:, 0] > -np.inf
    np.greater(e[:, 1:], runmax[:, :-1], out=improved[:, 1:])
    pos = np.where(improved, np.arange(b, dtype=np.int32)[None, :], 0).astype(np.int32, copy=False)
    best_pos = np.maximum.accumulate(pos, axis=1, out=pos)
    k = np.maximum(n - 1, 0)
    sel_pos = np.take_along_axis(best_pos, k, axis=1)
    best_eps = np.take_along_axis(runmax, k, axis=1)
    selected = np.take_along_axis(order, sel_pos, axis=1).astype(np.int32)
    none = (n == 0) | ~(best_eps > -np.inf)
    selected[none] = NO_SELECTION
    best_eps[none] = -np.inf
    return Replay(selected, n.astype(np.int32), best_eps)


# --------------------------------------------------------------------------- reacting strategies
# A strategy that reacts to what it sees emits, per run, a sequence of evaluations (backbone,
# level = which evaluator spec, cost, ε̃) and an incumbent rule: the backbone it would select
# after each evaluation.  Eq. 4 counts the evaluations whose cumulative cost fits t_max; the
# selection is the incumbent after the last of them.  The paper's strategies are the special
# case "one order × one evaluator × best ε̃ so far" (:func:`best_so_far`), for which
# :func:`replay_in_order` is the same computation, faster.


def best_so_far(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 3's incumbent rule after each evaluation: (position of the best finite ε̃ so far, ties
    won by the earlier; -1 where none yet, (R, N) int32), and that best ε̃ (-inf where none)."""
    r, n = e.shape
    if n == 0:
        return np.zeros((r, 0), np.int32), np.zeros((r, 0))
    runmax = np.maximum.accumulate(e, axis=1)
    improved = np.empty((r, n), dtype=bool)
    improved[:, 0] = e[:, 0] > -np.inf
    np.greater(e[:, 1:], runmax[:, :-1], out=improved[:, 1:])
    pos = np.where(improved, np.arange(n, dtype=np.int32)[None, :], -1).astype(np.int32, copy=False)
    return np.maximum.accumulate(pos, axis=1, out=pos), runmax


def best_at_highest_level(e: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The multi-fidelity incumbent rule: after each evaluation, the best finite ε̃ among the
    evaluations at the highest level (fidelity) that has a finite ε̃ so far, ties won by the
    earlier evaluated; i.e. the lexicographic maximum of (level, ε̃).  ``level``: (N,) ints,
    the same for every run.  Returns (position or -1, (R, N) int32; its ε̃, -inf where none)."""
    level = np.asarray(level)
    pos = np.full(e.shape, -1, dtype=np.int32)
    best = np.full(e.shape, -np.inf)
    for lv in np.unique(level).tolist():  # ascending: a higher level overrides a lower one
        p, m = best_so_far(np.where(level[None, :] == lv, e, -np.inf))
        have = m > -np.inf
        pos[have] = p[have]
        best[have] = m[have]
    return pos, best


def replay_sequence(backbone: np.ndarray, cost: np.ndarray, incumbent: np.ndarray,
                    incumbent_eps: np.ndarray, budgets: np.ndarray) -> Replay:
    """Replay R runs of a reacting strategy over T budgets.  ``backbone``, ``cost``: (R, N) the
    evaluations in order; ``incumbent``: (R, N) position (into the run's evaluations) of the
    backbone selected after each evaluation, -1 for none; ``incumbent_eps``: its ε̃."""
    budgets = _check_budgets(budgets)
    n = prefix_counts(cost, budgets)
    r, t = n.shape
    if backbone.shape[1] == 0:
        return Replay(np.full((r, t), NO_SELECTION, np.int32), n.astype(np.int32), np.full((r, t), -np.inf))
    k = np.maximum(n - 1, 0)
    sel_pos = np.take_along_axis(incumbent, k, axis=1)
    best_eps = np.take_along_axis(incumbent_eps, k, axis=1)
    selected = np.take_along_axis(backbone, np.maximum(sel_pos, 0), axis=1).astype(np.int32)
    none = (n == 0) | (sel_pos < 0)
    selected[none] = NO_SELECTION
    best_eps = np.where(none, -np.inf, best_eps)
    return Replay(selected, n.astype(np.int32), best_eps)
