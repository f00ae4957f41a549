"""The recommendation (issue 17): budgets from the oracle's time scale, ties within the noise shown as
ties (not flips), and the budgets where the best choice changes.  References: hand-computed cases,
and numpy's bootstrap for the noise of a median."""
from __future__ import annotations

import math

import numpy as np
import pytest

from simulate.recommend import change_budgets, kept_note, median_se, recommend, scale_budgets, thin, tied
from simulate.simulation import run_simulation
from tests.conftest import random_oracle


def choice(name, medians, iqr=0.0, backbone="x"):
    m = np.asarray(medians, dtype=float)
    return dict(strategy=name, evaluator="e", median=m, q25=m - iqr / 2, q75=m + iqr / 2,
                backbone=[backbone] * len(m), share=np.full(len(m), 1.0), n_selected=np.full(len(m), 10))


def test_scale_budgets_are_round_and_log_spaced():
    # cheapest 0.5 s, exhaustive 150 s: the round durations in between ...
    assert scale_budgets(0.5, 150.0) == [1, 2, 5, 10, 15, 30, 60, 120]
    # ... five of them, log-evenly: targets 1, 3.3, 11, 36, 120 s -> nearest in log time
    assert thin([1, 2, 5, 10, 15, 30, 60, 120], 5) == [1, 5, 10, 30, 120]
    assert thin([1, 2], 5) == [1, 2]
    assert scale_budgets(0.2, 0.8) == [0.8]  # nothing round in between: the exhaustive time
    assert scale_budgets(3000.0, 90000.0) == [3600, 7200, 14400, 28800, 43200, 86400]


def test_median_standard_error_against_a_bootstrap():
    rng = np.random.default_rng(0)
    for n, sigma in ((100, 0.05), (400, 0.2)):
        x = rng.normal(0.7, sigma, n)
        q25, q75 = np.percentile(x, [25, 75])
        boot = np.median(rng.choice(x, size=(4000, n), replace=True), axis=1).std()
        assert median_se(q25, q75, n) == pytest.approx(boot, rel=0.25)


def test_tied_hand_computed():
    # IQR 0.1, 100 runs: se = 1.2533 * 0.1 / 1.349 / 10 = 0.009291; tied within 2 * sqrt(2) * se = 0.02628
    a = (0.80, 0.75, 0.85)
    assert tied(a, (0.78, 0.73, 0.83), 100)
    assert not tied(a, (0.77, 0.72, 0.82), 100)
    assert tied((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 100)  # deterministic and equal
    assert not tied((0.5, 0.5, 0.5), (0.5001, 0.5001, 0.5001), 100)  # deterministic: only when equal
    assert not tied((math.nan, math.nan, math.nan), a, 100)


def test_a_tie_is_not_a_flip():
    # A and B swap the higher median at every budget but stay within the noise: A leads throughout
    # (it was best first), B is listed as tied; C is clearly ahead at the last budget: it leads there
    stats = [choice("A", [0.80, 0.79, 0.80, 0.80], iqr=0.1), choice("B", [0.79, 0.80, 0.795, 0.79], iqr=0.1),
             choice("C", [0.50, 0.50, 0.50, 0.95], iqr=0.0)]
    rows = recommend(stats, [1.0, 10.0, 100.0, 1000.0], n_runs=100)
    assert [r["strategy"] for r in rows] == ["A", "A", "A", "C"]
    assert [[t["strategy"] for t in r["tied"]] for r in rows] == [["B"], ["B"], ["B"], []]
    assert rows[1]["best"]["strategy"] == "B"  # B's median is the higher there, within the noise
    # the row says why it leads with A: kept from the budget before, B's median the higher (hand-written)
    assert kept_note(rows[0], None) is None and kept_note(rows[3], rows[2]) is None
    assert kept_note(rows[1], rows[0]) == ("kept from 1 s (within the noise of the highest median: B × e 0.8000, "
                                           "IQR 0.7500–0.8500)")
    # the same median, the best ahead on q25 only: nothing to explain
    same = recommend([choice("A", [0.81, 0.8], iqr=0.1), choice("B", [0.80, 0.8], iqr=0.02)], [1.0, 2.0], n_runs=100)
    assert [r["strategy"] for r in same] == ["A", "A"] and same[1]["best"]["strategy"] == "B"
    assert kept_note(same[1], same[0]) is None


def test_change_budgets_hand_computed():
    budgets = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    stats = [choice("A", [0.5, 0.6, 0.7, 0.7, 0.7, 0.7]), choice("B", [0.4, 0.5, 0.6, 0.8, 0.8, 0.9])]
    assert change_budgets(budgets, stats, n_runs=50) == [8.0]  # B leads from the 4th budget on
    # A blip that lasts one budget is still a change, but the longest-lasting come first under a limit
    stats = [choice("A", [0.5, 0.9, 0.5, 0.5, 0.5, 0.5]), choice("B", [0.6, 0.6, 0.6, 0.6, 0.6, 0.6])]
    assert change_budgets(budgets, stats, n_runs=50) == [2.0, 4.0]
    assert change_budgets(budgets, stats, n_runs=50, limit=1) == [4.0]


def test_simulation_rows_scale_change_and_asked():
    oracle = random_oracle(n_backbones=25, seeds=2, rng_seed=11)
    sim = run_simulation(oracle, ["random", "cycling", "complexity-up"], ["mlp", "mlp@0.1"], n_runs=60, seed=1,
                         baseline=None, recommend_at=[7.0])
    rec = sim.summary["recommendation"]
    budgets = [r["budget_s"] for r in rec]
    assert budgets == sorted(budgets) and len(set(budgets)) == len(budgets)
    scale = [r for r in rec if r["source"] == "scale"]
    assert 1 <= len(scale) <= 5 and all(r["strategy"] is not None for r in scale)
    assert [r["budget_s"] for r in rec if r["source"] == "asked"] == [7.0]
    grid = set(sim.budgets.tolist())
    assert all(r["budget_s"] in grid for r in rec if r["source"] == "change")
    lo, hi = float(sim.budgets[0]), float(sim.budgets[-1])
    assert all(lo <= r["budget_s"] <= hi for r in scale)


# ------------------------------------------------------------------------------------------------
# An answer that never gets worse (issue 22 item 4): a search for budget B may stop at any b <= B.

def misleading_oracle():
    """Four backbones, one seed.  Truth ``mlp`` (10 s each); proxy ``logme`` (1 s each) ranks them
    backwards: its favourite, the costliest (gmacs 4), is the worst by the truth.  complexity-up
    evaluates a (gmacs 1), b, c, d in that order."""
    import polars as pl

    from shared.oracle import Oracle

    truth = {"a.t": 0.96, "b.t": 0.90, "c.t": 0.80, "d.t": 0.71}
    proxy = {"a.t": 0.50, "b.t": 0.60, "c.t": 0.70, "d.t": 0.90}
    rows = []
    for g, name in enumerate(truth, start=1):
        for ev, score, sec in (("mlp", truth[name], 10.0), ("logme", proxy[name], 1.0)):
            rows.append(dict(dataset="m", backbone=name, evaluator=ev, fraction=1.0, seed=0, score=score,
                             seconds=sec, status="ok", gmacs=float(g), params_m=float(g)))
    return Oracle(pl.DataFrame(rows), {"dataset": "m", "truth": "mlp"})


def test_the_recommendation_never_falls_and_says_when_to_stop():
    sim = run_simulation(misleading_oracle(), ["complexity-up"], ["logme", "mlp"], n_runs=20,
                         budgets=np.array([1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 40.0]), baseline=None,
                         recommend_at=[1.0, 4.0, 40.0])
    rows = {r["budget_s"]: r for r in sim.recommendation}
    medians = [r["median"] for r in sim.recommendation if r["median"] is not None]
    assert medians == sorted(medians)
    # at 1 s logme has seen a alone (0.96); at 4 s it has seen all four and picks d (0.71): stop at 1 s
    assert (rows[1.0]["strategy"], rows[1.0]["evaluator"], rows[1.0]["median"]) == ("complexity-up", "logme", 0.96)
    assert (rows[4.0]["evaluator"], rows[4.0]["median"], rows[4.0]["stop_s"]) == ("logme", 0.96, 1.0)
    assert rows[4.0]["backbone"] == "a.t"
    # at 40 s mlp has seen all four and holds a (0.96) too: tied with logme stopped at 1 s, logme kept
    assert rows[40.0]["median"] == 0.96
    assert {(t["evaluator"], t["median"]) for t in rows[40.0]["tied"]} == {("mlp", 0.96)}


def test_a_choice_that_gets_worse_with_budget_is_named():
    sim = run_simulation(misleading_oracle(), ["complexity-up"], ["logme", "mlp"], n_runs=20,
                         budgets=np.array([1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 40.0]), baseline=None)
    worse = sim.summary["worse_with_budget"]
    assert [(w["strategy"], w["evaluator"]) for w in worse] == [("complexity-up", "logme")]
    w = worse[0]
    assert (w["peak"], w["peak_s"], w["final"], w["final_s"]) == (0.96, 1.0, 0.71, 40.0)
    assert (w["favourite"], w["favourite_score"]) == ("d.t", 0.71)
    assert any(n.startswith("complexity-up × logme gets worse with more budget: 0.9600 at 1 s → 0.7100 at "
                            "40 s; its evaluator's favourite (d.t) scores 0.7100") for n in sim.summary["notes"])


# ------------------------------------------------------------------------------------------------
# How the answer reads (issue 24 item 2): the change mark follows the leading choice; ties summarised.

def rec_row(label, budget_s, strategy, evaluator="mlp@0.03", median=0.9, tied=(), source="scale", **extra):
    """A recommendation row as summary.json holds it, written by hand."""
    return dict(budget_s=budget_s, label=label, source=source, strategy=strategy, evaluator=evaluator,
                median=median, q25=median - 0.01, q75=median, backbone="vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                backbone_share=0.75, n_selected=75, n_runs=100, best={"strategy": strategy, "evaluator": evaluator},
                tied=[dict(strategy=s, evaluator=e, median=m, q25=m - 0.01, q75=m, backbone="b", backbone_share=0.5)
                      for s, e, m in tied], **extra)


# the demo's answer of the issue: complexity-down, then dataset-size-down, then complexity-up, all at
# budgets of the oracle's time scale (none of them a "change" budget of the grid)
DEMO_ROWS = [rec_row("1 s", 1.0, "complexity-down", median=0.10),
             rec_row("5 s", 5.0, "dataset-size-down", median=0.91),
             rec_row("30 s", 30.0, "complexity-up", median=0.97),
             rec_row("2 min", 120.0, "complexity-up", median=0.97, source="change")]


def test_the_change_mark_follows_the_leading_choice():
    from simulate.cli import recommendation_lines
    from simulate.recommend import lead_changes, previous_row
    from simulate.report import recommendation_html

    assert [lead_changes(r, previous_row(DEMO_ROWS, i)) for i, r in enumerate(DEMO_ROWS)] == \
        [False, True, True, False]
    lines = recommendation_lines(DEMO_ROWS)[1:]
    assert [line.startswith(" ← ") for line in lines] == [False, True, True, False]
    assert lines[1].startswith(" ←   5 s: dataset-size-down × mlp@0.03")
    html = recommendation_html(DEMO_ROWS)
    trs = html.split("<table id='recommendation-table'>")[1].split("<tr")[2:]  # the header row left out
    assert ["the best choice changes" in tr for tr in trs] == [False, True, True, False]
    assert [tr.startswith(" class='change'") for tr in trs] == [False, True, True, False]
    # an answer after no answer is no change; with workers, each K's rows follow their own before
    none = dict(rec_row("1 s", 1.0, None), strategy=None, evaluator=None, median=None, q25=None, q75=None,
                backbone=None, backbone_share=None, reason="no strategy selects a backbone in most runs by then")
    assert not lead_changes(DEMO_ROWS[0], none) and not lead_changes(none, DEMO_ROWS[0])
    ks = [dict(r, workers=k) for k in (1, 4) for r in DEMO_ROWS[:2]]
    assert previous_row(ks, 2) is None and previous_row(ks, 3) is ks[2] and previous_row(ks, 1) is ks[0]


def test_ties_of_every_sampler_read_as_any_sampler():
    from simulate.cli import recommendation_lines
    from simulate.recommend import tie_summary
    from simulate.report import recommendation_html

    samplers = ["random", "complexity-up", "cycling"]
    choices = [(s, e) for e in ("mlp@0.03", "silhouette", "knn") for s in samplers]
    # every sampler with mlp@0.03 ties with the leader, and two of three with silhouette
    row = rec_row("30 s", 30.0, "cycling", median=0.9721,
                  tied=[("random", "mlp@0.03", 0.9720), ("complexity-up", "mlp@0.03", 0.9714),
                        ("random", "silhouette", 0.9700), ("cycling", "silhouette", 0.9690)])
    assert tie_summary(row, choices) == ("any sampler × mlp@0.03",
                                         ["random × silhouette 0.9700", "cycling × silhouette 0.9690"], True)
    # the third silhouette sampler tied too: that evaluator reads "any sampler" as well
    every = dict(row, tied=row["tied"] + [dict(row["tied"][3], strategy="complexity-up")])
    assert tie_summary(every, choices) == ("any sampler × mlp@0.03", ["any sampler × silhouette"], True)
    # every evaluator with the leader's strategy; every choice
    one = rec_row("1 s", 1.0, "cycling", tied=[("cycling", "silhouette", 0.9), ("cycling", "knn", 0.9)])
    assert tie_summary(one, choices)[0] == "cycling × any evaluator"
    all_tied = rec_row("1 s", 1.0, "cycling",
                       tied=[(s, e, 0.9) for s, e in choices if (s, e) != ("cycling", "mlp@0.03")])
    assert tie_summary(all_tied, choices) == ("any sampler × any evaluator", [], True)
    # without the list of choices (an old summary), or a sampler missing from the tie: named one by one
    assert tie_summary(row, None)[0] == "cycling × mlp@0.03"
    part = dict(row, tied=row["tied"][1:])
    assert tie_summary(part, choices)[:2] == ("cycling × mlp@0.03", [
        "complexity-up × mlp@0.03 0.9714", "random × silhouette 0.9700", "cycling × silhouette 0.9690"])
    # the command line and the report say it the same way
    line = recommendation_lines([row], choices)[1]
    assert line.startswith("   30 s: any sampler × mlp@0.03 (figures of cycling × mlp@0.03)  median 0.9721")
    assert line.endswith("; tied: random × silhouette 0.9700, cycling × silhouette 0.9690")
    html = recommendation_html([row], choices)
    assert ("<b><span class='nm'>any sampler</span> × <span class='nm'>mlp@0.03</span></b>"
            "<div class='sub'>figures of <span class='nm'>cycling</span> × <span class='nm'>mlp@0.03</span></div>"
            in html)
    assert "also tied within the noise: <span class='nm'>random</span> × <span class='nm'>silhouette 0.9700</span>" \
        in html


def test_the_report_names_what_gets_worse_in_one_box(tmp_path):
    from simulate.report import write_report

    sim = run_simulation(misleading_oracle(), ["complexity-up"], ["logme", "mlp"], n_runs=20,
                         budgets=np.array([1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 40.0]), baseline=None)
    page = write_report(sim, tmp_path / "r.html").read_text()
    box = page.split("id='worse-with-budget'")[1].split("</div>")[0]
    assert "1 strategy × evaluator choice gets worse with more budget" in box
    assert "complexity-up × logme gets worse with more budget: 0.9600 at 1 s → 0.7100 at 40 s" in box
    assert page.count("gets worse with more budget: 0.9600") == 1  # not repeated among the notes
