"""Costs for your hardware (#16, #17): ``simulate/costs.py`` held to independent computations.

* the constant ratio and its leave-one-out error by hand on four backbones;
* the oracle's per-backbone seconds (largest load + largest extraction + sum of fits) by hand;
* a known law ``target = 2.5 x oracle^0.9 x gmacs^0.1`` recovered by the fit (exactly without
  noise; within tolerance with noise, and better than the constant ratio outside the sample);
* every leave-one-out error against a plain loop that refits without each backbone;
* the fallback to the constant ratio when no fit beats it in leave-one-out;
* ``with_costs``: each row scaled by its backbone's factor, breakdowns and metadata kept, and the
  new oracle's per-backbone seconds equal to the measurements of the sampled backbones;
* one-line errors for every bad costs file and for a sample with no backbone of the oracle;
* ``precompute estimate --out`` writes a file ``read_costs`` reads (writer, and the CLI on digits);
* issue #17: the largest-backbone line never says less than a measured backbone took.
"""
from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from shared.errors import VibesError
from shared.oracle import Oracle
from simulate.costs import LADDER, constant_loo, fit_costs, oracle_costs, read_costs, with_costs, write_costs


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg and isinstance(err.value, VibesError)
    return msg


def oracle_of(names, seconds, gmacs=None, params=None, input_size=None, feature_dim=None) -> Oracle:
    """One truth row per backbone (like a timm:<set> oracle): load 0, extraction = seconds, fit 0."""
    n = len(names)
    ones = [1.0] * n
    frame = pl.DataFrame({
        "dataset": ["toy"] * n, "backbone": list(names), "evaluator": ["mlp"] * n, "fraction": [1.0] * n,
        "seed": [0] * n, "score": np.linspace(0.1, 0.9, n).tolist(), "seconds": list(seconds),
        "load_seconds": [0.0] * n, "extract_seconds": list(seconds), "fit_seconds": [0.0] * n,
        "status": ["ok"] * n, "params_m": list(params or ones), "gmacs": list(gmacs or ones),
        "input_size": list(input_size or [224] * n), "feature_dim": list(feature_dim or [512] * n)})
    return Oracle(frame, {"truth": "mlp", "dataset": "toy", "hardware": "oracle-gpu"})


def sample_of(names, seconds, **extra) -> pl.DataFrame:
    return pl.DataFrame({"backbone": list(names), "seconds": list(seconds), "status": ["ok"] * len(names),
                         **extra})


# ------------------------------------------------------------------------- by hand
def test_constant_ratio_and_its_loo_by_hand():
    o = oracle_of(["a", "b", "c", "d", "e"], [10.0, 20.0, 40.0, 80.0, 100.0])
    fit = fit_costs(o, sample_of(["a", "b", "c", "d"], [5.0, 12.0, 16.0, 40.0]), source="mine.csv")
    # ratios 0.5, 0.6, 0.4, 0.5 -> median 0.5; 4 backbones are too few for any rung (needs 5)
    assert fit.model == "constant" and fit.ratio == pytest.approx(0.5)
    assert all(c["loo_error"] is None for c in fit.candidates)
    # LOO: a -> median(.6,.4,.5) = .5: 0; b -> .5 vs .6: log 1.2; c -> .5 vs .4: log 1.25; d -> 0
    assert fit.loo_error_constant == pytest.approx((0 + math.log(1.2)) / 2)
    assert fit.loo_error == fit.loo_error_constant
    p = {r["backbone"]: r for r in fit.predicted.iter_rows(named=True)}
    assert p["e"]["seconds_predicted"] == pytest.approx(50.0) and p["e"]["source"] == "constant"
    assert p["b"]["seconds_predicted"] == pytest.approx(12.0) and p["b"]["source"] == "measured"
    assert p["b"]["factor"] == pytest.approx(0.6) and p["b"]["seconds_measured"] == 12.0
    assert p["c"]["seconds_loo"] == pytest.approx(0.5 * 40)  # the others' median ratio
    assert p["e"]["seconds_measured"] is None and p["e"]["seconds_loo"] is None
    assert "0.5 x oracle seconds" in fit.formula()
    text = fit.describe()
    assert "mine.csv" in text and "constant chosen" in text and "1 at the constant ratio" in text


def test_oracle_costs_sum_the_sweep_like_estimate_by_hand():
    rows = [  # backbone a: load 2, extractions 1 / 5 (the largest: every image), fits 3 + 4 + 0.5
        ("a", "mlp", 1.0, 0, 2 + 5 + 3, 2.0, 5.0, 3.0), ("a", "mlp", 0.1, 0, 2 + 1 + 4, 2.0, 1.0, 4.0),
        ("a", "knn", 1.0, 0, 2 + 5 + 0.5, 2.0, 5.0, 0.5),
        # backbone b: a breakdown unknown -> the largest row seconds (one cold evaluation)
        ("b", "mlp", 1.0, 0, 9.0, None, None, None), ("b", "mlp", 0.1, 0, 4.0, None, None, None)]
    frame = pl.DataFrame(rows, schema=["backbone", "evaluator", "fraction", "seed", "seconds", "load_seconds",
                                       "extract_seconds", "fit_seconds"], orient="row")
    frame = frame.with_columns(pl.lit("toy").alias("dataset"), pl.lit(0.5).alias("score"),
                               pl.lit("ok").alias("status"), pl.lit(3.0).alias("gmacs"))
    costs = oracle_costs(Oracle(frame, {"truth": "mlp"}))
    got = dict(zip(costs["backbone"], costs["seconds_oracle"]))
    assert got == {"a": pytest.approx(2 + 5 + 3 + 4 + 0.5), "b": pytest.approx(9.0)}
    assert costs["gmacs"].to_list() == [3.0, 3.0]


# ---------------------------------------------------------------------- a known law
def law_data(n, rng, noise=0.0):
    s = np.exp(rng.uniform(0, 6, n))
    g = np.exp(rng.uniform(-2, 4, n))
    params = np.exp(rng.uniform(0, 5, n))
    size = rng.choice([160, 224, 256, 384], n).astype(float)
    fdim = rng.choice([256, 512, 768, 2048], n).astype(float)
    target = 2.5 * s ** 0.9 * g ** 0.1 * np.exp(rng.normal(0, noise, n) if noise else 0)
    names = [f"m{i:03d}" for i in range(n)]
    o = oracle_of(names, s.tolist(), g.tolist(), params.tolist(), size.astype(int).tolist(),
                  fdim.astype(int).tolist())
    return o, names, target


@pytest.mark.parametrize("clip", [False, True])
def test_exact_law_is_recovered(clip):
    o, names, target = law_data(40, np.random.default_rng(0))
    fit = fit_costs(o, sample_of(names[:20], target[:20]), clip=clip)
    assert fit.model == "loglinear" and fit.features[:2] == ("seconds_oracle", "gmacs")
    c = fit.coefficients
    assert c["intercept"] == pytest.approx(math.log(2.5), abs=1e-6)
    assert c["seconds_oracle"] == pytest.approx(0.9, abs=1e-6) and c["gmacs"] == pytest.approx(0.1, abs=1e-6)
    assert all(abs(c[f]) < 1e-6 for f in fit.features[2:])
    assert fit.loo_error < 1e-9 < fit.loo_error_constant
    out = fit.predicted.filter(pl.col("source") == "fit").sort("backbone")
    assert out.height == 20
    s = out["seconds_oracle"].to_numpy()
    y = np.log(target / o.frame.sort("backbone")["seconds"].to_numpy())
    expect = np.exp(np.clip(y[20:], y[:20].min(), y[:20].max()) if clip else y[20:]) * s
    assert out["seconds_predicted"].to_numpy() == pytest.approx(expect, rel=1e-6)
    if clip:  # some backbones outside the sample lie outside its range of ratios: the clip bites
        assert np.any((y[20:] < y[:20].min()) | (y[20:] > y[:20].max()))


def test_noisy_law_within_tolerance_and_better_than_the_constant_outside_the_sample():
    o, names, target = law_data(330, np.random.default_rng(1), noise=0.05)
    fit = fit_costs(o, sample_of(names[:30], target[:30]))
    assert fit.model == "loglinear" and fit.loo_error < fit.loo_error_constant
    c = fit.coefficients
    assert c["seconds_oracle"] == pytest.approx(0.9, abs=0.05) and c["gmacs"] == pytest.approx(0.1, abs=0.05)
    out = fit.predicted.filter(pl.col("source") == "fit").sort("backbone")
    truth = target[30:]
    err_fit = np.median(np.abs(np.log(out["seconds_predicted"].to_numpy() / truth)))
    err_const = np.median(np.abs(np.log(fit.ratio * out["seconds_oracle"].to_numpy() / truth)))
    assert err_fit < 0.06 and err_fit < 0.5 * err_const  # the noise alone: median |N(0, .05)| = 0.034


# ------------------------------------------------------------------ LOO by a plain loop
def loop_loo(y: np.ndarray, cols: list[np.ndarray], clip: bool) -> tuple[float, list[float]]:
    """Refit OLS without each point, predict it (clipped to the others' range), median |error|."""
    errs, preds = [], []
    for i in range(len(y)):
        keep = [j for j in range(len(y)) if j != i]
        z = np.column_stack([np.ones(len(keep))] + [c[keep] for c in cols])
        beta, *_ = np.linalg.lstsq(z, y[keep], rcond=None)
        pred = beta[0] + sum(b * c[i] for b, c in zip(beta[1:], cols))
        if clip:
            pred = min(max(pred, y[keep].min()), y[keep].max())
        preds.append(pred)
        errs.append(abs(pred - y[i]))
    return float(np.median(errs)), preds


@pytest.mark.parametrize("clip", [True, False])
def test_loo_errors_equal_a_plain_loop(clip):
    o, names, _ = law_data(30, np.random.default_rng(2))
    rng = np.random.default_rng(3)
    s = o.frame.sort("backbone")["seconds"].to_numpy()
    target = s * np.exp(rng.normal(-0.3, 0.3, s.size))  # no law: every rung is a guess
    fit = fit_costs(o, sample_of(names, target), clip=clip)
    y = np.log(target / s)
    feats = {f: np.log(o.frame.sort("backbone")[f if f != "seconds_oracle" else "seconds"].to_numpy()
                       .astype(float)) for f in LADDER}
    ran = [c for c in fit.candidates if c["loo_error"] is not None]
    assert len(ran) == len(LADDER)
    for c in ran:
        assert c["loo_error"] == pytest.approx(loop_loo(y, [feats[f] for f in c["features"]], clip)[0])
    # the constant ratio: the median ratio of the others
    const = [abs(math.log(float(np.median(np.delete(target / s, i)))) - y[i]) for i in range(y.size)]
    assert fit.loo_error_constant == pytest.approx(float(np.median(const)))
    assert constant_loo(target / s) == pytest.approx([math.log(np.median(np.delete(target / s, i)))
                                                      for i in range(y.size)])
    # the chosen model is the lowest, chosen only when it beats the constant ratio
    best = min(ran, key=lambda c: c["loo_error"])
    if best["loo_error"] < fit.loo_error_constant:
        assert fit.model == "loglinear" and list(fit.features) == best["features"]
        assert fit.loo_error == best["loo_error"]
        _, preds = loop_loo(y, [feats[f] for f in best["features"]], clip)
    else:
        assert fit.model == "constant" and fit.loo_error == fit.loo_error_constant
        preds = [math.log(float(np.median(np.delete(target / s, i)))) for i in range(y.size)]
    got = fit.predicted.sort("backbone")["seconds_loo"].to_numpy()
    assert got == pytest.approx(np.exp(preds) * s)


def test_falls_back_to_the_constant_ratio_when_no_fit_beats_it():
    o, names, _ = law_data(12, np.random.default_rng(4))
    s = o.frame.sort("backbone")["seconds"].to_numpy()
    ratio = np.full(s.size, 0.5)
    ratio[3] = 5.0  # one outlier: the median ignores it, least squares does not
    fit = fit_costs(o, sample_of(names, s * ratio))
    assert fit.model == "constant" and fit.ratio == pytest.approx(0.5)
    assert fit.loo_error_constant == pytest.approx(0.0)
    assert all(c["loo_error"] > 0 for c in fit.candidates if c["loo_error"] is not None)
    assert fit.coefficients == {"intercept": pytest.approx(math.log(0.5)), "seconds_oracle": 1.0}
    assert "no fit beats it" in fit.describe()


def test_features_unknown_or_constant_are_skipped_and_missing_ones_take_the_constant():
    o, names, target = law_data(40, np.random.default_rng(5))
    # feature_dim unknown for one sampled backbone; input_size constant over the sample
    f = o.frame.with_columns(pl.when(pl.col("backbone") == names[0]).then(None).otherwise(pl.col("feature_dim"))
                             .alias("feature_dim"), pl.lit(224).alias("input_size"),
                             pl.when(pl.col("backbone") == names[-1]).then(None).otherwise(pl.col("gmacs"))
                             .alias("gmacs"))
    fit = fit_costs(Oracle(f, o.meta), sample_of(names[:20], target[:20]))
    skipped = {c.get("skipped") for c in fit.candidates}
    assert "input_size constant over the sample" in skipped and "feature_dim unknown for a sampled backbone" in skipped
    assert fit.features[:2] == ("seconds_oracle", "gmacs")
    last = fit.predicted.filter(pl.col("backbone") == names[-1]).row(0, named=True)
    assert last["source"] == "constant" and last["factor"] == pytest.approx(fit.ratio)


# ------------------------------------------------------------------------ with_costs
def test_with_costs_scales_every_row_by_its_backbone_factor():
    from conftest import random_oracle

    o = random_oracle(n_backbones=12, seeds=2, fractions=(1.0, 0.1))
    f = o.frame.with_columns((pl.col("seconds") * 0.2).alias("load_seconds"),
                             (pl.col("seconds") * 0.5).alias("extract_seconds"),
                             (pl.col("seconds") * 0.3).alias("fit_seconds"))
    o = Oracle(f, o.meta)
    base = oracle_costs(o)
    names = base["backbone"].to_list()[:6]
    target = (base.filter(pl.col("backbone").is_in(names)).sort("backbone")["seconds_oracle"] * 3.0).to_list()
    target[0] *= 1.2
    fit = fit_costs(o, sample_of(sorted(names), target, device=["cuda:0"] * 6, device_name=["H200"] * 6))
    new = with_costs(o, fit).validate()
    factor = dict(zip(fit.predicted["backbone"], fit.predicted["factor"]))
    joined = o.frame.with_row_index().join(new.frame.with_row_index(), on="index", suffix="_new")
    for r in joined.iter_rows(named=True):
        for c in ("seconds", "load_seconds", "extract_seconds", "fit_seconds"):
            if r[c] is None:
                assert r[c + "_new"] is None
            else:
                assert r[c + "_new"] == pytest.approx(r[c] * factor[r["backbone"]])
        assert r["score"] == r["score_new"] and r["backbone"] == r["backbone_new"]
    # the new oracle's own per-backbone cost is the prediction: the measurement for the sampled ones
    again = dict(zip(*oracle_costs(new).select("backbone", "seconds_oracle").to_dict(as_series=False).values()))
    for r in fit.predicted.iter_rows(named=True):
        if r["seconds_predicted"] is not None:
            assert again[r["backbone"]] == pytest.approx(r["seconds_predicted"])
        if r["source"] == "measured":
            assert r["seconds_predicted"] == pytest.approx(r["seconds_measured"])
    assert new.meta["costs"]["model"] == fit.model and new.meta["oracle_hardware"] == o.meta.get("hardware")
    assert "cuda:0 (H200)" in new.meta["hardware"] and fit.device == "cuda:0 (H200)"
    assert new.meta["costs"]["n_sample"] == 6 and new.meta["costs"]["by_source"]["measured"] == 6


def test_write_costs_round_trip(tmp_path):
    o, names, target = law_data(20, np.random.default_rng(6))
    fit = fit_costs(o, sample_of(names[:8], target[:8]))
    path = write_costs(fit, tmp_path / "out" / "costs.parquet")
    back = pl.read_parquet(path)
    assert back.equals(fit.predicted)
    assert {"backbone", "seconds_oracle", "seconds_predicted", "factor", "source"} <= set(back.columns)
    import json

    json.dumps(fit.as_dict())  # summary.json can hold it


# ------------------------------------------------------------------------ bad inputs
def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name, text, needle", [
    ("c.csv", "backbone,secs\na,1\n", "lacks column(s) seconds"),
    ("c.csv", "name,seconds\na,1\n", "lacks column(s) backbone"),
    ("c.csv", "backbone,seconds\na,0\n", "not a positive number"),
    ("c.csv", "backbone,seconds\na,-3\nb,2\n", "not a positive number"),
    ("c.csv", "backbone,seconds\na,\n", "not a positive number"),
    ("c.csv", "backbone,seconds\na,nan\n", "not a positive number"),
    ("c.csv", "backbone,seconds\na,fast\n", "'seconds' is not numeric"),
    ("c.csv", "backbone,seconds\na,1\na,2\n", "more than once"),
    ("c.csv", "backbone,seconds\n", "no rows"),
    ("c.csv", "backbone,seconds,status\na,1,failed\n", "no ok row"),
    ("c.csv", "backbone,seconds\n,1\n", "without a backbone"),
    ("c.txt", "backbone,seconds\na,1\n", "expected .csv or .parquet"),
    ("c.parquet", "not parquet", "cannot read costs file"),
])
def test_read_costs_one_line_errors(tmp_path, name, text, needle):
    with pytest.raises(VibesError) as err:
        read_costs(write(tmp_path, name, text))
    assert needle in one_line(err) and name in str(err.value)


def test_read_costs_missing_file_and_folder(tmp_path):
    with pytest.raises(VibesError) as err:
        read_costs(tmp_path / "none.csv")
    assert "does not exist" in one_line(err) and "precompute estimate --out" in str(err.value)
    with pytest.raises(VibesError) as err:
        read_costs(tmp_path)
    assert "folder" in one_line(err)


def test_read_costs_keeps_failed_rows_out_and_no_common_backbone_is_one_line(tmp_path):
    p = write(tmp_path, "c.csv", "backbone,seconds,status,device\na,2,ok,cpu\nb,0,failed,cpu\nz,3,ok,cpu\n")
    sample = read_costs(p)  # a failed row may carry any seconds
    assert sample["status"].to_list() == ["ok", "failed", "ok"] and sample["device"].to_list() == ["cpu"] * 3
    o = oracle_of(["a", "c"], [4.0, 8.0])
    fit = fit_costs(o, sample, source=str(p))
    assert (fit.n_sample, fit.unmatched, fit.n_not_ok, fit.ratio) == (1, ["z"], 1, 0.5)
    assert fit.loo_error is None and "no leave-one-out" in fit.describe() and "1 not in the oracle" in fit.describe()
    with pytest.raises(VibesError) as err:
        fit_costs(oracle_of(["x", "y"], [1.0, 2.0]), sample, source=str(p))
    assert "no backbone of the costs file" in one_line(err) and "e.g. a" in str(err.value)


# ------------------------------------------------------------- precompute estimate --out
def test_estimate_sample_file_round_trips_through_read_costs(tmp_path):
    pytest.importorskip("torch")
    from precompute import estimate as E

    measured = pl.DataFrame({"backbone": ["a.x", "b.y", "c.z"], "eff_gmacs": [1.0, 2.0, 4.0],
                             "gmacs": [1.0, 2.0, 4.0], "params_m": [1.0, 2.0, 3.0], "stratum": [0, 1, 2],
                             "stratum_size": [3, 3, 3], "seconds": [2.0, 3.0, 9.0], "load_seconds": [0.5, 0.5, 1.0],
                             "extract_seconds": [1.0, 2.0, 6.0], "fit_seconds": [0.5, 0.5, 2.0],
                             "status": ["ok", "ok", "failed"], "error": [None, None, "OOM, on cuda"],
                             "rows": [4, 4, 4], "cpu_seconds": [1.0, 1.0, 1.0]})
    table = E.sample_table(measured, "cuda:0", "NVIDIA H200", "cifar10", "random", 32)
    assert table.columns[:6] == ["backbone", "seconds", "load_seconds", "extract_seconds", "fit_seconds",
                                 "cpu_seconds"]
    for suffix in (".csv", ".parquet"):
        path = E.write_sample(table, tmp_path / f"mine{suffix}")
        back = read_costs(path)
        assert back["backbone"].to_list() == ["a.x", "b.y", "c.z"] and back["seconds"].to_list() == [2.0, 3.0, 9.0]
        assert back["status"].to_list() == ["ok", "ok", "failed"] and set(back["device"]) == {"cuda:0"}
        assert back["fit_seconds"].to_list() == [0.5, 0.5, 2.0]
    assert not list(tmp_path.glob(".*.tmp"))
    for bad, needle in ((tmp_path / "x.json", ".csv or .parquet"), (tmp_path / "no" / "x.csv", "does not exist")):
        with pytest.raises(VibesError) as err:
            E.write_sample(table, bad)
        assert needle in one_line(err)


TINY = ("test_vit.r160_in1k", "test_resnet.r160_in1k", "test_efficientnet.r160_in1k")


@pytest.mark.slow
def test_estimate_cli_out_then_fit(tmp_path, capsys):
    pytest.importorskip("timm")
    import torch

    from precompute.cli import main
    from precompute.pool import build_pool

    torch.set_num_threads(1)
    pool_file = tmp_path / "pool.parquet"
    build_pool(list(TINY), cache=tmp_path / "pool-cache.parquet", progress=False).write_parquet(pool_file)
    out, js = tmp_path / "mine.csv", tmp_path / "est.json"
    rc = main(["estimate", "--dataset", "digits", "--sample", "3", "--input-size", "32", "--pool", str(pool_file),
               "--seeds", "1", "--fractions", "0.1", "--cache-dir", str(tmp_path / "cache"),
               "--within", "1h", "--out", str(out), "--json", str(js)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"wrote {out}" in captured.err and "--costs-from" in captured.err
    import json

    doc = json.loads(js.read_text())
    sample = read_costs(out)
    assert sorted(sample["backbone"].to_list()) == sorted(TINY)
    measured = {r["backbone"]: r["seconds"] for r in doc["sample"]}
    assert dict(zip(sample["backbone"], sample["seconds"])) == pytest.approx(measured)
    assert set(sample["device"]) == {"cpu"} and set(sample["dataset"]) == {"digits"}
    # fit against an oracle holding the three: each sampled backbone's factor is its measured ratio
    o = oracle_of(list(TINY) + ["other.x"], [1.0, 2.0, 4.0, 8.0])
    fit = fit_costs(o, sample, source=str(out))
    p = {r["backbone"]: r for r in fit.predicted.iter_rows(named=True)}
    for b, s in zip(TINY, (1.0, 2.0, 4.0)):
        assert p[b]["factor"] == pytest.approx(measured[b] / s) and p[b]["source"] == "measured"
    assert p["other.x"]["seconds_predicted"] == pytest.approx(8.0 * float(np.median(
        [measured[b] / s for b, s in zip(TINY, (1.0, 2.0, 4.0))])))
    # issue #17: the printed largest backbone is never below the largest measured one
    line = next(x for x in captured.out.splitlines() if "largest single backbone" in x)
    assert max(measured, key=measured.get) in line


def test_largest_backbone_line_does_not_contradict_the_measurement():
    pytest.importorskip("torch")
    from precompute import estimate as E
    from shared.durations import format_duration

    # seconds 10, 40, 20 at GMACs 1, 4, 16: the log-log fit predicts less than 40 s for every pool backbone
    m = pl.DataFrame({"backbone": ["s0", "s1", "s2"], "eff_gmacs": [1.0, 4.0, 16.0], "seconds": [10.0, 40.0, 20.0],
                      "status": ["ok"] * 3, "stratum_size": [1] * 3})
    pool = pl.DataFrame({"backbone": ["p0", "p1", "p2"], "eff_gmacs": [1.0, 4.0, 16.0], "gmacs": [1.0, 4.0, 16.0]})
    p = E.project(m, pool, within_hours=1.0, n_boot=0)
    assert p.max_backbone_seconds < 40 and (p.max_measured_seconds, p.max_measured_backbone) == (40.0, "s1")
    text = p.largest_backbone_text()
    assert text.startswith(f"largest single backbone: {format_duration(40.0)} (s1) measured")
    assert format_duration(p.max_backbone_seconds) in text
    # when the fit predicts more than was measured, the prediction leads and the measurement is said too
    m2 = m.with_columns(pl.Series("seconds", [10.0, 20.0, 40.0]))
    p2 = E.project(m2, pool.with_columns(pl.Series("eff_gmacs", [1.0, 4.0, 64.0])), within_hours=1.0, n_boot=0)
    assert p2.max_backbone_seconds > 40
    pred = format_duration(p2.max_backbone_seconds)
    assert p2.largest_backbone_text() == (f"largest single backbone predicted: {pred} "
                                          f"(the largest measured: {format_duration(40.0)} (s2))")


def test_costs_from_a_file_and_the_simulator_replays_on_the_new_clock(tmp_path):
    """Every backbone timed at exactly twice the oracle's seconds: a replay on the new oracle at budget
    2B is the replay on the old one at budget B, run for run (doubling is exact in floating point)."""
    from conftest import random_oracle

    from simulate.costs import costs_from
    from simulate.simulation import run_simulation

    o = random_oracle(n_backbones=15, seeds=2, fractions=(1.0, 0.1))
    base = oracle_costs(o)
    path = tmp_path / "mine.parquet"
    base.select("backbone", (pl.col("seconds_oracle") * 2).alias("seconds"),
                pl.lit("cuda:0").alias("device")).write_parquet(path)
    new, fit = costs_from(o, path)
    assert fit.source == str(path) and fit.counts() == {"measured": 15, "fit": 0, "constant": 0}
    assert fit.ratio == 2.0 and (fit.predicted["factor"] == 2.0).all()
    assert new.frame["seconds"].to_list() == [2 * s for s in o.frame["seconds"].to_list()]
    budgets = np.array([5.0, 20.0, 80.0, 300.0])
    old_runs = run_simulation(o, ["random", "complexity-up"], None, 30, budgets, seed=3, baseline=None).runs
    new_runs = run_simulation(new, ["random", "complexity-up"], None, 30, 2 * budgets, seed=3, baseline=None).runs
    old_f, new_f = pl.from_arrow(old_runs), pl.from_arrow(new_runs)
    assert new_f["budget_s"].to_list() == [2 * b for b in old_f["budget_s"].to_list()]
    assert new_f.drop("budget_s").equals(old_f.drop("budget_s"))
    assert old_f["n_evaluated"].max() > 0  # the budgets do select something
