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


# ------------------------------------------------------------------------------- K workers
def _count_and_select(runs: list[list[tuple]], budgets) -> Replay:
    """Per run, evaluations ``(backbone, level, score, end)`` in start order: at each budget the
    ones ended by it count; the incumbent is the best (level, score), ties to the earlier end,
    then the earlier position."""
    budgets = [float(x) for x in budgets]
    r_count = len(runs)
    selected = np.full((r_count, len(budgets)), NO_SELECTION, dtype=np.int32)
    n_eval = np.zeros((r_count, len(budgets)), dtype=np.int32)
    best_eps = np.full((r_count, len(budgets)), -np.inf)
    for r, evaluations in enumerate(runs):
        for j, t_max in enumerate(budgets):
            best = None  # (level, score, -end, -position, backbone)
            for i, (b, lv, score, end) in enumerate(evaluations):
                if end > t_max:
                    continue
                n_eval[r, j] += 1
                key = (lv, score, -end, -i)
                if score > -math.inf and (best is None or key > best[:4]):
                    best = (*key, b)
            if best is not None:
                selected[r, j], best_eps[r, j] = best[4], best[1]
    return Replay(selected, n_eval, best_eps)


def workers_loop(backbone: np.ndarray, level, score: np.ndarray, cost: np.ndarray, k: int, budgets,
                 waits_for=None, group=None) -> Replay:
    """The evaluations of each run (``backbone``, ``score``, ``cost`` (R, N) in start order;
    ``level`` (N,) or None) on ``k`` workers, literally: each starts, in order, on the worker free
    earliest (ties: the lowest index), not before the one before it started, and (with barriers)
    not before every evaluation of group ``waits_for[i]`` has ended."""
    r_count, n = backbone.shape
    runs = []
    for r in range(r_count):
        free = [0.0] * k
        last_start = 0.0
        group_end: dict[int, float] = {}
        evaluations = []
        for i in range(n):
            w = min(range(k), key=lambda j: (free[j], j))
            start = max(free[w], last_start)
            if waits_for is not None and waits_for[i] >= 0:
                start = max(start, group_end.get(int(waits_for[i]), 0.0))
            end = start + float(cost[r, i])
            free[w] = end
            last_start = start
            if group is not None:
                group_end[int(group[i])] = max(group_end.get(int(group[i]), 0.0), end)
            evaluations.append((int(backbone[r, i]), 0 if level is None else int(level[i]), float(score[r, i]), end))
        runs.append(evaluations)
    return _count_and_select(runs, budgets)


def asha_loop(order: np.ndarray, score: np.ndarray, first: np.ndarray, promote: np.ndarray, eta: int, k: int,
              budgets) -> Replay:
    """Asynchronous successive halving on ``k`` workers as the issue words it, one run at a time, by
    scanning (no heaps): the worker free earliest (ties: the lowest index) looks, at that moment, at
    the evaluations ended by then; from the highest rung down it promotes the best backbone in the
    top ⌊n/η⌋ of a rung's n ended evaluations (by ε̃, then the earlier end, then the earlier
    evaluation; never a failed one) not promoted yet; else it starts the next new backbone; else it
    waits for the next end.  ``order`` (R, B); ``score``, ``first``, ``promote`` (L, R, B)."""
    n_levels = score.shape[0]
    runs = []
    for r in range(order.shape[0]):
        n_b = order.shape[1]
        free = [0.0] * k
        active = [True] * k
        evaluations = []  # (position, level, score, end)
        promoted = set()
        nxt = 0
        while any(active):
            w = min((j for j in range(k) if active[j]), key=lambda j: (free[j], j))
            now = free[w]
            done = [(i, e) for i, e in enumerate(evaluations) if e[3] <= now]
            job = None
            for lv in range(n_levels - 2, -1, -1):
                rung = [(i, e) for i, e in done if e[1] == lv]
                ranked = sorted(rung, key=lambda x: (-x[1][2] if x[1][2] > -math.inf else math.inf, x[1][3], x[0]))
                for _, e in ranked[: len(rung) // eta]:
                    if e[2] > -math.inf and (lv, e[0]) not in promoted:
                        job = (e[0], lv + 1)
                        break
                if job:
                    break
            if job is None and nxt < n_b:
                job = (nxt, 0)
            if job is None:
                later = [e[3] for e in evaluations if e[3] > now]
                if later:
                    free[w] = min(later)
                else:
                    active[w] = False
                continue
            pos, lv = job
            if lv == 0:
                nxt += 1
                cost = float(first[0, r, pos])
            else:
                promoted.add((lv - 1, pos))
                cost = float(promote[lv, r, pos])
            free[w] = now + cost
            evaluations.append((pos, lv, float(score[lv, r, pos]), now + cost))
        runs.append([(int(order[r, p]), lv, s, end) for p, lv, s, end in evaluations])
    return _count_and_select(runs, budgets)


def workers_one_pass(backbone: np.ndarray, level, score: np.ndarray, cost: np.ndarray, k: int, budgets,
                     waits_for=None, group=None) -> Replay:
    """:func:`workers_loop` in one pass per run: the schedule with a heap of workers (O(N log K)),
    then the evaluations by end, the budgets passed in ascending order (O(N log N + T)): the fair
    literal baseline for ``make bench`` at K workers."""
    import heapq

    budgets = [float(x) for x in budgets]
    r_count, n = backbone.shape
    t_count = len(budgets)
    selected = np.full((r_count, t_count), NO_SELECTION, dtype=np.int32)
    n_eval = np.zeros((r_count, t_count), dtype=np.int32)
    best_eps = np.full((r_count, t_count), -np.inf)
    for r in range(r_count):
        free = [(0.0, w) for w in range(k)]
        last_start = 0.0
        group_end: dict[int, float] = {}
        ends = []
        for i in range(n):
            t, w = heapq.heappop(free)
            start = max(t, last_start)
            if waits_for is not None and waits_for[i] >= 0:
                start = max(start, group_end.get(int(waits_for[i]), 0.0))
            end = start + float(cost[r, i])
            heapq.heappush(free, (end, w))
            last_start = start
            if group is not None:
                group_end[int(group[i])] = max(group_end.get(int(group[i]), 0.0), end)
            ends.append((end, i))
        ends.sort()
        best, j, counted = None, 0, 0
        for end, i in ends:
            while j < t_count and end > budgets[j]:
                if best is not None:
                    selected[r, j], best_eps[r, j] = best[2], best[0][1]
                n_eval[r, j] = counted
                j += 1
            if j == t_count:
                break
            counted += 1
            s = float(score[r, i])
            key = (0 if level is None else int(level[i]), s)
            if s > -math.inf and (best is None or key > best[0]):  # strict: the earlier end (then position) wins
                best = (key, i, int(backbone[r, i]))
        while j < t_count:
            if best is not None:
                selected[r, j], best_eps[r, j] = best[2], best[0][1]
            n_eval[r, j] = counted
            j += 1
    return Replay(selected, n_eval, best_eps)
