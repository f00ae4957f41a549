"""Live search (``precompute search``): order, budget, deadline, resume, outputs, bad inputs.

The reference the search is held to is the simulator: replaying the search's own parts (its
measured seconds and scores) with ``simulate.simulation.run_simulation`` under the same strategy,
evaluator spec and seed must select the search's incumbent at every budget.  Fast tests use fake
backbones (a seeded linear map) and fake evaluators; the ``slow`` ones run the real CLI on three
tiny timm architectures (random weights, input 32) in subprocesses.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from test_kill_resume import NAMES, cli, cli_env, spawn, sweep_home  # noqa: F401  (fixture)
from test_sweep import centroid_acc, data_cache, spread  # noqa: F401  (fixture)
from torch import nn
from virtual_clock import VirtualClock

import precompute.backbone as backbone_mod
import precompute.evaluators as evaluators_mod
import precompute.sweep as sweep_mod
from precompute import clock, faults
from precompute import parts as P
from precompute.evaluators import EvaluatorSpec
from precompute.search import (
    SearchConfig,
    SearchError,
    parse_budget,
    run_search,
    sampler_pool,
    search_order,
)
from shared.oracle import BACKBONE_META, Oracle, conform
from shared.samplers import SAMPLERS, strategy_rng
from shared.successive_halving import base_sampler

# digits' small fractions keep fewer test images than classes: expected, not news
pytestmark = [pytest.mark.filterwarnings("ignore:fraction .* keeps .* image:UserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

DATASETS = [("in1k", 1.28e6), ("in22k", 1.42e7), ("laion2b", 2.3e9), (None, None)]


# ------------------------------------------------------------------------------ fakes
def slow_centroid(train_x, train_y, test_x, test_y, n_classes, seed, epochs=8, dt=0.03, ran=None):
    """Centroid accuracy after ``epochs`` sleeps of ``dt`` seconds, a fault point after each
    (``ran``: a list that gets one item per epoch slept)."""
    for epoch in range(epochs):
        time.sleep(dt)
        if ran is not None:
            ran.append(epoch)
        faults.point("mlp-epoch")
    return centroid_acc(train_x, train_y, test_x, test_y, n_classes, seed)


def sleepy_centroid(train_x, train_y, test_x, test_y, n_classes, seed):
    """0.3 s without any fault point: a stop cannot interrupt it."""
    time.sleep(0.3)
    return centroid_acc(train_x, train_y, test_x, test_y, n_classes, seed)


FAKE_EVALUATORS = {"mlp": EvaluatorSpec("mlp", True, centroid_acc),
                   "silhouette": EvaluatorSpec("silhouette", False, spread),
                   "slow": EvaluatorSpec("slow", True, slow_centroid),
                   "sleepy": EvaluatorSpec("sleepy", True, sleepy_centroid)}


class Sleep(nn.Module):
    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


def fake_load(name, weights="pretrained", device="auto", input_size=None, pretrained_file=None):
    """``fake_*``: a linear map of the 8x8 image seeded by the name, its load measured in a clock
    span like the real one (~2 ms); ``boom_*`` raise."""
    if name.startswith("boom"):
        raise RuntimeError(f"cannot build {name}")
    with clock.span() as sp:
        time.sleep(0.002)
        torch.manual_seed(zlib.crc32(name.encode()))
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6)).eval().requires_grad_(False)
        if "sleep" in name:  # 0.05 s per batch
            model = nn.Sequential(Sleep(0.05), model)
    cfg = {"input_size": (3, 8, 8), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
           "crop_pct": 1.0, "interpolation": "bilinear", "crop_mode": "center"}
    return backbone_mod.Backbone(name, model, cfg, 6, torch.device("cpu"), sp.seconds, weights)


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(evaluators_mod, "EVALUATORS", FAKE_EVALUATORS)
    monkeypatch.setattr(backbone_mod, "load_backbone", fake_load)
    return FAKE_EVALUATORS


def fake_pool(n: int = 7, failed: int = 1) -> pl.DataFrame:
    """``n`` fake backbones with varied complexity and pretraining data, plus ``failed`` boom ones."""
    names = [f"fake_{i:02d}.t{i % 3}" for i in range(n)] + [f"boom_{i}.x" for i in range(failed)]
    k = len(names)
    ds = [DATASETS[i % len(DATASETS)] for i in range(k)]
    return pl.DataFrame({
        "backbone": names, "architecture": [x.split(".")[0] for x in names],
        "params_m": [float(1 + i % 3) for i in range(k)],
        "gmacs": [None if i == 2 else float(1 + (i * 7) % 5) for i in range(k)],
        "input_size": [8] * k, "feature_dim": [6] * k,
        "pretrain_dataset": [d for d, _ in ds], "pretrain_images": [s for _, s in ds],
        "pretrain_method": ["supervised"] * k,
    }, schema_overrides={"gmacs": pl.Float64, "pretrain_images": pl.Float64,
                         "pretrain_dataset": pl.String})


#: successive halving's rungs on digits: 0.03 for the default 0.01, which keeps 4 of its 359 test images for
#: 10 classes (refused: precompute.datasets.check_fractions)
SH_FRACTIONS = (0.03, 0.1, 1.0)


def config(tmp_path, data_cache, **kw) -> SearchConfig:  # noqa: F811
    base = dict(dataset="digits", budget="1h", strategy="cycling", evaluator="mlp@0.1",
                out=str(tmp_path / "search"), weights="random", device="cpu", cache_dir=data_cache,
                sh_fractions=SH_FRACTIONS)
    base.update(kw)
    return SearchConfig(**base)


# ----------------------------------------------------------------------- the reference
def eq4_incumbents(trace: list[dict], budgets: np.ndarray, workers: int = 1) -> list[str | None]:
    """Eqs. 3-4 written out on the trace's own scores and seconds: the evaluations whose summed
    seconds are <= t, and the best score among them, the earlier winning ties (successive halving:
    the best at the highest fraction evaluated)."""
    out = []
    if workers > 1:  # K workers: what ended by t counts; ties to the earlier end, then position
        for t in budgets:
            ended = [(e["fraction"], e["score"], -e["end_s"], -i, e["backbone"]) for i, e in enumerate(trace)
                     if e["end_s"] <= t and e["score"] is not None]
            out.append(max(ended)[-1] if ended else None)
        return out
    for t in budgets:
        total, best = 0.0, None
        for e in trace:
            total += e["seconds"]
            if total > t:
                break
            if e["score"] is not None and (best is None or (e["fraction"], e["score"]) > best[1:]):
                best = (e["backbone"], e["fraction"], e["score"])
        out.append(best[0] if best else None)
    return out


def simulator_selections(parts_dir: Path, pool: pl.DataFrame, strategy: str, spec: str, seed: int,
                         budgets: np.ndarray, sh: dict | None = None, fidelities=(),
                         workers: int = 1) -> tuple[list, list[str]]:
    """``simulate`` on the search's parts plus one stub truth row per pool backbone (so the
    simulator's pool is the whole search pool; the stubs' truth scores play no part in the
    selection): (selected backbone at each budget, the simulator's order)."""
    from shared.successive_halving import SHConfig
    from simulate.simulation import run_simulation

    frames = [P.read_part(p)[0] for p in sorted((parts_dir / "digits").glob("*.parquet"))]
    meta = [c for c in BACKBONE_META if c in pool.columns]
    stub = conform(pool.select("backbone", *meta).with_columns(
        dataset=pl.lit("digits"), evaluator=pl.lit("stub-truth"), fraction=pl.lit(1.0),
        seed=pl.lit(0), score=pl.lit(0.5), seconds=pl.lit(1.0), status=pl.lit("ok")))
    if sh or workers > 1:
        # the simulator's ladder is the oracle's fractions up to the spec's (and its seed the spec's): rungs
        # the search did not reach get rows too, each too dear (1e9 s) to fall inside any budget of the trace;
        # on K workers, so do evaluations that were not counted (stopped): their workers stay busy
        have = pl.concat(frames).select("backbone", "fraction")
        for f in fidelities:
            todo = pool.filter(~pl.col("backbone").is_in(have.filter(pl.col("fraction") == f)["backbone"].implode()))
            stub = pl.concat([stub, conform(todo.select("backbone", *meta).with_columns(
                dataset=pl.lit("digits"), evaluator=pl.lit(spec.split("@")[0]), fraction=pl.lit(f),
                seed=pl.lit(0), score=pl.lit(0.0), seconds=pl.lit(1e9), status=pl.lit("ok")))])
    oracle = Oracle(pl.concat([*frames, stub]), {"truth": "stub-truth", "dataset": "digits"}).validate()
    sim = run_simulation(oracle, [strategy], [spec], n_runs=1, budgets=budgets, seed=seed, baseline=None,
                         sh=SHConfig(sh["eta"], sh["chunk"], sh["promotion_cost"]) if sh else None,
                         workers=(workers,) if workers > 1 else None)
    runs = pl.from_arrow(sim.runs).with_columns(pl.col("backbone").cast(pl.String)).sort("budget_s")
    assert runs.get_column("budget_s").to_list() == budgets.tolist()
    spool = oracle.true_scores()
    order = SAMPLERS[base_sampler(strategy)].orders(spool, 1, strategy_rng(seed, strategy, spec))[0]
    return runs.get_column("backbone").to_list(), [spool["backbone"][int(i)] for i in order]


def replay_budgets(trace: list[dict]) -> np.ndarray:
    """Every cumulative time of the trace and the float just below each (the Eq. 4 boundary)."""
    cums = [e.get("end_s", e["cumulative_seconds"]) for e in trace]
    return np.unique(np.array(cums + [np.nextafter(c, -np.inf) for c in cums if c > 0]))


def assert_simulator_agrees(doc: dict, parts_dir: Path, pool: pl.DataFrame) -> None:
    trace = doc["trace"]
    k = doc.get("workers", 1)
    budgets = replay_budgets(trace)
    expected = eq4_incumbents(trace, budgets, k)
    got, order = simulator_selections(parts_dir, pool, doc["strategy"], doc["evaluator"], doc["seed"], budgets,
                                      doc.get("sh"), doc["fidelities"], k)
    assert got == expected, list(zip(budgets.tolist(), got, expected))
    if not doc.get("sh"):
        assert [e["backbone"] for e in trace] == order[:len(trace)]  # the search followed the simulator's run
    # and the trace's own incumbent column is Eq. 3 at each evaluation's end
    at_ends = eq4_incumbents(trace, np.array([e["end_s"] for e in trace]), k)
    assert [e["incumbent"] for e in trace] == at_ends
    final = eq4_incumbents(trace, np.array([max((e["end_s"] for e in trace), default=0.0)]), k)[0]
    best = max(((e["fraction"], e["score"]) for e in trace if e["score"] is not None), default=None)
    assert doc["incumbent"] == (None if best is None else {"backbone": final, "score": best[1]})
    # the timeline: each evaluation on one of the K workers, in order, none ending past the budget
    assert all(0 <= e["worker"] < k and e["end_s"] <= doc["budget_s"] for e in trace)
    starts = [e["start_s"] for e in trace]
    assert starts == sorted(starts)


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, seconds", [("90s", 90), ("45m", 2700), ("2h", 7200), ("1d", 86400),
                                           ("1h30m", 5400), ("1.5h", 5400), ("120", 120), (" 2H ", 7200),
                                           ("0.25s", 0.25), ("1d2h3m4s", 93784), (7.5, 7.5)])
def test_budget_parsing(text, seconds):
    assert parse_budget(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "2x", "h", "-5s", "0", "0s", "1h 30", "5s5", "nan", "inf", "m30",
                                  "1.2.3h", "-1"])
def test_bad_budgets_say_what_is_expected(text):
    with pytest.raises(SearchError, match="--budget .*expected a positive duration such as 90s, 45m, 10min, 2h, 1d"):
        parse_budget(text)


# ------------------------------------------------------------------------------ budget
def test_budget_stops_on_measured_seconds_at_points_and_is_not_an_exception(monkeypatch):
    """On a virtual clock (what :mod:`precompute.clock` reads advances only by the test's sleeps),
    so every measured second is an exact, hand-computed value (all steps dyadic: no rounding)."""
    assert not issubclass(clock.OverBudget, Exception) and issubclass(clock.OverBudget, BaseException)
    virtual = VirtualClock()
    monkeypatch.setattr(clock, "time", virtual)  # clock reads time.perf_counter only
    faults.point("mlp-epoch")  # no budget: nothing
    with clock.budget(0.5) as meter:
        virtual.sleep(8.0)  # untimed bookkeeping (outside every span) never counts
        assert meter.spent() == 0.0
        faults.point("extract-batch")
        with clock.span() as first:
            virtual.sleep(0.125)
        with clock.span():
            virtual.sleep(0.125)
        assert first.seconds == 0.125 and meter.spent() == meter.closed == 0.25
        faults.point("extract-batch")  # 0.25 measured s < 0.5: nothing
        steps = 0
        with pytest.raises(clock.OverBudget) as err:
            with clock.span():
                for _ in range(1000):
                    virtual.sleep(0.0625)
                    steps += 1
                    assert meter.spent() == 0.25 + steps * 0.0625  # closed spans + the open one so far
                    faults.point("mlp-epoch")
    stop = err.value
    # 4 steps reach the budget exactly (0.5, not past it: no stop); the 5th passes it and is stopped
    # at its own point: one step late, not more
    assert steps == 5 and stop.where == "mlp-epoch" and stop.limit == 0.5
    assert stop.spent == 0.5625 and stop.latency == 0.0625
    assert meter.closed == stop.spent  # the span closed with what it spent
    assert clock._STATE.meter is None  # restored
    faults.point("mlp-epoch")
    with clock.budget(1.0), pytest.raises(RuntimeError, match="not nestable"):
        with clock.budget(1.0):
            pass
    with clock.budget(0.25) as meter:  # an inner span is part of its outer span, counted once
        with clock.span() as outer:
            virtual.sleep(0.0625)
            with clock.span() as inner:
                virtual.sleep(0.125)
        assert inner.seconds == 0.125 and meter.closed == outer.seconds == 0.1875  # not 0.3125
        clock.check("inside")  # 0.1875 <= 0.25
        with clock.span():
            virtual.sleep(0.125)
        with pytest.raises(clock.OverBudget) as err:
            clock.check("after")
        assert err.value.spent == 0.3125 and err.value.where == "after"


class _Tripwire:
    """Stands in for what faults.point must not touch without a budget or a plan."""

    def __getattr__(self, name):
        raise AssertionError(f"faults.point read {name} with no budget and no fault plan")


def test_point_stays_cheap_without_budget_or_plan(monkeypatch):
    """Without a budget and a fault plan, faults.point is one thread-local read and one dict lookup:
    it reads no clock, counts no visit and sends nothing (the cost structure, not a timing: a speed
    figure belongs in bench/)."""
    reads = {"meter": 0, "plan": 0}

    class State:  # clock._STATE with no budget, counting the reads of its meter
        depth = 0

        @property
        def meter(self):
            reads["meter"] += 1
            return None

    class Plan(dict):  # faults._PLAN with nothing planned, counting its lookups
        def get(self, *a):
            reads["plan"] += 1
            return super().get(*a)

    monkeypatch.setattr(clock, "time", _Tripwire())  # a clock read would raise
    monkeypatch.setattr(clock, "_STATE", State())
    monkeypatch.setattr(faults, "_PLAN", Plan())
    monkeypatch.setattr(faults, "os", _Tripwire())  # no environment read, no file, no signal
    seen = dict(faults._SEEN)
    n = 1000
    for _ in range(n):
        for name in faults.POINTS:
            faults.point(name)
    assert reads == {"meter": n * len(faults.POINTS), "plan": n * len(faults.POINTS)}
    assert faults._SEEN == seen  # no visit counted


def test_sweep_lets_a_stop_through_instead_of_a_failed_row(fakes, data_cache, monkeypatch):  # noqa: F811
    """``evaluate_backbone``'s ``except Exception`` must not turn a stop into a failed row, neither
    in the extraction (extract-batch) nor in the fit (mlp-epoch); the real head has the point too."""
    from precompute.datasets import load_dataset, subset_plan
    from precompute.sweep import SweepConfig, extraction_plan

    ds = load_dataset("digits", cache_dir=data_cache)
    plans = subset_plan(ds, [0.1], [0])
    images = np.concatenate([ds.train_images, ds.test_images])
    plan = extraction_plan(plans, (0.1,), len(ds.train_labels), len(images))
    row = fake_pool(1, 0).row(0, named=True)
    ran: list[int] = []
    monkeypatch.setitem(FAKE_EVALUATORS, "slower", EvaluatorSpec(
        "slower", True, lambda *a, **k: slow_centroid(*a, **k, epochs=100, dt=0.02, ran=ran)))
    cfg = SweepConfig(dataset="digits", fractions=(0.1,), seeds=1, evaluators=("slower",), weights="random",
                      device="cpu", batch_size=16, cache_dir=data_cache)
    with monkeypatch.context() as m:  # a virtual clock: the fakes' sleeps are the only seconds measured
        virtual = VirtualClock()
        m.setattr(time, "perf_counter", virtual.perf_counter)
        m.setattr(time, "sleep", virtual.sleep)
        with pytest.raises(clock.OverBudget) as err:
            with clock.budget(0.0):  # the measured load alone (0.002 s) passes it: stopped right after the load
                sweep_mod.evaluate_backbone(cfg, row["backbone"], row, ds, plans, plan, images)
        assert err.value.where == "backbone-load" and err.value.spent == pytest.approx(0.002)
        with pytest.raises(clock.OverBudget) as err:
            with clock.budget(0.1):  # 12 batches of 16 images, 0.05 s each: the 2nd passes 0.1
                sweep_mod.evaluate_backbone(cfg, "fake_sleep.x", row, ds, plans, plan, images)
        assert err.value.where == "extract-batch" and err.value.spent == pytest.approx(0.002 + 2 * 0.05)
        assert ran == []  # the fit never started
        with pytest.raises(clock.OverBudget) as err:
            with clock.budget(1.0):  # passes inside the 2 s fit (100 epochs of 0.02 s)
                sweep_mod.evaluate_backbone(cfg, row["backbone"], row, ds, plans, plan, images)
    # stopped in the fit at the first epoch past the budget: 0.002 s load + 50 epochs, of its 100
    assert err.value.where == "mlp-epoch" and len(ran) == 50
    assert err.value.spent == pytest.approx(0.002 + 50 * 0.02) and err.value.spent > err.value.limit == 1.0
    x = torch.randn(40, 5)
    y = torch.arange(40) % 3
    with pytest.raises(clock.OverBudget) as err:
        with clock.budget(0.0), clock.span():
            evaluators_mod.mlp_score(x, y, x, y, n_classes=3, seed=0)
    assert err.value.where == "mlp-epoch"


# ------------------------------------------------------------------- order = simulator
def test_sampler_pool_is_sorted_with_oracle_types():
    pool = fake_pool().reverse()
    sp = sampler_pool(pool)
    assert sp.get_column("backbone").to_list() == sorted(pool.get_column("backbone").to_list())
    assert sp.columns == ["backbone", *BACKBONE_META]
    assert sp.get_column("imagenet_top1").null_count() == sp.height  # not in this pool
    assert sp.schema["input_size"] == pl.Int32 and sp.schema["pretrain_images"] == pl.Float64


def test_the_searched_subset_is_the_sweeps_seed_0_subset(fakes, data_cache, tmp_path):  # noqa: F811
    """A one-fraction, one-seed config uses the very images of the sweep's seed 0 at that
    fraction, so a search row and the sweep's seed-0 row agree (sizes and score)."""
    from precompute.datasets import load_dataset, subset_plan
    from precompute.sweep import SweepConfig, run_sweep

    ds = load_dataset("digits", cache_dir=data_cache)
    alone = subset_plan(ds, [0.1], [0])[0][0.1]
    full = subset_plan(ds, [1.0, 0.1, 0.01], [0, 1, 2])[0][0.1]
    for a, b in zip(alone, full):
        np.testing.assert_array_equal(a, b)
    pool = fake_pool(3, 0)
    res = run_search(config(tmp_path, data_cache), pool, show_progress=False, echo=None)
    cfg = SweepConfig(dataset="digits", fractions=(1.0, 0.1, 0.03), seeds=2, evaluators=("mlp",),
                      weights="random", device="cpu", parts_dir=str(tmp_path / "sweep"), cache_dir=data_cache)
    run_sweep(cfg, pool, show_progress=False, echo=None)
    for e in res.doc["trace"]:
        mine = P.read_part(P.part_path(tmp_path / "search" / "parts", "digits", e["backbone"]))[0]
        theirs = P.read_part(P.part_path(tmp_path / "sweep", "digits", e["backbone"]))[0].filter(
            (pl.col("fraction") == 0.1) & (pl.col("seed") == 0))
        assert mine.height == 1 and theirs.height == 1
        for col in ("n_train", "n_test", "evaluator", "fraction", "seed", "status"):
            assert mine[col][0] == theirs[col][0], col
        assert mine["n_train"][0] == len(full[0]) and mine["n_test"][0] == len(full[1])
        assert mine["score"][0] == pytest.approx(theirs["score"][0], abs=1e-9)


@pytest.mark.parametrize("strategy, seed", [("cycling", 0), ("cycling", 7), ("random", 3),
                                            ("complexity-up", 0), ("complexity-down", 1),
                                            ("dataset-size-down", 5)])
def test_simulator_replaying_the_trace_selects_the_same_incumbent(fakes, data_cache, tmp_path,  # noqa: F811
                                                                   strategy, seed):
    pool = fake_pool(7, 1)
    res = run_search(config(tmp_path, data_cache, strategy=strategy, seed=seed), pool,
                     show_progress=False, echo=None)
    doc = res.doc
    assert doc["n_evaluated"] == pool.height and doc["finished"] == "pool"  # 1 h is plenty here
    assert doc["n_failed"] == 1
    failed = [e for e in doc["trace"] if e["status"] == "failed"]
    assert failed[0]["backbone"] == "boom_0.x" and failed[0]["score"] is None
    assert failed[0]["error"].startswith("RuntimeError: cannot build boom_0.x")
    assert search_order(pool, strategy, "mlp@0.1", seed) == [e["backbone"] for e in doc["trace"]]
    assert_simulator_agrees(doc, Path(res.out) / "parts", pool)
    # the budget counts each part's row seconds, summed in order
    total = 0.0
    for e in doc["trace"]:
        frame = P.read_part(P.part_path(Path(res.out) / "parts", "digits", e["backbone"]))[0]
        total += float(frame["seconds"].fill_null(0.0)[0])
        assert e["seconds"] == float(frame["seconds"].fill_null(0.0)[0])
        assert e["cumulative_seconds"] == total
    assert doc["spent_s"] == total <= doc["budget_s"]


@pytest.mark.parametrize("promotion", ["cold", "incremental"])
@pytest.mark.parametrize("strategy, seed, evaluator, budget", [("sh:cycling", 0, "mlp", "1h"),
                                                               ("sh:random", 4, "mlp", "1h"),
                                                               ("sh:complexity-up", 0, "mlp@0.1", "1h"),
                                                               ("sh:cycling", 2, "slow", "1.5s")])
def test_successive_halving_live_replays_in_the_simulator(fakes, data_cache, tmp_path,  # noqa: F811
                                                          strategy, seed, evaluator, budget, promotion):
    """``sh:<sampler>`` live: chunks of eta^(L-1) backbones, the top 1/eta promoted per rung, each
    promotion paid as ``promotion`` says (cold: a fresh evaluation; incremental: the lower fraction's
    features kept, load + the added images' extraction + fit); ``simulate`` with the same eta, chunk
    and promotion cost selects the same incumbent at every budget of the trace, also when the budget
    stops the search mid-way."""
    pool = fake_pool(11, 1)
    res = run_search(config(tmp_path, data_cache, strategy=strategy, seed=seed, evaluator=evaluator,
                            budget=budget, promotion_cost=promotion), pool, show_progress=False, echo=None)
    doc = res.doc
    top = 1.0 if "@" not in evaluator else 0.1
    assert doc["fidelities"] == ([0.03, 0.1, 1.0] if top == 1.0 else [0.03, 0.1])
    n_levels = len(doc["fidelities"])
    assert doc["sh"] == {"eta": 3, "chunk": 3 ** (n_levels - 1), "promotion_cost": promotion}
    parts = Path(res.out) / "parts"
    for e in doc["trace"]:  # each charge is the promotion rule applied to the part's rows
        rows = {r["fraction"]: r for r in P.read_part(P.part_path(parts, "digits", e["backbone"]))[0]
                .iter_rows(named=True)}
        row = rows[e["fraction"]]
        lv = doc["fidelities"].index(e["fraction"])
        lower = rows.get(doc["fidelities"][lv - 1]) if lv else None
        if lv and promotion == "incremental" and lower["status"] == "ok":
            assert e["promotion"] == "incremental"
            delta = max(0.0, row["extract_seconds"] - lower["extract_seconds"])
            want = row["load_seconds"] + delta + row["fit_seconds"]
            assert e["seconds"] == pytest.approx(want, rel=1e-12) and e["seconds"] < row["seconds"]
        else:
            assert e["seconds"] == row["seconds"] and e.get("promotion") == ("cold" if lv else None)
    if budget == "1h":  # the whole schedule: 12 backbones in chunks of 9 and 3
        chunk = doc["sh"]["chunk"]
        sizes = [9, 3, 1] if n_levels == 3 else [3, 1]
        per_rung = [len([e for e in doc["trace"] if e["fraction"] == f]) for f in doc["fidelities"]]
        rest = [3, 1, 1] if n_levels == 3 else [3, 1]
        assert per_rung == [a * (12 // chunk) + (b if 12 % chunk else 0) for a, b in zip(sizes, rest)]
        assert doc["finished"] == "pool" and doc["n_backbones"] == 12
        inc = doc["incumbent"]["backbone"]
        assert any(e["backbone"] == inc and e["fraction"] == top for e in doc["trace"])
    else:
        assert doc["stopped"] is not None and doc["spent_s"] <= 1.5
    assert_simulator_agrees(doc, Path(res.out) / "parts", pool)
    for e in doc["trace"]:  # one part per backbone, a row per rung it reached
        rows = P.read_part(P.part_path(Path(res.out) / "parts", "digits", e["backbone"]))[0]
        assert rows.filter(pl.col("fraction") == e["fraction"]).height == 1
    if budget == "1h" and top == 1.0:  # truth rows (mlp at 1.0) for the backbones that reached the top
        report = P.merge("digits", Path(res.out) / "parts", tmp_path / "sh.parquet")
        assert report.n_backbones == 12


# ------------------------------------------------------------------------ K workers
@pytest.fixture
def two_threads():
    """Two Dask workers as threads of this process (the fakes' monkeypatches reach them)."""
    from precompute.search.workers import DaskWorkers, local_cluster

    workers = DaskWorkers(local_cluster(2, "cpu", processes=False), 2, "2 threads")
    yield workers
    workers.close()


@pytest.mark.parametrize("strategy, evaluator, budget, promotion", [
    ("cycling", "mlp@0.1", "1h", "cold"), ("random", "slow", "1.2s", "cold"),
    ("sh:cycling", "mlp", "1h", "cold"), ("sh:random", "mlp", "1h", "incremental"),
    ("sh:cycling", "slow", "1.5s", "incremental")])
def test_k_workers_live_replays_in_the_simulator(fakes, data_cache, tmp_path, two_threads,  # noqa: F811
                                                 strategy, evaluator, budget, promotion):
    """On 2 workers (Dask) each evaluation's measured seconds are laid on its worker's timeline:
    evaluations start in order on the worker free earliest, those ending by the budget count, and
    ``simulate --workers 2`` on the parts selects the same incumbent at every budget of the trace."""
    pool = fake_pool(11, 1)
    res = run_search(config(tmp_path, data_cache, strategy=strategy, evaluator=evaluator, budget=budget, workers=2,
                            promotion_cost=promotion), pool, show_progress=False, echo=None, workers=two_threads)
    doc = res.doc
    assert doc["workers"] == 2 and {e["worker"] for e in doc["trace"]} == {0, 1}
    for e in doc["trace"]:
        assert e["end_s"] == pytest.approx(e["start_s"] + e["seconds"], rel=1e-12, abs=1e-12)
    # the timeline, literally: no worker runs two evaluations at once, starts keep the order, and a
    # sampler's evaluation starts when the worker free earliest (ties: the lowest index) frees up
    last_end = {0: 0.0, 1: 0.0}
    prev_start = 0.0
    for e in doc["trace"]:
        assert e["start_s"] >= last_end[e["worker"]] and e["start_s"] >= prev_start
        if not strategy.startswith("sh:") and not doc["not_counted"]:  # (a stopped one holds its worker)
            assert (e["start_s"], e["worker"]) == min((max(t, prev_start), w) for w, t in last_end.items())
        last_end[e["worker"]], prev_start = e["end_s"], e["start_s"]
    if budget == "1h":
        assert doc["finished"] == "pool" and doc["not_counted"] == []
    else:
        assert doc["not_counted"] and doc["stopped"]["reason"] in ("budget", "over budget")
    assert_simulator_agrees(doc, Path(res.out) / "parts", pool)
    # a rerun rebuilds the same timeline from the parts and evaluates nothing new
    again = run_search(config(tmp_path, data_cache, strategy=strategy, evaluator=evaluator, budget=budget,
                              workers=2, promotion_cost=promotion), pool, show_progress=False, echo=None,
                       workers=two_threads)
    assert again.doc["trace"] == doc["trace"] and again.new_evaluations == 0


def test_k_workers_really_run_at_once(fakes, data_cache, tmp_path, two_threads, monkeypatch):  # noqa: F811
    """Two workers run two evaluations at the same time (for a sampler, nothing waits: the next
    backbone of the order is known; for sh, a rung's evaluations run side by side; for asha, the
    next backbones of the order run ahead while the walk waits for an outcome)."""
    import threading

    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def counting(*a, **k):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        try:
            return slow_centroid(*a, **k)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setitem(FAKE_EVALUATORS, "counting", EvaluatorSpec("counting", True, counting))
    for strategy in ("cycling", "sh:random", "asha:cycling"):
        state["most"] = 0
        run_search(config(tmp_path, data_cache, strategy=strategy, evaluator="counting", workers=2,
                          out=str(tmp_path / strategy)), fake_pool(6, 0), show_progress=False, echo=None,
                   workers=two_threads)
        assert state["most"] == 2, strategy


# --------------------------------------------------------------------- stops and resume
def test_budget_stops_an_evaluation_and_a_rerun_does_nothing_new(fakes, data_cache, tmp_path,  # noqa: F811
                                                                 monkeypatch):
    pool = fake_pool(6, 0)
    cfg = config(tmp_path, data_cache, evaluator="slow", budget="0.9s")
    res = run_search(cfg, pool, show_progress=False, echo=None)
    doc = res.doc
    out = Path(res.out)
    st = doc["stopped"]
    assert st["reason"] == "budget" and st["point"] in ("mlp-epoch", "extract-batch")
    assert 1 <= doc["n_evaluated"] <= 3  # each takes >= 0.24 s
    assert doc["spent_s"] <= doc["budget_s"] == 0.9
    assert st["remaining_s"] == pytest.approx(0.9 - doc["spent_s"])
    # how late the stop came, by its definition (measured past the seconds it had), never a wall-clock
    # bound: that it comes at the first point past the budget, one step late, is held exactly on a
    # virtual clock by test_budget_stops_on_measured_seconds_at_points_and_is_not_an_exception
    assert st["measured_s"] > st["remaining_s"] and st["latency_s"] == st["measured_s"] - st["remaining_s"] > 0
    assert st["wall_s"] >= st["measured_s"]
    assert st["backbone"] == search_order(pool, "cycling", "slow", 0)[doc["n_evaluated"]]
    assert not P.part_path(out / "parts", "digits", st["backbone"]).exists()  # a stop writes nothing
    assert_simulator_agrees(doc, out / "parts", pool)
    before = (out / "search.json").read_bytes()

    def no_eval(*a, **k):
        raise AssertionError("a rerun with nothing new to do evaluated a backbone")

    monkeypatch.setattr(sweep_mod, "evaluate_backbone", no_eval)
    again = run_search(cfg, pool, show_progress=False, echo=None)
    assert again.new_evaluations == 0 and again.resumed == doc["n_evaluated"]
    assert (out / "search.json").read_bytes() == before
    monkeypatch.undo()
    monkeypatch.setattr(evaluators_mod, "EVALUATORS", FAKE_EVALUATORS)
    monkeypatch.setattr(backbone_mod, "load_backbone", fake_load)
    more = run_search(config(tmp_path, data_cache, evaluator="slow", budget="1m"), pool,
                      show_progress=False, echo=None).doc
    assert more["trace"][:doc["n_evaluated"]] == doc["trace"]  # the old trace is the prefix, seconds included
    assert more["n_evaluated"] == pool.height and more["stopped"] is None
    assert more["trace"][doc["n_evaluated"]]["backbone"] == st["backbone"]
    assert_simulator_agrees(more, out / "parts", pool)
    # a smaller budget than the parts cover: the trace is cut where Eq. 4 cuts it, nothing is evaluated
    monkeypatch.setattr(sweep_mod, "evaluate_backbone", no_eval)
    cut = more["trace"][1]["cumulative_seconds"]
    less = run_search(config(tmp_path, data_cache, evaluator="slow", budget=cut), pool,
                      show_progress=False, echo=None).doc
    assert less["trace"] == more["trace"][:2]
    assert less["stopped"]["reason"] == "over budget" and less["stopped"]["from_part"]


def test_a_budget_just_above_one_evaluations_measured_seconds_completes_it(fakes, data_cache, tmp_path):  # noqa: F811
    """The budget reads the evaluation's measured seconds, not the wall clock: with 1.15 x what one
    evaluation of a slow fake backbone measured (12 extraction batches of 0.05 s, 8 epochs of 0.03 s),
    the same evaluation completes and counts; its trace entry says its wall seconds too."""
    pool = fake_pool(1, 0).with_columns(pl.lit("fake_sleep.x").alias("backbone"))
    first = run_search(config(tmp_path, data_cache, evaluator="slow", budget="1h", batch_size=16,
                              out=str(tmp_path / "calibrate")), pool, show_progress=False, echo=None).doc
    (e,) = first["trace"]
    assert e["status"] == "ok" and e["seconds"] > 0.8 and e["wall_seconds"] >= e["seconds"]
    doc = run_search(config(tmp_path, data_cache, evaluator="slow", budget=1.15 * e["seconds"], batch_size=16,
                            out=str(tmp_path / "tight")), pool, show_progress=False, echo=None).doc
    assert doc["n_evaluated"] == 1 and doc["stopped"] is None and doc["finished"] == "pool", doc["stopped"]
    assert doc["spent_s"] <= doc["budget_s"]


class CountingLinear(nn.Module):
    """Counts the images it is given (the extraction's work)."""

    seen = 0

    def forward(self, x):
        CountingLinear.seen += x.shape[0]
        return x


def test_a_train_only_evaluator_extracts_no_test_image(fakes, data_cache, tmp_path, monkeypatch):  # noqa: F811
    """silhouette scores the train split only: a live search extracts the train images of its subset
    and nothing else, so what it pays is what the oracle row charges."""
    from precompute.datasets import load_dataset, subset_plan

    def counting_load(*a, **k):
        bb = fake_load(*a, **k)
        bb.model = nn.Sequential(CountingLinear(), bb.model)
        return bb

    monkeypatch.setattr(backbone_mod, "load_backbone", counting_load)
    ds = load_dataset("digits", cache_dir=data_cache)
    n_train, n_test = (len(x) for x in subset_plan(ds, [0.1], [0])[0][0.1])
    for evaluator, want in (("silhouette@0.1", n_train), ("mlp@0.1", n_train + n_test)):
        CountingLinear.seen = 0
        doc = run_search(config(tmp_path, data_cache, evaluator=evaluator, out=str(tmp_path / evaluator)),
                         fake_pool(1, 0), show_progress=False, echo=None).doc
        assert doc["n_evaluated"] == 1 and CountingLinear.seen == want, (evaluator, CountingLinear.seen, want)


def test_an_evaluation_finishing_past_the_budget_does_not_count(fakes, data_cache, tmp_path,  # noqa: F811
                                                                monkeypatch):
    pool = fake_pool(6, 0)
    cfg = config(tmp_path, data_cache, evaluator="sleepy", budget="1s")
    doc = run_search(cfg, pool, show_progress=False, echo=None).doc
    assert 1 <= doc["n_evaluated"] <= 3 and doc["spent_s"] <= 1  # each takes >= 0.3 s
    st = doc["stopped"]
    assert st["reason"] == "over budget" and not st["from_part"] and st["seconds"] > st["remaining_s"]
    assert not P.part_path(tmp_path / "search" / "parts", "digits", st["backbone"]).exists()
    monkeypatch.setattr(sweep_mod, "evaluate_backbone", lambda *a, **k: pytest.fail("evaluated again"))
    assert run_search(cfg, pool, show_progress=False, echo=None).doc == doc


def test_a_budget_below_one_evaluation_is_an_error_and_writes_nothing(fakes, data_cache, tmp_path):  # noqa: F811
    pool = fake_pool(3, 0)
    for ev, budget, what in (("slow", "0.05s", "stopped after"), ("sleepy", "0.1s", "needs")):
        cfg = config(tmp_path, data_cache, evaluator=ev, budget=budget, out=str(tmp_path / "new" / "dir"))
        with pytest.raises(SearchError, match=f"budget .* is below one evaluation: the first backbone "
                                              f"fake_.* {what}"):
            run_search(cfg, pool, show_progress=False, echo=None)
        assert not (tmp_path / "new").exists()


def test_final_is_the_sweeps_full_evaluation_outside_the_budget(fakes, data_cache, tmp_path,  # noqa: F811
                                                                monkeypatch):
    from precompute.sweep import SweepConfig, run_sweep

    pool = fake_pool(4, 0)
    doc = run_search(config(tmp_path, data_cache, final="mlp"), pool, show_progress=False, echo=None).doc
    fin = doc["final"]
    inc = doc["incumbent"]["backbone"]
    assert fin["backbone"] == inc and fin["status"] == "ok" and fin["source"] == "final/ part"
    assert doc["spent_s"] == sum(e["seconds"] for e in doc["trace"])  # not in the budget
    cfg = SweepConfig(dataset="digits", fractions=(1.0,), seeds=1, evaluators=("mlp",), weights="random",
                      device="cpu", parts_dir=str(tmp_path / "sweep"), cache_dir=data_cache)
    run_sweep(cfg, pool.filter(pl.col("backbone") == inc), show_progress=False, echo=None)
    ref = P.read_part(P.part_path(tmp_path / "sweep", "digits", inc))[0]
    assert fin["score"] == pytest.approx(ref["score"][0], abs=1e-9)
    assert fin["n_train"] == ref["n_train"][0] == 1438 and fin["n_test"] == ref["n_test"][0] == 359
    monkeypatch.setattr(sweep_mod, "evaluate_backbone", lambda *a, **k: pytest.fail("evaluated again"))
    again = run_search(config(tmp_path, data_cache, final="mlp"), pool, show_progress=False, echo=None).doc
    assert again["final"] == fin


def test_final_of_a_full_fraction_search_is_its_own_row(fakes, data_cache, tmp_path):  # noqa: F811
    pool = fake_pool(3, 0)
    doc = run_search(config(tmp_path, data_cache, evaluator="mlp", final="mlp"), pool,
                     show_progress=False, echo=None).doc
    assert doc["final"]["source"] == "the search's own evaluation"
    assert doc["final"]["score"] == doc["incumbent"]["score"]
    assert not (tmp_path / "search" / "final").exists()


def test_full_fraction_search_parts_merge_into_an_oracle_simulate_reads(fakes, data_cache, tmp_path):  # noqa: F811
    from simulate.cli import main as simulate_main

    pool = fake_pool(5, 1)
    run_search(config(tmp_path, data_cache, evaluator="mlp"), pool, show_progress=False, echo=None)
    report = P.merge("digits", tmp_path / "search" / "parts", tmp_path / "o.parquet")
    assert report.n_backbones == 6 and report.failed["backbone"].to_list() == ["boom_0.x"]
    assert simulate_main(["--oracle", str(tmp_path / "o.parquet"), "--strategy", "cycling", "--runs", "5",
                          "--out", str(tmp_path / "sim"), "--no-report", "--baseline", "fake_00.t0"]) == 0


def test_outputs_search_json_and_report(fakes, data_cache, tmp_path):  # noqa: F811
    pool = fake_pool(5, 1)
    res = run_search(config(tmp_path, data_cache, budget="45m"), pool, show_progress=False, echo=None)
    doc = json.loads((Path(res.out) / "search.json").read_text())
    assert doc == json.loads(json.dumps(res.doc))
    for key in ("incumbent", "trace", "budget_s", "strategy", "evaluator", "seed", "pool_size", "stopped"):
        assert key in doc, key
    assert doc["budget_s"] == 2700 and doc["pool_size"] == 6 and doc["evaluator"] == "mlp@0.1"
    assert set(doc["trace"][0]) >= {"backbone", "score", "seconds", "cumulative_seconds", "status", "incumbent"}
    html = (Path(res.out) / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=", html) and "Plotly.newPlot" in html  # self-contained
    for e in doc["trace"]:
        assert e["backbone"] in html
    assert '"name":"incumbent' in html and "random</b> (an offline demo)" in html


def test_library_input_errors_come_before_anything_is_written(fakes, data_cache, tmp_path):  # noqa: F811
    pool = fake_pool(3, 0)
    cases = [(dict(budget="2x"), "expected a positive duration"),
             (dict(evaluator="knnn@0.1"), "unknown evaluator 'knnn'"),
             (dict(evaluator="mlp@0.0001"), "fraction 0.0001 of digits keeps 0 of 1438 train images for 10 "
                                            "classes; the smallest fraction this dataset gives is 0.0265"),
             (dict(evaluator="mlp@1.5"), r"the fraction must be in \(0, 1\]"),
             (dict(evaluator="mlp@x"), "fraction 'x' is not a number"),
             (dict(strategy="nope"), "unknown strategy 'nope'"),
             (dict(strategy="sh:nope"), "unknown strategy 'sh:nope'"),
             (dict(strategy="sh:cycling", eta=1), "--eta must be an integer >= 2"),
             (dict(strategy="sh:cycling", evaluator="mlp@0.1", sh_fractions=(0.001,)),
              "mlp@0.001: fraction 0.001 of digits keeps 1 of 1438"),
             (dict(final="mlp@0.5"), "give an evaluator name"),
             (dict(final="nope"), "unknown evaluator 'nope'"),
             (dict(dataset="nope"), "unknown dataset 'nope'"),
             (dict(device="cuda:7"), "cuda"),
             (dict(strategy="imagenet-top1"), "which the pool does not have for any backbone")]
    for kw, msg in cases:
        if kw.get("strategy") == "imagenet-top1" and "imagenet-top1" not in SAMPLERS:
            continue
        out = tmp_path / "o" / "x"
        with pytest.raises(Exception, match=msg) as err:
            run_search(config(tmp_path, data_cache, out=str(out), **kw), pool, show_progress=False, echo=None)
        assert err.type.__module__.startswith(("shared", "precompute")) and "\n" not in str(err.value), kw
        assert not (tmp_path / "o").exists(), kw
    with pytest.raises(SearchError, match="the pool is empty"):
        run_search(config(tmp_path, data_cache, out=str(tmp_path / "o")), pool.head(0), show_progress=False,
                   echo=None)
    assert not (tmp_path / "o").exists()


def test_parts_of_another_protocol_are_refused(fakes, data_cache, tmp_path):  # noqa: F811
    pool = fake_pool(2, 0)
    run_search(config(tmp_path, data_cache), pool, show_progress=False, echo=None)
    # the refusal names what differs and the search's own option (it has no --parts-dir)
    with pytest.raises(Exception, match=r"holds parts of another run \(.*input_size not set there, 16 here.*\); "
                                        r"use another --out or delete the old parts$"):
        run_search(config(tmp_path, data_cache, input_size=16), pool, show_progress=False, echo=None)


# ------------------------------------------------------------------ the real CLI (slow)
def search_args(home, out: Path, *extra, budget="1h", evaluator="mlp@0.1", strategy="cycling") -> list:
    pools = [a for n in NAMES for a in ("--pool", n)]
    return ["search", "--dataset", "digits", *pools, "--weights", "random", "--input-size", "32",
            "--budget", budget, "--strategy", strategy, "--evaluator", evaluator, "--device", "cpu",
            "--sh-fractions", ",".join(map(str, SH_FRACTIONS)),
            "--batch-size", "64", "--no-progress", "--cache-dir", home.cache, "--out", out, *extra]


def args_of(home, out: Path, kw: dict) -> list:
    kw = dict(kw)
    return search_args(home, out, *kw.pop("extra", ()), **kw)


def home_pool(home) -> pl.DataFrame:
    from precompute.pool import DEFAULT_CACHE, build_pool

    return build_pool(list(NAMES), cache=home.cwd / DEFAULT_CACHE, progress=False)


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.slow
def test_cli_bad_inputs_one_line_exit_2_nothing_written(sweep_home, tmp_path):
    home = sweep_home
    (tmp_path / "empty.csv").write_text("backbone\n")
    cases = {
        "unparseable budget": (dict(budget="2x"), "expected a positive duration such as 90s"),
        "unknown evaluator": (dict(evaluator="knnn@0.1"), "unknown evaluator 'knnn'"),
        "fraction the dataset cannot give": (dict(evaluator="mlp@0.0001"), "the smallest fraction this dataset"),
        "unknown strategy": (dict(strategy="nope"), "unknown strategy 'nope'"),
        "successive halving settings": (dict(strategy="sh:cycling", extra=("--eta", "1")),
                                        "--eta must be an integer >= 2"),
        "budget below one evaluation": (dict(budget="0.01s"), "is below one evaluation"),
        "empty pool": (dict(), "the pool is empty"),
    }
    seen = {}
    for what, (kw, msg) in cases.items():
        out = tmp_path / what.replace(" ", "-") / "out"
        args = args_of(home, out, kw)
        if what == "empty pool":
            args = [a for a in args if a not in NAMES and a != "--pool"] + ["--pool", tmp_path / "empty.csv"]
        line = one_error_line(cli("precompute.cli", *args, cwd=home.cwd))
        assert msg in line, (what, line)
        assert not out.parent.exists(), what
        seen[what] = line
    for what, line in seen.items():
        print(f"{what:<34} {line}")


@pytest.mark.slow
def test_cli_rerun_smaller_budget_and_replay(sweep_home, tmp_path):
    """The real command: a full search with --final, the same command again (nothing new), a budget
    that cuts the trace (Eq. 4 on the recorded seconds, nothing evaluated), back to the first
    budget; the simulator replays what it wrote.  (Deadline stops of real evaluations: the budget
    below one evaluation case, the kill test and the figures in the report.)"""
    home, out = sweep_home, tmp_path / "s"
    mtimes = lambda: {p.name: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    first = cli("precompute.cli", *search_args(home, out, "--final", "mlp"), cwd=home.cwd)
    assert first.returncode == 0, first.stderr[-3000:]
    doc = json.loads((out / "search.json").read_text())
    assert doc["n_evaluated"] == 3 and doc["finished"] == "pool" and doc["spent_s"] <= 3600
    assert "search cycling x mlp@0.1 on digits" in first.stdout and "incumbent:" in first.stdout
    assert doc["final"]["status"] == "ok" and "outside the budget" in first.stdout
    assert doc["final"]["backbone"] == doc["incumbent"]["backbone"] and doc["final"]["n_train"] == 1438
    assert_simulator_agrees(doc, out / "parts", home_pool(home))
    before = mtimes()
    again = cli("precompute.cli", *search_args(home, out, "--final", "mlp"), cwd=home.cwd)
    assert again.returncode == 0 and "nothing new" in again.stdout and "unchanged:" in again.stdout, again.stdout
    assert json.loads((out / "search.json").read_text()) == doc and mtimes() == before
    cut = doc["trace"][1]["cumulative_seconds"]
    less = cli("precompute.cli", *search_args(home, out, budget=repr(cut)), cwd=home.cwd)
    assert less.returncode == 0, less.stderr[-3000:]
    small = json.loads((out / "search.json").read_text())
    assert small["trace"] == doc["trace"][:2] and small["budget_s"] == cut
    assert small["stopped"]["from_part"] and small["stopped"]["backbone"] == doc["trace"][2]["backbone"]
    assert mtimes() == before  # nothing evaluated, nothing rewritten but the outputs
    assert_simulator_agrees(small, out / "parts", home_pool(home))
    back = cli("precompute.cli", *search_args(home, out, "--final", "mlp"), cwd=home.cwd)
    assert back.returncode == 0 and json.loads((out / "search.json").read_text()) == doc


@pytest.mark.slow
def test_cli_successive_halving_then_simulate(sweep_home, tmp_path):
    """``sh:cycling`` with ``mlp`` on the three tiny models: one chunk, rungs of 3, 1 and 1
    evaluations at 3 %, 10 % and 100 %; with the search's eta, chunk and cold promotions the simulator
    replays it to the same incumbent, and the parts merge into an oracle that ``simulate`` reads."""
    home, out = sweep_home, tmp_path / "sh"
    proc = cli("precompute.cli", *search_args(home, out, strategy="sh:cycling", evaluator="mlp"), cwd=home.cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "search.json").read_text())
    assert [e["fraction"] for e in doc["trace"]] == [0.03, 0.03, 0.03, 0.1, 1.0]
    assert doc["trace"][3]["backbone"] == doc["trace"][4]["backbone"] == doc["incumbent"]["backbone"]
    assert_simulator_agrees(doc, out / "parts", home_pool(home))
    merged = cli("precompute.cli", "merge", "--dataset", "digits", "--parts-dir", out / "parts", "--out",
                 out / "oracle.parquet", cwd=home.cwd)
    assert merged.returncode == 0, merged.stderr
    sim = cli("simulate.cli", "--oracle", out / "oracle.parquet", "--strategy", "sh:cycling", "--evaluator", "mlp",
              "--eta", "3", "--promotion-cost", "cold", "--runs", "3", "--no-report", "--out", out / "sim",
              "--baseline", doc["incumbent"]["backbone"], cwd=home.cwd)
    assert sim.returncode == 0, sim.stderr[-3000:]
    # a partial oracle: the simulator's pool is the backbones with a truth row, here the one promoted to 100 %
    assert json.loads((out / "sim" / "summary.json").read_text())["pool_size"] == 1

@pytest.mark.slow
def test_sigkill_mid_evaluation_then_resume(sweep_home, tmp_path):
    """SIGKILL in the 2nd head (mlp-epoch 300 = epoch 100 of the 2nd backbone), rerun: the trace is
    the completed evaluations in order, each counted once with its part's seconds."""
    home = sweep_home
    whole = cli("precompute.cli", *search_args(home, tmp_path / "whole"), cwd=home.cwd)
    assert whole.returncode == 0, whole.stderr[-3000:]
    ref = json.loads((tmp_path / "whole" / "search.json").read_text())
    out = tmp_path / "killed"
    proc = spawn("precompute.cli", *search_args(home, out), cwd=home.cwd, fault="mlp-epoch:300")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    parts = sorted(p.stem for p in (out / "parts" / "digits").glob("*.parquet"))
    assert parts == [ref["trace"][0]["backbone"]]  # the first finished, the second died mid-head
    assert (out / ".search.lock").exists() and not (out / "search.json").exists()
    resumed = cli("precompute.cli", *search_args(home, out), cwd=home.cwd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 from the parts, 2 new" in resumed.stdout
    doc = json.loads((out / "search.json").read_text())
    assert [e["backbone"] for e in doc["trace"]] == [e["backbone"] for e in ref["trace"]]
    assert [e["score"] for e in doc["trace"]] == [e["score"] for e in ref["trace"]]  # same numbers
    total = 0.0
    for e in doc["trace"]:
        rows = P.read_part(P.part_path(out / "parts", "digits", e["backbone"]))[0]
        assert rows.height == 1
        total += float(rows["seconds"][0])
        assert e["seconds"] == float(rows["seconds"][0]) and e["cumulative_seconds"] == total
    assert doc["spent_s"] == total  # no time of the killed attempt, none counted twice
    assert not list(out.rglob("*.tmp")) and not (out / ".search.lock").exists()


@pytest.mark.slow
def test_two_worker_processes_one_killed_mid_evaluation_lose_nothing(sweep_home, tmp_path):
    """``--workers 2`` on a CPU: two Dask worker processes (one torch thread each).  One of them is
    SIGKILLed in the middle of its first head (``VIBES_FAULT_ONCE``: the fault fires in one process
    only); Dask's nanny starts it again and the scheduler reruns the evaluation, so the search ends
    with every backbone evaluated once, the same scores as a search nobody killed; a rerun does
    nothing new and the simulator replays the timeline."""
    home = sweep_home
    # the search nobody killed, on one worker in this process with the workers' one torch thread: the same
    # evaluations, so the same scores, without starting two more worker processes
    ref = cli("precompute.cli", *search_args(home, tmp_path / "ref", "--workers", "1", "--threads", "1",
                                             evaluator="mlp"), cwd=home.cwd, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    want = json.loads((tmp_path / "ref" / "search.json").read_text())
    out = tmp_path / "killed"
    env = cli_env(**{faults.ENV: "mlp-epoch:100", faults.ONCE_ENV: str(tmp_path / "fault-fired")})
    proc = subprocess.run([sys.executable, "-m", "precompute.cli", *map(str, search_args(
        home, out, "--workers", "2", evaluator="mlp"))], cwd=home.cwd, capture_output=True, text=True,
        timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "fault-fired").exists()  # a worker did die
    doc = json.loads((out / "search.json").read_text())
    assert doc["workers"] == 2 and doc["finished"] == "pool" and doc["not_counted"] == []
    key = lambda d: sorted((e["backbone"], e["score"]) for e in d["trace"])
    assert key(doc) == key(want) and len(doc["trace"]) == len(NAMES)
    for e in doc["trace"]:  # each evaluated once: one row, charged what it cost
        rows = P.read_part(P.part_path(out / "parts", "digits", e["backbone"]))[0]
        assert rows.height == 1 and e["seconds"] == float(rows["seconds"][0])
    again = cli("precompute.cli", *search_args(home, out, "--workers", "2", evaluator="mlp"), cwd=home.cwd,
                timeout=600)
    assert again.returncode == 0 and "nothing new" in again.stdout, again.stdout + again.stderr[-2000:]
    assert json.loads((out / "search.json").read_text())["trace"] == doc["trace"]
    assert_simulator_agrees(doc, out / "parts", home_pool(home))


@pytest.mark.slow
def test_ctrl_c_keeps_what_was_done(sweep_home, tmp_path):
    from precompute.cli import INTERRUPTED

    home, out = sweep_home, tmp_path / "c"
    proc = cli("precompute.cli", *search_args(home, out), cwd=home.cwd, fault="mlp-epoch:300:INT")
    assert proc.returncode == 130 and proc.stderr.strip().splitlines() == [INTERRUPTED], proc.stderr[-2000:]
    assert len(list((out / "parts" / "digits").glob("*.parquet"))) == 1
    assert not (out / ".search.lock").exists()


def interrupted_at(call: int):
    """The fake mlp, with a Ctrl-C (KeyboardInterrupt) in its ``call``-th evaluation."""
    calls = []

    def fit(*a, **k):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return centroid_acc(*a, **k)
    return EvaluatorSpec("mlp", True, fit)


def test_outputs_never_describe_an_earlier_search(fakes, data_cache, tmp_path, monkeypatch):  # noqa: F811
    """#24 item 6: ``search.json`` and ``report.html`` an earlier search left in the folder never pass
    for this one's.  A Ctrl-C once an evaluation counted writes this search's (``interrupted``); one
    before any leaves the earlier ones marked stale (their content otherwise whole, for the resume);
    a refusal puts them back byte for byte."""
    from precompute.search.report import STALE_MARK

    out = tmp_path / "search"
    run_search(config(tmp_path, data_cache, strategy="random"), fake_pool(5, 0), show_progress=False, echo=None)
    pool = fake_pool(8, 0)  # fake_00 .. fake_04 are in the parts; the other three are new
    order = search_order(pool, "cycling", "mlp@0.1", 0)
    second_new = [i for i, b in enumerate(order) if int(b[5:7]) >= 5][1]
    monkeypatch.setitem(FAKE_EVALUATORS, "mlp", interrupted_at(2))
    with pytest.raises(KeyboardInterrupt):
        run_search(config(tmp_path, data_cache, strategy="cycling", budget="2h"), pool, show_progress=False,
                   echo=None)
    doc = json.loads((out / "search.json").read_text())
    assert "stale" not in doc and (doc["strategy"], doc["budget"], doc["pool_size"]) == ("cycling", "2h", 8)
    assert doc["finished"] == "interrupted" and [e["backbone"] for e in doc["trace"]] == order[:second_new]
    page = (out / "report.html").read_text()
    assert STALE_MARK not in page and "<b>Interrupted</b>" in page and "<b>cycling</b>" in page
    assert not (out / ".search.lock").exists()

    # a Ctrl-C before any evaluation counted: the earlier outputs, marked stale
    before = {p: (out / p).read_text() for p in ("search.json", "report.html")}
    monkeypatch.setitem(FAKE_EVALUATORS, "mlp", interrupted_at(1))
    with pytest.raises(KeyboardInterrupt):
        run_search(config(tmp_path, data_cache, strategy="random", budget="3h"), fake_pool(10, 0).tail(2),
                   show_progress=False, echo=None)
    doc = json.loads((out / "search.json").read_text())
    assert list(doc)[0] == "stale" and "this describes an earlier search" in doc.pop("stale")
    assert doc == json.loads(before["search.json"])
    page = (out / "report.html").read_text()
    assert page.count(STALE_MARK) == 1 and "<b>Stale:</b>" in page
    assert page.replace(page[page.index(STALE_MARK):page.index("\n", page.index(STALE_MARK)) + 1], "") \
        == before["report.html"]

    # a refusal (a budget below one evaluation): the files as they were before it, byte for byte
    before = {p: (out / p).read_bytes() for p in ("search.json", "report.html")}
    monkeypatch.setitem(FAKE_EVALUATORS, "mlp", EvaluatorSpec("mlp", True, centroid_acc))
    with pytest.raises(SearchError, match="below one evaluation"):
        run_search(config(tmp_path, data_cache, budget="0.001s"), fake_pool(10, 0).tail(2), show_progress=False,
                   echo=None)
    assert {p: (out / p).read_bytes() for p in before} == before


def test_folder_dataset_search_and_merge(fakes, data_cache, tmp_path):  # noqa: F811
    """``folder:PATH`` (the README's real-data case) with an evaluator at fraction 1.0: the parts
    merge into an oracle whose truth rows are the search's own rows."""
    import fixtures_datasets as fx

    root = fx.write_class_tree(tmp_path / "imgs", {"cat": 6, "dog": 6, "owl": 6})
    pool = fake_pool(3, 0)
    res = run_search(config(tmp_path, data_cache, dataset=f"folder:{root}", evaluator="mlp"), pool,
                     show_progress=False, echo=None)
    assert res.doc["dataset"] == f"folder:{root.resolve()}" and res.doc["n_evaluated"] == 3
    report = P.merge(f"folder:{root.resolve()}", tmp_path / "search" / "parts", tmp_path / "o.parquet")
    from shared.oracle import read_oracle

    scores = read_oracle(report.path).true_scores().sort("backbone")
    trace = sorted((e["backbone"], e["score"]) for e in res.doc["trace"])
    assert list(zip(scores["backbone"], scores["true_score"])) == trace


def readme_commands() -> list[list[str]]:
    """The ``precompute`` command lines of the README's "Find a backbone for your data" section."""
    import shlex

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Find a backbone for your data", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and "=" in words[0]:  # VAR=value prefixes
                words.pop(0)
            if words and words[0].endswith("precompute"):
                commands.append(words[1:])
    return commands


def test_readme_search_commands_parse():
    """Every command the README section shows parses with the real CLI (flags, choices, types)."""
    from precompute.cli import cli as precompute_cli

    commands = readme_commands()
    assert [c[0] for c in commands] == ["pool", "fetch", "search", "pool", "search"], commands
    for words in commands:
        name, rest = words[0], list(words[1:])
        sub = precompute_cli.get_command(None, name).make_context(name, rest)  # UsageError if a flag is wrong
        if name == "search":
            assert parse_budget(sub.params["budget"]) > 0
            assert sub.params["strategy"] in SAMPLERS


@pytest.mark.browser
def test_report_draws_in_headless_chromium(fakes, data_cache, tmp_path):  # noqa: F811
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed")
    pool = fake_pool(5, 1)
    res = run_search(config(tmp_path, data_cache, budget="2m"), pool, show_progress=False, echo=None)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom"]
    p = subprocess.run([chromium, *flags, (Path(res.out) / "report.html").as_uri()], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    assert dom.count('class="plot-container plotly"') == 1 and 'class="scatterlayer' in dom
    assert re.search(r'class="js-line" d="M[^"]+"', dom)  # the incumbent's step line
    assert dom.count('class="point plotly-customdata"') == res.doc["n_evaluated"]  # each one, failed too
    for label in ("incumbent", "evaluations", "failed", "budget 2 min"):
        assert label in dom, label


def test_search_refuses_bad_worker_options(data_cache, tmp_path):  # noqa: F811
    for kw, msg in ((dict(workers=0), "--workers must be a positive integer"),
                    (dict(workers=2, threads=0), "--threads must be a positive integer"),
                    (dict(cluster="k8s"), "--cluster must be local or slurm"),
                    (dict(cluster="slurm", budget="5h"), r"--time-limit 4h \(each worker's Slurm job\) is shorter "
                                                         r"than --budget 5h"),
                    (dict(wait_timeout="soon"), "--wait-timeout")):
        with pytest.raises(SearchError, match=msg):
            config(tmp_path, data_cache, **kw)
    # --threads unset: the engine gives a CPU worker one torch thread, a GPU worker torch's own
    assert config(tmp_path, data_cache, workers=3).threads is None
