"""Deterministic fault injection for crash / resume tests.

``VIBES_FAULT="part-write:2"`` makes the process send itself SIGKILL the 2nd time it reaches the
named point; several points are comma-separated, and a third field picks another signal
(``"mlp-epoch:40:INT"`` = a Ctrl-C there).  Points in the code:

* ``backbone-load`` -- a backbone is loaded, before its extraction (:func:`precompute.sweep.evaluate_backbone`);
* ``extract-batch`` -- after each extracted batch (:func:`precompute.extract.extract_features`);
* ``mlp-epoch``     -- after each epoch of the mlp head (:func:`precompute.evaluators.mlp_score`);
* ``part-write``    -- a part's temporary file is complete, before it is renamed into place
  (:func:`precompute.parts.write_part`).

Unset, :func:`point` costs one dict lookup.  The plan is read once, at import.  With
``VIBES_FAULT_ONCE=PATH`` a planned fault fires in the one process that creates PATH first (an
exclusive create): one worker of a search's many dies once, the others and its restart go on.

Every point is also where a live search's budget is checked (:func:`precompute.clock.check`):
past the budget on *measured* seconds, :class:`precompute.clock.OverBudget` is raised there.
Without a budget and a fault plan, :func:`point` costs one global read and one dict lookup.
"""
from __future__ import annotations

import os
import signal

from precompute import clock

ENV = "VIBES_FAULT"
ONCE_ENV = "VIBES_FAULT_ONCE"
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
def point(name: str) -> None:
    """Fault point ``name``: raises :class:`~precompute.clock.OverBudget` past an active budget,
    and sends the planned signal to this process on its N-th visit."""
    clock.check(name)
    hit = _PLAN.get(name)
    if hit is None:
        return
    _SEEN[name] = n = _SEEN.get(name, 0) + 1
    if n == hit[0]:
        once = os.environ.get(ONCE_ENV)
        if once:
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return  # another process (or an earlier life of this worker) took the fault
        os.kill(os.getpid(), hit[1])


__all__ = ["ENV", "ONCE_ENV", "POINTS", "parse", "point"]
