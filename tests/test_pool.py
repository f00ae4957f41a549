"""The backbone pool: meta-device measurement, caching, filters."""
from __future__ import annotations

import resource

import polars as pl
import pytest

pytest.importorskip("timm")
pytestmark = pytest.mark.torch

from precompute import pool as pool_mod  # noqa: E402
from precompute.pool import POOL_COLUMNS, build_pool, filter_pool, measure_backbone  # noqa: E402
from shared.errors import UnknownNameError, VibesError  # noqa: E402

NAMES = [
    "resnet50.a1_in1k",
    "test_vit.r160_in1k",
    "vit_base_patch16_384.augreg_in21k_ft_in1k",
    "mobilenetv3_small_050.lamb_in1k",
    "resnet18.a1_in1k",
]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[pl.DataFrame, object]:
    cache = tmp_path_factory.mktemp("pool") / "pool.parquet"
    return build_pool(NAMES, cache=cache, progress=False), cache


def test_columns_and_order(pool):
    frame, _ = pool
    assert frame.columns == POOL_COLUMNS
    assert frame["backbone"].to_list() == NAMES
    assert frame["error"].null_count() == frame.height
    assert frame["architecture"].to_list() == [n.split(".")[0] for n in NAMES]
    assert frame["license"].to_list()[0] == "apache-2.0"


def test_matches_timm_published_figures(pool):
    frame, _ = pool
    r50 = frame.row(0, named=True)
    # timm publishes resnet50 at 224: 25.56 M params, 4.11 GMACs
    assert r50["params_m"] == pytest.approx(25.557, rel=1e-3)
    assert r50["gmacs"] == pytest.approx(4.11, rel=0.05)
    assert (r50["input_size"], r50["feature_dim"]) == (224, 2048)
    vit = frame.filter(pl.col("backbone").str.starts_with("vit_base_patch16_384")).row(0, named=True)
    # counted at the pretrained resolution 384 (timm: 86.86 M, 55.5 GMACs), pre-logits width 768
    assert vit["input_size"] == 384 and vit["feature_dim"] == 768
    assert vit["params_m"] == pytest.approx(86.86, rel=1e-3)
    assert vit["gmacs"] == pytest.approx(55.5, rel=0.05)
    tiny = frame.filter(pl.col("backbone") == "test_vit.r160_in1k").row(0, named=True)
    assert tiny["input_size"] == 160 and tiny["gmacs"] < 0.1


def test_pretrain_columns_joined(pool):
    frame, _ = pool
    try:
        import shared.pretrain  # noqa: F401
    except ImportError:
        pytest.skip("shared.pretrain not available: pretrain columns are null")
    assert frame.filter(pl.col("backbone") == "resnet50.a1_in1k")["pretrain_dataset"].item() is not None


def test_cache_is_reused(pool, monkeypatch):
    frame, cache = pool
    assert cache.exists()

    def boom(name):
        raise AssertionError(f"{name} re-measured despite the cache")

    monkeypatch.setattr(pool_mod, "measure_backbone", boom)
    again = build_pool(NAMES[:2], cache=cache, progress=False)
    assert again.equals(frame.head(2))
    with pytest.raises(AssertionError, match="re-measured"):
        build_pool(NAMES[:1], cache=cache, refresh=True, progress=False)


def test_meta_device_allocates_no_weights():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    row = measure_backbone("vit_giant_patch14_dinov2.lvd142m")  # 1.1 B params = 4.5 GB in fp32
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert row["error"] is None and row["params_m"] > 1000
    assert (after - before) < 1_000_000  # < 1 GB more peak memory


def test_unmeasurable_name_recorded_not_raised(monkeypatch):
    import timm

    def broken(*a, **k):
        raise RuntimeError("cannot build")

    monkeypatch.setattr(timm, "create_model", broken)
    row = measure_backbone("resnet18.a1_in1k")
    assert row["error"] == "RuntimeError: cannot build" and row["gmacs"] is None


def test_unknown_name():
    with pytest.raises(UnknownNameError, match="unknown backbone 'resnet9000.x'"):
        build_pool(["resnet9000.x"], cache=None, progress=False)


def test_filters(pool, tmp_path):
    frame, _ = pool
    assert filter_pool(frame, ["resnet*"])["backbone"].to_list() == ["resnet50.a1_in1k", "resnet18.a1_in1k"]
    # a bare architecture name selects all its tags; globs are OR-ed
    assert filter_pool(frame, ["resnet50", "test_?it.*"]).height == 2
    assert filter_pool(frame, max_params=10)["backbone"].to_list() == [
        "test_vit.r160_in1k", "mobilenetv3_small_050.lamb_in1k"]
    small = set(NAMES) - {"vit_base_patch16_384.augreg_in21k_ft_in1k"}
    assert set(filter_pool(frame, max_gmacs=5)["backbone"]) == small
    names = tmp_path / "names.txt"
    names.write_text("# mine\nresnet18.a1_in1k\n\ntest_vit.r160_in1k  # tiny\n")
    assert filter_pool(frame, names_file=str(names), max_params=5)["backbone"].to_list() == ["test_vit.r160_in1k"]
    with pytest.raises(VibesError, match=r"pool is empty after filters \(globs=\['convnext\*'\], max_gmacs=1\)"):
        filter_pool(frame, ["convnext*"], max_gmacs=1)
    names.write_text("resnet18.a1_in1k\nnot_a_model.x\n")
    with pytest.raises(UnknownNameError, match="not_a_model.x"):
        filter_pool(frame, names_file=str(names))
    with pytest.raises(VibesError, match="names file"):
        filter_pool(frame, names_file=str(tmp_path / "missing.txt"))
    with pytest.raises(VibesError, match="max_params must be a positive number"):
        filter_pool(frame, max_params=-1)


def test_archs_returning_parameters_and_token_encoders():
    # attention-pool ViTs return a parameter-derived tensor: the model is frozen before counting
    row = measure_backbone("test_vit3.r160_in1k")
    assert row["error"] is None and row["feature_dim"] == 96 and row["gmacs"] > 0
    # MLLM vision towers give token sequences, not pooled features: measured, but flagged
    enc = measure_backbone("qwen3_vit_88m_enc.qwen3_5_0_8b")
    assert enc["params_m"] > 50 and enc["error"].startswith("ValueError: no pooled features")


def test_attention_pool_head_width():
    # the classifier of CLIP ResNets takes (B, tokens, C): the width comes from the pooled output
    row = measure_backbone("resnet50_clip.openai")
    assert row["error"] is None and row["feature_dim"] == 2048
