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
    """``unknown strategy 'x'; valid: a, b, c``.  A long list shows the names the user most
    likely meant: those sharing the part before the dot (a timm architecture's tags), else the
    closest spellings, else the first 20 — the first 20 of 1,800 backbones would help nobody."""
    valid = sorted(set(valid))
    shown = valid
    if len(valid) > 20:
        import difflib

        stem = str(name).split(".")[0]
        shown = ([v for v in valid if v.split(".")[0] == stem]
                 or difflib.get_close_matches(str(name), valid, n=10, cutoff=0.6) or valid)
    text = ", ".join(shown[:20])
    if len(shown) < len(valid) or len(shown) > 20:
        text += f", ... ({len(valid)} in all)"
    return UnknownNameError(f"unknown {kind} {name!r}; valid: {text}")
