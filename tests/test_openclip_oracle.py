"""openclip:<set> oracles from OpenCLIP's published zero-shot results (read from ../shared/openclip-results or
$VIBES_OPENCLIP_RESULTS; third-party files, never in the repository: the tests skip where they are absent)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from shared.errors import VibesError
from simulate.cli import main
from tests.conftest import REPO

FOLDER = Path(os.environ.get("VIBES_OPENCLIP_RESULTS", REPO.parent / "shared" / "openclip-results"))
pytestmark = pytest.mark.skipif(not (FOLDER / "openclip_results.csv").is_file(),
                                reason=f"OpenCLIP results not at {FOLDER} (set $VIBES_OPENCLIP_RESULTS)")


def test_sets():
    from simulate.openclip_oracle import openclip_sets

    sets = openclip_sets(FOLDER)
    assert len(sets) == 38 and len(set(sets)) == 38
    assert sets[:4] == ["imagenet-1k", "caltech-101", "cifar-10", "cifar-100"]
    assert "oxford-flowers-102" in sets and "average-perf-on-38-datasets" not in sets


def test_cifar10_row_by_hand():
    from simulate.openclip_oracle import openclip_oracle

    o = openclip_oracle("cifar-10", FOLDER)
    assert o.dataset == "openclip:cifar-10" and o.truth == "zeroshot" and o.meta["set"] == "CIFAR-10"
    assert o.true_scores().height == 121 and o.frame.height == 121
    # openclip_results.csv: ViT-B-32,openai,...,CIFAR-10 = 0.8983; model_profile.csv: ViT-B-32 image_mparams 87.85,
    # image_gflops 8.82 -> seconds = 8.82 × 10,000 images ÷ 100,000 GFLOP/s = 0.882
    r = o.frame.filter(pl.col("backbone") == "ViT-B-32.openai").row(0, named=True)
    assert r["score"] == 0.8983 and r["seconds"] == pytest.approx(0.882)
    assert r["architecture"] == "ViT-B-32" and r["params_m"] == 87.85 and r["gmacs"] == 8.82
    assert (r["evaluator"], r["fraction"], r["seed"], r["status"]) == ("zeroshot", 1.0, 0, "ok")
    assert r["pretrain_dataset"] == "OpenAI WIT-400M" and r["pretrain_images"] == 400_000_000.0
    assert r["pretrain_method"] == "clip" and r["n_test"] is None
    assert o.meta["costs"] == "modelled"
    assert o.meta["cost_model"] == ("modelled: image-tower GFLOPs (OpenCLIP's model_profile.csv image_gflops) "
                                    "× 10,000 images ÷ 100,000 GFLOP/s (not measured)")
    assert "image-tower GFLOPs" in o.meta["gmacs"]


def test_pretrain_rules():
    from simulate.openclip_oracle import openclip_oracle

    f = openclip_oracle("eurosat", FOLDER).frame
    pre = dict(zip(f["backbone"].to_list(), zip(f["pretrain_dataset"].to_list(), f["pretrain_images"].to_list())))
    assert pre["ViT-B-32.laion2b_s34b_b79k"] == ("LAION-2B (en)", 2_320_000_000.0)
    assert pre["coca_ViT-L-14.mscoco_finetuned_laion2b_s13b_b90k"] == ("LAION-2B (en)", 2_320_000_000.0)
    assert pre["ViT-L-14.datacomp_xl_s13b_b90k"] == ("DataComp-1B", 1_400_000_000.0)
    assert pre["ViT-H-14-quickgelu.metaclip_fullcc"] == ("MetaCLIP-2.5B", 2_500_000_000.0)
    assert pre["ViT-B-32.commonpool_s_clip_s13m_b4k"] == ("CommonPool-S (clip filter)", None)  # size not listed
    assert pre["ViT-L-14.commonpool_xl_s13b_b90k"] == ("CommonPool-XL", None)
    assert pre["nllb-clip-base.v1"] == (None, None)  # the tag says nothing: unknown, never guessed


def test_expand_specs():
    from simulate.openclip_oracle import expand_oracle_specs, openclip_sets

    every = expand_oracle_specs(["openclip:*"], FOLDER)
    assert every == [f"openclip:{s}" for s in openclip_sets(FOLDER)] and len(every) == 38
    assert expand_oracle_specs(["openclip:cifar*", "timm:sketch", "openclip:cifar-10"], FOLDER) == [
        "openclip:cifar-10", "openclip:cifar-100", "timm:sketch"]
    with pytest.raises(VibesError, match="matches nothing"):
        expand_oracle_specs(["openclip:nope*"], FOLDER)


def test_simulate_openclip_says_modelled_costs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIBES_OPENCLIP_RESULTS", str(FOLDER))
    out = tmp_path / "sim"
    assert main(["--oracle", "openclip:cifar-10", "--runs", "5", "--out", str(out),
                 "--strategy", "cycling", "--strategy", "dataset-size-down", "--strategy", "random"]) == 0
    stdout = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cost_model"].startswith("modelled: image-tower GFLOPs")
    assert f"costs {summary['cost_model']}" in stdout.splitlines()[1]
    assert summary["pool_size"] == 121
    rows = {r["strategy"]: r for r in summary["strategies"]}
    assert set(rows) == {"cycling", "dataset-size-down", "random"}
    assert all(r["score_1d"] is not None for r in rows.values())
    assert "Costs modelled: image-tower GFLOPs" in (out / "report.html").read_text()


def test_missing_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIBES_OPENCLIP_RESULTS", str(tmp_path / "nowhere"))
    assert main(["--oracle", "openclip:cifar-10", "--runs", "5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "$VIBES_OPENCLIP_RESULTS" in err
    monkeypatch.setenv("VIBES_OPENCLIP_RESULTS", str(FOLDER))
    assert main(["--oracle", "openclip:cifar-11", "--list"]) == 2
    assert "unknown OpenCLIP set 'cifar-11'" in capsys.readouterr().err


def test_not_in_repository():
    """The third-party files are read from ../shared, never copied into the repository."""
    hits = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in (".venv", ".git", "out", "data")]
        hits += [os.path.join(root, f) for f in files if f in ("openclip_results.csv", "model_profile.csv")]
    assert hits == []
