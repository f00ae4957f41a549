"""``asha:<sampler>`` live (issue 23, item 4): asynchronous successive halving on the search's K workers.

The live walk decides on the timeline of charges, so the run it takes is the one the simulator's
ASHA takes on the same rows.  The search's parts (its measured seconds and scores) are replayed by
:func:`simulate.reference.asha_loop` — a literal loop that shares no code with the search's
:class:`precompute.search.asha.AshaWalk` — and by ``simulate`` itself: both must count the same
evaluations and select the same incumbent at every budget of the trace, at K = 1 and K = 2,
whole or stopped by the budget.  Random fake backbones on digits, as ``tests/test_search.py``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from test_search import (  # noqa: F401  (fixtures)
    assert_simulator_agrees,
    config,
    eq4_incumbents,
    fake_pool,
    fakes,
    replay_budgets,
    two_threads,
)
from test_sweep import data_cache  # noqa: F401  (fixture)

from precompute import parts as P
from precompute.search import SearchError, run_search, search_order
from precompute.search.asha import AshaWalk
from simulate.engine import NO_SELECTION
from simulate.reference import asha_loop

pytestmark = [pytest.mark.filterwarnings("ignore:fraction .* keeps .* image:UserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

UNKNOWN = 1e9  # the charge of an evaluation with no row: it ends past every budget of the trace


def _num(x) -> float:
    return math.nan if x is None else float(x)


def reference_arrays(doc: dict, parts: Path, order: list[str], rule: str):
    """score, first, promote (L, 1, B) from the parts, written out by hand: a missing row is −∞ and
    costs :data:`UNKNOWN`; an incremental promotion pays load + Δextract + fit unless the rung below
    failed or a term is unknown."""
    fid = doc["fidelities"]
    shape = (len(fid), 1, len(order))
    score, first, promote = np.full(shape, -np.inf), np.full(shape, UNKNOWN), np.full(shape, UNKNOWN)
    for p, b in enumerate(order):
        path = P.part_path(parts, "digits", b)
        rows = {r["fraction"]: r for r in P.read_part(path)[0].iter_rows(named=True)} if path.exists() else {}
        for lv, f in enumerate(fid):
            row = rows.get(f)
            if row is None:
                continue
            ok = row["status"] == "ok" and row["score"] is not None
            score[lv, 0, p] = row["score"] if ok else -np.inf
            cold = 0.0 if row["seconds"] is None or math.isnan(row["seconds"]) else row["seconds"]
            first[lv, 0, p] = cold
            lower = rows.get(fid[lv - 1]) if lv else None
            terms = [_num(row["load_seconds"]), _num(row["fit_seconds"]), _num(row["extract_seconds"]),
                     _num(lower["extract_seconds"]) if lower else math.nan]
            lower_ok = lower is not None and lower["status"] == "ok" and lower["score"] is not None
            if lv and rule == "incremental" and lower_ok and not any(math.isnan(x) for x in terms):
                promote[lv, 0, p] = terms[0] + max(0.0, terms[2] - terms[3]) + terms[1]
            else:
                promote[lv, 0, p] = cold
    return score, first, promote


def assert_reference_agrees(doc: dict, parts: Path, pool, seed: int = 0) -> None:
    trace, k = doc["trace"], doc["workers"]
    order = search_order(pool, doc["strategy"], doc["evaluator"], seed)
    score, first, promote = reference_arrays(doc, parts, order, doc["sh"]["promotion_cost"])
    budgets = replay_budgets(trace)
    ref = asha_loop(np.arange(len(order))[None, :], score, first, promote, doc["sh"]["eta"], k, budgets)
    expected = eq4_incumbents(trace, budgets, k)
    got = [None if s == NO_SELECTION else order[s] for s in ref.selected[0]]
    assert got == expected, list(zip(budgets.tolist(), got, expected))
    assert ref.n_evaluated[0].tolist() == [sum(e["end_s"] <= t for e in trace) for t in budgets]


def check_asha_run(doc: dict, out: Path, pool) -> None:
    """What ASHA's trace must show, then both replays."""
    trace, fid = doc["trace"], doc["fidelities"]
    assert doc["sh"]["asynchronous"] is True and doc["sh"]["chunk"] is None
    levels = [fid.index(e["fraction"]) for e in trace]
    assert max(levels) >= 1  # promotions happened (the whole pool: up to the top rung, below)
    # the lowest rung walks the sampler's order; a promotion follows its own lower evaluation
    order = search_order(pool, doc["strategy"], doc["evaluator"], doc["seed"])
    firsts = [e["backbone"] for e in trace if e["fraction"] == fid[0]]
    assert firsts == order[:len(firsts)]
    for i, e in enumerate(trace):
        lv = fid.index(e["fraction"])
        if lv:
            below = [o for o in trace[:i] if o["backbone"] == e["backbone"] and o["fraction"] == fid[lv - 1]]
            assert below and below[0]["end_s"] <= e["start_s"] and below[0]["status"] == "ok"
    for e in trace:
        assert e["end_s"] == pytest.approx(e["start_s"] + e["seconds"], rel=1e-12, abs=1e-12)
    assert_reference_agrees(doc, out / "parts", pool, doc["seed"])
    assert_simulator_agrees(doc, out / "parts", pool)


@pytest.mark.parametrize("workers, strategy, evaluator, budget, promotion", [
    (1, "asha:cycling", "mlp", "1h", "incremental"),
    (1, "asha:random", "slow", "1.5s", "cold"),
    (2, "asha:cycling", "mlp", "1h", "cold"),
    (2, "asha:random", "mlp", "1h", "incremental"),
    (2, "asha:cycling", "slow", "1.5s", "incremental")])
def test_asha_live_replays_in_the_reference_and_the_simulator(fakes, data_cache, tmp_path, two_threads,  # noqa: F811
                                                              workers, strategy, evaluator, budget, promotion):
    pool = fake_pool(11, 1)
    cfg = config(tmp_path, data_cache, strategy=strategy, evaluator=evaluator, budget=budget, workers=workers,
                 promotion_cost=promotion)
    res = run_search(cfg, pool, show_progress=False, echo=None, workers=two_threads if workers == 2 else None)
    doc = res.doc
    assert doc["workers"] == workers and doc["strategy"] == strategy
    if workers == 2:
        assert {e["worker"] for e in doc["trace"]} == {0, 1}
    if budget == "1h":
        assert doc["finished"] == "pool" and doc["not_counted"] == []
        assert sum(e["fraction"] == doc["fidelities"][0] for e in doc["trace"]) == pool.height
        assert doc["trace"][-1]["fraction"] == 1.0 or any(e["fraction"] == 1.0 for e in doc["trace"])
    else:
        assert doc["stopped"] is not None and doc["spent_s"] <= doc["budget_s"] * workers
    check_asha_run(doc, Path(res.out), pool)
    # a rerun rebuilds the same walk from the parts and evaluates nothing new
    again = run_search(cfg, pool, show_progress=False, echo=None, workers=two_threads if workers == 2 else None)
    assert again.doc["trace"] == doc["trace"] and again.new_evaluations == 0
    assert not list((Path(res.out) / "kept").rglob("*.npz")) or doc["finished"] == "budget"


def test_asha_walk_by_hand():
    """Two workers, η = 2, two rungs: a promotion as soon as a rung has 2 ended evaluations, the
    better one; a waiting worker looks again at the next end."""
    walk = AshaWalk(["a", "b", "c"], 2, 2, 2)
    got = []
    outcomes = {("a", 0): (0.5, 2.0), ("b", 0): (0.9, 1.0), ("c", 0): (0.1, 5.0), ("b", 1): (0.95, 3.0)}
    while (d := walk.decide()) is not None:
        t, w, b, lv = d
        got.append((t, w, b, lv))
        walk.place(*outcomes[(b, lv)])
    # t=0: a on 0, b on 1; t=1 (b ended; 1 result, no promotion): c on 1; t=2 (a, b ended): promote b
    assert got == [(0.0, 0, "a", 0), (0.0, 1, "b", 0), (1.0, 1, "c", 0), (2.0, 0, "b", 1)]
    assert walk.finished


def test_asha_refuses_a_chunk(data_cache, tmp_path):  # noqa: F811
    with pytest.raises(SearchError, match="--sh-chunk is for sh:<sampler>"):
        config(tmp_path, data_cache, strategy="asha:cycling", sh_chunk=3)
