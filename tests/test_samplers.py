"""Samplers π: valid permutations with the order each paper strategy promises."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import VibesError
from shared.samplers import PAPER_SAMPLERS, SAMPLERS, UNKNOWN_DATASET, get_sampler
from tests.conftest import random_oracle


def _pool(n=30, seed=0, unknown_share=0.2):
    return random_oracle(n_backbones=n, seeds=1, rng_seed=seed, unknown_share=unknown_share).true_scores()


@pytest.mark.parametrize("name", PAPER_SAMPLERS)
def test_every_row_is_a_permutation(name):
    pool = _pool()
    orders = get_sampler(name).orders(pool, 50, np.random.default_rng(1))
    assert orders.shape == (50, pool.height) and orders.dtype == np.int32
    assert np.array_equal(np.sort(orders, axis=1), np.broadcast_to(np.arange(pool.height), orders.shape))


def test_complexity_orders():
    pool = _pool()
    up = get_sampler("complexity-up").orders(pool, 3, np.random.default_rng(0))
    down = get_sampler("complexity-down").orders(pool, 3, np.random.default_rng(0))
    assert (up == up[0]).all() and np.array_equal(down[0], up[0][::-1])
    keys = list(zip(pool["gmacs"].to_list(), pool["params_m"].to_list(), pool["backbone"].to_list()))
    assert [keys[i] for i in up[0]] == sorted(keys)


def test_unknown_complexity_goes_last_in_both_directions():
    pool = _pool().with_columns(
        pl.when(pl.int_range(pl.len()) % 4 == 0).then(None).otherwise(pl.col("gmacs")).alias("gmacs"))
    unknown = set(np.flatnonzero(pool["gmacs"].is_null().to_numpy()).tolist())
    assert 0 < len(unknown) < pool.height
    known_gmacs = pool["gmacs"].to_numpy()
    for name, sign in (("complexity-up", 1), ("complexity-down", -1)):
        order = get_sampler(name).orders(pool, 2, np.random.default_rng(0))[0].tolist()
        n_known = pool.height - len(unknown)
        assert set(order[n_known:]) == unknown, name  # the unknowns are the tail
        g = known_gmacs[order[:n_known]] * sign
        assert np.all(np.diff(g) >= 0), name  # known ones monotone in the sampler's direction


def test_dataset_size_down_is_descending_random_inside_and_unknown_last():
    pool = _pool(40)
    orders = get_sampler("dataset-size-down").orders(pool, 200, np.random.default_rng(0))
    size = pool["pretrain_images"].fill_null(-1).to_numpy()[orders]  # -1 = unknown
    assert np.all(np.diff(size, axis=1) <= 0)  # descending, unknown (-1) last
    first = orders[:, 0]
    assert len(set(first.tolist())) > 1  # random inside the largest dataset


def test_cycling_is_round_robin_over_pretraining_datasets():
    pool = _pool(40)
    ds = pool["pretrain_dataset"].fill_null(UNKNOWN_DATASET).to_numpy()
    names, counts = np.unique(ds, return_counts=True)
    orders = get_sampler("cycling").orders(pool, 300, np.random.default_rng(3))
    seq = ds[orders]
    n_ds = names.size
    # the first round visits every dataset once
    assert all(len(set(row[:n_ds].tolist())) == n_ds for row in seq)
    # round-robin: in every prefix, datasets not yet exhausted differ by at most one visit
    for row in seq[:50]:
        seen = {n: 0 for n in names}
        for d in row:
            seen[d] += 1
            live = [seen[n] for n, c in zip(names, counts) if seen[n] < c]
            assert not live or max(live) - min(live) <= 1
    # random order of the datasets and inside each, per run
    assert len({tuple(r[:n_ds]) for r in seq}) > 1
    assert len({r[0] for r in orders.tolist()}) > n_ds


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(0, 10_000), st.sampled_from(PAPER_SAMPLERS))
def test_same_seed_same_orders(n, seed, name):
    pool = _pool(n, seed % 7, unknown_share=0.0)
    a = get_sampler(name).orders(pool, 5, np.random.default_rng(seed))
    b = get_sampler(name).orders(pool, 5, np.random.default_rng(seed))
    assert np.array_equal(a, b)
    assert np.array_equal(np.sort(a, axis=1), np.broadcast_to(np.arange(n), a.shape))


def test_missing_key_column_and_unknown_name():
    pool = _pool().drop("pretrain_dataset")
    with pytest.raises(VibesError, match="needs column.*pretrain_dataset"):
        get_sampler("cycling").orders(pool, 2, np.random.default_rng(0))
    # empty GMACs alone is not refused any more (complexity by params, issue 22); both empty is
    empty = _pool().with_columns(pl.lit(None, dtype=pl.Float64).alias("gmacs"),
                                 pl.lit(None, dtype=pl.Float64).alias("params_m"))
    with pytest.raises(VibesError, match="all null"):
        get_sampler("complexity-up").orders(empty, 2, np.random.default_rng(0))
    with pytest.raises(VibesError, match="unknown strategy 'fastest'; valid: complexity-down"):
        get_sampler("fastest")
    assert set(PAPER_SAMPLERS) <= set(SAMPLERS)


def test_complexity_orders_by_params_where_gmacs_are_missing():
    # a published table with parameters but no GMACs (issue 22 item 3): hand-sorted by params, then name
    pool = pl.DataFrame({"backbone": ["c", "a", "b", "d"], "gmacs": [None, None, None, None],
                         "params_m": [30.0, 10.0, 30.0, None]}, schema_overrides={"gmacs": pl.Float64})
    up = get_sampler("complexity-up")
    assert up.orders(pool, 2, np.random.default_rng(0)).tolist() == [[1, 2, 0, 3]] * 2  # a 10, b 30, c 30, d ?
    assert get_sampler("complexity-down").orders(pool, 1, np.random.default_rng(0)).tolist() == [[0, 2, 1, 3]]
    assert up.fallback_note(pool) == "complexity-up orders by params_m: gmacs is empty in the oracle"
    assert up.fallback_note(pool.with_columns(pl.lit(1.0).alias("gmacs"))) is None


def test_complexity_refuses_a_pool_with_neither_gmacs_nor_params():
    pool = pl.DataFrame({"backbone": ["a", "b"], "gmacs": [None, None], "params_m": [None, None]},
                        schema_overrides={"gmacs": pl.Float64, "params_m": pl.Float64})
    with pytest.raises(VibesError, match="needs column\\(s\\) gmacs, params_m, which are empty"):
        get_sampler("complexity-up").check(pool)
