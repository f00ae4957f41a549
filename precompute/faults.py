"""Deterministic fault injection for crash / resume tests.

``VIBES_FAULT="part-write:2"`` makes the process send itself SIGKILL the 2nd time it reaches the
named point; several points are comma-separated, and a third field picks another signal
(``"mlp-epoch:40:INT"`` = a Ctrl-C there) or ``RAISE``: an exception (:class:`InjectedFault`, a
``RuntimeError``) raised there instead of a signal (``"backbone-load:3:RAISE"``: the 3rd backbone
loaded fails as a broken one would).  Points in the code:

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
RAISE = "RAISE"  # the action that raises an exception instead of sending a signal


class InjectedFault(RuntimeError):
    """The exception a ``POINT:N:RAISE`` fault raises."""


def parse(text: str | None) -> dict[str, tuple[int, signal.Signals | str]]:
    """``"name:N[:SIG|RAISE],..."`` -> ``{name: (N, signal or RAISE)}``; ValueError on a malformed plan."""
    plan: dict[str, tuple[int, signal.Signals | str]] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        fields = item.strip().split(":")
        if len(fields) not in (2, 3) or fields[0] not in POINTS or not fields[1].isdigit() \
                or int(fields[1]) < 1:
            raise ValueError(f"{ENV} item {item!r} must be POINT:N[:SIGNAL|RAISE] with POINT one of "
                             f"{', '.join(POINTS)} and N >= 1")
        action = fields[2].strip().upper() if len(fields) == 3 else "KILL"
        if action == RAISE:
            plan[fields[0]] = (int(fields[1]), RAISE)
            continue
        try:
            plan[fields[0]] = (int(fields[1]), signal.Signals[f"SIG{action.removeprefix('SIG')}"])
        except KeyError:
            raise ValueError(f"{ENV} item {item!r}: {fields[2]!r} is neither a signal (KILL, INT, TERM, ...) "
                             f"nor {RAISE}") from None
    return plan


_PLAN = parse(os.environ.get(ENV))
_SEEN: dict[str, int] = {}


def point(name: str) -> None:
    """Fault point ``name``: raises :class:`~precompute.clock.OverBudget` past an active budget,
    and on its N-th visit sends the planned signal to this process (or raises :class:`InjectedFault`)."""
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
        if hit[1] == RAISE:
            raise InjectedFault(f"injected fault at {name} (visit {n})")
        os.kill(os.getpid(), hit[1])


__all__ = ["ENV", "ONCE_ENV", "POINTS", "RAISE", "InjectedFault", "parse", "point"]
