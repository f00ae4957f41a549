"""``python -c`` source that runs the real ``precompute`` console entry point with functions of
:mod:`precompute.pool` replaced by tripwires: a call to one ends the process with :data:`TRIPPED` and a
line naming it, so a subprocess test shows that a command never went there (no wall-clock bound)."""
from __future__ import annotations

TRIPPED = 97


def precompute_with_tripwires(*names: str) -> str:
    """The source of a ``precompute`` run whose ``precompute.pool.<name>`` for each of ``names`` trips."""
    return f"""
import os, runpy, sys
import precompute.pool as pool_mod
def tripwire(what):
    def refuse(*a, **k):
        sys.stderr.write(f"TRIPWIRE: {{what}} was called\\n")
        sys.stderr.flush()
        os._exit({TRIPPED})
    return refuse
for what in {list(names)!r}:
    setattr(pool_mod, what, tripwire(what))
sys.argv[0] = "precompute"
runpy.run_module("precompute.cli", run_name="__main__", alter_sys=True)
"""
