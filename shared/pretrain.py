"""Pretraining metadata of timm backbones, read from the pretrained tag (torch-free).

A timm name is ``<architecture>.<tag>``, e.g. ``convnext_base.fb_in22k_ft_in1k``.  The tag says
what the weights were trained on, but not always the same thing on every architecture (``fb`` is
Perception Encoder data on ``vit_pe_*`` and Humans-1B on ``*_sapiens2``; ``in22k_ft_in1k`` on
``beit3_*`` hides a web-scale mix; some ``in1k`` archs are distilled).  So the registry is a
table of rules ``(architecture glob, tag) -> facts``: for a name, every rule with its tag whose
glob matches the architecture applies, and the most specific glob (most literal characters)
wins, ``*`` being the per-tag default.  A tag with no matching rule stays unknown, never guessed.

Data (package files, one place per fact):

* ``pretrain_tags.csv``: architecture, tag, datasets_chain (canonical datasets joined by
  `` > ``, one per training stage), final_dataset (the largest; empty when undisclosed), method
  (a family from :data:`METHODS`), method_detail (free text), chain_detail (free text),
  confidence (high/medium/low), source.
* ``pretrain_datasets.csv``: dataset, images (a number; empty when unknown), images_text, source.

Compiled from the project's ``PRETRAIN_FACTS`` (timm 1.0.31 cfgs, model cards, papers), with
the sources kept per row.  Names without a tag resolve to unknown: timm's default tag can only
be read from timm itself, which this module must not import.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import polars as pl

from shared.errors import VibesError

__all__ = ["METHODS", "CONFIDENCES", "PretrainInfo", "PretrainDataError", "BackboneNameError",
           "split_name", "resolve", "pretrain_frame", "pretrain_datasets", "pretrain_rules"]

#: Method families: what produced the representation (the objective on the final dataset).
METHODS: tuple[str, ...] = (
    "supervised",              # class labels (incl. adversarial / SAM-optimizer / segmentation masks)
    "clip",                    # image-text contrastive: CLIP, OpenCLIP, SigLIP, EVA-CLIP, MobileCLIP...
    "mae",                     # masked image modelling: MAE, BEiT, EVA MIM, FCMAE, I-JEPA
    "ssl",                     # self-distillation / contrastive SSL: DINO, DINOv2/v3, SwAV (SEER)
    "semi-weakly-supervised",  # hashtags (WSL, SWAG), pseudo-labels (SWSL, Noisy Student)
    "distilled",               # trained to match a teacher (DeiT dist, SSLD, TinyViT, RADIO...)
    "other",                   # VLM towers, autoregressive (AIMv2)...
)
UNKNOWN = "unknown"
CONFIDENCES: tuple[str, ...] = ("high", "medium", "low")
CHAIN_SEP = " > "

_NAME_RE = r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)?$"
_GLOB_RE = re.compile(r"^[A-Za-z0-9_\-*?]+$")


class PretrainDataError(VibesError):
    """The packaged pretraining tables are inconsistent (a bug in the project's data)."""


class BackboneNameError(VibesError):
    """A backbone name is not ``<architecture>`` or ``<architecture>.<tag>``."""


@dataclass(frozen=True)
class PretrainInfo:
    """What one backbone's weights were pretrained on."""

    backbone: str
    architecture: str
    tag: str | None
    datasets_chain: tuple[str, ...]
    final_dataset: str | None
    images: float | None
    method: str          # a family from METHODS, or "unknown"
    method_detail: str
    confidence: str      # high / medium / low / unknown

    @property
    def known(self) -> bool:
        """True when the final (largest) pretraining dataset is known."""
        return self.final_dataset is not None


def split_name(backbone: str) -> tuple[str, str | None]:
    """``"convnext_base.fb_in22k_ft_in1k"`` -> ``("convnext_base", "fb_in22k_ft_in1k")``; no tag -> None."""
    if not isinstance(backbone, str) or re.match(_NAME_RE, backbone) is None:
        raise BackboneNameError(
            f"bad backbone name {backbone!r}; expected '<architecture>' or '<architecture>.<tag>' "
            "(letters, digits, '_' or '-'), e.g. 'convnext_base.fb_in22k_ft_in1k'")
    arch, _, tag = backbone.partition(".")
    return arch, (tag or None)


def _read(name: str) -> pl.DataFrame:
    with resources.files("shared").joinpath(name).open("rb") as f:
        return pl.read_csv(f, infer_schema=False)  # all String; empty cells are null


def _glob_regex(glob: str) -> str:
    return "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob) + "$"


@lru_cache(maxsize=1)
def pretrain_datasets() -> pl.DataFrame:
    """Canonical pretraining datasets: dataset, images (f64, null = unknown), images_text, source."""
    df = _read("pretrain_datasets.csv").with_columns(pl.col("images").cast(pl.Float64))
    if df["dataset"].is_duplicated().any() or df["dataset"].is_null().any():
        raise PretrainDataError("pretrain_datasets.csv: dataset names must be present and unique")
    return df


@lru_cache(maxsize=1)
def pretrain_rules() -> pl.DataFrame:
    """The validated rule table, with ``pattern`` (anchored regex) and ``specificity`` added."""
    df = _read("pretrain_tags.csv")
    need = ["architecture", "tag", "datasets_chain", "final_dataset", "method", "method_detail",
            "chain_detail", "confidence", "source"]
    if missing := [c for c in need if c not in df.columns]:
        raise PretrainDataError(f"pretrain_tags.csv lacks columns {missing}")
    datasets = set(pretrain_datasets()["dataset"])
    problems: list[str] = []
    for r in df.iter_rows(named=True):  # load-time validation of a few hundred rows
        key = f"{r['architecture']}.{r['tag']}"
        if not r["architecture"] or not _GLOB_RE.match(r["architecture"]) or not r["tag"]:
            problems.append(f"{key}: bad architecture glob or empty tag")
        if r["method"] not in METHODS:
            problems.append(f"{key}: method {r['method']!r} not in {METHODS}")
        if r["confidence"] not in CONFIDENCES:
            problems.append(f"{key}: confidence {r['confidence']!r} not in {CONFIDENCES}")
        if not r["source"]:
            problems.append(f"{key}: no source")
        chain = r["datasets_chain"].split(CHAIN_SEP) if r["datasets_chain"] else []
        if bad := [d for d in chain if d not in datasets]:
            problems.append(f"{key}: unknown datasets {bad}")
        if (r["final_dataset"] is None) != (not chain) or (r["final_dataset"] and r["final_dataset"] not in chain):
            problems.append(f"{key}: final dataset {r['final_dataset']!r} must be one of the chain {chain}")
    if df.select(pl.struct("architecture", "tag").is_duplicated().any()).item():
        problems.append("duplicate (architecture, tag) rows")
    if problems:
        raise PretrainDataError("pretrain_tags.csv: " + "; ".join(problems[:5]))
    return df.with_columns(
        pattern=pl.col("architecture").map_elements(_glob_regex, return_dtype=pl.String),
        specificity=pl.col("architecture").str.replace_all(r"[*?]", "").str.len_chars(),
    )


def pretrain_frame(backbones: Sequence[str]) -> pl.DataFrame:
    """One row per input name, same order: backbone, architecture, tag, pretrain_dataset,
    pretrain_images, pretrain_method, pretrain_method_detail, pretrain_chain (list), pretrain_confidence."""
    names = list(backbones)
    for n in names:
        split_name(n)  # raises BackboneNameError on the first malformed name
    base = pl.DataFrame({"backbone": names}, schema={"backbone": pl.String}).with_row_index("_i")
    base = base.with_columns(
        architecture=pl.col("backbone").str.split_exact(".", 1).struct.field("field_0"),
        tag=pl.col("backbone").str.split_exact(".", 1).struct.field("field_1"),
    )
    rules = pretrain_rules()
    best = (
        base.select("architecture", "tag").unique()
        .join(rules.rename({"architecture": "glob"}), on="tag", how="inner")
        .filter(pl.col("architecture").str.contains(pl.col("pattern")))
        .sort(["specificity", "glob"], descending=[True, False])
        .group_by(["architecture", "tag"], maintain_order=True).first()
        .join(pretrain_datasets().select(pl.col("dataset").alias("final_dataset"), "images"),
              on="final_dataset", how="left")
    )
    out = base.join(best, on=["architecture", "tag"], how="left", nulls_equal=False).sort("_i")
    matched = pl.col("method").is_not_null()
    return out.select(
        "backbone", "architecture", "tag",
        pl.col("final_dataset").alias("pretrain_dataset"),
        pl.col("images").alias("pretrain_images"),
        pl.col("method").fill_null(UNKNOWN).alias("pretrain_method"),
        pl.when(matched).then(pl.col("method_detail"))
        .when(pl.col("tag").is_null()).then(pl.lit("no tag in name: timm's default tag is not resolved without timm"))
        .otherwise(pl.lit("no rule for this tag on this architecture in the pretraining table"))
        .alias("pretrain_method_detail"),
        pl.when(pl.col("datasets_chain").is_not_null())
        .then(pl.col("datasets_chain").str.split(CHAIN_SEP))
        .otherwise(pl.lit([], dtype=pl.List(pl.String))).alias("pretrain_chain"),
        pl.col("confidence").fill_null(UNKNOWN).alias("pretrain_confidence"),
    )


@lru_cache(maxsize=4096)
def resolve(backbone: str) -> PretrainInfo:
    """Pretraining facts for one timm name; an unknown tag gives ``final_dataset=None``, method "unknown"."""
    r = pretrain_frame([backbone]).row(0, named=True)
    return PretrainInfo(
        backbone=r["backbone"], architecture=r["architecture"], tag=r["tag"],
        datasets_chain=tuple(r["pretrain_chain"]), final_dataset=r["pretrain_dataset"],
        images=r["pretrain_images"], method=r["pretrain_method"],
        method_detail=r["pretrain_method_detail"], confidence=r["pretrain_confidence"],
    )
