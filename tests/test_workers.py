"""Many workers (issue 15): the vectorised K-worker replay equals literal event loops.

For random small oracles and K in {1, 2, 3, 8}, every kind of strategy — a sampler's order,
synchronous successive halving (a rung is a barrier) and asynchronous successive halving (ASHA) —
replayed by :mod:`simulate.workers` selects, counts and scores exactly what
:mod:`simulate.reference`'s loops (written without the vectorised code's structure: linear scans, no
heaps, no argsort) give on the same draws.  K = 1 is today's engine, and hand-computed schedules
pin the semantics (earliest-free worker, barrier, ASHA's promotion rule).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.successive_halving import SHConfig
from shared.workers import barrier_schedule, list_schedule
from simulate.engine import replay_in_order
from simulate.reference import asha_loop, workers_loop, workers_one_pass
from simulate.simulation import parse_budgets
from simulate.strategies import make_pair, sh_sequence
from simulate.workers import asha_run, replay_ends
from tests.conftest import random_oracle

KS = [1, 2, 3, 8]


def assert_same(fast, slow):
    np.testing.assert_array_equal(fast.selected, slow.selected)
    np.testing.assert_array_equal(fast.n_evaluated, slow.n_evaluated)
    np.testing.assert_array_equal(fast.best_eps, slow.best_eps)


def drawn_pair(strategy, spec, n_backbones, seeds, ties, failed, seed, runs, eta=3, cost="incremental"):
    oracle = random_oracle(n_backbones=n_backbones, seeds=seeds, fractions=(1.0, 0.1, 0.01), rng_seed=seed % 997,
                           unknown_share=0.0,
                           ties=ties, failed=failed)
    pool = oracle.true_scores()
    pair = make_pair(strategy, oracle, pool, spec, SHConfig(eta, None, cost))
    rng = np.random.default_rng(seed)
    order = pair.sampler.orders(pool, runs, rng)
    return pair, order, pair.draw(order, rng)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["random", "cycling", "complexity-up"]), st.sampled_from(["mlp", "mlp@0.1", "silhouette"]),
       st.integers(1, 14), st.integers(1, 3), st.booleans(), st.integers(0, 2), st.integers(0, 2**31),
       st.sampled_from(KS))
def test_sampler_on_k_workers_equals_the_event_loop(strategy, spec, n_b, seeds, ties, failed, seed, k):
    pair, order, (e, c) = drawn_pair(strategy, spec, n_b, seeds, ties, min(failed, n_b - 1), seed, runs=4)
    budgets = parse_budgets("0.5:300:17")
    fast = pair.replay(order, (e, c), budgets, workers=k)
    assert_same(fast, workers_loop(order, None, e, c, k, budgets))
    assert_same(fast, workers_one_pass(order, None, e, c, k, budgets))  # the bench's baseline
    if k == 1:
        assert_same(fast, replay_in_order(order, e, c, budgets))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["sh:random", "sh:cycling"]), st.sampled_from(["mlp", "mlp@0.1"]), st.integers(1, 20),
       st.integers(1, 3), st.booleans(), st.integers(0, 3), st.integers(0, 2**31), st.sampled_from(KS),
       st.sampled_from([2, 3]), st.sampled_from(["incremental", "cold"]))
def test_successive_halving_on_k_workers_equals_the_event_loop(strategy, spec, n_b, seeds, ties, failed, seed, k,
                                                               eta, cost):
    pair, order, drawn = drawn_pair(strategy, spec, n_b, seeds, ties, min(failed, n_b - 1), seed, 4, eta, cost)
    budgets = parse_budgets("0.5:400:19")
    fast = pair.replay(order, drawn, budgets, workers=k)
    backbone, level, score, c = sh_sequence(order, drawn["score"], drawn["first"], drawn["promote"], pair.layout)
    group, waits = pair.layout.barriers()
    assert_same(fast, workers_loop(backbone, level, score, c, k, budgets, waits, group))
    assert_same(fast, workers_one_pass(backbone, level, score, c, k, budgets, waits, group))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["asha:random", "asha:cycling"]), st.sampled_from(["mlp", "mlp@0.1"]), st.integers(1, 20),
       st.integers(1, 3), st.booleans(), st.integers(0, 3), st.integers(0, 2**31), st.sampled_from(KS),
       st.sampled_from([2, 3]), st.sampled_from(["incremental", "cold"]))
def test_asha_on_k_workers_equals_the_event_loop(strategy, spec, n_b, seeds, ties, failed, seed, k, eta, cost):
    pair, order, drawn = drawn_pair(strategy, spec, n_b, seeds, ties, min(failed, n_b - 1), seed, 4, eta, cost)
    budgets = parse_budgets("0.5:400:19")
    fast = pair.replay(order, drawn, budgets, workers=k)
    assert_same(fast, asha_loop(order, drawn["score"], drawn["first"], drawn["promote"], eta, k, budgets))


# --------------------------------------------------------------------------- by hand
def test_list_schedule_by_hand():
    c = np.array([[4.0, 1.0, 1.0, 3.0, 2.0]])
    # K = 2: 0 -> w0 [0, 4]; 1 -> w1 [0, 1]; 2 -> w1 [1, 2]; 3 -> w1 [2, 5]; 4 -> w0 [4, 6]
    np.testing.assert_array_equal(list_schedule(c, 2), [[4.0, 1.0, 2.0, 5.0, 6.0]])
    np.testing.assert_array_equal(list_schedule(c, 1), np.cumsum(c, axis=1))
    np.testing.assert_array_equal(list_schedule(c, 8), c)  # every evaluation on its own worker at 0
    # ties go to the lowest index: both free at 0, then w0 (free at 1) before w1 (free at 1)
    np.testing.assert_array_equal(list_schedule(np.array([[1.0, 1.0, 5.0, 1.0]]), 2), [[1.0, 1.0, 6.0, 2.0]])


def test_replay_ends_counts_what_ended_and_breaks_ties_by_end_then_position():
    backbone = np.array([[10, 11, 12, 13]])
    e = np.array([[0.5, 0.9, 0.9, 0.7]])
    ends = np.array([[4.0, 3.0, 2.0, 1.0]])  # the later positions end first
    rep = replay_ends(backbone, e, ends, np.array([0.5, 1.0, 2.5, 3.0, 10.0]))
    assert rep.n_evaluated.tolist() == [[0, 1, 2, 3, 4]]
    # at 2.5: 13 (0.7) and 12 (0.9) ended -> 12; at 3.0: 11 (0.9) ended later than 12: 12 keeps it
    assert rep.selected.tolist() == [[-1, 13, 12, 12, 12]]
    same_end = replay_ends(backbone, e, np.array([[1.0, 2.0, 2.0, 3.0]]), np.array([2.0]))
    assert same_end.selected.tolist() == [[11]]  # 11 and 12 both end at 2.0, tie at 0.9: the earlier position


def test_barrier_schedule_by_hand():
    # one chunk of 3 at rung 0 (costs 1, 4, 2), then 1 promotion (cost 1) waiting for the whole rung
    cost = np.array([[1.0, 4.0, 2.0, 1.0]])
    group, waits = np.array([0, 0, 0, 1]), np.array([-1, -1, -1, 0])
    # K = 3: rung 0 ends at 1, 4, 2; the promotion waits for 4 although workers 0 and 2 are free
    np.testing.assert_array_equal(barrier_schedule(cost, 3, group, waits), [[1.0, 4.0, 2.0, 5.0]])
    # K = 2: 0 [0,1] w0, 1 [0,4] w1, 2 [1,3] w0, promotion waits for 4 -> [4, 5]
    np.testing.assert_array_equal(barrier_schedule(cost, 2, group, waits), [[1.0, 4.0, 3.0, 5.0]])


def test_asha_by_hand():
    """Two levels, eta 2, one worker: after 2 rung-0 evaluations the better is promoted at once
    (top 1 of 2), before the third new backbone; with 2 workers the promotion waits for 2 ends."""
    order = np.array([7, 8, 9])
    score = np.array([[0.2, 0.6, 0.4], [0.3, 0.9, 0.5]])  # (L=2, B=3)
    first = np.array([[1.0, 2.0, 1.0], [9.0, 9.0, 9.0]])
    promote = np.array([[1.0, 2.0, 1.0], [3.0, 3.0, 3.0]])
    b, lv, s, end = asha_run(order, score, first, promote, eta=2, k=1)
    # t=0: 7 (0.2) -> 1; t=1: 1 ended, top floor(1/2)=0: new 8 (0.6) -> 3; t=3: 2 ended, top 1 = 8: promote
    # 8 -> 6; t=6: rung 0 has 2 ended, 8 promoted: new 9 -> 7; t=7: 3 ended, top 1 = 8 (done): nothing new
    assert (b, lv, s, end) == ([7, 8, 8, 9], [0, 0, 1, 0], [0.2, 0.6, 0.9, 0.4], [1.0, 3.0, 6.0, 7.0])
    b, lv, s, end = asha_run(order, score, first, promote, eta=2, k=2)
    # t=0 w0: 7 -> 1; t=0 w1: 8 -> 2; t=1 w0: 1 ended: new 9 -> 2; t=2 w1: 7, 8? 8 ends at 2 and 9 at 2:
    # 3 ended (7, 8, 9), top 1 = 8: promote -> 5; t=2 w0: top floor(3/2)=1 = 8 promoted: nothing, no new,
    # waits for 5: then nothing -> done
    assert (b, lv, s, end) == ([7, 8, 9, 8], [0, 0, 0, 1], [0.2, 0.6, 0.4, 0.9], [1.0, 2.0, 2.0, 5.0])


@pytest.mark.parametrize("k", KS)
def test_asha_never_promotes_a_failed_evaluation(k):
    order = np.arange(6)
    score = np.vstack([np.full(6, -np.inf), np.full(6, 0.5)])
    cost = np.ones((2, 6))
    b, lv, s, end = asha_run(order, score, cost, cost, eta=2, k=k)
    assert lv == [0] * 6 and sorted(b) == list(range(6))


# -------------------------------------------------------------------------- simulate
def test_simulation_with_workers_adds_a_column_and_one_worker_is_todays(tmp_path):
    import polars as pl

    from simulate.cli import main
    from simulate.simulation import run_simulation

    oracle = random_oracle(n_backbones=12, seeds=2, fractions=(1.0, 0.1, 0.01), rng_seed=3, unknown_share=0.0)
    strategies = ["random", "cycling", "sh:random", "asha:cycling"]
    budgets = parse_budgets("1:600:12")
    plain = run_simulation(oracle, strategies, ["mlp"], 30, budgets, seed=4, baseline=None)
    many = run_simulation(oracle, strategies, ["mlp"], 30, budgets, seed=4, baseline=None, workers=(8, 1, 2))
    assert "workers" not in plain.runs.column_names and "workers" not in plain.bsec.columns
    runs = pl.from_arrow(many.runs)
    assert sorted(runs["workers"].unique().to_list()) == [1, 2, 8] and many.summary["workers"] == [1, 2, 8]
    one = runs.filter(pl.col("workers") == 1).drop("workers")
    assert one.equals(pl.from_arrow(plain.runs))  # the same draws, the same selections
    assert many.bsec.filter(pl.col("workers") == 1).drop("workers").equals(plain.bsec)
    # more workers never count fewer evaluations by a budget, for the paper's samplers (same draws)
    for strategy in ("random", "cycling"):
        n = {k: runs.filter((pl.col("workers") == k) & (pl.col("strategy") == strategy))["n_evaluated"].to_numpy()
             for k in (1, 2, 8)}
        assert (n[2] >= n[1]).all() and (n[8] >= n[2]).all()
    rec = many.summary["recommendation"]
    ks = [r["workers"] for r in rec]
    assert ks == sorted(ks) and set(ks) == {1, 2, 8}
    assert [{k: v for k, v in r.items() if k != "workers"} for r in rec if r["workers"] == 1] == \
        plain.summary["recommendation"]  # one worker: the same draws, the same answer
    path = tmp_path / "toy.parquet"
    oracle.write(path)
    out = tmp_path / "sim"
    assert main(["--oracle", str(path), "--strategy", "random", "--workers", "1,8", "--runs", "5",
                 "--baseline", "arch001.tag1", "--out", str(out)]) == 0
    assert pl.read_parquet(out / "bsec.parquet")["workers"].unique().sort().to_list() == [1, 8]
    assert "8 workers × 10 min" in (out / "report.html").read_text()
    assert main(["--oracle", str(path), "--workers", "0", "--out", str(tmp_path / "bad")]) == 2
