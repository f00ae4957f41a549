"""Evaluator specs ε̃: ``<evaluator>[@<fraction>]`` — ``mlp``, ``mlp@0.1``, ``silhouette@0.01``.

The one grammar both phases read: ``simulate --evaluator`` checks a spec against an oracle's
evaluators and fractions (:func:`simulate.evaluator.parse_spec`), ``precompute search
--evaluator`` against the precompute registry; both name it the same way (:func:`format_spec`),
so a search's trace and the simulator's runs carry identical spec strings.
"""
from __future__ import annotations

import math

from shared.errors import VibesError

FORM = "<evaluator>[@<fraction>], e.g. mlp@0.1"


def format_spec(evaluator: str, fraction: float) -> str:
    """``('mlp', 1.0)`` -> ``'mlp'``; ``('mlp', 0.1)`` -> ``'mlp@0.1'`` (the canonical string)."""
    return evaluator if float(fraction) == 1.0 else f"{evaluator}@{float(fraction):g}"


def split_spec(spec: str, default_evaluator: str | None = None, option: str = "evaluator spec"
               ) -> tuple[str, float]:
    """``'mlp@0.1'`` -> ``('mlp', 0.1)``; no fraction is 1.0; an empty name is ``default_evaluator``
    (``'@0.1'`` with the oracle's truth).  The fraction must be a number in (0, 1]; the name is
    not checked here (the caller knows which evaluators exist)."""
    text = str(spec).strip()
    name, _, frac = text.partition("@")
    name = name.strip() or (default_evaluator or "")
    if not name:
        raise VibesError(f"{option} {text!r}: no evaluator name; expected {FORM}")
    try:
        fraction = float(frac) if frac.strip() else 1.0
    except ValueError:
        raise VibesError(f"{option} {text!r}: fraction {frac!r} is not a number; expected {FORM}") from None
    if not (math.isfinite(fraction) and 0 < fraction <= 1):
        raise VibesError(f"{option} {text!r}: the fraction must be in (0, 1]; expected {FORM}")
    return name, fraction


__all__ = ["FORM", "format_spec", "split_spec"]
