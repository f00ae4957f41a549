"""BSEC statistics and summary figures against hand-computed cases (simulate/bsec.py)."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from shared.oracle import Oracle
from simulate import bsec
from simulate.simulation import run_simulation

NAN = np.nan
# 4 runs x 3 budgets; NaN = the run selected nothing at that budget
TRUE = np.array([[NAN, 0.2, 0.2],
                 [NAN, NAN, 0.6],
                 [0.9, 0.9, 0.9],
                 [NAN, 0.4, 0.8]])


def test_curve_takes_quantiles_over_all_runs_with_no_selection_as_minus_infinity():
    c = bsec.curve(TRUE)
    # budget 0: sorted (-inf, -inf, -inf, 0.9): every quantile touches -inf -> null
    # budget 1: sorted (-inf, 0.2, 0.4, 0.9): q25 at position 0.75 -> null, median at 1.5 -> 0.3,
    #           q75 at 2.25 -> 0.4 + 0.25 * 0.5 = 0.525
    # budget 2: sorted (0.2, 0.6, 0.8, 0.9): 0.2 + 0.75 * 0.4 = 0.5, 0.7, 0.8 + 0.25 * 0.1 = 0.825
    np.testing.assert_allclose(c["q25"], [NAN, NAN, 0.5], equal_nan=True)
    np.testing.assert_allclose(c["median"], [NAN, 0.3, 0.7], equal_nan=True)
    np.testing.assert_allclose(c["q75"], [NAN, 0.525, 0.825], equal_nan=True)
    assert c["n_selected"].tolist() == [1, 3, 4]


def test_curve_does_not_let_a_few_lucky_runs_lift_the_median():
    # 2 of 10 runs find a cheap 0.95 early; at the next budget every run has a 0.5
    t = np.full((10, 2), 0.5)
    t[2:, 0] = NAN
    t[:2, 0] = 0.95
    t[:2, 1] = 0.95
    c = bsec.curve(t)
    assert math.isnan(c["median"][0])  # 8 of 10 runs have nothing: the median is no selection
    assert c["median"][1] == pytest.approx(0.5)
    old_style = np.nanmedian(t, axis=0)  # over the selecting runs only: 0.95 then 0.5
    assert old_style[0] > old_style[1]


def test_auc_log_hand_computed():
    budgets = np.array([1.0, 10.0, 100.0])
    median = np.array([NAN, 0.3, 0.7])
    # null -> floor 0.1; trapezoids on log10 t: (0.1+0.3)/2 + (0.3+0.7)/2 = 0.7, over width 2
    assert bsec.auc_log(budgets, median, floor=0.1) == pytest.approx(0.35)
    assert bsec.auc_log(np.array([5.0]), np.array([0.5]), floor=0.0) != bsec.auc_log(budgets, median, 0.1)
    assert math.isnan(bsec.auc_log(np.array([5.0]), np.array([0.5]), floor=0.0))  # one budget: no area


def test_time_to_beat_is_the_first_budget_strictly_above_the_baseline():
    budgets = np.array([1.0, 10.0, 100.0])
    median = np.array([NAN, 0.3, 0.7])
    assert bsec.time_to_beat(budgets, median, 0.3) == 100.0  # 0.3 does not beat 0.3
    assert bsec.time_to_beat(budgets, median, 0.29) == 10.0
    assert bsec.time_to_beat(budgets, median, 0.7) is None
    assert bsec.time_to_beat(budgets, median, None) is None


def _oracle(seconds: dict[str, float], scores: dict[str, float]) -> Oracle:
    rows = [dict(dataset="hand", backbone=b, evaluator="mlp", fraction=1.0, seed=0, score=scores[b],
                 seconds=seconds[b], status="ok", gmacs=float(i + 1), params_m=1.0,
                 pretrain_dataset="ImageNet-1k", pretrain_images=1.28e6)
            for i, b in enumerate(seconds)]
    return Oracle(pl.DataFrame(rows), {"truth": "mlp", "dataset": "hand"})


def test_score_1h_and_1d_hand_computed():
    # complexity-up evaluates a, b, c in that order: a + b end exactly at 1 h, a + b + c at 1 day
    oracle = _oracle({"a.x": 1800.0, "b.x": 1800.0, "c.x": 82800.0}, {"a.x": 0.5, "b.x": 0.7, "c.x": 0.9})
    sim = run_simulation(oracle, ["complexity-up"], ["mlp"], n_runs=7, budgets=np.array([60.0, 1e6]),
                         baseline="a.x")
    row = sim.summary["strategies"][0]
    assert row["score_1h"] == pytest.approx(0.7)
    assert row["score_1d"] == pytest.approx(0.9)
    assert row["time_to_beat_baseline_s"] == 1e6  # nothing by 60 s, then c
    # a pool whose only backbone takes 2 h has no selection at 1 h: null, never 0
    late = run_simulation(_oracle({"a.x": 7200.0}, {"a.x": 0.5}), ["random"], ["mlp"], n_runs=5,
                          budgets=np.array([7200.0]), baseline=None)
    assert late.summary["strategies"][0]["score_1h"] is None
    assert late.summary["strategies"][0]["score_1d"] == pytest.approx(0.5)


def test_bsec_frame_has_null_not_nan_where_no_quantile_is_finite():
    oracle = _oracle({"a.x": 10.0, "b.x": 1000.0}, {"a.x": 0.5, "b.x": 0.7})
    sim = run_simulation(oracle, ["random"], ["mlp"], n_runs=50, budgets=np.array([5.0, 20.0, 2000.0]),
                         baseline=None)
    f = sim.bsec.sort("budget_s")
    assert f["median"][0] is None and f["n_selected"][0] == 0
    assert f["median"].null_count() >= 1 and not f["median"].is_nan().any()
    # budget 20: the runs that drew a first (0.5) have a selection, the rest nothing yet; the
    # median of 50 sits between sorted values 24 and 25 (0-based): finite iff n_selected >= 26
    n = f["n_selected"][1]
    assert 0 < n < 50
    assert (f["median"][1] is None) == (n <= 25)
    assert f["median"][2] == pytest.approx(0.7)  # everyone has both; b wins


def test_truth_median_never_decreases_with_the_budget_on_one_seed():
    from tests.conftest import random_oracle

    oracle = random_oracle(n_backbones=30, seeds=1, rng_seed=3)
    for strategy in ("random", "cycling", "dataset-size-down"):
        sim = run_simulation(oracle, [strategy], ["mlp"], n_runs=101, baseline=None)
        med = sim.bsec["median"].fill_null(-1.0).to_numpy()
        assert np.all(np.diff(med) >= 0), strategy
        for q in ("q25", "q75"):
            v = sim.bsec[q].fill_null(-1.0).to_numpy()
            assert np.all(np.diff(v) >= 0), (strategy, q)
