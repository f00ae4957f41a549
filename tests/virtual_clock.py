"""A virtual clock for tests that must not bound wall time (a loaded 2-core CI machine makes any
such bound flaky): what a fake "spends" is a ``sleep`` on this clock, so measured seconds become
exact, hand-computable values.

Use it as ``time`` seen by :mod:`precompute.clock` (``monkeypatch.setattr(clock, "time", virtual)``)
or patch ``time.perf_counter`` and ``time.sleep`` themselves with its methods."""
from __future__ import annotations

import time

_REAL_PERF_COUNTER = time.perf_counter  # taken at import: before any test patches time.perf_counter


class VirtualClock:
    """``perf_counter`` that only ``sleep`` advances: the seconds a fake spends, and nothing else.

    With ``real=True`` the real clock runs underneath (``perf_counter`` = real seconds + the
    virtual seconds slept so far): real work still takes time, and a virtual sleep of an hour
    shows in every measurement whose block contains it, and in no other."""

    def __init__(self, real: bool = False):
        self.now = 1000.0  # exact in binary, as are the dyadic steps the tests take
        self.real = real

    def perf_counter(self) -> float:
        return self.now + (_REAL_PERF_COUNTER() if self.real else 0.0)

    def sleep(self, seconds: float) -> None:
        self.now += seconds
