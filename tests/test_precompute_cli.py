"""The ``precompute`` command line: one-line errors (exit 2), run/merge end to end, Ctrl-C."""
from __future__ import annotations

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
