"""``asha:<sampler>`` live: asynchronous successive halving walked on the search's timeline.

The rule is the simulator's (DESIGN.md "Many workers"; ``simulate.reference.asha_loop`` is its literal
reference): the worker free earliest on the timeline (ties: the lowest index) looks, at that moment
T, at the evaluations ended by T; from the highest rung down it promotes the best backbone among
the top ⌊n/η⌋ of a rung's n ended evaluations (by ε̃, then the earlier end, then the earlier start;
never a failed one) not promoted yet; else it starts the next new backbone of the sampler's order at
the lowest rung; with nothing to do it waits for the next end.

:class:`AshaWalk` is that event loop built decision by decision, for a live search: :meth:`decide`
gives the next decision ``(T, worker, backbone, level)``, the same until :meth:`place` gives its
outcome (ε̃ and charge) or :meth:`skip` drops it (its workers died).  Decisions are taken on the
timeline of charges, never on the order results come back in, so the walk is the one the simulator
replays from the parts; the search keeps its K real workers busy meanwhile by evaluating ahead the
next backbones of the order at the lowest rung, which ASHA evaluates in that order whatever happens
(:mod:`.loop`).
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Sequence


class AshaWalk:
    """One run of ASHA on ``k`` workers over ``order`` with ``n_levels`` rungs and ``eta``."""

    def __init__(self, order: Sequence[str], n_levels: int, eta: int, k: int):
        self.order, self.n_levels, self.eta = list(order), int(n_levels), int(eta)
        self._workers = [(0.0, w) for w in range(k)]  # (free time, index): the earliest, then the lowest index
        self._running: list[tuple] = []  # heap of (end, start index, position, level, ε̃)
        self._ended: list[list[tuple]] = [[] for _ in range(self.n_levels)]  # (-ε̃ or inf, end, index, position)
        self._promoted: list[set[int]] = [set() for _ in range(self.n_levels)]
        self.nxt = 0  # the next new position of the order
        self._placed = 0  # evaluations placed: the start index of the next
        self._pending: tuple | None = None  # (T, worker, position, level)
        self.finished = False
        self.completed: list[list[str]] = []  # (the chunks successive halving finishes: ASHA has none)

    def decide(self) -> tuple[float, int, str, int] | None:
        """The next decision ``(T, worker, backbone, level)`` (the same until it is placed or
        skipped), or None once no worker has anything left to do."""
        while self._pending is None and self._workers:
            t, w = heapq.heappop(self._workers)
            while self._running and self._running[0][0] <= t:  # every evaluation ended by t
                end, i, pos, lv, score = heapq.heappop(self._running)
                self._ended[lv].append((-score if score > -math.inf else math.inf, end, i, pos))
            job = self._job()
            if job is None:
                if self._running:  # wait for the next end, then look again
                    heapq.heappush(self._workers, (self._running[0][0], w))
                continue
            pos, lv = job
            if lv == 0:
                self.nxt += 1
            else:
                self._promoted[lv - 1].add(pos)
            self._pending = (t, w, pos, lv)
        if self._pending is None:
            self.finished = True
            return None
        t, w, pos, lv = self._pending
        return t, w, self.order[pos], lv

    def _job(self) -> tuple[int, int] | None:
        for lv in range(self.n_levels - 2, -1, -1):  # the highest rung first
            top = len(self._ended[lv]) // self.eta
            for neg, _end, _i, pos in sorted(self._ended[lv])[:top]:  # best ε̃, earlier end, earlier start
                if neg < math.inf and pos not in self._promoted[lv]:
                    return pos, lv + 1
        return (self.nxt, 0) if self.nxt < len(self.order) else None

    def place(self, score: float | None, cost: float) -> tuple[int, float, float]:
        """The pending decision's outcome: ε̃ (None: failed) and charge (inf: it never ends);
        returns where it lies on the timeline, ``(worker, start, end)``."""
        t, w, pos, lv = self._pending
        self._pending = None
        s = -math.inf if score is None or not math.isfinite(float(score)) else float(score)
        end = t + float(cost)
        heapq.heappush(self._running, (end, self._placed, pos, lv, s))
        heapq.heappush(self._workers, (end, w))
        self._placed += 1
        return w, t, end

    def skip(self) -> None:
        """Drop the pending decision (its evaluation was lost): it holds no worker, and the worker
        decides again at the same time."""
        t, w, _pos, _lv = self._pending
        self._pending = None
        heapq.heappush(self._workers, (t, w))

    def ahead(self, n: int) -> list[str]:
        """The next ``n`` new backbones of the order after the pending decision: ASHA evaluates
        them at the lowest rung in this order, whatever the results."""
        return self.order[self.nxt:self.nxt + n]


__all__ = ["AshaWalk"]
