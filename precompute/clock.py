"""The measured clock: every second an oracle row charges is measured in a :func:`span`, and a live
search's budget reads the very same spans.

* :func:`span` measures its block in ``time.perf_counter`` wall seconds, the CUDA device
  synchronised at entry and exit, and records them on the yielded :class:`Span` (also when the
  block raises: a failure is charged what it spent).  The sweep times the model load, every
  extraction segment and every fit with it; nothing else is ever charged.
* :func:`budget` (the live search, one evaluation at a time): inside it, the measured seconds so
  far — the closed spans plus the running time of the open one — may not pass ``limit``.
  :func:`check` raises :class:`OverBudget` once they do; it is called at every fault point
  (:func:`precompute.faults.point`: after the model load, after each extraction batch, after each
  head epoch), so an evaluation is stopped only when its *measured* seconds would pass the budget,
  never because of untimed bookkeeping (name checks, subset indexing, writing parts), and at most
  one batch or one epoch late.

``OverBudget`` derives from ``BaseException``: the sweep's per-backbone ``except Exception`` lets it
through instead of recording a failed row, and ``finally`` blocks still run.  The meter is per
thread.  With no budget active, :func:`check` is one thread-local read.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Span:
    """One measured block: ``seconds`` once it has closed (None while open)."""

    start: float
    seconds: float | None = None


class Meter:
    """The measured seconds charged inside one :func:`budget` block."""

    def __init__(self, limit: float):
        self.limit = float(limit)
        self.closed = 0.0  # seconds of the spans already closed, summed in order
        self.open: Span | None = None  # the outermost span running now

    def spent(self, now: float | None = None) -> float:
        """Measured seconds so far: closed spans + the running time of the open one."""
        if self.open is None:
            return self.closed
        return self.closed + ((time.perf_counter() if now is None else now) - self.open.start)


class OverBudget(BaseException):  # noqa: N818 - a stop, not an error
    """The measured seconds of the evaluation in flight passed the budget; raised at the first
    fault point after they did.  ``where`` is that point, ``spent`` the measured seconds then,
    ``limit`` the budget."""

    def __init__(self, where: str, spent: float, limit: float):
        super().__init__(f"measured {spent:.3f} s > budget {limit:.3f} s at {where!r}")
        self.where, self.spent, self.limit = where, spent, limit

    @property
    def latency(self) -> float:
        """How many measured seconds past the budget the stop came (at most one batch or epoch)."""
        return self.spent - self.limit


class _State(threading.local):
    """Per thread (a search's evaluations may run on threads of one process): the active meter
    and the nesting of open spans (only the outermost one is charged to the meter)."""

    meter: Meter | None = None
    depth: int = 0


_STATE = _State()


def _sync(device) -> None:
    if device is not None and getattr(device, "type", str(device)).startswith("cuda"):
        import torch  # only reached with a CUDA device, i.e. torch is there

        torch.cuda.synchronize(device)


@contextmanager
def span(device=None) -> Iterator[Span]:
    """Measure the block (``device``: synchronise it at entry and exit when it is CUDA)."""
    state = _STATE
    _sync(device)
    sp = Span(time.perf_counter())
    meter = state.meter if state.depth == 0 else None
    if meter is not None:
        meter.open = sp
    state.depth += 1
    try:
        yield sp
    finally:
        state.depth -= 1
        try:
            _sync(device)
        finally:
            sp.seconds = time.perf_counter() - sp.start
            if meter is not None:
                meter.closed += sp.seconds
                meter.open = None


@contextmanager
def budget(limit: float) -> Iterator[Meter]:
    """Within the block, :func:`check` raises :class:`OverBudget` once the measured seconds of the
    spans in it pass ``limit``.  Not nestable (one evaluation at a time)."""
    state = _STATE
    if state.meter is not None:
        raise RuntimeError("clock.budget is not nestable")
    state.meter = meter = Meter(limit)
    try:
        yield meter
    finally:
        state.meter = None


def check(where: str = "check") -> None:
    """Raise :class:`OverBudget` if a budget is active and its measured seconds have passed it."""
    meter = _STATE.meter
    if meter is not None:
        spent = meter.spent()
        if spent > meter.limit:
            raise OverBudget(where, spent, meter.limit)


__all__ = ["Span", "Meter", "OverBudget", "span", "budget", "check"]
