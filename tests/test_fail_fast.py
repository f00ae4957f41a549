"""Fail fast (issue 7, item 7): every cheap check of ``precompute run`` happens before the pool is
built or a model loaded.  In-process, building the pool raises, so a check that came after it
would show as that AssertionError; one real subprocess on a fresh folder (no pool cache) shows the
user's case, ``--dataset folder:/nonexistent``, answered before the pool is built (no wall-clock
bound: tripwires on the pool's builders show it)."""
from __future__ import annotations

import subprocess
import sys

import huggingface_hub.constants as hub_constants
import pytest
import torch
from test_kill_resume import cli_env
from tripwires import TRIPPED, precompute_with_tripwires

import precompute.pool as pool_mod
from precompute.cli import main


@pytest.fixture
def no_pool(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the pool was built before the arguments were checked")

    monkeypatch.setattr(pool_mod, "resolve_pool", refuse)
    monkeypatch.setattr(pool_mod, "build_pool", refuse)


CASES = [
    (["--dataset", "folder:/nonexistent/imgs"], "image folder /nonexistent/imgs not found"),
    (["--dataset", "nope"], "unknown dataset 'nope'; valid:"),
    (["--evaluators", "mlp,knnn"], "unknown evaluator 'knnn'; valid:"),
    (["--fractions", "1.0,2"], "fractions must be in (0, 1]"),
    (["--fractions", "x"], "--fractions must be comma-separated numbers"),
    (["--seeds", "0"], "seeds must be a positive number"),
    (["--shard", "5/4"], "--shard '5/4' is out of range"),
    (["--launcher", "local", "--shards", "0"], "--shards must be a positive integer; got 0"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--weights", "pretrained", "--pretrained-file", "/nonexistent.safetensors"],
     "pretrained weights file '/nonexistent.safetensors' not found"),
    (["--batch-size", "0"], "batch size must be a positive integer"),
]


@pytest.mark.parametrize("extra, message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_run_checks_arguments_before_the_pool(capsys, tmp_path, no_pool, extra, message):
    args = ["run", "--dataset", "digits", "--weights", "random", "--device", "cpu",
            "--parts-dir", str(tmp_path / "parts"), *extra]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert message in err, err


def test_empty_folder_and_no_cuda(capsys, tmp_path, no_pool):
    (tmp_path / "empty").mkdir()
    assert main(["run", "--dataset", f"folder:{tmp_path / 'empty'}", "--weights", "random"]) == 2
    assert "is empty: expected class sub-folders" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["run", "--dataset", "digits", "--weights", "random", "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_offline_without_cached_weights_fails_before_the_pool(capsys, tmp_path, monkeypatch, no_pool):
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    code = main(["run", "--dataset", "digits", "--pool", "resnet18.a1_in1k", "--pool", "resnet34.a1_in1k",
                 "--parts-dir", str(tmp_path / "parts")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("error: HF_HUB_OFFLINE=1 and none of the 2 backbones' weights are cached "
                                 "(e.g. resnet18.a1_in1k); run `precompute fetch` with the same --pool on a "
                                 "machine with internet first")


def test_fresh_install_nonexistent_folder_answers_before_the_pool(tmp_path):
    """The user's case from the issue, as a subprocess from an empty folder (no pool cache): the
    folder is refused before the pool is built or measured (which took ~20 min), with no wall-clock
    bound: the tripwires on the pool and the empty folder left behind show it."""
    source = precompute_with_tripwires("resolve_pool", "build_pool", "measure_backbone")
    proc = subprocess.run([sys.executable, "-c", source, "run", "--dataset", "folder:/nonexistent",
                           "--weights", "random"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=cli_env())
    assert proc.returncode != TRIPPED and proc.returncode == 2, proc.stderr[-2000:]  # tripped: the pool was built
    assert proc.stderr.strip() == ("error: image folder /nonexistent not found; expected class sub-folders "
                                   "(or train/ and test/ holding them)")  # no pool progress bar either
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no pool measured, nothing cached (no data/ folder)
