"""Task functions for a search's Dask worker processes (tests/test_live_failures.py): importable by a
spawned worker through PYTHONPATH; each records what happened to it in files under the task's
``keep`` folder, since a killed process cannot tell."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from precompute.search.workers import Done


def _attempt(task) -> Path:
    """Record this attempt (its pid) and return the folder of records."""
    folder = Path(task.keep)
    with open(folder / f"attempts-{task.index}", "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return folder


def die_once(task):
    """Task ``task.prior`` == "die": its first attempt kills its worker process (SIGKILL); every
    other attempt (and task) sleeps ``task.cap`` seconds and ends."""
    folder = _attempt(task)
    if task.prior == "die":
        try:
            os.close(os.open(folder / f"died-{task.index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os.kill(os.getpid(), signal.SIGKILL)
        except FileExistsError:
            pass
    time.sleep(task.cap)
    return Done(task.index, None, task.cap, stopped={"pid": os.getpid()})


def die_always(task):
    """Every attempt kills its worker process."""
    _attempt(task)
    os.kill(os.getpid(), signal.SIGKILL)
