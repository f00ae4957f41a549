"""The floats that reach the outputs from a logarithm are correctly rounded, so they are the same
bits on every CPU (numpy's SIMD geomspace/log10 differ in the last bits between AVX2 and AVX-512
machines, and geomspace itself is off by up to 7 ulps).  Checked against mpmath at 60 digits,
an independent arbitrary-precision library, rounded once to a double."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest

from shared.exactmath import log10s, log_spaced, logs
from simulate.simulation import parse_budgets

mpmath.mp.dps = 60


def _reference_grid(lo: float, hi: float, n: int) -> list[float]:
    lo_m, hi_m = mpmath.mpf(lo), mpmath.mpf(hi)
    return [float(lo_m * (hi_m / lo_m) ** (mpmath.mpf(i) / (n - 1))) for i in range(n)]


CASES = [(0.5, 400.0, 25), (1.0, 2000.0, 30), (0.0123, 86400.0, 100), (3.0, 3.0, 4), (1e-3, 1e7, 61),
         (0.7071067811865476, 12345.678, 7)]


@pytest.mark.parametrize("lo,hi,n", CASES)
def test_log_spaced_is_the_correctly_rounded_grid(lo, hi, n):
    got = log_spaced(lo, hi, n)
    assert got.tolist() == _reference_grid(lo, hi, n)  # to the bit: the value is specified to the bit
    assert got[0] == lo and got[-1] == hi


def test_random_grids_match_the_reference_to_the_bit():
    rng = np.random.default_rng(7)
    for _ in range(40):
        lo = float(10 ** rng.uniform(-3, 3))
        hi = lo * float(10 ** rng.uniform(0, 6))
        n = int(rng.integers(2, 120))
        assert log_spaced(lo, hi, n).tolist() == _reference_grid(lo, hi, n)


def test_the_budget_option_uses_the_exact_grid():
    assert parse_budgets("1:2000:30").tolist() == _reference_grid(1.0, 2000.0, 30)


def test_logs_are_correctly_rounded():
    values = [1e-9, 0.37, 1.0, 2.0, 10.0, 3600.0, 86400.0, 1.2345e8]
    assert log10s(values).tolist() == [float(mpmath.log10(mpmath.mpf(v))) for v in values]
    assert logs(values).tolist() == [float(mpmath.log(mpmath.mpf(v))) for v in values]


def test_bad_grid_arguments_are_refused():
    for args in [(0.0, 1.0, 3), (2.0, 1.0, 3), (1.0, 2.0, 0)]:
        with pytest.raises(ValueError):
            log_spaced(*args)
