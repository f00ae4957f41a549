"""K identical workers: where each evaluation of a search runs, and when it ends — the one timeline
the simulator replays (:mod:`simulate.workers`) and a live ``precompute search --workers K`` lays
its measured seconds on.

Evaluations start in the strategy's order, each on the worker that is free earliest (ties: the
lowest worker index), never before the one before it started; evaluation i ends at
``start_i + τ̃_i``.  With barriers (successive halving: a rung waits for the rung below in its
chunk) an evaluation also starts no earlier than the last end of the group it waits for.  A cost
of ``inf`` (an evaluation stopped because it could not end by the budget) keeps its worker busy
past any budget.  K = 1: the ends are the cumulative sums, the same floats.
"""
from __future__ import annotations

import numpy as np


def _place(free: np.ndarray, last: np.ndarray, started: np.ndarray, cost, group: int, waits_for: int):
    """Place the next evaluation of every run (the rule, once): on the worker free earliest (ties:
    the lowest index), not before the previous evaluation started nor before group ``waits_for``
    (-1: none) ended; updates the state in place; returns (worker, start, end), each (R,)."""
    rows = np.arange(free.shape[0])
    w = np.argmin(free, axis=1)  # the first minimum: the lowest index among ties
    start = free[rows, w]
    if waits_for >= 0:
        start = np.maximum(start, last[:, waits_for])
    start = np.maximum(start, started)
    end = start + cost
    free[rows, w] = end
    last[:, group] = np.maximum(last[:, group], end)
    started[:] = start
    return w, start, end


def list_schedule(cost: np.ndarray, k: int) -> np.ndarray:
    """Ends (R, N) of evaluations ``cost`` (R, N), in order, on ``k`` workers, each started on the
    worker free earliest (ties: the lowest index).  K = 1: the cumulative sums (the same floats)."""
    r, n = cost.shape
    if k == 1:
        return np.cumsum(cost, axis=1)
    # _place without barriers: the earliest free time never decreases, so no evaluation can start
    # before the one before it did, and placing one is three array operations
    free = np.zeros((r, k))
    ends = np.empty((r, n))
    rows = np.arange(r)
    for i in range(n):
        w = np.argmin(free, axis=1)  # the first minimum: the lowest index among ties
        ends[:, i] = free[rows, w] = free[rows, w] + cost[:, i]
    return ends


def barrier_schedule(cost: np.ndarray, k: int, group: np.ndarray, waits_for: np.ndarray,
                     workers: bool = False):
    """Ends (R, N) on ``k`` workers with barriers: evaluation i (group ``group[i]``, e.g. a chunk's
    rung) starts no earlier than the last end of group ``waits_for[i]`` (-1: none) and no earlier
    than evaluation i − 1 started (in order), on the worker free earliest.  ``workers``: also return
    the worker index of every evaluation (R, N)."""
    r, n = cost.shape
    n_groups = int(group.max()) + 1 if n else 1
    free, last, started = np.zeros((r, k)), np.zeros((r, n_groups)), np.zeros(r)
    ends = np.empty((r, n))
    where = np.empty((r, n), dtype=np.int64)
    for i in range(n):  # vectorised over runs: one step per position
        where[:, i], _, ends[:, i] = _place(free, last, started, cost[:, i], int(group[i]), int(waits_for[i]))
    return (ends, where) if workers else ends


class Timeline:
    """One run's timeline, built evaluation by evaluation (a live search): :meth:`place` applies the
    same rule as :func:`barrier_schedule`, on one run."""

    def __init__(self, k: int, n_groups: int = 1):
        self.k = k
        self.free, self.last, self.started = np.zeros((1, k)), np.zeros((1, max(1, n_groups))), np.zeros(1)
        self.placed = 0

    def copy(self) -> Timeline:
        other = Timeline(self.k, self.last.shape[1])
        other.free, other.last, other.started = self.free.copy(), self.last.copy(), self.started.copy()
        other.placed = self.placed
        return other

    def place(self, cost: float, group: int = 0, waits_for: int = -1) -> tuple[int, float, float]:
        """(worker, start, end) of the next evaluation, which costs ``cost`` seconds (inf: never ends)."""
        if group >= self.last.shape[1]:
            self.last = np.concatenate([self.last, np.zeros((1, group + 1 - self.last.shape[1]))], axis=1)
        w, start, end = _place(self.free, self.last, self.started, np.array([float(cost)]), group, waits_for)
        self.placed += 1
        return int(w[0]), float(start[0]), float(end[0])


__all__ = ["list_schedule", "barrier_schedule", "Timeline"]
