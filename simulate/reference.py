"""A literal, loop-by-loop implementation of Eqs. 3–4: the yardstick for the vectorised engine.

Deliberately plain Python: for each run, for each budget, walk the order while the running sum
of τ̃ stays within t_max, keeping the first backbone with the highest ε̃.  Used by the tests
(the engine must equal it exactly) and by ``make bench`` (the speed-up ratio).
:func:`successive_halving_loop` is the same for the ``sh:<sampler>`` strategies
(:mod:`simulate.strategies`).
"""
from __future__ import annotations

import math

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


def replay_one_pass(order: np.ndarray, eps: np.ndarray, tau: np.ndarray, budgets) -> Replay:
    """:func:`replay_loop` in one pass per run: walk the order once with the running sum of τ̃, and
    each time it passes the next budget (ascending), record the incumbent of the prefix before it.
    O(B + T) per run instead of O(B × T): the fair literal baseline for ``make bench``."""
    r_count, b_count = order.shape
    budgets = [float(x) for x in budgets]
    t_count = len(budgets)
    selected = np.full((r_count, t_count), NO_SELECTION, dtype=np.int32)
    n_eval = np.zeros((r_count, t_count), dtype=np.int32)
    best_eps = np.full((r_count, t_count), -np.inf)
    for r in range(r_count):
        total, best, best_score, k, j = 0.0, NO_SELECTION, -np.inf, 0, 0
        for i in range(b_count):
            b = int(order[r, i])
            total = total + float(tau[r, b])
            while j < t_count and total > budgets[j]:  # Eq. 4: budget j's prefix ends before i
                selected[r, j], n_eval[r, j], best_eps[r, j] = best, k, best_score
                j += 1
            if j == t_count:
                break
            k += 1
            score = float(eps[r, b])
            if score > best_score:  # Eq. 3, strict: ties keep the earlier backbone
                best, best_score = b, score
        while j < t_count:  # every evaluation fits the remaining budgets
            selected[r, j], n_eval[r, j], best_eps[r, j] = best, k, best_score
            j += 1
    return Replay(selected, n_eval, best_eps)


def in_backbone_order(order: np.ndarray, e: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ε̃/τ̃ drawn in evaluation order (the engine's input) laid out by backbone (the loop's input)."""
    eps, tau = np.empty_like(e), np.empty_like(c)
    np.put_along_axis(eps, order, e, axis=1)
    np.put_along_axis(tau, order, c, axis=1)
    return eps, tau


def successive_halving_loop(order: np.ndarray, levels: list[dict[str, np.ndarray]], eta: int,
                            chunk: int | None, promotion_cost: str, budgets) -> Replay:
    """Successive halving as the issue words it, one run, one chunk, one rung at a time.

    ``levels[l]`` holds, for fidelity l (ascending), (R, B) arrays indexed by backbone: ``score``
    (ε̃, -inf = failed), ``seconds`` (cold cost), ``load``, ``extract``, ``fit`` (NaN = unknown)."""
    r_count, b_count = order.shape
    n_levels = len(levels)
    n0 = chunk or eta ** (n_levels - 1)
    budgets = [float(x) for x in budgets]
    selected = np.full((r_count, len(budgets)), NO_SELECTION, dtype=np.int32)
    n_eval = np.zeros((r_count, len(budgets)), dtype=np.int32)
    best_eps = np.full((r_count, len(budgets)), -np.inf)
    for r in range(r_count):
        pi = [int(x) for x in order[r]]
        position = {b: i for i, b in enumerate(pi)}
        evaluations = []  # (backbone, level, score, cost) in the order they happen
        for start in range(0, b_count, n0):
            candidates = pi[start:start + n0]  # in the sampler's order
            for lv in range(n_levels):
                at = levels[lv]
                for b in candidates:
                    cold = float(at["seconds"][r, b])
                    if lv == 0 or promotion_cost == "cold":
                        cost = cold
                    else:
                        load, fit = float(at["load"][r, b]), float(at["fit"][r, b])
                        ex, ex_prev = float(at["extract"][r, b]), float(levels[lv - 1]["extract"][r, b])
                        lower_failed = float(levels[lv - 1]["score"][r, b]) == -math.inf  # nothing kept
                        if lower_failed or any(math.isnan(x) for x in (load, fit, ex, ex_prev)):
                            cost = cold
                        else:
                            cost = load + max(0.0, ex - ex_prev) + fit
                    evaluations.append((b, lv, float(at["score"][r, b]), cost))
                if lv + 1 < n_levels:  # promote the top ceil(n / eta); ties: earlier in the order
                    keep = math.ceil(len(candidates) / eta)
                    candidates = sorted(candidates, key=lambda b: (-float(at["score"][r, b]), position[b]))[:keep]
        for j, t_max in enumerate(budgets):
            total, k = 0.0, 0
            best = None  # (level, score, backbone)
            for b, lv, score, cost in evaluations:
                total = total + cost
                if total > t_max:  # Eq. 4
                    break
                k += 1
                if score > -math.inf and (best is None or (lv, score) > (best[0], best[1])):
                    best = (lv, score, b)  # strict: ties keep the earlier evaluated
            n_eval[r, j] = k
            if best is not None:
                selected[r, j], best_eps[r, j] = best[2], best[1]
    return Replay(selected, n_eval, best_eps)
