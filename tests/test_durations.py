"""One duration grammar for every option that takes a time, one way to show a duration.

The grammar is held to hand-computed seconds; then each command that takes a time is run as a user
runs it, and what reached the code is read back: ``precompute search --budget 1min`` is 60 s,
``simulate --recommend-at 10min,1h30m`` 600 s and 5,400 s, ``precompute estimate --within 600``
600 s (a bare number is seconds everywhere), ``precompute check --timeout 90s`` 90 s,
``simulate --budgets 1min:1h:3`` 60 s to 3,600 s.
"""
from __future__ import annotations

import json

import polars as pl
import pytest

from shared.durations import format_duration, parse_duration, parse_durations
from shared.errors import VibesError
from tests.conftest import random_oracle


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("45m", 2700), ("10min", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400),
    ("600", 600), ("0.25", 0.25), (" 2H ", 7200), ("1d2h3m4s", 93784), ("1h 30min", 5400), ("2 hours", 7200),
    ("1w", 604800), ("90sec", 90), (7.5, 7.5), (600, 600), ("1e3s", 1000)])
def test_grammar(text, seconds):
    assert parse_duration(text, "--x") == seconds


@pytest.mark.parametrize("text", ["", "2x", "h", "-5s", "0", "0s", "1h 30", "5s5", "nan", "inf", "m30",
                                  "1.2.3h", "-1", "1y", "10 minutes later"])
def test_bad_durations_are_one_line_naming_the_option(text):
    with pytest.raises(VibesError) as err:
        parse_duration(text, "--within")
    msg = str(err.value)
    assert msg.startswith("--within ") and "expected a positive duration such as 90s, 45m, 10min, 2h, 1d, " \
                                             "1h30m, 1.5h or plain seconds" in msg and "\n" not in msg


def test_duration_lists_are_sorted_unique():
    assert parse_durations("1d, 10min,600,1h30m", "--recommend-at") == [600, 5400, 86400]
    with pytest.raises(VibesError, match="--recommend-at"):
        parse_durations(" , ", "--recommend-at")


@pytest.mark.parametrize("seconds, text", [
    (0.5, "0.5 s"), (45, "45 s"), (59.9, "59.9 s"), (60, "1 min"), (90, "1.5 min"), (600, "10 min"),
    (3600, "1 h"), (5400, "1.5 h"), (86400, "1 day"), (2 * 86400, "2 days"), (7 * 86400, "1 week"),
    (None, "-"), (float("inf"), "-")])
def test_one_format_for_people(seconds, text):
    assert format_duration(seconds) == text


class Stop(VibesError):
    """Raised by a stand-in once it has seen what the command passed on."""


def test_search_budget_1min_is_60_seconds(monkeypatch, capsys):
    import precompute.pool as pool_mod
    import precompute.search as search_mod
    from precompute.cli import main

    seen = {}

    def fake_run_search(cfg, pool, **kw):
        seen["budget_s"] = cfg.budget_s
        raise Stop("stop")

    monkeypatch.setattr(pool_mod, "resolve_pool", lambda *a, **k: pl.DataFrame({"backbone": ["x.y"]}))
    monkeypatch.setattr(search_mod, "run_search", fake_run_search)
    assert main(["search", "--dataset", "digits", "--budget", "1min", "--strategy", "cycling",
                 "--evaluator", "mlp@0.1", "--weights", "random", "--device", "cpu"]) == 2
    assert seen == {"budget_s": 60.0} and "error: stop" in capsys.readouterr().err


def test_estimate_within_600_is_600_seconds(monkeypatch, capsys):
    import precompute.estimate as est
    import precompute.pool as pool_mod
    from precompute.cli import main

    seen = {}

    def fake_project(measured, runnable, within_hours, **kw):
        seen["within_s"] = within_hours * 3600
        raise Stop("stop")

    pool = pl.DataFrame({"backbone": ["a.x", "b.x"], "gmacs": [1.0, 2.0], "params_m": [1.0, 2.0]})
    monkeypatch.setattr(pool_mod, "resolve_pool", lambda *a, **k: pool)
    # 1,000 test images for 10 classes: every default fraction keeps one per class (estimate checks it)
    monkeypatch.setattr(est, "dataset_for_estimate", lambda *a, **k: (est.stand_in("digits", 20, 1000, 10, 8),
                                                                      "stand-in"))
    monkeypatch.setattr(est, "measure_sample", lambda *a, **k: pl.DataFrame())
    monkeypatch.setattr(est, "project", fake_project)
    assert main(["estimate", "--dataset", "digits", "--within", "600", "--sample", "2", "--device", "cpu"]) == 2
    assert seen["within_s"] == pytest.approx(600.0) and "error: stop" in capsys.readouterr().err


def test_check_timeout_90s_is_90_seconds(monkeypatch, capsys):
    import precompute.cli.check as check_mod  # the command's own binding of run_check
    from precompute.cli import main

    seen = {}

    def fake_run_check(names, cfg, **kw):
        seen["timeout"] = cfg.timeout
        raise Stop("stop")

    monkeypatch.setattr(check_mod, "run_check", fake_run_check)
    assert main(["check", "--pool", "resnet18.a1_in1k", "--timeout", "90s", "--device", "cpu"]) == 2
    assert seen == {"timeout": 90.0}


def test_simulate_recommend_at_and_budgets_take_durations(tmp_path):
    from simulate.cli import main

    path = tmp_path / "toy.parquet"
    random_oracle(n_backbones=8, seeds=2, rng_seed=4).write(path)
    out = tmp_path / "sim"
    assert main(["--oracle", str(path), "--strategy", "random", "--runs", "5", "--budgets", "1min:1h:3",
                 "--recommend-at", "10min,1h30m", "--no-report", "--out", str(out), "--baseline", "arch001.tag1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    asked = [r for r in summary["recommendation"] if r["source"] == "asked"]
    assert [r["budget_s"] for r in asked] == [600.0, 5400.0]
    assert [r["label"] for r in asked] == ["10 min", "1.5 h"]
    budgets = sorted(pl.read_parquet(out / "bsec.parquet")["budget_s"].unique().to_list())
    assert budgets[0] == 60.0 and budgets[-1] == 3600.0 and len(budgets) == 3


def test_simulate_budgets_list_gives_each_a_recommendation_row(tmp_path):
    """#24 item 8: ``--budgets 10min`` (a list, not a LO:HI:N range) is answered at 10 min: a row."""
    from simulate.cli import main

    path = tmp_path / "toy.parquet"
    random_oracle(n_backbones=8, seeds=2, rng_seed=4).write(path)
    out = tmp_path / "sim"
    assert main(["--oracle", str(path), "--strategy", "random", "--runs", "5", "--budgets", "10min,1h30m",
                 "--no-report", "--out", str(out), "--baseline", "arch001.tag1"]) == 0
    rows = json.loads((out / "summary.json").read_text())["recommendation"]
    asked = [(r["budget_s"], r["label"]) for r in rows if r["source"] == "asked"]
    assert asked == [(600.0, "10 min"), (5400.0, "1.5 h")]
    out = tmp_path / "grid"
    assert main(["--oracle", str(path), "--strategy", "random", "--runs", "5", "--budgets", "1min:1h:3",
                 "--no-report", "--out", str(out), "--baseline", "arch001.tag1"]) == 0
    rows = json.loads((out / "summary.json").read_text())["recommendation"]
    assert not [r for r in rows if r["source"] == "asked"]  # a range is the curves' grid, not rows


def test_hours_is_seconds_over_3600_to_three_digits():
    from shared.durations import hours

    assert [hours(5400), hours(36), hours(86400 * 3), hours(None)] == ["1.5", "0.01", "72", "?"]


@pytest.mark.parametrize("lo, hi, labels", [
    (0.05, 0.8, ["0.05 s", "0.8 s"]),  # no round duration inside: the axis's ends
    (0.3, 40, ["1 s", "2 s", "5 s", "10 s", "15 s", "30 s"]),  # six fit: all of them
    (1, 3600, ["1 s", "5 s", "30 s", "2 min", "10 min", "1 h"]),  # 13 inside: 4x apart
    (0.882, 2532, ["1 s", "5 s", "30 s", "2 min", "10 min", "30 min"]),  # openclip's grid: its right end labelled
])
def test_time_axis_ticks_are_round_durations_at_most_eight(lo, hi, labels):
    from simulate.report import time_ticks

    values, got = time_ticks(lo, hi)
    assert got == labels and len(got) <= 8 and values == sorted(values)
