"""shared.pretrain: pretraining facts from timm tags (torch-free registry, checked against timm)."""
from __future__ import annotations

import fnmatch
import subprocess
import sys

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import VibesError
from shared.oracle import COLUMNS
from shared.pretrain import (
    CONFIDENCES,
    METHODS,
    BackboneNameError,
    PretrainInfo,
    pretrain_datasets,
    pretrain_frame,
    pretrain_rules,
    resolve,
    split_name,
)

IN1K, IN22K, IN12K = 1281167.0, 1.42e7, 12129687.0


def test_import_is_torch_free():
    code = ("import sys, shared.pretrain as p; p.resolve('convnext_base.fb_in22k_ft_in1k'); "
            "bad = [m for m in ('torch', 'timm') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name, expected", [
    ("convnext_base.fb_in22k_ft_in1k", ("convnext_base", "fb_in22k_ft_in1k")),
    ("resnet50", ("resnet50", None)),
    ("vit_base_patch16_224.augreg2_in21k_ft_in1k", ("vit_base_patch16_224", "augreg2_in21k_ft_in1k")),
])
def test_split_name(name, expected):
    assert split_name(name) == expected


@pytest.mark.parametrize("bad", ["", ".in1k", "resnet50.", "resnet 50", "a.b.c", None, 3])
def test_malformed_names_raise_one_line_vibes_error(bad):
    with pytest.raises(BackboneNameError) as err:
        resolve(bad)
    assert isinstance(err.value, VibesError) and "\n" not in str(err.value)
    assert "<architecture>.<tag>" in str(err.value)


# name -> (final dataset, images, method); the traps from PRETRAIN_FACTS.md included
KNOWN = {
    "convnext_base.fb_in22k_ft_in1k": ("ImageNet-22k", IN22K, "supervised"),
    "vit_base_patch16_clip_224.openai": ("OpenAI WIT-400M", 4e8, "clip"),
    "resnet50_clip.openai": ("OpenAI WIT-400M", 4e8, "clip"),
    "vit_base_patch16_siglip_224.webli": ("WebLI", 1e10, "clip"),
    "vit_base_patch16_224.mae": ("ImageNet-1k", IN1K, "mae"),
    "vit_base_patch14_dinov2.lvd142m": ("LVD-142M", 1.42e8, "ssl"),
    "vit_base_patch16_224.sam_in1k": ("ImageNet-1k", IN1K, "supervised"),  # SAM optimizer, not SA-1B
    "samvit_base_patch16.sa1b": ("SA-1B", 1.1e7, "supervised"),
    "deit_base_distilled_patch16_224.fb_in1k": ("ImageNet-1k", IN1K, "distilled"),
    "deit_base_patch16_224.fb_in1k": ("ImageNet-1k", IN1K, "supervised"),
    "pit_s_distilled_224.in1k": ("ImageNet-1k", IN1K, "distilled"),
    "pit_s_224.in1k": ("ImageNet-1k", IN1K, "supervised"),
    "vit_pe_core_base_patch16_224.fb": ("PE image-text 5.4B (MetaCLIP-style curation)", 5.4e9, "clip"),
    "vit_base_patch16_sapiens2.fb": ("Humans-1B (Sapiens2)", 1e9, "mae"),
    "beit3_base_patch16_224.in22k_ft_in1k": ("BEiT-3 mix (IN-21k + LAION-400M/2B + COYO-700M + CC15M)", 3e9, "mae"),
    "eva_large_patch14_196.in22k_ft_in1k": ("ImageNet-22k", IN22K, "mae"),
    "vit_base_patch16_224_miil.in21k": ("ImageNet-21K-P (MIIL)", 1.24e7, "supervised"),
    "tf_efficientnetv2_s.in21k": ("ImageNet-22k", IN22K, "supervised"),
    "vit_base_patch14_reg1_tipsv2.webli": ("WebLI", 1e10, "clip"),
    "hrnet_w18_ssld.paddle_in1k": ("SSLD set (ImageNet-1k + unlabeled ImageNet-22k subset)", 5e6, "distilled"),
    "hgnet_tiny.paddle_in1k": ("ImageNet-1k", IN1K, "supervised"),
    "resnext101_32x8d.fb_swsl_ig1b_ft_in1k": ("Instagram IG-1B/940M (hashtag, WSL/SWSL)", 9.4e8,
                                              "semi-weakly-supervised"),
    "tf_efficientnet_b0.ns_jft_in1k": ("JFT-300M", 3e8, "semi-weakly-supervised"),
    "convnext_base.fb_in1k": ("ImageNet-1k", IN1K, "supervised"),
    "convnext_base.clip_laion2b_augreg_ft_in12k_in1k": ("LAION-2B (en)", 2.32e9, "clip"),
    "vit_base_patch16_224.augreg_in21k_ft_in1k": ("ImageNet-22k", IN22K, "supervised"),
    "resnet50.a1_in1k": ("ImageNet-1k", IN1K, "supervised"),
    "regnety_120.sw_in12k_ft_in1k": ("ImageNet-12k", IN12K, "supervised"),
    "levit_128.fb_dist_in1k": ("ImageNet-1k", IN1K, "distilled"),
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_answers(name):
    info = resolve(name)
    final, images, method = KNOWN[name]
    assert (info.final_dataset, info.images, info.method) == (final, pytest.approx(images), method)
    assert info.known and info.confidence in CONFIDENCES
    assert info.final_dataset in info.datasets_chain and info.method_detail
    assert (info.architecture, info.tag) == split_name(name)


def test_chain_and_detail():
    info = resolve("convnext_base.fb_in22k_ft_in1k")
    assert info == PretrainInfo(
        backbone="convnext_base.fb_in22k_ft_in1k", architecture="convnext_base", tag="fb_in22k_ft_in1k",
        datasets_chain=("ImageNet-22k", "ImageNet-1k"), final_dataset="ImageNet-22k", images=IN22K,
        method="supervised", method_detail="supervised (ConvNeXt / DeiT-III / ResMLP-B24)", confidence="high")
    assert "Sharpness-Aware" in resolve("vit_base_patch16_224.sam_in1k").method_detail  # free text kept


@pytest.mark.parametrize("name, why", [
    ("resnet50.not_a_real_tag", "no rule"),
    ("my_new_arch.fb", "no rule"),             # fb means different data per family: no default
    ("my_new_arch.in22k_ft_in1k", "no rule"),  # same for in22k_ft_in1k (eva_large vs beit3)
    ("resnet50", "no tag"),                    # timm's default tag needs timm
])
def test_unknown_stays_unknown(name, why):
    info = resolve(name)
    assert not info.known
    assert (info.final_dataset, info.images, info.method, info.confidence, info.datasets_chain) == (
        None, None, "unknown", "unknown", ())
    assert why in info.method_detail


@pytest.mark.parametrize("name, method", [("qwen3_vit_416m.qwen3_vl_8b", "other"),
                                           ("vit_base_patch16_lingbot.robbyant", "ssl")])
def test_undisclosed_data_is_not_guessed(name, method):
    info = resolve(name)  # the tag is in the table, but the data behind it is not disclosed
    assert (info.final_dataset, info.images, info.datasets_chain) == (None, None, ())
    assert not info.known and info.method == method and info.confidence == "low"


def test_vocabulary_and_tables():
    rules, ds = pretrain_rules(), pretrain_datasets()
    assert set(rules["method"]) <= set(METHODS) and set(rules["method"]) == set(METHODS)  # all used
    assert set(rules["confidence"]) <= set(CONFIDENCES)
    assert rules["source"].is_not_null().all() and ds["source"].is_not_null().all()
    assert ds.filter(pl.col("images").is_not_null())["images"].min() > 1e6
    size = dict(zip(ds["dataset"], ds["images"]))
    for r in rules.filter(pl.col("final_dataset").is_not_null()).iter_rows(named=True):
        chain = r["datasets_chain"].split(" > ")
        assert set(chain) <= set(size) and r["final_dataset"] in chain
        sizes = [size[d] for d in chain if size[d] is not None]
        if size[r["final_dataset"]] is not None:  # "final" is the largest dataset the weights saw
            assert size[r["final_dataset"]] == max(sizes), (r["tag"], chain)


def test_pretrain_frame_order_length_and_schema():
    names = ["vit_base_patch16_224.mae", "resnet50", "convnext_base.fb_in22k_ft_in1k",
             "vit_base_patch16_224.mae", "x.unknown_tag", "deit_base_distilled_patch16_224.fb_in1k"]
    f = pretrain_frame(names)
    assert f["backbone"].to_list() == names and f.height == len(names)
    assert f.columns == ["backbone", "architecture", "tag", "pretrain_dataset", "pretrain_images", "pretrain_method",
                         "pretrain_method_detail", "pretrain_chain", "pretrain_confidence"]
    for col in ("pretrain_dataset", "pretrain_images", "pretrain_method"):
        assert f.schema[col] == COLUMNS[col]
    assert f["pretrain_method"].to_list() == ["mae", "unknown", "supervised", "mae", "unknown", "distilled"]
    assert f["pretrain_dataset"].to_list() == ["ImageNet-1k", None, "ImageNet-22k", "ImageNet-1k", None, "ImageNet-1k"]
    assert f["pretrain_chain"].to_list()[2] == ["ImageNet-22k", "ImageNet-1k"]
    for name, row in zip(names, f.iter_rows(named=True)):  # frame and resolve agree
        info = resolve(name)
        assert (row["pretrain_dataset"], row["pretrain_method"], row["pretrain_confidence"]) == (
            info.final_dataset, info.method, info.confidence)
    empty = pretrain_frame([])
    assert empty.height == 0 and empty.columns == f.columns


def test_pretrain_frame_rejects_a_bad_name():
    with pytest.raises(BackboneNameError, match="bad backbone name 'oops.'"):
        pretrain_frame(["resnet50.a1_in1k", "oops."])


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[a-z][a-z0-9_]{0,20}(\.[a-z0-9_]{1,20})?", fullmatch=True))
def test_resolve_never_raises_on_well_formed_names(name):
    info = resolve(name)
    assert info.method in METHODS + ("unknown",)
    assert info.known == (info.final_dataset is not None)


# ------------------------------------------------------------------ against timm itself
@pytest.fixture(scope="module")
def timm_frame():
    timm = pytest.importorskip("timm", reason="timm (the [precompute] extra) is needed to list its pretrained names")
    from timm.models import get_pretrained_cfg
    names = timm.list_models(pretrained=True)
    heads = [get_pretrained_cfg(n).num_classes for n in names]
    return pretrain_frame(names).with_columns(num_classes=pl.Series(heads))


def test_coverage_of_timm_pretrained_names(timm_frame):
    f = timm_frame
    known = f.filter(pl.col("pretrain_dataset").is_not_null())
    coverage = known.height / f.height
    unresolved = f.filter(pl.col("pretrain_dataset").is_null())
    print(f"\npretrain coverage: {known.height}/{f.height} = {coverage:.2%} names with a known final dataset; "
          f"{unresolved.height} unresolved: {unresolved['backbone'].to_list()}")
    assert f.height >= 1800 and coverage >= 0.97
    assert set(f["pretrain_method"]) <= set(METHODS)  # every timm tag has a rule (maybe "final unknown")
    assert set(unresolved["pretrain_confidence"]) == {"low"}  # only undisclosed data is left unresolved


def test_every_timm_name_has_one_most_specific_rule_and_no_rule_is_dead(timm_frame):
    rules = pretrain_rules()
    by_tag = {t: g for t, g in rules.group_by("tag")}
    used = set()
    for arch, tag in zip(timm_frame["architecture"], timm_frame["tag"]):
        hits = [(r["specificity"], r["architecture"]) for r in by_tag[(tag,)].iter_rows(named=True)
                if fnmatch.fnmatchcase(arch, r["architecture"])]
        hits.sort(reverse=True)
        assert hits and (len(hits) == 1 or hits[0][0] > hits[1][0]), (arch, tag, hits)
        used.add((hits[0][1], tag))
    assert set(zip(rules["architecture"], rules["tag"])) == used


def test_chain_end_agrees_with_timm_head_size(timm_frame):
    """The last stage of the chain is the label space of the checkpoint's head (0 = no head)."""
    heads = {"ImageNet-1k": {1000}, "ImageNet-12k": {11821}, "ImageNet-22k": {21841, 21842, 21843},
             "ImageNet-21K-P (MIIL)": {11221}, "ImageNet-21k (winter21)": {19168}}
    f = timm_frame.with_columns(last=pl.col("pretrain_chain").list.last()).filter(pl.col("last").is_in(list(heads)))
    bad = [(b, last, n) for b, last, n, m in zip(f["backbone"], f["last"], f["num_classes"], f["pretrain_method"])
           if n != 0 and n not in heads[last] and not (m == "distilled" and n == 1000)]  # SSLD stage 1: 1k head
    assert not bad, bad[:10]
    assert f.height > 1400
