"""``precompute check``: a persistent worker checks backbones one by one (ok / failed / timeout /
skipped), survives timeouts and crashes, and resumes from its table."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytestmark = pytest.mark.torch

from precompute.check import (  # noqa: E402
    CHECK_COLUMNS,
    CheckConfig,
    _sample_names,
    reason_key,
    run_check,
    summary_lines,
)
from precompute.cli import main  # noqa: E402

TINY = "test_resnet.r160_in1k"  # 0.37 M params
TINY2 = "test_efficientnet.r160_in1k"
GIANT = "vit_giant_patch14_dinov2.lvd142m"  # 1,136 M params: 4.5 GB of fp32 weights
CONSTANT = "lcnetv2_small.paddle_in1k"  # constant features under random init


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_ok_failed_skipped_timeout_and_resume(tmp_path):
    out = tmp_path / "check.parquet"
    cfg = CheckConfig(input_size=64, timeout=300, n_images=3, max_memory_gb=1.0)
    names = [TINY, "resnet18.no_such_tag", GIANT]
    table = run_check(names, cfg, out=out, params={GIANT: 1136.5})
    assert table.columns == list(CHECK_COLUMNS) and table["backbone"].to_list() == names
    ok, failed, skipped = table.rows(named=True)

    # ok: compared with the same random backbone run directly (timm model, numpy std)
    assert ok["status"] == "ok" and ok["reason"] is None
    model = timm.create_model(TINY, num_classes=0)
    assert ok["params_m"] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
    assert ok["feature_dim"] == model.num_features and ok["input_size"] == 64
    assert ok["load_seconds"] > 0 and ok["extract_seconds"] > 0 and ok["wall_seconds"] >= ok["load_seconds"]
    assert ok["peak_mb"] >= 0 and ok["nonfinite"] is False and ok["constant_features"] is False
    from precompute.backbone import load_backbone
    from precompute.extract import preprocess

    bb = load_backbone(TINY, weights="random", device="cpu", input_size=64)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        feats = bb.model(preprocess(torch.from_numpy(images), bb.data_config)).numpy()
    assert ok["feature_std"] == pytest.approx(float(feats.std(axis=0).max()), rel=1e-4)

    # an exception in the worker is a failed row with its reason; the worker goes on
    assert failed["status"] == "failed" and failed["reason"].startswith("UnknownNameError: unknown backbone")
    assert (tmp_path / "check.parquet.worker.log").is_file()  # something was not ok: the workers' output stays
    # the memory guard: 1,136 M params = 4.5 GB of fp32 weights > 1 GB, never built
    assert skipped["status"] == "skipped" and "4.5 GB" in skipped["reason"]
    assert "this machine's limit" in skipped["reason"] and skipped["load_seconds"] is None

    # resume: the rows written are kept as they were, only the new name runs; a tiny timeout
    # kills the worker and records a timeout
    again = run_check([*names, "resnet50.a1_in1k"], CheckConfig(input_size=64, timeout=0.05, n_images=3,
                                                                 max_memory_gb=1.0), out=out)
    assert again.head(3).equals(table)
    late = again.row(3, named=True)
    assert late["status"] == "timeout" and "0.05" in late["reason"] and late["load_seconds"] is None
    assert pl.read_parquet(out).height == 4


@pytest.mark.slow
def test_redo_and_constant_features(tmp_path):
    out = tmp_path / "check.parquet"
    cfg = CheckConfig(input_size=64, timeout=0.05, n_images=3)
    assert run_check([TINY], cfg, out=out)["status"].to_list() == ["timeout"]
    cfg.timeout = 300
    # the table returned: the names asked for first, then the other rows of --out
    both = run_check(["resnet18.no_such_tag"], cfg, out=out)
    assert both.select("backbone", "status").rows() == [("resnet18.no_such_tag", "failed"), (TINY, "timeout")]
    # --redo checks again the rows of those statuses among the names given (here with time enough),
    # and leaves the other rows as they are
    table = run_check([TINY, CONSTANT], cfg, out=out, redo=["timeout", "failed"]).head(2)
    assert table["status"].to_list() == ["ok", "ok"]
    assert dict(pl.read_parquet(out).select("backbone", "status").iter_rows()) == {
        TINY: "ok", CONSTANT: "ok", "resnet18.no_such_tag": "failed"}
    # lcnetv2 under random init: eval-mode BatchNorm keeps its initial statistics (mean 0, var 1) and
    # normalises nothing, and the activations shrink ~30x per stage, to ~1e-17 at the end
    row = table.row(1, named=True)
    assert row["constant_features"] is True and row["feature_std"] < 1e-6
    assert table.row(0, named=True)["constant_features"] is False


@pytest.mark.slow
def test_worker_crash_is_a_failed_row_and_the_next_backbone_runs(tmp_path, monkeypatch):
    # the worker SIGKILLs itself at its 2nd extraction batch (one batch per backbone): the 2nd
    # backbone's row says so; a fresh worker (its fault counter anew) checks the 3rd
    monkeypatch.setenv("VIBES_FAULT", "extract-batch:2")
    names = [TINY, TINY2, "test_vit.r160_in1k"]
    table = run_check(names, CheckConfig(input_size=32, timeout=120, n_images=2), out=tmp_path / "c.parquet")
    assert table["status"].to_list() == ["ok", "failed", "ok"]
    assert "killed by SIGKILL" in table.row(1, named=True)["reason"]


def test_cli_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "c.parquet"
    assert main(["check", "--pool", TINY, "--input-size", "32", "--images", "2", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "check: 1 backbones" in text and "by status: ok 1" in text
    assert pl.read_parquet(out)["status"].to_list() == ["ok"]
    assert not (tmp_path / "c.parquet.worker.log").exists() and "worker output" not in text  # all ok: no log left
    # a resumed run at another size would mix two checks in one table: refused
    assert main(["check", "--pool", TINY, "--out", str(out), "--quiet"]) == 2
    assert "holds checks at input size 32" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--out", "x.csv"], "--out must end in .parquet"),
    (["--redo", "failed,bogus"], "--redo takes statuses"),
    (["--timeout", "0"], "--timeout '0': expected a positive duration"),
    (["--images", "1"], "--images must be >= 2"),
    (["--pool", "no_such_net*"], "no pretrained timm backbone matches"),
])
def test_cli_errors(args, message, capsys):
    assert main(["check", *args]) == 2
    assert message in capsys.readouterr().err


def test_summary_groups_reasons():
    rows = [dict(backbone=f"a{i}.x", architecture=f"a{i}", status=s, reason=r, constant_features=c, nonfinite=False,
                 feature_std=std)
            for i, (s, r, c, std) in enumerate([
                ("ok", None, False, 0.1), ("ok", None, True, 1e-9),
                ("failed", "AssertionError: Input height (20) should be divisible by patch size (16).", None, None),
                ("failed", "AssertionError: Input height (36) should be divisible by patch size (14).", None, None),
                ("timeout", "no result within --timeout 120 s", None, None)])]
    table = pl.DataFrame(rows, schema={c: CHECK_COLUMNS[c] for c in rows[0]})
    text = "\n".join(summary_lines(table))
    by_status = next(line for line in text.splitlines() if "by status:" in line)
    assert all(part in by_status for part in ("ok 2", "failed 2", "timeout 1"))
    # the two patch-size failures share one reason line, counted 2
    keyed = table.filter(pl.col("status") == "failed").select(reason_key()).to_series().unique()
    assert keyed.len() == 1 and "    2 failed" in text
    assert "constant features 1" in text and "a1.x: constant" in text


def test_sample_takes_one_name_per_architecture():
    names = [f"arch{i:02d}.t{j}" for i in range(10) for j in range(3)]
    got = _sample_names(names, 4)
    assert len(got) == 4 and len({n.split(".")[0] for n in got}) == 4 and all(n.endswith(".t0") for n in got)
    assert len(_sample_names(names, 50)) == 10
