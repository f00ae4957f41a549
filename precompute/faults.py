"""Deterministic fault injection for crash / resume tests.

``VIBES_FAULT="part-write:2"`` makes the process send itself SIGKILL the 2nd time it reaches the
named point; several points are comma-separated, and a third field picks another signal
(``"mlp-epoch:40:INT"`` = a Ctrl-C there).  Points in the code:

* ``backbone-load`` -- a backbone is loaded, before its extraction (:func:`precompute.sweep.evaluate_backbone`);
* ``extract-batch`` -- after each extracted batch (:func:`precompute.extract.extract_features`);
* ``mlp-epoch``     -- after each epoch of the mlp head (:func:`precompute.evaluators.mlp_score`);
* ``part-write``    -- a part's temporary file is complete, before it is renamed into place
  (:func:`precompute.parts.write_part`).

Unset, :func:`point` costs one dict lookup.  The plan is read once, at import.

Deadlines (the live search's cooperative stop): inside ``with deadline(seconds):`` every
:func:`point` (and :func:`check`) raises :class:`DeadlineExceeded` once ``time.monotonic()`` has
passed the deadline.  It derives from ``BaseException``, so the sweep's per-backbone
``except Exception`` lets it through instead of recording a failed row; ``finally`` blocks
(freeing the model, restoring thread counts) still run.  The stop latency is the time between two
points: one extraction batch, one head epoch, or a model load (no point inside timm).
Without a deadline and a fault plan, :func:`point` costs one global read and one dict lookup.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "VIBES_FAULT"
POINTS = ("backbone-load", "extract-batch", "mlp-epoch", "part-write")


def parse(text: str | None) -> dict[str, tuple[int, signal.Signals]]:
    """``"name:N[:SIG],..."`` -> ``{name: (N, signal)}``; ValueError on a malformed plan."""
    plan: dict[str, tuple[int, signal.Signals]] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        fields = item.strip().split(":")
        if len(fields) not in (2, 3) or fields[0] not in POINTS or not fields[1].isdigit() \
                or int(fields[1]) < 1:
            raise ValueError(f"{ENV} item {item!r} must be POINT:N[:SIGNAL] with POINT one of "
                             f"{', '.join(POINTS)} and N >= 1")
        sig = signal.Signals[f"SIG{fields[2].upper().removeprefix('SIG')}"] if len(fields) == 3 \
            else signal.SIGKILL
        plan[fields[0]] = (int(fields[1]), sig)
    return plan


_PLAN = parse(os.environ.get(ENV))
_SEEN: dict[str, int] = {}
_DEADLINE: float | None = None  # time.monotonic() past which points raise DeadlineExceeded


class DeadlineExceeded(BaseException):
    """The active :func:`deadline` passed; raised at the first point reached after it.

    ``where`` is the point's name, ``deadline`` the monotonic deadline, ``at`` when it was
    raised, so ``latency = at - deadline`` is how late the stop came."""

    def __init__(self, where: str, deadline: float, at: float):
        super().__init__(f"deadline passed {at - deadline:.3f} s before point {where!r}")
        self.where, self.deadline, self.at = where, deadline, at

    @property
    def latency(self) -> float:
        return self.at - self.deadline


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Within the block, :func:`point` and :func:`check` raise :class:`DeadlineExceeded` once
    ``seconds`` (from now, monotonic) have passed.  Nested deadlines keep the earlier one.
    Yields the monotonic deadline."""
    global _DEADLINE
    before = _DEADLINE
    at = time.monotonic() + float(seconds)
    _DEADLINE = at if before is None else min(before, at)
    try:
        yield _DEADLINE
    finally:
        _DEADLINE = before


def check(where: str = "check") -> None:
    """Raise :class:`DeadlineExceeded` if a deadline is active and has passed (no fault plan)."""
    limit = _DEADLINE
    if limit is not None:
        now = time.monotonic()
        if now >= limit:
            raise DeadlineExceeded(where, limit, now)


def point(name: str) -> None:
    """Fault point ``name``: raises :class:`DeadlineExceeded` past an active deadline, and sends
    the planned signal to this process on its N-th visit."""
    if _DEADLINE is not None:
        check(name)
    hit = _PLAN.get(name)
    if hit is None:
        return
    _SEEN[name] = n = _SEEN.get(name, 0) + 1
    if n == hit[0]:
        os.kill(os.getpid(), hit[1])


__all__ = ["ENV", "POINTS", "DeadlineExceeded", "check", "deadline", "parse", "point"]
