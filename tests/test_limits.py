"""Deployment limits (issue 16): a backbone outside the limits is never evaluated, the best possible
is the best within them, and a limit no backbone meets is one line with exit status 2 -- in
``simulate``, ``precompute search`` and ``precompute pool`` alike.

The references are hand-computed pools and plain filters written here (numbers compared to the
limit one by one), never the module's own expressions."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from shared.errors import VibesError
from shared.limits import Limits, apply, latency_table, summarise, with_deployment
from shared.oracle import Oracle
from simulate.pareto import pareto_front, thresholds
from simulate.simulation import run_simulation
from tests.conftest import random_oracle
from tests.test_search import config, fake_pool, fakes  # noqa: F401  (fixture)
from tests.test_simulate_cli import run_cli
from tests.test_sweep import data_cache  # noqa: F401  (fixture)

BUDGETS = np.array([1.0, 30.0, 300.0, 3000.0, 1e5])


def hand_oracle(rows: list[tuple[str, float, float, float, float]]) -> Oracle:
    """(backbone, params_m, gmacs, true score, seconds) -> a one-seed mlp oracle."""
    frame = pl.DataFrame([dict(dataset="hand", backbone=b, evaluator="mlp", fraction=1.0, seed=0, score=s,
                               seconds=sec, status="ok", architecture=b.split(".")[0], params_m=p, gmacs=g,
                               pretrain_dataset="ImageNet-1k", pretrain_images=1.28e6)
                          for b, p, g, s, sec in rows])
    return Oracle(frame, {"truth": "mlp", "dataset": "hand"})


HAND = [("a.x", 2.0, 0.5, 0.90, 10.0), ("b.x", 30.0, 4.0, 0.95, 20.0), ("c.x", 10.0, 1.5, 0.80, 5.0),
        ("d.x", 120.0, 20.0, 0.99, 50.0)]


# ------------------------------------------------------------------- the limits themselves
def test_limits_check_their_inputs():
    with pytest.raises(VibesError, match="--max-params must be a positive number; got -1"):
        Limits(max_params_m=-1)
    with pytest.raises(VibesError, match="--max-memory-mb must be a positive number; got 0"):
        Limits(max_memory_mb=0)
    with pytest.raises(VibesError, match="--max-latency-ms needs --latency-device"):
        Limits(max_latency_ms=5)
    assert not Limits().active
    assert Limits(max_params_m=25, max_latency_ms=5, latency_device="rtx4090").describe() == \
        "≤ 25 M params, ≤ 5 ms/image (rtx4090)"


def test_apply_hand_case_with_reasons():
    pool = pl.DataFrame({"backbone": ["a", "b", "c", "d"], "params_m": [1.0, 25.0, 30.0, None]})
    kept, dropped = apply(pool, Limits(max_params_m=25))
    assert kept["backbone"].to_list() == ["a", "b"]  # 25 <= 25 is within
    assert dict(dropped.select("backbone", "limit_reason").iter_rows()) == {"c": "params_m 30.0 > 25",
                                                                          "d": "params_m unknown"}
    assert summarise(dropped) == "1 params_m over the limit, 1 params_m unknown"
    with pytest.raises(VibesError, match=r"no backbone of the pool \(4\) meets the limits ≤ 0.5 M params"):
        apply(pool, Limits(max_params_m=0.5))


def test_latency_tables_file_and_timm_benchmark(tmp_path):
    # a file `precompute latency --out` writes: matched by backbone name
    (tmp_path / "lat.csv").write_text("backbone,latency_ms,memory_mb,error\na.x,1.5,300,\nb.x,,,"
                                      "RuntimeError: boom\n")
    table = latency_table(str(tmp_path / "lat.csv"))
    pool = pl.DataFrame({"backbone": ["a.x", "b.x", "c.x"], "params_m": [2.0, 3.0, 10.0]})
    got = with_deployment(pool, table)
    assert got["latency_ms"].to_list() == [1.5, None, None]
    assert got["memory_mb"].to_list() == [300.0, 12.0, 40.0]  # measured, else fp32 weights (4 bytes x params)
    # timm's benchmark of a device: 1000 / images per second, matched by architecture
    (tmp_path / "benchmark-infer-amp-nchw-pt240-cu124-mygpu.csv").write_text(
        "model,infer_samples_per_sec,infer_step_time,infer_batch_size,infer_img_size,param_count\n"
        "a,500.0,1,256,224,2\nc,2000.0,1,256,224,10\n")
    bench = latency_table("mygpu", tmp_path)
    got = with_deployment(pool.with_columns(pl.Series("architecture", ["a", "b", "c"])), bench)
    assert got["latency_ms"].to_list() == [pytest.approx(2.0), None, pytest.approx(0.5)]
    with pytest.raises(VibesError, match="lacks column"):
        (tmp_path / "bad.csv").write_text("name,ms\na,1\n")
        latency_table(str(tmp_path / "bad.csv"))
    with pytest.raises(VibesError, match="not found"):
        latency_table(str(tmp_path / "missing.csv"))


def test_latency_device_names_and_empty_tables_are_one_clear_line(tmp_path, monkeypatch):
    """A device timm has no benchmark for is not a download failure, a device's capitals are not a
    missing file, and an empty table says it is empty (issue 24, item 3)."""
    monkeypatch.delenv("VIBES_TIMM_RESULTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing cached: a download would be tried
    for name in ("cpu", "rtx5090", "cuda"):
        with pytest.raises(VibesError) as err:
            latency_table(name)
        msg = str(err.value)
        assert msg.startswith(f"--latency-device {name!r} is neither a latency table file nor a device of timm's "
                              "published benchmarks (rtx3090, rtx4090)"), msg
        assert "precompute latency" in msg and "offline" not in msg and "download" not in msg
    assert not (tmp_path / "cache").exists()  # refused before any download was tried
    # capitals: the same device (read here from a folder that has its file)
    folder = tmp_path / "timm"
    folder.mkdir()
    (folder / "benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv").write_text(
        "model,infer_samples_per_sec\na,500.0\nb,250.0\n")
    got = latency_table("RTX4090", folder).sort("architecture")
    assert got["architecture"].to_list() == ["a", "b"] and got["latency_ms"].to_list() == [2.0, 4.0]
    # an empty file, a header alone
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(VibesError, match=r"^latency table '.*empty.csv' is empty; expected a header backbone, "
                                         r"latency_ms\[, memory_mb\]"):
        latency_table(str(tmp_path / "empty.csv"))
    (tmp_path / "header.csv").write_text("backbone,latency_ms,memory_mb\n")
    with pytest.raises(VibesError, match="has a header but no row"):
        latency_table(str(tmp_path / "header.csv"))


def test_cli_unknown_latency_device_is_one_line(tmp_path):
    hand_oracle(HAND).write(tmp_path / "o.parquet")
    p = run_cli("--oracle", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "x"), "--max-latency-ms", "2",
                "--latency-device", "cpu", env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith("error: --latency-device 'cpu' is neither a latency table file nor a device of "
                               "timm's published benchmarks (rtx3090, rtx4090")


# ------------------------------------------------------------------------------ simulate
def runs_of(sim) -> pl.DataFrame:
    """The runs table (the engine keeps Arrow), backbone names as strings."""
    runs = sim.runs if isinstance(sim.runs, pl.DataFrame) else pl.from_arrow(sim.runs)
    return runs.with_columns(pl.col("backbone").cast(pl.String))


def _within(backbones: pl.Series, allowed: set[str]) -> bool:
    return set(backbones.drop_nulls().to_list()) <= allowed


@pytest.mark.parametrize("kind", ["params", "gmacs", "latency", "memory"])
def test_every_selection_within_each_kind_of_limit(tmp_path, kind):
    oracle = random_oracle(n_backbones=30, seeds=2, rng_seed=4)
    meta = oracle.true_scores().select("backbone", "params_m", "gmacs")
    names = meta["backbone"].to_list()
    rng = np.random.default_rng(1)
    lat = {b: float(x) for b, x in zip(names, rng.uniform(0.5, 8.0, len(names)))}
    mem = {b: float(x) for b, x in zip(names, rng.uniform(100, 4000, len(names)))}
    pl.DataFrame({"backbone": names, "latency_ms": [lat[b] for b in names],
                  "memory_mb": [mem[b] for b in names]}).write_csv(tmp_path / "lat.csv")
    table = latency_table(str(tmp_path / "lat.csv"))
    params = dict(meta.select("backbone", "params_m").iter_rows())
    gmacs = dict(meta.select("backbone", "gmacs").iter_rows())
    limits, allowed = {
        "params": (Limits(max_params_m=2), {b for b in names if params[b] <= 2}),
        "gmacs": (Limits(max_gmacs=3), {b for b in names if gmacs[b] <= 3}),
        "latency": (Limits(max_latency_ms=3, latency_device=str(tmp_path / "lat.csv")),
                    {b for b in names if lat[b] <= 3}),
        "memory": (Limits(max_memory_mb=1500, latency_device=str(tmp_path / "lat.csv")),
                   {b for b in names if mem[b] <= 1500}),
    }[kind]
    assert 0 < len(allowed) < len(names)
    sim = run_simulation(oracle, ["random", "cycling", "sh:cycling"], ["mlp", "mlp@0.1"], n_runs=40,
                         budgets=BUDGETS, seed=3, baseline=None, limits=limits, latency=table)
    assert _within(runs_of(sim)["backbone"], allowed)
    truth = oracle.true_scores().filter(pl.col("backbone").is_in(list(allowed)))
    assert sim.summary["best_possible"]["true_score"] == pytest.approx(truth["true_score"].max())
    assert sim.summary["limits"]["pool_within"] == len(allowed)
    assert sim.summary["limits"]["left_out"] == len(names) - len(allowed)
    # the largest budget evaluates every backbone: each run then selects within the limits too
    last = runs_of(sim).filter(pl.col("budget_s") == BUDGETS[-1])
    assert last["backbone"].null_count() == 0


def test_best_possible_is_the_best_within_hand_computed():
    oracle = hand_oracle(HAND)
    free = run_simulation(oracle, ["random"], ["mlp"], n_runs=5, budgets=BUDGETS, baseline=None)
    assert free.summary["best_possible"] == {"backbone": "d.x", "true_score": pytest.approx(0.99)}
    # <= 25 M params: a (2 M, 0.90) and c (10 M, 0.80) remain; a is the best
    sim = run_simulation(oracle, ["random"], ["mlp"], n_runs=5, budgets=BUDGETS, baseline=None,
                         limits=Limits(max_params_m=25))
    assert sim.summary["best_possible"] == {"backbone": "a.x", "true_score": pytest.approx(0.90)}
    # <= 5 GMACs: a, b, c remain; b (0.95) is the best; with 1e5 s every run has found it
    sim = run_simulation(oracle, ["cycling"], ["mlp"], n_runs=5, budgets=BUDGETS, baseline=None,
                         limits=Limits(max_gmacs=5))
    assert sim.summary["best_possible"]["backbone"] == "b.x"
    assert set(runs_of(sim).filter(pl.col("budget_s") == 1e5)["backbone"]) == {"b.x"}
    # memory from the fp32 weights: 4 x params MB; <= 50 MB leaves a (8 MB) and c (40 MB)
    sim = run_simulation(oracle, ["random"], ["mlp"], n_runs=5, budgets=BUDGETS, baseline=None,
                         limits=Limits(max_memory_mb=50), latency=None)
    assert sim.summary["best_possible"]["backbone"] == "a.x"


def test_cli_limits_recorded_and_no_backbone_meets_is_one_line(tmp_path):
    hand_oracle(HAND).write(tmp_path / "o.parquet")
    p = run_cli("--oracle", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "ok"), "--runs", "5",
                "--strategy", "random", "--max-params", "25", "--budgets", "1:1e5:9")
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["limits"]["max_params_m"] == 25 and summary["limits"]["pool_within"] == 2
    assert summary["best_possible"]["backbone"] == "a.x"
    runs = pl.read_parquet(tmp_path / "ok" / "runs.parquet")
    assert set(runs["backbone"].drop_nulls()) <= {"a.x", "c.x"}
    html = (tmp_path / "ok" / "report.html").read_text()
    assert "≤ 25 M params" in html
    p = run_cli("--oracle", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "none"), "--max-params", "1")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "no backbone" in lines[0] and "≤ 1 M params" in lines[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "none").exists()
    p = run_cli("--oracle", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "x"), "--max-latency-ms", "2")
    assert p.returncode == 2 and "needs --latency-device" in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------------------------- the Pareto view
def test_pareto_front_hand_case():
    pts = pl.DataFrame({"backbone": list("abcdefg"),
                        "cost": [1.0, 2.0, 2.0, 3.0, 4.0, None, 5.0],
                        "true_score": [0.5, 0.7, 0.6, 0.7, 0.9, 0.99, 0.9]})
    # a: cheapest; b beats c at equal cost; d ties b's score at a higher cost (dominated);
    # e improves; f has no cost; g ties e at a higher cost
    assert pareto_front(pts, "cost").to_list() == [True, True, False, False, True, False, False]


def test_thresholds_are_the_asked_sizes_or_round_quartiles():
    assert thresholds(pl.Series([1.0, 8.0, 30.0, 300.0]), "params_m") == [5.0, 25.0, 100.0]
    assert thresholds(pl.Series([1.0, 8.0, 20.0]), "params_m") == [5.0]
    # a pool all below 5 M: round values at the 10th, 50th, 90th percentiles (linear: 1.2, 2, 2.8 ->
    # 1, 2, 2.5), those below the largest
    assert thresholds(pl.Series([1.0, 2.0, 3.0]), "params_m") == [1.0, 2.0, 2.5]
    assert thresholds(pl.Series([2.0, 2.0]), "params_m") == []
    got = thresholds(pl.Series([0.3, 1.1, 2.2, 4.8, 9.0]), "latency_ms")
    assert got == sorted(got) and all(0.3 <= t < 9.0 for t in got)


# ------------------------------------------------------------------------ precompute search
def test_search_never_evaluates_outside_the_limits(tmp_path, data_cache, fakes, one_torch_thread):  # noqa: F811
    from precompute.search import SearchError, run_search

    pool = fake_pool(7, 0)  # params_m 1, 2, 3, 1, 2, 3, 1; gmacs of fake_02 unknown
    allowed = {b for b, p in pool.select("backbone", "params_m").iter_rows() if p <= 2}
    res = run_search(config(tmp_path, data_cache, limits=Limits(max_params_m=2)), pool, show_progress=False,
                     echo=None)
    doc = json.loads((tmp_path / "search" / "search.json").read_text())
    assert doc["finished"] == "pool" and {e["backbone"] for e in doc["trace"]} == allowed
    assert doc["pool_size"] == len(allowed) and doc["limits"]["max_params_m"] == 2
    assert {d["backbone"] for d in doc["limits"]["left_out"]} == set(pool["backbone"]) - allowed
    assert "≤ 2 M params" in (tmp_path / "search" / "report.html").read_text()
    assert res.doc["limits"]["pool_before"] == 7
    # an unknown gmacs leaves the pool under a GMACs limit; a limit nothing meets writes nothing
    res = run_search(config(tmp_path, data_cache, limits=Limits(max_gmacs=100), out=str(tmp_path / "g")), pool,
                     show_progress=False, echo=None)
    assert "fake_02.t2" not in {e["backbone"] for e in res.doc["trace"]}
    with pytest.raises(SearchError, match=r"no backbone of the pool \(7\) meets the limits ≤ 0.1 M params"):
        run_search(config(tmp_path, data_cache, limits=Limits(max_params_m=0.1), out=str(tmp_path / "n")), pool,
                   show_progress=False, echo=None)
    assert not (tmp_path / "n").exists()


# ------------------------------------------------------------------------- precompute pool
def test_pool_command_latency_limit(tmp_path, monkeypatch, capsys):
    from precompute.cli import main

    monkeypatch.chdir(tmp_path)  # the pool cache lands in tmp_path/data/cache
    (tmp_path / "lat.csv").write_text("backbone,latency_ms,memory_mb\nresnet10t.c3_in1k,4.0,90\n"
                                      "lcnet_075.ra2_in1k,0.5,10\n")  # lcnet_050: not measured
    args = ["pool", "--glob", "resnet10t*", "--glob", "lcnet_0[57]*", "--no-progress"]
    assert main([*args, "--out", "all.csv"]) == 0
    assert set(pl.read_csv("all.csv")["backbone"]) == {"resnet10t.c3_in1k", "lcnet_075.ra2_in1k",
                                                       "lcnet_050.ra2_in1k"}
    assert main([*args, "--max-latency-ms", "1", "--latency-device", "lat.csv", "--out", "fast.csv"]) == 0
    assert pl.read_csv("fast.csv")["backbone"].to_list() == ["lcnet_075.ra2_in1k"]
    # memory: the table's where measured, else 4 bytes per parameter (lcnet_050: 1.9 M -> 7.5 MB)
    assert main([*args, "--max-memory-mb", "20", "--latency-device", "lat.csv", "--out", "small.csv"]) == 0
    assert set(pl.read_csv("small.csv")["backbone"]) == {"lcnet_075.ra2_in1k", "lcnet_050.ra2_in1k"}
    capsys.readouterr()
    assert main([*args, "--max-latency-ms", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-latency-ms needs --latency-device" in err[0]


# ---------------------------------------------------------------------- precompute latency
def test_latency_measures_per_image_and_records_failures(monkeypatch):
    import precompute.backbone as backbone_mod
    from precompute.latency import measure_all
    from tests.test_search import fake_load

    monkeypatch.setattr(backbone_mod, "load_backbone", fake_load)
    table = measure_all(["fake_sleep.x", "boom_1.x", "fake_a.x"], device="cpu", batch_size=4, warmup=1,
                        repeats=3)
    rows = {r["backbone"]: r for r in table.iter_rows(named=True)}
    # fake_sleep sleeps 50 ms per batch of 4: at least 12.5 ms per image
    assert rows["fake_sleep.x"]["latency_ms"] >= 12.5 and rows["fake_sleep.x"]["error"] is None
    assert rows["fake_sleep.x"]["batch_size"] == 4 and rows["fake_sleep.x"]["input_size"] == 8
    assert rows["boom_1.x"]["latency_ms"] is None and "cannot build boom_1.x" in rows["boom_1.x"]["error"]
    assert rows["fake_a.x"]["latency_ms"] > 0 and rows["fake_a.x"]["memory_mb"] is None  # not measured on a CPU
    # the table is what --latency-device FILE reads
    got = with_deployment(pl.DataFrame({"backbone": ["fake_a.x", "boom_1.x"], "params_m": [1.0, 1.0]}), table)
    assert got["latency_ms"][1] is None and got["latency_ms"][0] == rows["fake_a.x"]["latency_ms"]


# ------------------------------------------------------------------ simulate --costs-from (the CLI)
def test_cli_costs_from_writes_costs_and_the_loo_error(tmp_path):
    """A sample timed at 3x the oracle's seconds for 8 of 12 backbones: the constant ratio is 3 with a
    leave-one-out error of 0; the other 4 are predicted at 3x; the report says whose clock it is."""
    from simulate.costs import oracle_costs

    o = random_oracle(n_backbones=12, seeds=2, rng_seed=5)
    o.write(tmp_path / "o.parquet")
    base = oracle_costs(o).sort("backbone")
    sample = base.head(8).select("backbone", (pl.col("seconds_oracle") * 3).alias("seconds"),
                                 pl.lit("a10").alias("device"))
    sample.write_csv(tmp_path / "a10.csv")
    p = run_cli("--oracle", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "out"), "--runs", "5",
                "--strategy", "random", "--costs-from", str(tmp_path / "a10.csv"), "--baseline", "arch001.tag1")
    assert p.returncode == 0, p.stderr
    costs = pl.read_parquet(tmp_path / "out" / "costs.parquet").sort("backbone")
    assert costs["backbone"].to_list() == base["backbone"].to_list()
    np.testing.assert_allclose(costs["seconds_predicted"].to_numpy(), 3 * base["seconds_oracle"].to_numpy())
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["costs"]["loo_error_constant"] == pytest.approx(0.0, abs=1e-12)
    assert summary["costs"]["n_sample"] == 8 and summary["costs"]["by_source"]["measured"] == 8
    # the whole grid moved to the target's clock: its exhaustive time is 3x the oracle's
    plain = run_cli("--oracle", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "plain"), "--runs", "5",
                    "--strategy", "random", "--baseline", "arch001.tag1", "--no-report")
    assert plain.returncode == 0, plain.stderr
    s0 = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert summary["budgets"]["max_s"] == pytest.approx(3 * s0["budgets"]["max_s"])
    assert "Costs for <b>a10</b>" in (tmp_path / "out" / "report.html").read_text()
    bad = run_cli("--oracle", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "bad"),
                  "--costs-from", str(tmp_path / "missing.csv"))
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in bad.stderr
