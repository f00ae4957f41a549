"""How good is each evaluator (simulate/quality.py): statistics against scipy and the plain
definitions, the table against a hand-computed oracle, --truth and --quality-only as a user runs them."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from scipy import stats

from shared.errors import VibesError
from shared.oracle import Oracle
from simulate import quality as q
from simulate.cli import main
from tests.conftest import REPO, random_oracle


# --------------------------------------------------------------------------- τ-b and ρ
def tau_b_by_definition(x, y) -> float:
    """Kendall's τ-b transcribed from its definition: a loop over all pairs."""
    n, s, tx, ty = len(x), 0, 0, 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            s += dx * dy
            tx += dx == 0
            ty += dy == 0
    n0 = n * (n - 1) // 2
    return s / math.sqrt((n0 - tx) * (n0 - ty))


@pytest.mark.parametrize("seed", range(12))
def test_tau_b_and_rho_equal_scipy_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    x = rng.integers(0, int(rng.integers(2, 9)), n).astype(float)  # few distinct values: many ties
    y = rng.integers(0, int(rng.integers(2, 9)), n) + rng.choice([0.0, 0.5], n) * x
    want_tau, want_rho = stats.kendalltau(x, y).statistic, stats.spearmanr(x, y).statistic
    if np.isnan(want_tau):
        assert math.isnan(q.kendall_tau_b(x, y)) and math.isnan(q.spearman_rho(x, y))
    else:
        assert q.kendall_tau_b(x, y) == pytest.approx(want_tau, abs=1e-12)
        assert q.spearman_rho(x, y) == pytest.approx(want_rho, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_tau_b_equals_the_pairwise_definition(seed):
    rng = np.random.default_rng(100 + seed)
    x, y = rng.integers(0, 4, 60).astype(float), rng.integers(0, 5, 60).astype(float)
    assert q.kendall_tau_b(x, y) == pytest.approx(tau_b_by_definition(x, y), abs=1e-12)


def test_tau_b_and_rho_on_continuous_data_and_at_scale():
    rng = np.random.default_rng(7)
    x = rng.random(2000)
    y = x + rng.normal(0, 0.3, 2000)
    assert q.kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert q.spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert q.kendall_tau_b(x, -x) == pytest.approx(-1.0) and q.spearman_rho(x, x) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(12))
def test_weighted_tau_equals_scipy_with_many_ties(seed):
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(2, 400))
    x = rng.integers(0, int(rng.integers(2, 9)), n).astype(float)  # few distinct values: many ties
    y = rng.integers(0, int(rng.integers(2, 9)), n) + rng.choice([0.0, 0.5], n) * x
    want = stats.weightedtau(x, y).statistic  # default: hyperbolic 1/(r+1), additive, rank=True
    if np.isnan(want):
        assert math.isnan(q.weighted_tau(x, y))
    else:
        assert q.weighted_tau(x, y) == pytest.approx(want, abs=1e-12)


def test_weighted_tau_on_continuous_data_at_scale_and_by_hand():
    rng = np.random.default_rng(8)
    x = rng.random(2000)
    y = x + rng.normal(0, 0.3, 2000)
    assert q.weighted_tau(x, y) == pytest.approx(stats.weightedtau(x, y).statistic, abs=1e-12)
    assert q.weighted_tau(x, x) == pytest.approx(1.0) and q.weighted_tau(x, -x) == pytest.approx(-1.0)
    # n = 3: ranked by x (B, C, A) the weights are 1, 1/2, 1/3 and the pairs weigh AB 4/3 (discordant),
    # AC 5/6 (discordant), BC 3/2 (concordant): -2/11; ranked by y (A, B, C): AB 3/2 (d), AC 4/3 (d),
    # BC 5/6 (c): -6/11; the mean: -4/11
    assert q.weighted_tau([0.125, 0.375, 0.25], [0.75, 0.625, 0.375]) == pytest.approx(-4 / 11, abs=1e-15)
    # a swap at the top costs more than the same swap at the bottom; Kendall's tau sees no difference
    top, bottom = [1, 0, 2, 3, 4, 5], [0, 1, 2, 3, 5, 4]
    order = np.arange(6)
    assert q.kendall_tau_b(top, order) == pytest.approx(q.kendall_tau_b(bottom, order))
    assert q.weighted_tau(bottom, order) < q.weighted_tau(top, order)
    assert q.weighted_tau(bottom, order) == pytest.approx(stats.weightedtau(bottom, order).statistic, abs=1e-15)


def test_average_ranks_equal_scipy_rankdata():
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(q.average_ranks(x), stats.rankdata(x))
    np.testing.assert_allclose(q.average_ranks(x), [5, 1.5, 5, 3, 5, 1.5])  # by hand


@pytest.mark.parametrize("x, y", [([1.0, 1.0, 1.0], [0.1, 0.2, 0.3]), ([0.5], [0.5]), ([], [])])
def test_undefined_correlations_are_nan(x, y):
    assert math.isnan(q.kendall_tau_b(x, y)) and math.isnan(q.spearman_rho(x, y))
    assert math.isnan(q.weighted_tau(x, y)) and math.isnan(q.weighted_tau(y, x))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="differ in length"):
        q.kendall_tau_b([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        q.spearman_rho([1, np.nan], [1, 2])


# --------------------------------------------------------------------------- regret and top 5
def test_top1_regret_hand_computed():
    assert q.top1_regret([0.1, 0.9, 0.5], [0.8, 0.6, 0.7]) == pytest.approx(0.2)  # picks 0.6
    assert q.top1_regret([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == 0.0
    # a tie for the top of pred: the mean over the tied (a random tie break's expectation)
    assert q.top1_regret([1.0, 1.0, 0.0], [0.9, 0.5, 1.0]) == pytest.approx(1.0 - 0.7)


@pytest.mark.parametrize("pred, truth, want", [
    ([1, 2, 3], [0, 0, 1], 1.0),  # n < 5: everything is in the top 5
    ([10, 9, 8, 7, 6, 5], [0, 0, 0, 0, 0, 1], 0.0),  # the best is 6th
    ([10, 9, 8, 7, 6, 5], [0, 0, 0, 0, 1, 0], 1.0),  # the best is 5th
    ([7, 6, 5, 4, 4, 4, 1], [0, 0, 0, 0, 1, 0, 0], 2 / 3),  # 3 above; 2 of the 3 tied at 4 make it
    ([9, 8, 7, 7, 7, 7, 0], [0, 0, 0, 0, 0, 1, 0], 3 / 4),  # 2 above; 3 of 4 tied at 7
    ([9, 8, 7, 7, 7, 7, 0], [0, 0, 0, 1, 1, 0, 0], 1.0),  # two tied-best, 3 drawn of 4: one always in
    ([9, 8, 7, 6, 5, 5, 5], [0, 0, 0, 0, 0, 0, 1], 1 / 3),  # 4 above, 1 of 3 tied at 5
])
def test_best_in_top5_hand_computed(pred, truth, want):
    assert q.best_in_top_k(pred, truth) == pytest.approx(want)


def test_best_in_top5_matches_random_tie_breaks():
    rng = np.random.default_rng(3)
    pred, truth = np.array([7, 6, 5, 4, 4, 4, 1.0]), np.array([0, 0, 0, 0, 1, 0, 0.0])
    hits = 0
    for _ in range(4000):  # break ties by a random secondary key, take the 5 highest
        top = np.lexsort((rng.random(pred.size), -pred))[:5]
        hits += truth[top].max() == truth.max()
    assert hits / 4000 == pytest.approx(2 / 3, abs=0.03)


# --------------------------------------------------------------------------- the table
def hand_oracle() -> Oracle:
    """4 pool backbones A-D (E's truth failed); dyadic scores, so every mean is exact."""
    rows = []

    def add(b, ev, frac, seed, score, sec=10.0, status="ok"):
        rows.append(dict(dataset="hand", backbone=b, evaluator=ev, fraction=frac, seed=seed,
                         score=score if status == "ok" else None, seconds=sec, status=status,
                         error=None if status == "ok" else "RuntimeError: boom",
                         params_m={"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0, "E": 9.0}[b],
                         gmacs={"A": 5.0, "B": None, "C": 1.0, "D": 1.0, "E": 1.0}[b], feature_dim=64,
                         pretrain_dataset={"A": "ImageNet-1k", "B": "LAION-2B"}.get(b)))

    for b, (s0, s1) in dict(A=(0.875, 0.625), B=(0.5, 0.75), C=(0.5, 0.25), D=(0.25, 0.25)).items():
        add(b, "mlp", 1.0, 0, s0)
        add(b, "mlp", 1.0, 1, s1)
    add("E", "mlp", 1.0, 0, None, status="failed")
    add("E", "mlp", 1.0, 1, None, status="failed")
    for b, s, sec in [("A", 0.125, 2.0), ("B", 0.375, 4.0), ("C", 0.25, 6.0), ("E", 0.99, 1.0)]:
        add(b, "knn", 1.0, 0, s, sec)  # D has no knn row at 1.0; E is not in the pool
    add("D", "knn", 1.0, 0, None, 7.0, status="failed")
    for b, (s0, s1), (c0, c1) in [("A", (0.5, 0.5), (1, 1)), ("B", (0.75, 0.25), (1, 3)),
                                  ("C", (0.25, 0.25), (2, 2)), ("D", (0.125, 0.375), (3, 5))]:
        add(b, "knn", 0.1, 0, s0, float(c0))
        add(b, "knn", 0.1, 1, s1, float(c1))
    add("A", "hscore", 0.1, 0, 1.0)
    return Oracle(pl.DataFrame(rows), {"truth": "mlp", "dataset": "hand", "weights": "random"})


def test_quality_table_hand_computed():
    got = q.evaluate(hand_oracle())
    t = {r["spec"]: r for r in got.table.iter_rows(named=True)}
    assert list(t) == ["mlp", "hscore@0.1", "knn", "knn@0.1", "params_m", "gmacs", "feature_dim",
                       "mlp seed 0 vs seed 1"]
    truth = t["mlp"]  # ε = A .75, B .625, C .375, D .25
    assert (truth["kind"], truth["n"], truth["n_pool"], truth["kendall_tau_b"], truth["top1_regret"]) == \
        ("truth", 4, 4, 1.0, 0.0)
    assert truth["median_seconds"] == 10.0 and truth["total_seconds"] == 40.0
    knn = t["knn"]  # A .125, B .375, C .25 (D failed): C-D = 1 - 2 over 3 pairs
    assert knn["n"] == 3 and knn["kendall_tau_b"] == pytest.approx(-1 / 3)
    assert knn["spearman_rho"] == pytest.approx(-0.5)  # 1 - 6·6 / (3·8)
    assert knn["weighted_tau"] == pytest.approx(-4 / 11)  # see test_weighted_tau_on_continuous_data...
    assert knn["top1_regret"] == pytest.approx(0.75 - 0.625) and knn["pick"] == "B"
    assert knn["best_in_top5"] == 1.0 and knn["median_seconds"] == 4.0 and knn["total_seconds"] == 12.0
    k01 = t["knn@0.1"]  # means A .5, B .5, C .25, D .25: 4 concordant pairs, 2 tied in ε̃
    assert k01["kendall_tau_b"] == pytest.approx(4 / math.sqrt(4 * 6))
    assert k01["spearman_rho"] == pytest.approx(4 / math.sqrt(20))
    assert k01["top1_regret"] == pytest.approx(0.75 - (0.75 + 0.625) / 2)
    assert (k01["pick"], k01["n_pick_ties"]) == ("A", 2)
    assert k01["median_seconds"] == 2.0 and k01["total_seconds"] == 9.0  # per backbone 1, 2, 2, 4
    hs = t["hscore@0.1"]
    assert hs["n"] == 1 and hs["kendall_tau_b"] is None and hs["top1_regret"] == 0.0
    params = t["params_m"]  # bigger is better: D (the worst) is picked
    assert params["kendall_tau_b"] == pytest.approx(-1.0) and params["top1_regret"] == pytest.approx(0.5)
    assert params["direction"] == "bigger is better" and params["median_seconds"] == 0.0
    gm = t["gmacs"]  # B has none: A 5, C 1, D 1
    assert gm["n"] == 3 and gm["kendall_tau_b"] == pytest.approx(2 / math.sqrt(2 * 3)) and gm["pick"] == "A"
    fd = t["feature_dim"]  # all 64: no correlation; the pick is a 4-way tie
    assert fd["kendall_tau_b"] is None and fd["top1_regret"] == pytest.approx(0.75 - 0.5)
    ceiling = t["mlp seed 0 vs seed 1"]  # C-D = 3 - 1; 1 tie in each seed
    assert ceiling["kind"] == "noise ceiling" and ceiling["kendall_tau_b"] == pytest.approx(2 / 5)
    assert any("imagenet_top1" in n for n in got.notes)  # no values: not reported, said so
    assert any(n.startswith("evaluator knn:") and "1 of 4" in n for n in got.notes)
    pts = got.points.filter(pl.col("spec") == "knn@0.1").sort("backbone")
    assert pts.get_column("eps_tilde").to_list() == [0.5, 0.5, 0.25, 0.25]
    assert pts.get_column("pretrain_dataset").to_list() == ["ImageNet-1k", "LAION-2B", None, None]


def test_one_seed_has_no_noise_ceiling():
    o = random_oracle(seeds=1)
    got = q.evaluate(o)
    assert "noise ceiling" not in got.table.get_column("kind").to_list()
    assert any("one seed only" in n for n in got.notes)


def test_with_truth_moves_every_true_score():
    o = q.with_truth(hand_oracle(), "knn")
    assert o.truth == "knn" and o.meta["oracle_truth"] == "mlp"
    pool = o.true_scores()
    assert pool.get_column("backbone").to_list() == ["A", "B", "C", "E"]
    got = {r["spec"]: r for r in q.evaluate(o).table.iter_rows(named=True)}
    assert got["knn"]["kind"] == "truth" and got["knn"]["kendall_tau_b"] == 1.0
    assert got["mlp"]["kind"] == "evaluator" and got["mlp"]["n"] == 3  # E has no ok mlp row
    assert q.with_truth(hand_oracle(), None).truth == "mlp"


@pytest.mark.parametrize("name, message", [
    ("nope", "no ok rows of evaluator 'nope' at fraction 1.0; evaluators it has at fraction 1.0: knn, mlp"),
    ("hscore", "it has 'hscore' only at fraction(s) 0.1"),
])
def test_with_truth_unknown_is_one_line(name, message):
    with pytest.raises(VibesError, match="--truth") as err:
        q.with_truth(hand_oracle(), name)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_format_table_one_aligned_line_per_spec():
    got = q.evaluate(hand_oracle())
    lines = q.format_table(got).splitlines()
    assert len(lines) == 1 + got.table.height
    head = lines[0]
    end = head.index("  pick")  # fixed-width columns up to here, then the pick
    for line in lines[1:]:
        assert len(line) >= end and line[end - 1] != " " and line[end:end + 2] == "  "
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["knn"][:9] == ["knn", "evaluator", "-0.3333", "-0.5000", "-0.3636", "0.1250", "yes", "4", "s"]
    assert rows["knn"][9:] == ["3/4", "B"] and rows["feature_dim"][3] == "—" and rows["feature_dim"][4] == "—"


# --------------------------------------------------------------------------- the CLI
def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "simulate.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_quality_only_prints_the_table_and_runs_no_strategy(tmp_path):
    hand_oracle().write(tmp_path / "o.parquet")
    p = run_cli("--oracle", str(tmp_path / "o.parquet"), "--quality-only", "--out", str(tmp_path / "out"))
    assert p.returncode == 0, p.stderr
    specs = {line.split()[0] for line in p.stdout.splitlines()[2:] if line and not line.startswith("wrote")}
    assert {"mlp", "knn", "knn@0.1", "hscore@0.1", "params_m", "gmacs", "feature_dim"} <= specs
    assert sorted((tmp_path / "out").iterdir()) == [tmp_path / "out" / "quality.parquet"]  # no runs
    table = pl.read_parquet(tmp_path / "out" / "quality.parquet")
    assert list(table.schema) == list(q.TABLE_SCHEMA)
    ev = hand_oracle().evaluators()
    have = {e if f == 1.0 else f"{e}@{f:g}" for e, f in ev.select("evaluator", "fraction").iter_rows()}
    assert set(table.filter(pl.col("kind").is_in(["truth", "evaluator"]))["spec"]) == have


def test_quality_only_without_out_writes_nothing(tmp_path, capsys, monkeypatch):
    hand_oracle().write(tmp_path / "o.parquet")
    monkeypatch.chdir(tmp_path)
    assert main(["--oracle", str(tmp_path / "o.parquet"), "--quality-only"]) == 0
    out = capsys.readouterr().out
    assert "knn@0.1" in out and "quality.parquet" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.parquet"]


def test_simulate_writes_quality_and_follows_truth(tmp_path):
    hand_oracle().write(tmp_path / "o.parquet")
    out = tmp_path / "out"
    assert main(["--oracle", str(tmp_path / "o.parquet"), "--truth", "knn", "--runs", "5",
                 "--strategy", "random", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["truth"] == "knn" and summary["pool_size"] == 3 + 1  # A, B, C, E
    assert any("chosen with --truth" in n and "own truth is mlp" in n for n in summary["notes"])
    assert summary["strategies"][0]["evaluator"] == "knn"  # the default evaluator follows the truth
    table = pl.read_parquet(out / "quality.parquet")
    assert table.filter(pl.col("kind") == "truth")["spec"].to_list() == ["knn"]
    html = (out / "report.html").read_text()
    assert "truth evaluator <code>knn</code>" in html and "id='quality-table'" in html
    assert html.count("class='qrow'") == table.height


def test_unknown_truth_is_one_line_exit_2(tmp_path):
    hand_oracle().write(tmp_path / "o.parquet")
    p = run_cli("--oracle", str(tmp_path / "o.parquet"), "--truth", "mlp-sklearn", "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --truth 'mlp-sklearn'") and "knn, mlp" in last
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- report presentation
def test_bsec_band_is_drawn_only_where_both_quartiles_exist():
    from simulate.report import _band

    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    lo = np.array([np.nan, 0.1, 0.2, np.nan, 0.3])
    hi = np.array([0.4, 0.5, 0.6, 0.7, 0.8])
    bx, by = _band(x, lo, hi)
    # one closed polygon per stretch (budgets 2-3, then 5), None between: nothing bridges a gap
    assert bx == [2.0, 3.0, 3.0, 2.0, None, 5.0, 5.0, None]
    assert by == [0.5, 0.6, 0.2, 0.1, None, 0.8, 0.3, None]
    assert _band(x, np.full(5, np.nan), hi) == ([], [])


# --------------------------------------------------------------------------- the meta prior as a baseline
def reference_oracle(dataset: str, scores: dict[str, float]) -> Oracle:
    rows = [dict(dataset=dataset, backbone=b, evaluator="mlp", fraction=1.0, seed=0, score=s, seconds=1.0,
                 status="ok", error=None) for b, s in scores.items()]
    return Oracle(pl.DataFrame(rows), {"truth": "mlp", "dataset": dataset})


REFERENCES = [reference_oracle("r1", {"A": 0.9, "B": 0.8, "C": 0.7, "X": 0.1}),
              reference_oracle("r2", {"B": 0.5, "A": 0.4})]


def test_meta_prior_is_a_static_baseline_hand_computed():
    # normalised ranks (0 = best): r1 A 0, B 1/3, C 2/3 (X not in the pool); r2 B 0, A 1;
    # mean: A 1/2, B 1/6, C 2/3, D in no reference -> eps~ = 1 - mean: A 1/2, B 5/6, C 1/3
    got = q.evaluate(hand_oracle(), priors=[("r1.parquet", REFERENCES[0]), REFERENCES[1]])
    t = {r["spec"]: r for r in got.table.iter_rows(named=True)}
    assert list(t)[-3:] == ["feature_dim", "meta", "mlp seed 0 vs seed 1"]
    meta = t["meta"]  # ε: A .75, B .625, C .375; pairs AB discordant, AC and BC concordant
    assert (meta["kind"], meta["n"], meta["n_pool"], meta["pick"]) == ("static", 3, 4, "B")
    assert meta["kendall_tau_b"] == pytest.approx(1 / 3) and meta["top1_regret"] == pytest.approx(0.125)
    eps_tilde, truth = [0.5, 5 / 6, 1 / 3], [0.75, 0.625, 0.375]
    assert meta["spearman_rho"] == pytest.approx(stats.spearmanr(eps_tilde, truth).statistic)
    assert meta["weighted_tau"] == pytest.approx(stats.weightedtau(eps_tilde, truth).statistic)
    assert meta["median_seconds"] == 0.0 and meta["direction"] == q.META_DIRECTION
    pts = got.points.filter(pl.col("spec") == "meta").sort("backbone")
    np.testing.assert_allclose(pts.get_column("eps_tilde").to_numpy(), eps_tilde)
    assert any(n.startswith("static baseline meta: 1 of 4") for n in got.notes)
    # without priors there is no meta row
    assert "meta" not in q.evaluate(hand_oracle()).table.get_column("spec").to_list()


def test_meta_baseline_takes_the_pool_and_any_references():
    pool = hand_oracle().true_scores()
    frames = [r.true_scores().select("backbone", "true_score") for r in REFERENCES]
    for refs in (REFERENCES, frames, [("a", REFERENCES[0]), ("b", REFERENCES[1])]):
        row, pts, notes = q.meta_baseline(pool, refs)
        assert row["spec"] == "meta" and row["kendall_tau_b"] == pytest.approx(1 / 3) and len(notes) == 1
    row, pts, notes = q.meta_baseline(pool, [REFERENCES[1]])  # one reference: B 0, A 1 -> eps~ B 1, A 0
    assert row["pick"] == "B" and row["n"] == 2 and row["kendall_tau_b"] == pytest.approx(-1.0)
    row, pts, notes = q.meta_baseline(pool, [reference_oracle("r3", {"Y": 1.0, "Z": 0.5})])
    assert row is None and pts is None and "no pool backbone is in any" in notes[0]


def test_meta_prior_refuses_the_oracle_under_study():
    with pytest.raises(VibesError, match="oracle under study"):
        q.evaluate(hand_oracle(), priors=[reference_oracle("hand", {"A": 1.0, "B": 0.5})])
