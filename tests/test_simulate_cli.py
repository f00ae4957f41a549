"""simulate as a user runs it: outputs, summary, --list, one-line errors with exit status 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest

from simulate.cli import main
from tests.conftest import REPO, random_oracle


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "simulate.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env=dict(os.environ, **(env or {})), timeout=300)


def test_cycling_ten_runs_on_timm_sketch(timm_results, tmp_path):
    p = run_cli("--timm-results", str(timm_results), "--strategy", "cycling", "--runs", "10", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out_line = next(line for line in p.stdout.splitlines() if "outputs in" in line)
    out = tmp_path / out_line.rsplit("outputs in ", 1)[1]
    assert out.parent == tmp_path / "out" / "simulate"
    for name in ["runs.parquet", "bsec.parquet", "summary.json", "report.html"]:
        assert (out / name).stat().st_size > 0
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.columns == ["strategy", "evaluator", "run", "budget_s", "backbone", "true_score", "n_evaluated"]
    assert runs.height == 10 * 100 and runs["run"].n_unique() == 10
    bsec = pl.read_parquet(out / "bsec.parquet")
    assert {"median", "q25", "q75", "n_runs", "n_selected"} <= set(bsec.columns)
    summary = json.loads((out / "summary.json").read_text())
    row = summary["strategies"][0]
    assert row["strategy"] == "cycling" and summary["baseline"]["true_score"] is not None
    assert summary["timing"]["engine_seconds"] >= 0
    assert "cycling" in p.stdout and "@1h" in p.stdout


def test_list(timm_results):
    p = run_cli("--timm-results", str(timm_results), "--list")
    assert p.returncode == 0
    assert "backbones in the pool" in p.stdout and "top1" in p.stdout and "cycling" in p.stdout


def test_help_has_examples():
    p = run_cli("--help")
    assert p.returncode == 0 and "Examples:" in p.stdout and "--strategy cycling --runs 10" in p.stdout


def test_help_lists_the_subcommands_and_the_strategies():
    """`simulate --help` names compare, import and league with a line each, and --strategy's valid
    samplers (issue 24 item 8); the subcommands answer their own --help; a word that is none of them,
    or simulate's options before one, is one usage line."""
    from shared.samplers import SAMPLERS

    p = run_cli("--help")
    assert p.returncode == 0, p.stderr
    text = " ".join(p.stdout.split())
    assert "Usage: simulate [OPTIONS] simulate COMMAND [ARGS]..." in text
    for name, line in (("compare", "Overlay the BSECs of several `simulate --out` folders in one report."),
                       ("import", "Turn a table of published results (CSV/Parquet) into oracles, one per dataset."),
                       ("league", "Replay every strategy on several oracles: which to use on an unseen dataset.")):
        assert f"{name} {line}" in text
        sub = run_cli(name, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith(f"Usage: simulate {name} [OPTIONS]"), sub.stdout
    strategy = text.split("--strategy TEXT")[1].split("--evaluator")[0].replace("- ", "-")  # click wraps at hyphens
    assert f"Sampler π (repeatable): {', '.join(SAMPLERS)}; or" in strategy
    assert "sh:<sampler>" in strategy and "asha:<sampler>" in strategy
    p = run_cli("fastest")
    assert p.returncode == 2 and "no command 'fastest': simulate takes options, or a command first (compare, " \
        "import, league)" in p.stderr
    p = run_cli("--runs", "5", "compare", "x")
    assert p.returncode == 2 and p.stderr.strip() == (
        "error: --runs before `compare`: options of a subcommand go after its name (`simulate compare --help` "
        "lists them)")


def test_timm_runs_leave_the_toy_models_out_and_say_so_once(timm_results, tmp_path):
    """complexity-up on timm:sketch recommended timm's toy test_byobnet.r160_in1k (0.078) at its cheapest
    budgets; two timm oracles in one run (a --prior-oracle) said the left-out note twice."""
    p = run_cli("--timm-results", str(timm_results), "--oracle", "timm:sketch", "--strategy", "complexity-up",
                "--strategy", "meta", "--prior-oracle", "timm:imagenet-r", "--runs", "3", "--no-report",
                "--out", str(tmp_path / "o"))
    assert p.returncode == 0, p.stderr
    assert sum("left out" in line and "toy test_* models" in line for line in p.stderr.splitlines()) == 1
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    picks = [r["backbone"] for r in summary["recommendation"] if r["backbone"]]
    assert picks and not [b for b in picks if b.startswith("test_")]
    runs = pl.read_parquet(tmp_path / "o" / "runs.parquet")
    assert not runs["backbone"].drop_nulls().cast(pl.String).str.starts_with("test_").any()


@pytest.mark.parametrize("args, message", [
    (["--strategy", "fastest"], "unknown strategy 'fastest'; valid:"),
    (["--evaluator", "knn"], "unknown evaluator 'knn'; valid: mlp, silhouette"),
    (["--evaluator", "mlp@0.5"], "has no fraction 0.5 in this oracle; available: 1, 0.1"),
    (["--evaluator", "mlp@half"], "is not a number"),
    (["--budgets", "0.001:0.01:3"], "below the cheapest evaluation"),
    (["--budgets", "1:x:3"], "expected LO:HI:N"),
    (["--runs", "0"], "--runs must be >= 1"),
])
def test_bad_inputs_one_line_exit_2(tmp_path, args, message):
    random_oracle().write(tmp_path / "o.parquet")
    p = run_cli("--oracle", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "out"), *args)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.drop("seconds"), "missing column(s) seconds"),
    (lambda f: pl.concat([f, f.head(1)]), "duplicate key"),
    (lambda f: f.filter(pl.col("evaluator") != "mlp"), "no truth rows"),
    (lambda f: f.with_columns(pl.lit(-1.0).alias("seconds")), "negative seconds"),
])
def test_broken_oracles(tmp_path, mutate, message):
    import pyarrow.parquet as pq

    good = random_oracle()
    table = mutate(good.frame).to_arrow().replace_schema_metadata(
        {"vibes.meta": json.dumps(dict(good.meta, schema_version=1))})
    pq.write_table(table, tmp_path / "bad.parquet")
    p = run_cli("--oracle", str(tmp_path / "bad.parquet"))
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_missing_sampler_key_column(tmp_path):
    o = random_oracle()
    o.frame = o.frame.with_columns(pl.lit(None, dtype=pl.String).alias("pretrain_dataset"))
    o.write(tmp_path / "o.h5")
    assert main(["--oracle", str(tmp_path / "o.h5"), "--strategy", "cycling", "--out", str(tmp_path / "x")]) == 2


def test_baseline_absent_is_a_note_not_an_error(tmp_path, capsys):
    random_oracle().write(tmp_path / "o.parquet")
    assert main(["--oracle", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "o"), "--runs", "5",
                 "--no-report"]) == 0
    assert "not in the pool" in capsys.readouterr().err
    assert not (tmp_path / "o" / "report.html").exists()


def test_baseline_named_but_not_in_the_oracle_is_one_line(tmp_path):
    """#24: a --baseline the user typed that the oracle lacks is a typo, refused naming the close ones
    (the default baseline missing from an oracle stays a note)."""
    random_oracle().write(tmp_path / "o.parquet")
    p = run_cli("--oracle", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "o"), "--runs", "5",
                "--baseline", "arch001.tag9")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith("error: unknown --baseline backbone 'arch001.tag9'; valid: ")
    assert "arch001.tag1" in lines[0]
    assert not (tmp_path / "o").exists()


def _oracle_without_top1(path):
    """Three backbones that timm's results-imagenet.csv lists (top-1 90.056, 89.956, 89.790 %), the
    imagenet_top1 column empty, as an oracle precompute run builds from a pool measured offline."""
    from shared.oracle import Oracle

    names = {"eva02_large_patch14_448.mim_m38m_ft_in22k_in1k": 0.5, "eva02_large_patch14_448.mim_in22k_ft_in22k_in1k":
             0.9, "eva_giant_patch14_560.m30m_ft_in22k_in1k": 0.7, "not_in_timm.x": 0.8}
    rows = [dict(dataset="d", backbone=b, evaluator="mlp", fraction=1.0, seed=0, score=s, seconds=1.0, status="ok")
            for b, s in names.items()]
    Oracle(pl.DataFrame(rows), {"dataset": "d", "truth": "mlp"}).write(path)


def test_imagenet_top1_is_filled_from_timms_results_or_says_how(tmp_path, monkeypatch, capsys, timm_results):
    # #24 item 4: the strategy's key column is empty in oracles built here
    path = tmp_path / "o.parquet"
    _oracle_without_top1(path)
    monkeypatch.delenv("VIBES_TIMM_RESULTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))
    args = ["--oracle", str(path), "--strategy", "imagenet-top1", "--runs", "2", "--budgets", "1,4", "--no-report"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "imagenet_top1, which are empty" in err[0] and "--timm-results DIR" in err[0]
    assert main([*args, "--out", str(tmp_path / "b"), "--timm-results", str(timm_results)]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert "imagenet_top1 filled from timm's results-imagenet.csv by backbone name: 3 of 4 backbones" in \
        summary["notes"]
    # descending top-1: the mim_m38m (90.056 %) first, whose true score is 0.5 here
    at1 = [r for r in summary["recommendation"] if r["budget_s"] == 1.0][0]
    assert at1["backbone"] == "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k" and at1["median"] == 0.5
