"""The ``precompute`` command line: one-line errors (exit 2), run/merge end to end, Ctrl-C."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import polars as pl
import pytest
from test_sweep import data_cache, fast, pool_frame  # noqa: F401  (fixtures)

from precompute.cli import main
from shared.oracle import read_oracle

# digits' 1% test split keeps fewer images than classes: expected, not news
pytestmark = pytest.mark.filterwarnings("ignore:fraction .* keeps .* image:UserWarning")


def call(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pool_file(tmp_path):
    path = tmp_path / "pool.parquet"
    pool_frame(["fake_a.x", "fake_b.y"], [1.0, 2.0]).write_parquet(path)
    return str(path)


def run_args(tmp_path, data_cache, pool, *extra):
    return ["run", "--dataset", "digits", "--pool", pool, "--weights", "random",
            "--device", "cpu", "--seeds", "1", "--fractions", "1.0,0.1", "--evaluators", "mlp,silhouette",
            "--no-progress",
            "--cache-dir", data_cache, "--parts-dir", str(tmp_path / "parts"),
            "--out", str(tmp_path / "oracles"), *extra]


def one_error_line(code, err, pattern):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert pattern in lines[0], lines[0]


@pytest.mark.parametrize("extra, pattern", [
    (["--dataset", "nope"], "unknown dataset 'nope'; valid: cifar10, digits"),
    (["--evaluators", "mlp,knnn"], "unknown evaluator 'knnn'; valid: mlp, silhouette"),
    (["--shard", "3/2"], "--shard '3/2' is out of range"),
    (["--shard", "x"], "--shard must look like I/N"),
    (["--shard", "0/2"], "1-based"),
    (["--fractions", "1.0,abc"], "--fractions must be comma-separated numbers"),
    (["--fractions", "1.5"], "fractions must be in (0, 1]"),
    (["--seeds", "0"], "seeds must be a positive number"),
    (["--shards", "2"], "--shards needs --launcher local or slurm"),
    (["--launcher", "local", "--shard", "1/2"], "--shard is for one worker"),
])
def test_run_bad_inputs_one_line_exit_2(capsys, tmp_path, data_cache, pool_file, fast, extra,
                                        pattern):
    args = run_args(tmp_path, data_cache, pool_file)
    args += extra  # click keeps the last value of a repeated option
    code, _, err = call(capsys, *args)
    one_error_line(code, err, pattern)
    assert not (tmp_path / "parts" / "digits").exists() or not list(
        (tmp_path / "parts" / "digits").glob("*.parquet"))


def test_unknown_backbone_lists_valid(capsys, tmp_path, data_cache, fast):
    code, _, err = call(capsys, *run_args(tmp_path, data_cache, "resnet18.no_such_tag"))
    one_error_line(code, err, "unknown backbone 'resnet18.no_such_tag'; valid: ")
    code, _, err = call(capsys, *run_args(tmp_path, data_cache, "zzz_nothing*"))
    one_error_line(code, err, "no pretrained timm backbone matches 'zzz_nothing*'")


def test_empty_pool_after_filters(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the pool cache lands in tmp_path/data/cache
    code, _, err = call(capsys, "pool", "--glob", "resnet10t*", "--max-params", "0.001",
                          "--no-progress")
    one_error_line(code, err, "pool is empty after filters")
    code, out, err = call(capsys, "pool", "--glob", "resnet10t*", "--out", "p.csv", "--no-progress")
    assert code == 0, err
    pool = pl.read_csv(tmp_path / "p.csv")
    assert pool["backbone"].to_list() == ["resnet10t.c3_in1k"] and pool["gmacs"][0] > 0


def test_help_has_examples(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples:" in out and "--shard 2/8" in out and "--launcher slurm" in out


def test_run_then_rerun_then_merge_hdf5(capsys, tmp_path, data_cache, pool_file, fast):
    code, out, err = call(capsys, *run_args(tmp_path, data_cache, pool_file))
    assert code == 0, err
    assert "sweep done: 2 ok, 0 failed, 0 skipped (already done)" in out
    oracle = read_oracle(tmp_path / "oracles" / "digits.parquet")
    assert sorted(oracle.true_scores()["backbone"]) == ["fake_a.x", "fake_b.y"]
    assert oracle.meta["weights"] == "random"
    code, out, _ = call(capsys, *run_args(tmp_path, data_cache, pool_file))
    assert code == 0 and "0 ok, 0 failed, 2 skipped" in out
    code, out, err = call(capsys, "merge", "--dataset", "digits", "--parts-dir",
                          str(tmp_path / "parts"), "--out", str(tmp_path / "o"), "--format", "hdf5")
    assert code == 0, err
    assert "2 backbones" in out and "0 missing" in out
    # backbones x evaluators x fractions x seeds
    assert read_oracle(tmp_path / "o" / "digits.h5").frame.height == 2 * 2 * 2 * 1


def test_sharded_run_prints_merge_hint_and_merge_reports_missing(capsys, tmp_path, data_cache,
                                                                pool_file, fast):
    code, out, err = call(capsys, *run_args(tmp_path, data_cache, pool_file, "--shard", "1/2"))
    assert code == 0, err
    assert "shard 1/2 done" in out and "precompute merge --dataset digits" in out
    code, out, err = call(capsys, "merge", "--dataset", "digits", "--parts-dir",
                          str(tmp_path / "parts"), "--out", str(tmp_path / "o.parquet"))
    assert code == 0 and "1 backbones" in out and "1 missing" in out


def test_merge_without_parts_is_one_line(capsys, tmp_path):
    code, _, err = call(capsys, "merge", "--dataset", "digits", "--parts-dir", str(tmp_path))
    one_error_line(code, err, "no part files for dataset 'digits'")


def test_keyboard_interrupt_exit_130(capsys, tmp_path, data_cache, pool_file, fast, monkeypatch):
    import precompute.sweep as sweep

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_sweep", interrupted)
    code, _, err = call(capsys, *run_args(tmp_path, data_cache, pool_file))
    assert code == 130 and "parts written so far are kept" in err


# ----------------------------------------------------------------------- #24 item 8: fast, listed, runnable
ROOT = Path(__file__).resolve().parents[1]
SEARCH = ["search", "--dataset", "digits", "--strategy", "cycling", "--evaluator", "mlp@0.1", "--budget", "1h"]
ARGUMENT_ERRORS = [
    (["run", "--dataset", "digits", "--evaluators", "mlp,knnn"], "unknown evaluator 'knnn'"),
    (["run", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["run", "--dataset", "digits", "--fractions", "1.5"], "fractions must be in (0, 1]"),
    (["run", "--dataset", "digits", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "--dataset", "digits", "--truth", "nope"], "unknown evaluator 'nope'"),
    ([*SEARCH, "--budget", "0"], "--budget '0': expected a positive duration"),
    ([*SEARCH, "--strategy", "fastest"], "unknown strategy 'fastest'"),
    ([*SEARCH, "--evaluator", "knnn@0.1"], "unknown evaluator 'knnn'"),
    ([*SEARCH, "--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["estimate", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["estimate", "--dataset", "digits", "--evaluators", "knnn"], "unknown evaluator 'knnn'"),
    (["check", "--timeout", "3x"], "--timeout '3x'"),
    (["check", "--device", "tpu"], "unknown device 'tpu'"),
    (["latency", "--out", "lat.csv", "--device", "tpu"], "unknown device 'tpu'"),
]


@pytest.mark.parametrize("argv, message", ARGUMENT_ERRORS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in ARGUMENT_ERRORS])
def test_argument_errors_load_no_torch(argv, message):
    """An argument error is answered before torch, timm or plotly is imported (they took 5-7 s of
    every refusal): the real entry point in a fresh interpreter, its modules read after the answer."""
    code = ("import sys; from precompute.cli import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in ('torch', 'timm', 'plotly') if m in sys.modules)); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def epilog_examples(command: click.Command) -> list[tuple[list[str], list[str]]]:
    """The command lines of a --help epilog, each as (its ``VAR=value`` prefixes, its words): lines
    starting with ``precompute`` or ``simulate``, continued over trailing backslashes, without their
    ``#`` comments."""
    text = (command.epilog or "").replace("\\\n", " ")
    examples = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True) if line.startswith("  ") else []
        env = []
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            env.append(words.pop(0))
        if words and words[0] in ("precompute", "simulate"):
            examples.append((env, words))
    return examples


def all_commands() -> list[tuple[str, click.Command]]:
    from precompute.cli import cli
    from simulate.cli import simulate

    out = []
    for prog, group in (("precompute", cli), ("simulate", simulate)):
        out.append((prog, group))
        out += [(f"{prog} {name}", sub) for name, sub in group.commands.items()]
    return out


def command_of(words: list[str]) -> tuple[click.Command, list[str]]:
    """The command an example runs (a group's subcommand, or ``simulate`` itself) and its arguments."""
    from precompute.cli import cli
    from simulate.cli import simulate

    group = {"precompute": cli, "simulate": simulate}[words[0]]
    if len(words) > 1 and words[1] in group.commands:
        return group.commands[words[1]], words[2:]
    return group, words[1:]


def test_every_help_example_names_only_options_its_command_has():
    """#24 item 8: each example of every command's epilog (both programs, every subcommand) names only
    options of the command it runs, and those that read timm's files say where (offline)."""
    seen = 0
    for prog, command in all_commands():
        for env, words in epilog_examples(command):
            target, args = command_of(words)
            parser = target.make_parser(click.Context(target, info_name=words[0]))
            try:  # the command's own parser: no such option, or a flag given a value, is a UsageError
                parser.parse_args(list(args))
            except click.UsageError as exc:
                raise AssertionError(f"{prog} --help: `{' '.join(words)}`: {exc}") from None
            needs_timm = any(a.startswith("timm:") for a in args) or any(
                a in ("rtx4090", "rtx3090") for a in args)
            if needs_timm:
                assert "--timm-results" in args or any(e.startswith("VIBES_TIMM_RESULTS=") for e in env), \
                    f"{prog} --help: `{' '.join(words)}` needs timm's files: give --timm-results (offline)"
            seen += 1
    assert seen >= 30, seen


def test_help_lists_evaluators_and_strategies(capsys):
    from shared.protocol import EVALUATOR_NAMES
    from shared.samplers import SAMPLERS

    for argv in (["run", "--help"], ["estimate", "--help"], ["search", "--help"]):
        assert main(argv) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert all(name in text for name in EVALUATOR_NAMES), argv
    assert all(name in text for name in SAMPLERS) and "asha:<sampler>" in text


def test_evaluator_names_are_the_registry():
    from precompute.evaluators import EVALUATORS
    from shared.protocol import EVALUATOR_NAMES

    assert tuple(EVALUATORS) == EVALUATOR_NAMES


def test_a_refusal_after_the_pool_is_its_one_line(capsys, tmp_path, monkeypatch, data_cache):  # noqa: F811
    """#24: the pool's notes (a glob's toy test_* model left out) are said once the run goes ahead; a
    refusal found after the pool is made (a fraction digits cannot give) is then the only line."""
    monkeypatch.chdir(tmp_path)  # the pool cache lands in tmp_path/data/cache
    code, _, err = call(capsys, "run", "--dataset", "digits", "--pool", "*nfnet*", "--weights", "random",
                        "--device", "cpu", "--fractions", "1.0,0.01", "--no-progress", "--cache-dir", data_cache)
    one_error_line(code, err, "fraction 0.01 of digits keeps 4 of its 359 test images")
    assert not (tmp_path / "data" / "parts").exists()
