"""User-facing errors: one line, no traceback.

Every expected failure (bad path, unknown name, broken oracle, budget too small...) raises a
subclass of :class:`VibesError`.  The command-line entry points catch it, print
``error: <message>`` on stderr and exit with status 2 (usage / input errors) or 1
(a run that could not finish).
"""
from __future__ import annotations


class VibesError(Exception):
    """An expected, user-facing error.  ``str(err)`` is one line that says what was expected."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


class OracleError(VibesError):
    """An oracle file is missing, unreadable or does not follow the schema."""


class UnknownNameError(VibesError):
    """A strategy, evaluator, dataset or backbone name is not known; the message lists valid ones."""


def unknown(kind: str, name: str, valid) -> UnknownNameError:
    valid = sorted(valid)
    shown = ", ".join(valid[:20]) + (f", ... ({len(valid)} in all)" if len(valid) > 20 else "")
    return UnknownNameError(f"unknown {kind} {name!r}; valid: {shown}")
