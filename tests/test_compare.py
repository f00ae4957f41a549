"""`simulate compare OUT_DIR...`: one report over several simulate outputs (headless Chromium where
installed), its regret view and its tables; `simulate --...` keeps working beside it."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import polars as pl
import pytest

from simulate.cli import main
from simulate.compare import compare_figure, load_output
from tests.conftest import random_oracle

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Two simulate outputs of different oracles (datasets) and strategy sets."""
    tmp = tmp_path_factory.mktemp("compare")
    a = random_oracle(n_backbones=15, rng_seed=1)
    b = random_oracle(n_backbones=12, rng_seed=2)
    b.meta["dataset"] = "toy2"
    a.write(tmp / "a.parquet")
    b.write(tmp / "b.parquet")
    assert main(["--oracle", str(tmp / "a.parquet"), "--strategy", "random", "--strategy", "sh:cycling",
                 "--evaluator", "mlp", "--evaluator", "mlp@0.1", "--runs", "30", "--baseline", "arch001.tag1",
                 "--out", str(tmp / "outA"), "--no-report"]) == 0
    assert main(["--oracle", str(tmp / "b.parquet"), "--strategy", "random", "--strategy", "complexity-up",
                 "--runs", "30", "--baseline", "arch002.tag2", "--out", str(tmp / "outB"), "--no-report"]) == 0
    return tmp


def _dom(path, fragment, profile):
    p = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", path.as_uri() + fragment],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def _legend(dom):
    return re.findall(r'class="legendtext"[^>]*>([^<]*)', dom)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None,
                    reason="headless Chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
def test_compare_draws_in_headless_chromium_and_its_controls_work(outputs, tmp_path):
    html_path = tmp_path / "compare.html"
    assert main(["compare", str(outputs / "outA"), str(outputs / "outB"), "--out", str(html_path)]) == 0
    html = html_path.read_text()
    assert "https://" not in re.sub(r'"[^"]*https://[^"]*"', "", html.split("<script")[0])  # no remote assets
    dom = _dom(html_path, "", tmp_path / "p1")
    assert dom.count('class="plot-container plotly"') == 1
    # by default the 3 best pairs of each output drawn: 3 of A's 4 and B's 2, each with its IQR band; every
    # pair and both baselines in the legend (the 4th of A greyed, a click away)
    assert len(re.findall(r'class="js-fill" d="M', dom)) == 5
    assert 'data-curves="5"' in dom
    legend = _legend(dom)
    for name in ("sh:cycling × mlp@0.1", "complexity-up × mlp", "baseline arch002.tag2", "baseline arch001.tag1"):
        assert name in legend
    assert len(legend) == 4 + 2 + 2
    assert "toy · outA" in dom and "toy2 · outB" in dom  # the outputs' check boxes
    assert "true score of the selected backbone" in re.search(r'class="ytitle"[^>]*>([^<]*)', dom).group(1)
    assert "1 min" in dom  # readable time ticks
    # every pair drawn, or only the best of each, from the menu (here the URL fragment)
    dom = _dom(html_path, "#top=all", tmp_path / "p3")
    assert len(re.findall(r'class="js-fill" d="M', dom)) == 6 and 'data-curves="6"' in dom
    dom = _dom(html_path, "#top=1", tmp_path / "p4")
    assert len(re.findall(r'class="js-fill" d="M', dom)) == 2 and 'data-curves="2"' in dom
    # the regret view of output B alone, bands off: set from the URL fragment
    dom = _dom(html_path, "#y=regret&outs=1&bands=0", tmp_path / "p2")
    assert re.search(r'class="ytitle"[^>]*>([^<]*)', dom).group(1).startswith("regret")
    assert len(re.findall(r'class="js-fill" d="M', dom)) == 0
    legend = _legend(dom)
    assert "sh:cycling × mlp@0.1" not in legend and "complexity-up × mlp" in legend and "random × mlp" in legend
    # the recommendations side by side: one column per output
    table = dom.split('id="recommendations"')[1].split("</table>")[0]
    assert table.count("<th>") == 3
    for name in ("outA", "outB"):  # every output's answer, at its own budgets, in the table
        for r in json.loads((outputs / name / "summary.json").read_text())["recommendation"]:
            assert f"<td>{r['label']}</td>" in table and f"<b>{r['strategy']} × {r['evaluator']}</b>" in table


def test_side_by_side_says_why_a_cell_has_no_answer():
    """An output with no row at a budget is not an output without an answer; a missing quartile reads as
    the recommendation's own words, never as a dash (issue 24 item 7)."""
    from simulate.compare import recommendation_table

    def row(label, t, median, q25, q75, strategy="cycling"):
        return dict(budget_s=t, label=label, strategy=strategy, evaluator="mlp", median=median, q25=q25, q75=q75,
                    backbone="b.x", backbone_share=0.25)

    a = {"summary": {"recommendation": [row("1 s", 1.0, 0.5, 0.4, 0.6),
                                        row("1 min", 60.0, 0.8, None, 0.9136)]}}
    b = {"summary": {"recommendation": [dict(row("1 s", 1.0, None, None, None, strategy=None), evaluator=None,
                                             reason="no strategy selects a backbone in most runs by then")]}}
    old = {"summary": {}}  # written by a simulate before the recommendation
    table = recommendation_table([a, b, old], ["A", "B", "old"])
    rows = [" | ".join(" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in tr.split("</td>")[:-1])
            for tr in table.split("<tr>")[2:]]  # each cell's text, the header row left out
    assert rows == [
        "1 s | cycling × mlp 0.5000 (IQR 0.4000–0.6000) b.x (25%) | none — no strategy selects a backbone in most "
        "runs by then | no recommendation in this output",
        "1 min | cycling × mlp 0.8000 (q75 0.9136; a quarter of the runs or more select nothing yet) b.x (25%) | "
        "no row at this budget | no recommendation in this output"]
    assert "—–" not in table and "<td>—</td>" not in table


def test_regret_is_best_possible_minus_the_score(outputs):
    outs = [load_output(outputs / "outA"), load_output(outputs / "outB")]
    fig = compare_figure(outs, ["a", "b"])
    best = [o["summary"]["best_possible"]["true_score"] for o in outs]
    medians = [t for t in fig.data if t.meta["role"] == "median"]
    assert len(medians) == 6
    for t in medians:
        raw, regret = t.meta["raw"], t.meta["regret"]
        want = pl.read_parquet(outputs / ("outA" if t.meta["out"] == 0 else "outB") / "bsec.parquet").filter(
            (pl.col("strategy") == t.meta["strategy"]) & (pl.col("evaluator") == t.meta["evaluator"])
        ).sort("budget_s")["median"].to_list()
        assert raw == want
        assert all((r is None and v is None) or abs(r - (best[t.meta["out"]] - v)) < 1e-12
                   for r, v in zip(regret, raw))
    lo = [t for t in fig.data if t.meta["role"] == "band-lo"][0]
    assert lo.meta["regret"][-1] == pytest.approx(best[lo.meta["out"]] - [t for t in fig.data if t.meta["role"] ==
                                                  "band-hi"][0].meta["raw"][-1])  # the band flips


def test_compare_errors_are_one_line(outputs, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 2
    assert "has no summary.json or bsec.parquet" in capsys.readouterr().err
    assert main(["compare", str(outputs / "outA"), str(outputs / "outB"), "--label", "x"]) == 2
    assert "--label given 1 time(s) for 2 output folder(s)" in capsys.readouterr().err
    assert main(["compare"]) == 2  # no folder: click's usage error


def test_compare_help_and_simulate_help_both_work(capsys):
    assert main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "simulate compare" in out and "Examples:" in out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--strategy" in out and "simulate compare" in out  # the epilog names the subcommand
    # the subcommands, each with its line, before the options (issue 24 item 8)
    commands = out.split("Commands")[1].split("Common:")[0]  # the options' first section (issue 25 item 4)
    assert [line.split()[0] for line in commands.splitlines()[1:] if line.startswith("  ") and
            not line.startswith("   ")] == ["compare", "import", "league"]


def test_labels_default_to_dataset_and_folder(outputs, tmp_path):
    from simulate.compare import write_compare

    path = write_compare([outputs / "outA", outputs / "outA"], tmp_path / "c.html")
    text = path.read_text()
    assert "toy · outA #1" in text and "toy · outA #2" in text
    summary = json.loads((outputs / "outA" / "summary.json").read_text())
    from shared.durations import format_duration

    first = summary["recommendation"][0]
    assert first["label"] == format_duration(first["budget_s"])


def test_by_default_the_best_three_pairs_per_output_are_drawn(outputs):
    """The pairs drawn are each output's 3 best by the summary's auc_log (ranked here from summary.json
    itself); the rest are legendonly, their bands hidden; a colour per strategy, a dash per evaluator,
    a marker per output; the legend lists the drawn curves first."""
    outs = [load_output(outputs / "outA"), load_output(outputs / "outB")]
    fig = compare_figure(outs, ["a", "b"])
    for i, name in enumerate(("outA", "outB")):
        rows = json.loads((outputs / name / "summary.json").read_text())["strategies"]
        best = sorted(rows, key=lambda r: (-r["auc_log"], r["strategy"], r["evaluator"]))
        want = {(r["strategy"], r["evaluator"]) for r in best[:3]}
        medians = [t for t in fig.data if t.meta["role"] == "median" and t.meta["out"] == i]
        assert len(medians) == len(rows)
        assert {(t.meta["strategy"], t.meta["evaluator"]) for t in medians if t.visible is True} == want
        assert all(t.visible == "legendonly" for t in medians if (t.meta["strategy"], t.meta["evaluator"]) not in want)
        for t in medians:
            bands = [b for b in fig.data if b.meta["role"].startswith("band") and b.meta["median"] == fig.data.index(t)]
            assert len(bands) == 2 and all(b.visible is (t.visible is True) for b in bands)
            assert all(m.marker.symbol == ("circle", "square")[i] for m in [t])
    medians = [t for t in fig.data if t.meta["role"] == "median"]
    colour = {t.meta["strategy"]: t.line.color for t in medians}
    dash = {t.meta["evaluator"]: t.line.dash for t in medians}
    assert all(t.line.color == colour[t.meta["strategy"]] and t.line.dash == dash[t.meta["evaluator"]] for t in medians)
    assert len(set(colour.values())) == len(colour) and len(set(dash.values())) == len(dash)
    drawn_ranks = [t.legendrank for t in medians if t.visible is True]
    assert max(drawn_ranks) < min(t.legendrank for t in medians if t.visible != True)  # noqa: E712
    assert sum(t.visible is True for t in compare_figure(outs, ["a", "b"], top=None).data
               if t.meta["role"] == "median") == 6
    assert sum(t.visible is True for t in compare_figure(outs, ["a", "b"], top=1).data
               if t.meta["role"] == "median") == 2


def test_top_option(outputs, tmp_path, capsys):
    assert main(["compare", str(outputs / "outA"), "--top", "all", "--out", str(tmp_path / "a.html")]) == 0
    assert "<option value='all' selected>all</option>" in (tmp_path / "a.html").read_text()
    assert main(["compare", str(outputs / "outA"), "--top", "2", "--out", str(tmp_path / "b.html")]) == 0
    assert "<option value='2' selected>best 2</option>" in (tmp_path / "b.html").read_text()
    capsys.readouterr()
    assert main(["compare", str(outputs / "outA"), "--top", "x"]) == 2
    assert "--top must be a positive number of curves per output, or all" in capsys.readouterr().err
    assert main(["compare", str(outputs / "outA"), "--top", "0"]) == 2
