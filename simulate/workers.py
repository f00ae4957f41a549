"""Many workers: a search on K identical workers (K GPUs on one box, or a cluster allocation).

Semantics (DESIGN.md, "Many workers"): evaluations start in the strategy's order, each on the
worker that is free earliest (ties: the lowest worker index); evaluation i ends at
``end_i = start_i + τ̃_i``.  At a budget t_max — the search's wall-clock time — the counted
evaluations are those that end by t_max; the incumbent is the best ε̃ among them (with successive
halving the best at the highest fidelity among them), ties won by the earlier end, then the
earlier position.  K = 1 is Eqs. 3–4 exactly: the ends are the cumulative sums, and a prefix
ending by t_max is the prefix whose cumulative cost is <= t_max.

* a sampler's order (:func:`shared.workers.list_schedule`): start_i = the earliest free time;
* ``sh:<sampler>`` (:func:`shared.workers.barrier_schedule`): a rung is a barrier — an evaluation of rung l > 0 of
  a chunk starts no earlier than the last end of rung l − 1 of that chunk (its promotions need
  those scores); evaluations still start in order, so workers idle at a barrier;
* ``asha:<sampler>`` (:func:`asha_run`): asynchronous successive halving — a worker that frees up at
  time T promotes a backbone to the next rung when it is among the top ⌊n/η⌋ (by ε̃) of the n
  evaluations of that rung ended by T and not promoted yet (the highest rung first, the best
  candidate first; a failed evaluation is never promoted), and otherwise starts the next new
  backbone of the sampler's order; with nothing to do it waits for the next evaluation to end.

The two schedules live in :mod:`shared.workers` (the live ``precompute search --workers K`` lays
its measured seconds on the same timeline); they are vectorised over runs (one NumPy step per
position of the evaluation sequence, for every run at once); ASHA's sequence depends on timing,
so :func:`asha_run` is a literal event loop per run.  :func:`replay_ends` counts and selects from
the ends.  :mod:`simulate.reference` has independent literal loops the tests hold these to.
"""
from __future__ import annotations

import heapq
import math

import numpy as np

from shared.durations import format_duration
from shared.errors import VibesError
from shared.workers import barrier_schedule, list_schedule
from simulate.engine import NO_SELECTION, Replay, best_so_far


def check_workers(workers) -> tuple[int, ...]:
    """``--workers 1,4,8`` -> (1, 4, 8): positive integers, sorted, unique."""

    try:
        ks = sorted({int(k) for k in workers})
    except (TypeError, ValueError):
        ks = []
    if not ks or ks[0] < 1 or any(float(k) != int(k) for k in workers):
        raise VibesError(f"--workers must be positive integers, e.g. 1,4,8; got {workers!r}")
    return tuple(ks)


def worker_label(k: int, budget_s: float | None = None) -> str:
    """``8 workers`` or, with a budget, ``8 workers × 1 h`` (next to ``1 worker × 8 h``)."""
    text = f"{k} worker{'s' if k != 1 else ''}"
    return text if budget_s is None else f"{text} × {format_duration(budget_s)}"


def replay_ends(backbone: np.ndarray, e: np.ndarray, ends: np.ndarray, budgets: np.ndarray,
                level: np.ndarray | None = None) -> Replay:
    """Replay R runs whose evaluations (``backbone``, ε̃ ``e``, ``level`` (N,) or (R, N) or None)
    end at ``ends`` (R, N): at each budget the evaluations ended by it count, and the incumbent is
    the best (level, ε̃) among them, ties won by the earlier end, then the earlier position."""
    budgets = np.asarray(budgets, dtype=np.float64)
    r, n = ends.shape
    t = budgets.size
    if n == 0:
        return Replay(np.full((r, t), NO_SELECTION, np.int32), np.zeros((r, t), np.int32), np.full((r, t), -np.inf))
    by_end = np.argsort(ends, axis=1, kind="stable")  # ties: the earlier position first
    ends_s = np.take_along_axis(ends, by_end, axis=1)
    e_s = np.take_along_axis(e, by_end, axis=1)
    b_s = np.take_along_axis(backbone, by_end, axis=1)
    if level is None:
        pos, best = best_so_far(e_s)
    else:
        lv = np.broadcast_to(np.asarray(level), (r, n))
        lv_s = np.take_along_axis(lv, by_end, axis=1)
        pos = np.full((r, n), -1, dtype=np.int32)
        best = np.full((r, n), -np.inf)
        for value in np.unique(lv_s).tolist():  # ascending: a higher level overrides a lower one
            p, m = best_so_far(np.where(lv_s == value, e_s, -np.inf))
            have = m > -np.inf
            pos[have], best[have] = p[have], m[have]
    first = np.searchsorted(budgets, ends_s, side="left")  # counted at budget j iff j >= first
    first += (np.arange(r) * (t + 1))[:, None]
    counted = np.bincount(first.ravel(), minlength=r * (t + 1)).reshape(r, t + 1)[:, :t].cumsum(axis=1)
    kk = np.maximum(counted - 1, 0)
    sel_pos = np.take_along_axis(pos, kk, axis=1)
    best_eps = np.take_along_axis(best, kk, axis=1)
    selected = np.take_along_axis(b_s, np.maximum(sel_pos, 0), axis=1).astype(np.int32)
    none = (counted == 0) | (sel_pos < 0)
    selected[none] = NO_SELECTION
    return Replay(selected, counted.astype(np.int32), np.where(none, -np.inf, best_eps))


# ---------------------------------------------------------------------------------- ASHA
def asha_run(order: np.ndarray, score: np.ndarray, first: np.ndarray, promote: np.ndarray, eta: int,
             k: int) -> tuple[list[int], list[int], list[float], list[float]]:
    """One run of asynchronous successive halving on ``k`` workers.  ``order`` (B,) the sampler's
    backbones; ``score``, ``first``, ``promote`` (L, B) per level in the order's layout (ε̃, cold
    cost at the first rung, promotion cost above it).  Returns the evaluations in the order they
    start: (backbone, level, ε̃, end)."""
    n_levels, n_b = score.shape
    workers = [(0.0, w) for w in range(k)]  # (free time, index): the earliest, then the lowest index
    heapq.heapify(workers)
    running: list[tuple[float, int, int, int]] = []  # heap of (end, evaluation, position, level)
    ended: list[list[tuple[float, float, int, int]]] = [[] for _ in range(n_levels)]  # (-ε̃, end, eval, pos)
    promoted = [set() for _ in range(n_levels)]
    nxt = 0
    out_b, out_l, out_s, out_e = [], [], [], []

    def job() -> tuple[int, int] | None:
        for lv in range(n_levels - 2, -1, -1):  # the highest rung first
            top = math.floor(len(ended[lv]) / eta)
            if top < 1:
                continue
            for neg, _end, _i, pos in sorted(ended[lv])[:top]:  # best ε̃, then earlier end, then position
                if neg < math.inf and pos not in promoted[lv]:
                    return pos, lv + 1
        return (nxt, 0) if nxt < n_b else None

    while workers:
        t, w = heapq.heappop(workers)
        while running and running[0][0] <= t:  # every evaluation that ended by t
            end, i, pos, lv = heapq.heappop(running)
            ended[lv].append((-out_s[i] if out_s[i] > -math.inf else math.inf, end, i, pos))
        got = job()
        if got is None:
            if running:  # wait for the next end, then look again
                heapq.heappush(workers, (running[0][0], w))
            continue  # nothing left for this worker
        pos, lv = got
        if lv == 0:
            nxt += 1
            cost = float(first[0, pos])
        else:
            promoted[lv - 1].add(pos)
            cost = float(promote[lv, pos])
        end = t + cost
        i = len(out_b)
        out_b.append(int(order[pos]))
        out_l.append(lv)
        out_s.append(float(score[lv, pos]))
        out_e.append(end)
        heapq.heappush(running, (end, i, pos, lv))
        heapq.heappush(workers, (end, w))
    return out_b, out_l, out_s, out_e


def asha_runs(order: np.ndarray, score: np.ndarray, first: np.ndarray, promote: np.ndarray, eta: int,
              k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`asha_run` for every run of ``order`` (R, B) (``score`` etc. (L, R, B)), padded to one
    length: (backbone, level, ε̃, end), each (R, N); padding never counts (end +inf, ε̃ -inf)."""
    runs = [asha_run(order[r], score[:, r], first[:, r], promote[:, r], eta, k) for r in range(order.shape[0])]
    n = max((len(x[0]) for x in runs), default=0)
    r_count = order.shape[0]
    backbone = np.zeros((r_count, n), np.int32)
    level = np.zeros((r_count, n), np.int8)
    eps = np.full((r_count, n), -np.inf)
    ends = np.full((r_count, n), np.inf)
    for r, (b, lv, s, e) in enumerate(runs):
        m = len(b)
        backbone[r, :m], level[r, :m], eps[r, :m], ends[r, :m] = b, lv, s, e
    return backbone, level, eps, ends


__all__ = ["worker_label", "check_workers", "list_schedule", "barrier_schedule", "replay_ends", "asha_run", "asha_runs"]
