"""The league across datasets (issue 22 item 5): the benchmark pick (leave-one-out meta order), the
regret and p_beat_benchmark against a hand computation, strategies left out per oracle with a note,
and the command's one-line refusals."""
from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from shared.errors import VibesError
from shared.oracle import Oracle
from simulate.cli import main
from simulate.league import benchmark_pick, league_answer, run_league

TRUTHS = {"o1": {"a.t": 0.9, "b.t": 0.5, "c.t": 0.1},
          "o2": {"a.t": 0.2, "b.t": 0.8, "c.t": 0.5},
          "o3": {"a.t": 0.7, "b.t": 0.6, "c.t": 0.3}}
GMACS = {"a.t": 1.0, "b.t": 2.0, "c.t": 3.0}


def hand_oracle(name: str) -> Oracle:
    rows = [dict(dataset=name, backbone=b, evaluator="top1", fraction=1.0, seed=0, score=s, seconds=1.0,
                 status="ok", gmacs=GMACS[b], params_m=GMACS[b]) for b, s in TRUTHS[name].items()]
    return Oracle(pl.DataFrame(rows), {"dataset": name, "truth": "top1"})


def league_of_three(**kw):
    return run_league([(n, hand_oracle(n)) for n in TRUTHS], ["complexity-up"], None, n_runs=4,
                      budgets=np.array([1.0, 3.0]), **kw)


def test_benchmark_pick_is_the_leave_one_out_meta_first():
    # normalised ranks (0 best): o2 b 0, c .5, a 1; o3 a 0, b .5, c 1 -> for o1: a .5, b .25, c .75 -> b
    # o1 a 0, b .5, c 1; o3 the same -> for o2: a;  o1 and o2 -> for o3: a .5, b .25, c .75 -> b
    o = {n: hand_oracle(n) for n in TRUTHS}
    assert benchmark_pick(o["o1"].true_scores(), [o["o2"], o["o3"]]) == ("b.t", 0.5)
    assert benchmark_pick(o["o2"].true_scores(), [o["o1"], o["o3"]]) == ("a.t", 0.2)
    assert benchmark_pick(o["o3"].true_scores(), [o["o1"], o["o2"]]) == ("b.t", 0.6)


def test_league_regret_and_beating_the_benchmark_by_hand():
    lg = league_of_three()
    t = lg.table.filter(pl.col("budget_s").is_in([1.0, 3.0])).sort("oracle", "budget_s")
    # complexity-up evaluates a first (1 s each): at 1 s it holds a, at 3 s the best of the three
    assert t.get_column("median").to_list() == [0.9, 0.9, 0.2, 0.8, 0.7, 0.7]
    assert t.get_column("best_possible").to_list() == [0.9, 0.9, 0.8, 0.8, 0.7, 0.7]
    assert t.get_column("regret").to_list() == pytest.approx([0.0, 0.0, 0.6, 0.0, 0.0, 0.0])
    assert t.get_column("benchmark_backbone").to_list() == ["b.t", "b.t", "a.t", "a.t", "b.t", "b.t"]
    # o2 at 1 s holds a, which *is* its benchmark pick: not a win (strictly higher only)
    assert t.get_column("p_beat_benchmark").to_list() == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]


def test_league_answer_by_hand():
    lg = league_of_three()
    assert lg.answer_budgets == [1.0, 3.0]  # the budgets given (1 s is round, 3 s is not: both kept)
    rows = {r["budget_s"]: r for r in league_answer(lg.table, [1.0, 3.0])}
    assert rows[1.0]["strategy"] == "complexity-up"
    assert rows[1.0]["median_regret"] == pytest.approx(0.0)  # median of 0, 0.6, 0
    assert rows[1.0]["p_beat_benchmark"] == pytest.approx(2 / 3)
    assert rows[3.0]["p_beat_benchmark"] == pytest.approx(1.0)
    # the benchmark pick's regrets: o1 0.9-0.5, o2 0.8-0.2, o3 0.7-0.6 -> median 0.4
    assert rows[1.0]["benchmark_median_regret"] == pytest.approx(0.4)


def test_a_strategy_an_oracle_cannot_run_is_left_out_with_a_note():
    lg = run_league([(n, hand_oracle(n)) for n in TRUTHS], ["random", "imagenet-top1"], None, n_runs=3,
                    budgets=np.array([1.0, 3.0]))
    assert set(lg.table.get_column("strategy").unique()) == {"random"}
    assert any("imagenet-top1 left out" in n and n.startswith("3 oracles") for n in lg.notes)


def test_meta_in_a_league_is_leave_one_out():
    # meta's order for o1 comes from o2 and o3 (b first): at 1 s it holds b (0.5) on o1
    lg = run_league([(n, hand_oracle(n)) for n in TRUTHS], ["meta"], None, n_runs=2, budgets=np.array([1.0]))
    got = dict(lg.table.filter(pl.col("budget_s") == 1.0).select("oracle", "median").iter_rows())
    assert got == {"o1": 0.5, "o2": 0.2, "o3": 0.6}


def test_a_league_of_one_is_refused():
    with pytest.raises(VibesError, match="two oracles at least"):
        run_league([("o1", hand_oracle("o1"))])


def test_the_command_writes_the_league(tmp_path, capsys):
    for n in TRUTHS:
        hand_oracle(n).write(tmp_path / f"{n}.parquet")
    out = tmp_path / "out"
    assert main(["league", "--oracle", str(tmp_path / "o*.parquet"), "--strategy", "complexity-up",
                 "--runs", "3", "--budgets", "1,3", "--out", str(out)]) == 0
    table = pl.read_parquet(out / "league.parquet")
    assert table.columns == ["oracle", "strategy", "evaluator", "workers", "budget_s", "median", "q25", "q75",
                             "best_possible", "regret", "benchmark_backbone", "benchmark_score", "p_beat_benchmark"]
    assert table.height == 3 * 2
    doc = json.loads((out / "league.json").read_text())
    assert len(doc["oracles"]) == 3 and (out / "league.html").exists()
    assert "league of 3 oracles" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--oracle", "nothing-here-*.parquet"], "matches nothing"),
    (["--oracle", "ONE"], "two oracles at least"),
    (["--oracle", "ONE", "--oracle", "TWO", "--strategy", "fastest"], "unknown strategy 'fastest'"),
    (["--oracle", "ONE", "--oracle", "TWO", "--runs", "0"], "--runs must be >= 1"),
])
def test_bad_league_inputs_get_one_line(tmp_path, capsys, args, message):
    for n, label in (("o1", "ONE"), ("o2", "TWO")):
        hand_oracle(n).write(tmp_path / f"{n}.parquet")
        args = [str(tmp_path / f"{n}.parquet") if a == label else a for a in args]
    out = tmp_path / "out"
    assert main(["league", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_league_quality_has_the_leave_one_out_meta_prior():
    # o1's meta prior from o2, o3 (normalised ranks a .5, b .25, c .75) orders b, a, c; its truth a, b, c:
    # pairs (a,b) discordant, (a,c) and (b,c) concordant -> Kendall tau-b = (2 - 1) / 3
    lg = league_of_three()
    meta = lg.quality.filter((pl.col("oracle") == "o1") & (pl.col("spec") == "meta")).row(0, named=True)
    assert meta["kendall_tau_b"] == pytest.approx(1 / 3)
    assert meta["pick"] == "b.t" and meta["top1_regret"] == pytest.approx(0.4)
    summary = {r["spec"]: r for r in lg.quality_summary().to_dicts()}
    assert summary["meta"]["n_oracles"] == 3 and list(summary)[0] == "top1"  # the truth first


def test_the_league_answer_never_gets_worse_and_says_when_to_stop():
    # a proxy "p" = 1 - truth: complexity-up x p holds a at 1 s (regrets 0, 0.6, 0: median 0) and the
    # proxy's favourite, the worst backbone, at 3 s (regrets 0.8, 0.6, 0.4: median 0.6)
    def with_proxy(name):
        o = hand_oracle(name)
        proxy = o.frame.with_columns(pl.lit("p").alias("evaluator"), (1 - pl.col("score")).alias("score"))
        return Oracle(pl.concat([o.frame, proxy]), o.meta)

    lg = run_league([(n, with_proxy(n)) for n in TRUTHS], ["complexity-up"], ["p"], n_runs=2,
                    budgets=np.array([1.0, 3.0]))
    at3 = lg.table.filter(pl.col("budget_s") == 3.0).sort("oracle")
    assert at3.get_column("regret").to_list() == pytest.approx([0.8, 0.6, 0.4])
    rows = {r["budget_s"]: r for r in league_answer(lg.table, [1.0, 3.0])}
    assert (rows[3.0]["median_regret"], rows[3.0]["stop_s"]) == (pytest.approx(0.0), 1.0)
    assert rows[3.0]["p_beat_benchmark"] == pytest.approx(2 / 3)  # at 1 s: a beats b on o1 and o3, ties a on o2
