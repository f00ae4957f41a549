"""A literal, loop-by-loop implementation of Eqs. 3–4: the yardstick for the vectorised engine.

Deliberately plain Python: for each run, for each budget, walk the order while the running sum
of τ̃ stays within t_max, keeping the first backbone with the highest ε̃.  Used by the tests
(the engine must equal it exactly) and by ``make bench`` (the speed-up ratio).
"""
from __future__ import annotations

import numpy as np

from simulate.engine import NO_SELECTION, Replay


def replay_loop(order: np.ndarray, eps: np.ndarray, tau: np.ndarray, budgets) -> Replay:
    r_count, b_count = order.shape
    budgets = [float(x) for x in budgets]
    t_count = len(budgets)
    selected = np.full((r_count, t_count), NO_SELECTION, dtype=np.int32)
    n_eval = np.zeros((r_count, t_count), dtype=np.int32)
    best_eps = np.full((r_count, t_count), -np.inf)
    for r in range(r_count):
        for j, t_max in enumerate(budgets):
            total = 0.0
            best, best_score, k = NO_SELECTION, -np.inf, 0
            for i in range(b_count):
                b = int(order[r, i])
                total = total + float(tau[r, b])
                if total > t_max:  # Eq. 4: the prefix ends here
                    break
                k += 1
                score = float(eps[r, b])
                if score > best_score:  # Eq. 3, strict: ties keep the earlier backbone
                    best, best_score = b, score
            selected[r, j] = best
            n_eval[r, j] = k
            best_eps[r, j] = best_score
    return Replay(selected, n_eval, best_eps)


def in_backbone_order(order: np.ndarray, e: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ε̃/τ̃ drawn in evaluation order (the engine's input) laid out by backbone (the loop's input)."""
    eps, tau = np.empty_like(e), np.empty_like(c)
    np.put_along_axis(eps, order, e, axis=1)
    np.put_along_axis(tau, order, c, axis=1)
    return eps, tau
