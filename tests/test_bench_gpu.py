"""bench/bench_gpu.py (issue #18): its ``--smoke`` mode runs every part on the CPU at toy sizes through
the same code paths as the GPU run and writes the JSON that ``bench/gpu/schema.py`` describes (the file
is checked against it: every key, its type, no other key), so the script cannot rot between GPU runs;
its planning helpers (the budget's caps, part a's spread order, the targets) and the schema's checker
are checked without running anything.  No wall-clock bound is asserted: structure and sanity only."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "bench_gpu.py"
sys.path.insert(0, str(REPO))

from bench.gpu import plan as bench_plan  # noqa: E402
from bench.gpu import sweep as bench_sweep  # noqa: E402
from bench.gpu.common import jsonable  # noqa: E402
from bench.gpu.heads import CALIBRATION_EPOCHS  # noqa: E402
from bench.gpu.targets import judge  # noqa: E402
from shared.protocol import PROXIES  # noqa: E402

PART_KEYS = ("title", "ok", "error", "traceback", "skipped", "wall_seconds", "cap_seconds")


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


# ----------------------------------------------------------------------------- the helpers
@pytest.mark.parametrize("k", range(1, 20))
def test_spread_order_is_a_permutation_from_the_middle_and_the_ends(k):
    order = bench_sweep.spread_order(k)
    assert sorted(order) == list(range(k))
    assert order[: min(k, 3)] == list(dict.fromkeys([(k - 1) // 2, 0, k - 1]))[: min(k, 3)]


def test_plan_fits_the_budget_and_gives_part_a_the_rest():
    letters = list(bench_plan.PARTS)
    plan = bench_plan.make_plan(480.0, False, letters)
    rest = 480.0 - plan.setup_s
    assert set(plan.caps_s) == set(letters)
    assert sum(plan.caps_s.values()) <= rest + 1e-9
    assert plan.search_budget_s == 120.0 and plan.caps_s["e"] > plan.search_budget_s
    assert plan.caps_s["a"] >= bench_plan.A_FLOOR * rest
    assert plan.sample == 12 and plan.dataset == "synthetic:50000@224" and plan.input_size is None
    assert (plan.proxy_rows, plan.proxy_dim) == (50_000, 2048)
    assert bench_plan.make_plan(1800.0, False, letters).sample == 16  # a cap that holds 16 x 30 s
    small = bench_plan.make_plan(120.0, False, letters)
    assert small.search_budget_s < 120.0 and sum(small.caps_s.values()) <= 120.0 - small.setup_s + 1e-9


def test_plan_without_part_a_shares_the_rest_and_keeps_the_search_budget():
    plan = bench_plan.make_plan(480.0, False, ["b", "d", "e"])
    rest = 480.0 - plan.setup_s
    assert set(plan.caps_s) == {"b", "d", "e"}
    assert plan.caps_s["e"] == plan.search_budget_s + 35.0
    assert sum(plan.caps_s.values()) == pytest.approx(rest)
    assert plan.caps_s["b"] == pytest.approx(plan.caps_s["d"])  # equal shares stay equal


def test_smoke_plan_is_toy_sized():
    plan = bench_plan.make_plan(600.0, True, list(bench_plan.PARTS))
    assert plan.smoke and plan.input_size == 32 and plan.dataset.startswith("synthetic:")
    assert plan.sample <= 3 and plan.max_params_m <= 5 and plan.check_max <= 2
    assert plan.proxy_rows * plan.proxy_dim <= 500 * 64 and plan.search_budget_s <= 10


def test_parse_parts():
    assert bench_plan.parse_parts("c,a") == ["a", "c"]
    for bad in ("", "a,z", "sweep"):
        with pytest.raises(SystemExit):
            bench_plan.parse_parts(bad)


def test_predict_seconds_needs_two_gmacs_and_follows_the_fit():
    rows = [{"eff_gmacs": 1.0, "seconds": 10.0}]
    assert bench_sweep.predict_seconds(rows, 2.0) is None
    rows.append({"eff_gmacs": 4.0, "seconds": 40.0})  # seconds proportional to GMACs
    assert bench_sweep.predict_seconds(rows, 2.0) == pytest.approx(20.0)


def _doc(gpu: bool, smoke: bool, median=20.0, ratio=0.9, proxy=1.0) -> dict:
    parts = {"a": {"median_backbone_seconds": median}, "b": {"extract_vs_forward": ratio},
             "d": {"proxies": {p: {"seconds": proxy} for p in PROXIES}}}
    return {"smoke": smoke, "gpu": gpu, "device": "cuda" if gpu else "cpu", "device_name": "x",
            "plan": {"dataset": "synthetic:50000@224", "input_size": None}, "parts": parts}


def test_targets_are_judged_on_cuda_at_full_size_only():
    assert not judge(_doc(gpu=False, smoke=False))["judged"]
    assert not judge(_doc(gpu=True, smoke=True))["judged"]
    t = judge(_doc(gpu=True, smoke=False))
    assert t["judged"] and len(t["checks"]) == 2 + len(PROXIES)
    assert all(c["met"] is True for c in t["checks"])
    t = judge(_doc(gpu=True, smoke=False, median=31.0, ratio=0.7, proxy=2.5))
    assert all(c["met"] is False for c in t["checks"])
    t = judge(_doc(gpu=True, smoke=False, median=None))
    assert t["checks"][0]["met"] is None  # not measured is not a verdict


def test_jsonable_makes_plain_json():
    import numpy as np

    out = jsonable({"a": (np.float32(1.5), np.int64(2), float("nan")), "b": np.bool_(True)})
    assert out == {"a": [1.5, 2, None], "b": True}
    json.dumps(out, allow_nan=False)


# ----------------------------------------------------------------------------- the JSON's schema
@pytest.fixture(scope="module")
def schema():
    pytest.importorskip("torch")  # the schema takes some fields from the project's classes (precompute.estimate)
    from bench.gpu import schema

    return schema


def _schema_classes(tp, seen: dict) -> dict:
    """Every dataclass the schema reaches from ``tp``, by name."""
    if dataclasses.is_dataclass(tp) and tp.__name__ not in seen:
        seen[tp.__name__] = tp
        for t in typing.get_type_hints(tp).values():
            _schema_classes(t, seen)
    for t in typing.get_args(tp):
        _schema_classes(t, seen)
    return seen


def test_every_field_of_the_schema_says_what_it_holds(schema):
    classes = _schema_classes(schema.BenchGpuDoc, {})
    assert {"SweepPart", "ExtractPart", "HeadsPart", "ProxiesPart", "SearchPart", "CheckPart", "PlanDoc",
            "ProjectionDoc", "Targets"} <= set(classes)
    undocumented = [f"{name}.{f.name}" for name, cls in classes.items() for f in dataclasses.fields(cls)
                    if not f.metadata.get("doc")]
    assert not undocumented
    # the plan as written: the Plan's fields less those at the JSON's top
    assert {f.name for f in dataclasses.fields(schema.PlanDoc)} | {"smoke", "budget_s", "setup_s"} == \
        {f.name for f in dataclasses.fields(bench_plan.Plan)}
    assert {f.name for f in dataclasses.fields(schema.ProxyRows)} == set(PROXIES)


CHECK_ROW = {"backbone": "x", "status": "ok", "reason": None, "params_m": 1.5, "input_size": 32, "feature_dim": 8,
             "load_seconds": 0.1, "extract_seconds": 0.2, "wall_seconds": 1, "peak_mb": None,
             "constant_features": False, "timeout_s": 30.0, "cap_limited": False}


def test_the_schema_tells_a_missing_key_an_extra_key_and_a_wrong_type(schema):
    def problems(row):
        return schema.problems(row, schema.CheckRow, "row")

    assert problems(CHECK_ROW) == []  # an integer where a float is asked is a JSON number all the same
    assert problems({k: v for k, v in CHECK_ROW.items() if k != "reason"}) == ["row: lacks 'reason'"]
    assert problems({**CHECK_ROW, "note": "x"}) == ["row: 'note' is not in the schema (CheckRow)"]
    assert problems({**CHECK_ROW, "feature_dim": 8.5}) == ["row.feature_dim: expected int, got float 8.5"]
    assert problems({**CHECK_ROW, "cap_limited": 1}) == ["row.cap_limited: expected bool, got int 1"]
    assert problems({**CHECK_ROW, "wall_seconds": True}) == ["row.wall_seconds: expected float, got bool True"]
    assert problems({**CHECK_ROW, "status": "done"}) == \
        ["row.status: expected one of ['ok', 'failed', 'timeout', 'skipped'], got 'done'"]
    assert schema.problems([1, "2"], list[int], "l") == ["l[1]: expected int, got str '2'"]
    assert schema.problems({"a": 1}, dict[str, float], "m") == []
    assert schema.problems(True, typing.Literal[1], "v") == ["v: expected one of [1], got True"]
    rows = typing.get_type_hints(schema.ExtractPart)["backbones"]  # a list of one of three shapes
    assert schema.problems([{"backbone": "x", "error": "E"}, {"backbone": "y", "skipped": "cap"}], rows, "b") == []
    assert schema.problems([{"backbone": "x"}], rows, "b")


def test_a_part_that_is_not_ok_may_lack_its_own_keys_but_has_no_others(schema):
    base = {"title": "t", "ok": False, "error": "RuntimeError: x", "traceback": "...", "skipped": None,
            "wall_seconds": 1.0, "cap_seconds": 2.0}
    partial = {**base, "candidates": ["x"], "rows": [{"backbone": "x"}]}
    assert schema.problems(partial, schema.CheckPart, "f") == []
    assert schema.problems({**partial, "rows": [{"backbone": 1}]}, schema.CheckPart, "f") == \
        ["f.rows[0].backbone: expected str, got int 1"]
    assert schema.problems({**partial, "other": 1}, schema.CheckPart, "f") == \
        ["f: 'other' is not in the schema (CheckPart)"]
    assert schema.problems({k: v for k, v in base.items() if k != "title"}, schema.CheckPart, "f") == \
        ["f: lacks 'title'"]
    ok = schema.problems({**partial, "ok": True, "error": None}, schema.CheckPart, "f")
    assert "f: lacks 'checked'" in ok and "f.rows[0]: lacks 'status'" in ok
    # an ok part f with no candidate writes no cap_limited_timeouts (the schema marks it so)
    empty = {**base, "ok": True, "error": None, "candidates": [], "timeout_in_pool": 0, "per_backbone_timeout_s": 60,
             "input_size": None, "threads": 1, "checked": 0, "status_counts": {}, "rows": [], "not_checked": 0}
    assert schema.problems(empty, schema.CheckPart, "f") == []


# ----------------------------------------------------------------------------- the smoke run
@pytest.mark.slow
def test_smoke_run_writes_every_part_with_figures(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    out = tmp_path / "bench-gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # the timeout only guards against a hang: it asserts no speed
    p = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=3600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert "no GPU figure" in p.stdout
    doc = json.loads(out.read_text())
    from bench.gpu.schema import problems

    assert problems(doc) == [], "\n".join(problems(doc))  # every key the schema has, of its type, and no other

    assert doc["bench"] == "bench-gpu" and doc["version"] == 1
    assert doc["smoke"] is True and doc["complete"] is True
    assert doc["device"] == "cpu" and doc["gpu"] is False and doc["note"]
    assert doc["torch"] and doc["timm"] and doc["python"] and doc["cpu_count"] >= 1 and doc["threads"] >= 1
    assert positive(doc["budget_s"]) and positive(doc["wall_seconds"])
    assert doc["parts_selected"] == list("abcdef")
    assert set(doc["plan"]["caps_s"]) == set("abcdef")
    assert doc["targets"]["judged"] is False and doc["targets"]["why"] and doc["targets"]["checks"] == []

    parts = doc["parts"]
    assert set(parts) == set("abcdef")
    for letter, part in parts.items():
        assert set(PART_KEYS) <= set(part), letter
        assert part["ok"] is True and part["error"] is None and part["skipped"] is None, (letter, part["error"])
        assert positive(part["wall_seconds"]) and positive(part["cap_seconds"]), letter

    a = parts["a"]
    assert a["sample_size"] == len(a["backbones"]) >= 2 and a["n_ok"] >= 1
    assert a["n_train"] > 0 and a["n_test"] > 0 and a["input_size"] == 32
    assert set(a["evaluators"]) == {"mlp", "silhouette", "knn", "ridge", "logme", "hscore"}
    assert a["seeds"] == 3 and sorted(a["fractions"]) == [0.01, 0.1, 1.0]
    assert positive(a["median_backbone_seconds"])
    for r in a["backbones"]:
        assert r["status"] in ("ok", "failed", "stopped", "skipped")
        if r["status"] == "ok":
            assert positive(r["seconds"]) and r["rows"] > 0
            assert r["load_seconds"] >= 0 and r["extract_seconds"] >= 0 and r["fit_seconds"] >= 0
            assert r["load_seconds"] + r["extract_seconds"] <= r["seconds"] + 1e-6
    assert (a["projection"] is None) != (a["projection_error"] is None)
    if a["projection"] is not None:
        assert positive(a["projection"]["total_seconds"]) and a["projection"]["n_pool"] > 0

    b = parts["b"]
    assert positive(b["extract_vs_forward"]) and positive(b["images"])
    timed = [r for r in b["backbones"] if "ratio" in r]
    assert timed and all(positive(r["extract_seconds"]) and positive(r["forward_seconds"]) for r in timed)

    c = parts["c"]
    for k in ("sequential_seconds", "sweep_seconds", "batched_seconds", "speedup", "speedup_all_batched"):
        assert positive(c[k]), k
    assert c["seeds"] == 3 and c["epochs"] >= CALIBRATION_EPOCHS and c["protocol_epochs"] == 200
    assert all(positive(v) for v in c["protocol_seconds"].values())

    d = parts["d"]
    assert set(d["proxies"]) == set(PROXIES) and d["rows"] > 0 and d["dim"] > 0
    for name, r in d["proxies"].items():
        assert positive(r["seconds"]) and math.isfinite(r["score"]), name
        assert len(r["all_seconds"]) >= 1 and positive(r["calibration"]["predicted_seconds"]), name

    e = parts["e"]
    assert e["strategy"] == "cycling" and e["evaluator"] == "mlp@0.1"
    assert e["n_evaluated"] >= 1 and positive(e["spent_s"]) and e["spent_s"] <= e["budget_s"] + 1e-9
    assert positive(e["wall_ratio"]) and positive(e["median_evaluation_seconds"]) and e["pool_size"] > 0

    f = parts["f"]
    assert f["checked"] >= 1 and len(f["rows"]) == f["checked"] and f["timeout_in_pool"] >= 0
    assert sum(f["status_counts"].values()) == f["checked"]
    for r in f["rows"]:
        assert r["status"] in ("ok", "failed", "timeout", "skipped") and positive(r["wall_seconds"])
        assert positive(r["timeout_s"])
