"""Logarithms and log-spaced grids that give the same bits on every CPU.

numpy's ``log``, ``log10``, ``exp`` and ``geomspace`` take SIMD paths chosen at run time
(AVX2, AVX-512, ...) whose results may differ in the last bit from one CPU to another; a budget
grid or an area on log time written into the outputs then differs between two machines, which
breaks the promise "same seed, same inputs → identical outputs, byte for byte".  These functions
compute in :mod:`decimal` (software arithmetic: ``Decimal.ln``, ``Decimal.exp`` and
``Decimal.log10`` are correctly rounded at the context's precision) and round once to the
nearest double, so each result is a function of its inputs alone.  They are for the handful of
floats that reach the outputs (a grid of ~100 budgets, an area): not for hot loops.
"""
from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, localcontext

import numpy as np

#: significant digits of the intermediate decimal arithmetic (a double holds ~17)
PRECISION = 40


def log_spaced(lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` budgets from ``lo`` to ``hi`` (both ends exact), evenly spaced in log time:
    ``lo · (hi / lo) ** (i / (n − 1))`` rounded once to the nearest double."""
    if not (0 < lo <= hi) or n < 1:
        raise ValueError(f"log_spaced expects 0 < lo <= hi and n >= 1, got {lo!r}, {hi!r}, {n!r}")
    if n == 1:
        return np.array([float(lo)])
    with localcontext() as ctx:
        ctx.prec = PRECISION
        a, b = Decimal(float(lo)).ln(), Decimal(float(hi)).ln()
        step = (b - a) / (n - 1)
        values = [float((a + step * i).exp()) for i in range(n)]
    values[0], values[-1] = float(lo), float(hi)
    return np.array(values, dtype=np.float64)


def log10s(values: Iterable[float]) -> np.ndarray:
    """``log10`` of each positive value, correctly rounded (the same bits on every CPU)."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return np.array([float(Decimal(float(v)).log10()) for v in values], dtype=np.float64)


def logs(values: Iterable[float]) -> np.ndarray:
    """Natural ``log`` of each positive value, correctly rounded (the same bits on every CPU)."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return np.array([float(Decimal(float(v)).ln()) for v in values], dtype=np.float64)
