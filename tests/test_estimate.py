"""precompute estimate and the synthetic:N@SIZE dataset: the projection against hand-computed cases,
the stratified sample, the stand-in sizes, and a small real run on digits."""
from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from precompute import datasets as D
from precompute import estimate as E
from shared.durations import format_duration
from shared.errors import VibesError


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg and isinstance(err.value, VibesError)
    return msg


# ------------------------------------------------------------------------ synthetic:N@SIZE
def test_synthetic_dataset_sizes_split_and_no_cache(tmp_path):
    ds = D.load_dataset("synthetic:600@16", cache_dir=tmp_path / "cache")
    assert ds.name == "synthetic:600@16" and ds.n_classes == 10
    assert ds.train_images.shape == (500, 16, 16, 3) and ds.test_images.shape == (100, 16, 16, 3)
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int64
    # 600 balanced images = 60 per class; the 5:1 split keeps 10 of each class for test
    assert np.bincount(ds.train_labels).tolist() == [50] * 10
    assert np.bincount(ds.test_labels).tolist() == [10] * 10
    assert not (tmp_path / "cache").exists()  # generated in memory, never cached
    # random pixels over the whole uint8 range, and seeded: the same spec gives the same images
    assert ds.train_images.min() == 0 and ds.train_images.max() == 255
    assert len(np.unique(ds.train_images[:, 0, 0, 0])) > 100
    again = D.load_dataset("synthetic:600@16", cache_dir=tmp_path / "cache")
    assert np.array_equal(again.train_images, ds.train_images)
    assert np.array_equal(again.test_labels, ds.test_labels)
    assert "synthetic:N@SIZE" in D.dataset_names()


def test_synthetic_cifar10_size():
    ds = D.load_dataset("synthetic:60000@32")
    assert (len(ds.train_labels), len(ds.test_labels), ds.image_size) == (50_000, 10_000, 32)


@pytest.mark.parametrize("spec", ["synthetic:", "synthetic:100", "synthetic:abc@32", "synthetic:100@",
                                  "synthetic:-5@32", "synthetic:19@32", "synthetic:100@0",
                                  "synthetic:100@5000", "synthetic:1000000@1024", "synthetic:N@SIZE"])
def test_synthetic_malformed_one_line(spec):
    with pytest.raises(VibesError) as err:
        D.load_dataset(spec)
    assert "synthetic:N@SIZE" in one_line(err) or "GiB" in str(err.value)


def test_stand_in_sizes_match_the_datasets():
    # eurosat: the committed 80/20 rule (per class floor(0.2 n + 0.5) to test) on its class counts
    counts = np.array(list(D.EUROSAT_COUNTS.values()))
    n_test = int(np.floor(0.2 * counts + 0.5).sum())
    assert E.STAND_IN_SIZES["eurosat"] == (counts.sum() - n_test, n_test, len(counts))
    assert E.STAND_IN_SIZES["cifar10"] == (50_000, 10_000, 10)  # torchvision's CIFAR10
    assert set(E.STAND_IN_SIZES) <= set(D.DATASETS)
    ds = E.stand_in("flowers102", 204, 30, 102, 16)
    assert ds.train_images.shape == (204, 16, 16, 3) and ds.test_images.shape == (30, 16, 16, 3)
    assert np.bincount(ds.train_labels).tolist() == [2] * 102  # every class has train images


def test_stand_in_used_when_data_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(E.STAND_IN_SIZES, "cifar10", (50, 20, 10))  # small, same mechanism
    ds, text = E.dataset_for_estimate("cifar10", str(tmp_path / "none"), str(tmp_path / "cache"))
    assert (len(ds.train_labels), len(ds.test_labels), ds.n_classes, ds.image_size) == (50, 20, 10, 32)
    assert "stand-in" in text and "not at hand" in text
    with pytest.raises(VibesError) as err:
        E.dataset_for_estimate(f"folder:{tmp_path / 'none'}", str(tmp_path), str(tmp_path / "cache"))
    one_line(err)


# ------------------------------------------------------------------------- pool and sample
def pool_frame(gmacs, **extra):
    n = len(gmacs)
    return pl.DataFrame({"backbone": [f"b{i:02d}" for i in range(n)], "gmacs": gmacs,
                         "input_size": [224] * n, "params_m": [1.0] * n, "error": [None] * n, **extra},
                        schema_overrides={"error": pl.String, "gmacs": pl.Float64})


def test_runnable_pool_leaves_out_with_reasons_and_scales_gmacs():
    pool = pool_frame([4.0, 8.0, None, 2.0, 1.0], excluded=[None, "needs 224 px", None, None, None])
    pool = pool.with_columns(pl.Series("error", [None, None, None, "ValueError: x", None], dtype=pl.String))
    run, left = E.runnable_pool(pool, input_size=112)
    assert run["backbone"].to_list() == ["b00", "b04"]
    assert left == {"excluded by precompute check (excluded)": 1, "failed to build in the pool table": 1,
                    "unknown GMACs": 1}
    # (112 / 224)^2 = 1/4 of the native GMACs
    assert run["eff_gmacs"].to_list() == pytest.approx([1.0, 0.25])
    assert E.runnable_pool(pool_frame([4.0]))[0]["eff_gmacs"].to_list() == [4.0]


def test_stratified_sample_one_per_equal_count_stratum():
    gm = [float(g) for g in (7, 3, 9, 1, 5, 10, 2, 8, 6, 4)]
    run, _ = E.runnable_pool(pool_frame(gm))
    s = E.stratified_sample(run, 3, seed=0)
    # ranks r = 0..9 by GMACs, stratum floor(3 r / 10): {1,2,3,4}, {5,6,7}, {8,9,10}
    assert s["stratum_size"].to_list() == [4, 3, 3]
    lo = [(1, 4), (5, 7), (8, 10)]
    for g, (a, b) in zip(s["gmacs"].to_list(), lo):
        assert a <= g <= b
    assert s.equals(E.stratified_sample(run, 3, seed=0))  # deterministic for a seed
    draws = {tuple(E.stratified_sample(run, 3, seed=k)["backbone"].to_list()) for k in range(20)}
    assert len(draws) > 1  # the seed changes the draw inside strata
    assert E.stratified_sample(run, 50)["backbone"].len() == 10
    with pytest.raises(VibesError):
        E.stratified_sample(run, 0)


def test_stratified_sample_memory_guard_draws_from_the_rest_of_the_stratum():
    gm = [float(g) for g in range(1, 11)]
    params = [1.0] * 7 + [500.0, 1.0, 900.0]  # GMACs 8 and 10 are too big for the guard
    run, _ = E.runnable_pool(pool_frame(gm).with_columns(pl.Series("params_m", params)))
    for seed in range(10):
        s = E.stratified_sample(run, 3, seed=seed, max_params_m=100)
        assert s["stratum_size"].to_list() == [4, 3, 3]  # strata still cut over the whole pool
        assert s.filter(pl.col("stratum") == 2)["gmacs"].to_list() == [9.0]  # the only one that fits
        assert (s["params_m"] <= 100).all()
    # a stratum whose members are all too big is left out
    s = E.stratified_sample(run, 10, max_params_m=100)
    assert sorted(s["gmacs"].to_list()) == [1, 2, 3, 4, 5, 6, 7, 9]


# ----------------------------------------------------------------------------- projection
def measured_frame(gmacs, seconds, status=None, strata=None):
    n = len(gmacs)
    return pl.DataFrame({"backbone": [f"s{i}" for i in range(n)], "eff_gmacs": gmacs, "seconds": seconds,
                         "status": status or ["ok"] * n, "stratum_size": strata or [1] * n},
                        schema_overrides={"eff_gmacs": pl.Float64, "seconds": pl.Float64})


def eff_pool(gmacs):
    return pl.DataFrame({"backbone": [f"p{i}" for i in range(len(gmacs))], "eff_gmacs": gmacs,
                         "gmacs": gmacs}, schema_overrides={"eff_gmacs": pl.Float64, "gmacs": pl.Float64})


def test_projection_exact_power_law_by_hand():
    # seconds = 10 * g^0.5 exactly: the fit recovers it, no smearing, and every bootstrap resample
    # that can fit a slope gives the same total
    m = measured_frame([1.0, 4.0, 16.0], [10.0, 20.0, 40.0], strata=[2, 2, 1])
    pool = eff_pool([1.0, 4.0, 9.0, 16.0, 25.0])
    p = E.project(m, pool, within_hours=60 / 3600)
    assert math.exp(p.intercept) == pytest.approx(10) and p.slope == pytest.approx(0.5)
    assert p.smear == pytest.approx(1.0) and p.r2 == pytest.approx(1.0)
    assert p.predicted == pytest.approx([10, 20, 30, 40, 50])
    assert p.total_seconds == pytest.approx(150)  # 10 * (1 + 2 + 3 + 4 + 5)
    assert p.low_seconds == pytest.approx(150) and p.high_seconds == pytest.approx(150)
    assert 0 < p.n_boot < E.BOOTSTRAP  # resamples of one repeated point are dropped
    # model-free: (2*10 + 2*20 + 1*40) * 5 pool backbones / 5 covered
    assert p.stratified_seconds == pytest.approx(100)
    assert p.max_backbone_seconds == pytest.approx(50)
    # GMACs 25 lies above the timed range [1, 16]: 50 of the 150 s are extrapolated
    assert (p.n_extrapolated, p.extrapolated_seconds, p.timed_gmacs) == (1, pytest.approx(50), (1.0, 16.0))
    # shards (the run's GMACs LPT): 3 shards {25}, {16}, {9, 4, 1} -> 50, 40, 60 s: fits 60 s
    assert (p.shards, p.makespan_seconds) == (3, pytest.approx(60))
    # within 55 s: 3 shards take 60 s; 4 shards {25}, {16}, {9}, {4, 1} -> 50 s
    p55 = E.project(m, pool, within_hours=55 / 3600)
    assert (p55.shards, p55.makespan_seconds) == (4, pytest.approx(50))
    # within 45 s: the 50 s backbone alone is too long for any number of shards
    assert E.project(m, pool, within_hours=45 / 3600).shards is None


def test_projection_noisy_fit_matches_numpy():
    rng = np.random.default_rng(3)
    g = np.exp(rng.uniform(-3, 3, 9))
    s = 5 * g ** 0.3 * np.exp(rng.normal(0, 0.4, 9))
    pool_g = np.exp(rng.uniform(-3, 3, 40))
    p = E.project(measured_frame(g.tolist(), s.tolist()), eff_pool(pool_g.tolist()), within_hours=1.0)
    b, a = np.polyfit(np.log(g), np.log(s), 1)  # independent OLS
    smear = np.mean(s / np.exp(a + b * np.log(g)))  # Duan's smearing, from its definition
    assert (p.slope, p.intercept, p.smear) == (pytest.approx(b), pytest.approx(a), pytest.approx(smear))
    assert p.total_seconds == pytest.approx(sum(smear * math.exp(a) * x ** b for x in pool_g))
    assert p.low_seconds < p.total_seconds < p.high_seconds
    assert p.median_sample_seconds == pytest.approx(np.median(s))
    # one shard of 1 h when the total fits, else at least ceil(total / 1 h)
    assert p.shards >= max(1, math.ceil(p.total_seconds / 3600))
    assert p.shards_high >= p.shards


def test_projection_leaves_failed_out_and_needs_two():
    m = measured_frame([1.0, 4.0, 16.0], [10.0, 999.0, 40.0], status=["ok", "failed", "ok"])
    p = E.project(m, eff_pool([1.0, 16.0]), within_hours=1)
    assert p.n_fitted == 2 and p.total_seconds == pytest.approx(50)  # 10 + 40: the failed 999 s is out
    with pytest.raises(VibesError) as err:
        E.project(measured_frame([1.0, 4.0], [1.0, 2.0], status=["ok", "failed"]), eff_pool([1.0]), 1)
    assert "--sample" in one_line(err)


def test_backbone_timing_breakdown():
    frame = pl.DataFrame({"load_seconds": [2.0, 2.0], "extract_seconds": [3.0, 1.0], "status": ["ok", "ok"],
                          "error": [None, None]}, schema_overrides={"error": pl.String})
    t = E.backbone_timing(frame, 10.0)
    assert (t["load_seconds"], t["extract_seconds"], t["fit_seconds"], t["status"]) == (2.0, 3.0, 5.0, "ok")
    bad = frame.with_columns(pl.Series("status", ["ok", "failed"]), pl.Series("error", [None, "OOM"]))
    assert E.backbone_timing(bad, 10.0)["status"] == "failed"
    assert E.backbone_timing(bad, 10.0)["error"] == "OOM"


# -------------------------------------------------------------------------- a real small run
TINY = ("test_vit.r160_in1k", "test_resnet.r160_in1k", "test_efficientnet.r160_in1k")


def test_estimate_cli_digits_three_backbones(tmp_path, capsys):
    import torch

    from precompute.cli import main
    from precompute.pool import build_pool

    torch.set_num_threads(1)
    pool_file = tmp_path / "pool.parquet"
    build_pool(list(TINY), cache=tmp_path / "pool-cache.parquet", progress=False).write_parquet(pool_file)
    out = tmp_path / "est.json"
    rc = main(["estimate", "--dataset", "digits", "--sample", "3", "--input-size", "32", "--pool", str(pool_file),
               "--seeds", "1", "--fractions", "0.1", "--cache-dir", str(tmp_path / "cache"),
               "--within", "1h", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    doc = json.loads(out.read_text())
    assert sorted(r["backbone"] for r in doc["sample"]) == sorted(TINY)
    assert all(r["status"] == "ok" and r["seconds"] > 0 for r in doc["sample"])
    # the projection of a pool that is the sample itself: sum of the fitted seconds of the 3
    proj = doc["projection"]
    g = np.array([r["eff_gmacs"] for r in doc["sample"]])
    s = np.array([r["seconds"] for r in doc["sample"]])
    b, a = np.polyfit(np.log(g), np.log(s), 1)
    smear = np.mean(s / np.exp(a + b * np.log(g)))
    assert proj["total_seconds"] == pytest.approx(float((smear * np.exp(a) * g ** b).sum()))
    assert proj["shards"] == 1
    assert f"whole sweep: {proj['total_seconds'] / 3600:.3g} device-hours" in text  # what is printed is the sum
    assert f"median {format_duration(float(np.median(s)))}" in text
    assert "--shards 1" in text and "not counted:" in text and "warm-up" in text


def test_estimate_cli_fails_fast_one_line(capsys):
    from precompute.cli import main

    for args, needle in ((["--dataset", "nope"], "unknown dataset"),
                         (["--dataset", "digits", "--within", "soon"], "--within"),
                         (["--dataset", "digits", "--evaluators", "nope"], "unknown evaluator"),
                         (["--dataset", "synthetic:5@32"], "synthetic:N@SIZE"),
                         (["--dataset", "digits", "--sample", "1"], "--sample"),
                         (["--dataset", "digits", "--max-memory-gb", "0"], "--max-memory-gb"),
                         (["--dataset", "digits", "--threads", "0"], "--threads")):
        assert main(["estimate", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and needle in err and "\n" not in err


def test_estimate_refuses_the_fractions_a_run_would_refuse(tmp_path, capsys):
    """digits keeps floor(0.01 * 359 + 0.5) = 4 test images at 1 % for 10 classes: `run` refuses it
    (precompute.datasets.check_fractions), so `estimate` must not time a sample and project the hours of
    that run: one line naming the smallest fraction (0.0265, tests/test_first_minutes.py), exit 2,
    nothing written, nothing timed."""
    from precompute.cli import main
    from precompute.pool import build_pool

    pool_file = tmp_path / "pool.parquet"
    build_pool(list(TINY), cache=tmp_path / "pool-cache.parquet", progress=False).write_parquet(pool_file)
    out, js = tmp_path / "sample.csv", tmp_path / "est.json"
    rc = main(["estimate", "--dataset", "digits", "--sample", "3", "--input-size", "32", "--pool", str(pool_file),
               "--seeds", "1", "--fractions", "1.0,0.01", "--cache-dir", str(tmp_path / "cache"),
               "--out", str(out), "--json", str(js)])
    cap = capsys.readouterr()
    assert rc == 2
    err = cap.err.strip().splitlines()
    assert err[-1].startswith("error: fraction 0.01 of digits keeps 4 of its 359 test images for 10 classes")
    assert "is 0.0265" in err[-1] and not any(line.startswith("timing ") for line in err)
    assert not out.exists() and not js.exists() and "device-hours" not in cap.out
