"""The oracle contract: lossless Parquet <-> HDF5, one-line validation errors."""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import OracleError
from shared.oracle import COLUMNS, Oracle, read_oracle
from tests.conftest import random_oracle

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=12), st.sampled_from(["mlp", "silhouette"]),
                          st.sampled_from([1.0, 0.1, 0.01]), st.integers(0, 3),
                          st.one_of(st.none(), st.just(math.nan), finite),
                          st.one_of(st.none(), st.floats(0, 1e6)), st.one_of(st.none(), st.text(max_size=20))),
                min_size=1, max_size=15))
def test_round_trip_parquet_hdf5_is_lossless(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("rt")
    frame = pl.DataFrame([dict(dataset="d", backbone=b, evaluator=e, fraction=f, seed=s, score=sc,
                               seconds=sec, status="ok", error=err, pretrain_images=None)
                          for b, e, f, s, sc, sec, err in rows])
    oracle = Oracle(frame, {"truth": "mlp", "nested": {"a": [1, 2]}, "unicode": "ε̃ τ̃"})
    oracle.write(tmp / "o.parquet")
    a = read_oracle(tmp / "o.parquet", validate=False)
    a.write(tmp / "o.h5")
    b = read_oracle(tmp / "o.h5", validate=False)
    b.write(tmp / "o2.parquet")
    c = read_oracle(tmp / "o2.parquet", validate=False)
    for other in (a, b, c):
        assert other.frame.schema == oracle.frame.schema
        assert other.frame.equals(oracle.frame, null_equal=True)
        assert other.meta == oracle.meta
    # NaN and null stay distinct through HDF5
    assert b.frame["score"].null_count() == oracle.frame["score"].null_count()
    assert b.frame["score"].is_nan().sum() == oracle.frame["score"].is_nan().sum()
    assert not list(tmp.glob("*.tmp"))


def test_schema_has_the_design_columns():
    assert list(COLUMNS)[:7] == ["dataset", "backbone", "evaluator", "fraction", "seed", "score", "seconds"]
    assert {"load_seconds", "extract_seconds", "fit_seconds", "status", "error", "architecture",
            "params_m", "gmacs", "input_size", "feature_dim", "pretrain_dataset", "pretrain_images",
            "pretrain_method"} <= set(COLUMNS)


def _good() -> Oracle:
    return random_oracle(n_backbones=3, seeds=2)


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.drop("score"), "missing column(s) score"),
    (lambda f: f.with_columns(pl.col("seed").cast(pl.String)), "column 'seed' has type String, expected Int32"),
    (lambda f: pl.concat([f, f.head(1)]), "duplicate key(s)"),
    (lambda f: f.filter(pl.col("evaluator") != "mlp"), "no truth rows"),
    (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(-1.0)
                              .otherwise(pl.col("seconds")).alias("seconds")), "negative seconds"),
    (lambda f: f.with_columns(pl.lit("maybe").alias("status")), "status 'maybe'"),
    (lambda f: f.with_columns(pl.when(pl.col("fraction") < 1).then(1.5).otherwise(pl.col("fraction"))
                              .alias("fraction")), "fractions must be in (0, 1]"),
])
def test_validation_names_the_problem_in_one_line(tmp_path, mutate, message):
    good = _good()
    with pytest.raises(OracleError) as err:
        Oracle(mutate(good.frame), good.meta).validate()
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_wrong_schema_version_and_broken_files(tmp_path):
    good = _good()
    Oracle(good.frame, dict(good.meta, schema_version=7)).write(tmp_path / "v7.parquet")
    with pytest.raises(OracleError, match="schema_version is 7"):
        read_oracle(tmp_path / "v7.parquet")
    with pytest.raises(OracleError, match="does not exist"):
        read_oracle(tmp_path / "none.parquet")
    (tmp_path / "oracle.csv").write_text("a,b\n1,2\n")
    with pytest.raises(OracleError, match="expected .parquet, .h5 or .hdf5"):
        read_oracle(tmp_path / "oracle.csv")
    good.write(tmp_path / "ok.h5")
    data = (tmp_path / "ok.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(OracleError, match="cannot read oracle"):
        read_oracle(tmp_path / "cut.h5")
    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "plain.parquet")
    with pytest.raises(OracleError, match="not a VIBES oracle"):
        read_oracle(tmp_path / "plain.parquet")


def test_true_scores_average_seeds_of_the_truth_evaluator():
    o = random_oracle(n_backbones=4, seeds=3, failed=1)
    ts = o.true_scores()
    assert ts.height == 3  # the failed backbone is excluded ...
    assert o.failed_backbones().height == 1  # ... and reported
    f = o.frame.filter((pl.col("evaluator") == "mlp") & (pl.col("fraction") == 1.0))
    for row in ts.iter_rows(named=True):
        want = f.filter(pl.col("backbone") == row["backbone"])["score"].mean()
        assert row["true_score"] == pytest.approx(want, abs=0)
    assert np.all(np.isfinite(ts["true_score"].to_numpy()))
