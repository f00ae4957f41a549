"""Named oracles ``openclip:<set>``: OpenCLIP's published zero-shot results, one oracle per evaluation set.

Source: ``openclip_results.csv`` (121 (model, pretrained) pairs × 38 sets, zero-shot top-1 as a
fraction) and ``model_profile.csv`` (per architecture: parameters and GFLOPs of the image and text
towers), MIT, from mlfoundations/open_clip.  They are third-party: read from ``$VIBES_OPENCLIP_RESULTS``
or ``../shared/openclip-results`` beside the repository, never committed or copied here.

The oracle is built by :mod:`simulate.importer` from a wide table (one score column per set), so
imports and ``openclip:`` share one code path::

    backbone   = <name>.<pretrained>              architecture = name
    evaluator  = "zeroshot" (the truth), fraction 1.0, seed 0
    params_m   = image_mparams                    the image tower is the backbone
    gmacs      = image_gflops                     (the column holds OpenCLIP's profiled image-tower GFLOPs)
    seconds    = image_gflops × COST_IMAGES ÷ COST_RATE_GFLOPS    (a declared model, not measured)
    pretrain_dataset from the pretrained tag (:data:`PRETRAIN_RULES`), pretrain_method "clip"

Every set is costed with the same image count (:data:`COST_IMAGES`), so a budget means the same on
every set.  ``pretrain_images`` is the size in ``shared/pretrain_datasets.csv`` where the dataset is
listed there, else null (never guessed).  Set names are slugs of the column names
(:func:`simulate.importer.slugify`): ``imagenet-1k``, ``cifar-10``, ``oxford-flowers-102``, ...
"""
from __future__ import annotations

import fnmatch
import glob
import os
from functools import lru_cache
from pathlib import Path

import polars as pl

from shared.errors import VibesError, unknown
from shared.oracle import Oracle
from simulate.importer import ImportSpec, import_frame, read_table, slugify
from simulate.timm_oracle import N_IMAGES

ENV_DIR = "VIBES_OPENCLIP_RESULTS"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "openclip-results"  # ../shared beside the repo
RESULTS_FILE = "openclip_results.csv"
PROFILE_FILE = "model_profile.csv"
EVALUATOR = "zeroshot"
#: the declared cost model: every evaluation runs COST_IMAGES images through the image tower at COST_RATE_GFLOPS
COST_IMAGES = 10_000
COST_RATE_GFLOPS = 100_000.0
#: columns of openclip_results.csv that are not evaluation sets
NOT_SETS = ("name", "pretrained", "params (M)", "FLOPs (B)", "Average perf. on 38 datasets")
#: pretrained tag (regex, first match wins) -> pretraining dataset, as named in shared/pretrain_datasets.csv
#: where it is listed there; tags not matched (``v1``, the NLLB-CLIP models) stay unknown
PRETRAIN_RULES: tuple[tuple[str, str], ...] = (
    (r"^openai$", "OpenAI WIT-400M"),
    (r"^laion400m", "LAION-400M"),
    (r"^(mscoco_finetuned_)?laion2b", "LAION-2B (en)"),  # a COCO fine-tune keeps its LAION-2B pretraining
    (r"^(frozen_)?laion5b", "LAION-5B"),
    (r"^laion_aesthetic", "LAION-Aesthetic (LAION-A)"),
    (r"^(datacomp_xl_|datacomp1b$|datacomp_s34b)", "DataComp-1B"),
    (r"^datacomp_l_", "DataComp-L"),
    (r"^datacomp_m_", "DataComp-M"),
    (r"^datacomp_s_", "DataComp-S"),
    (r"^dfn5b$", "DFN-5B"),
    (r"^dfn2b$", "DFN-2B"),
    (r"^metaclip_400m$", "MetaCLIP-400M"),
    (r"^metaclip_fullcc$", "MetaCLIP-2.5B"),
    (r"^merged2b", "Merged-2B (EVA-CLIP)"),
    (r"^webli$", "WebLI"),
    (r"^yfcc15m$", "YFCC-15M"),
    (r"^cc12m$", "CC12M"),
)
#: CommonPool (DataComp's unfiltered pools and their filtered subsets): ``commonpool_<size>[_<filter>]_s...``
#: -> "CommonPool-<SIZE>" or "CommonPool-<SIZE> (<filter> filter)"
COMMONPOOL = r"^commonpool_(s|m|l|xl)_(?:(basic|clip|image|laion|text)_)?s\d"


def locate_results(path: str | os.PathLike | None = None) -> Path:
    """The folder holding the OpenCLIP files: ``path``, else ``$VIBES_OPENCLIP_RESULTS``, else ../shared."""
    folder = Path(path or os.environ.get(ENV_DIR) or DEFAULT_DIR)
    missing = [f for f in (RESULTS_FILE, PROFILE_FILE) if not (folder / f).is_file()]
    if missing:
        raise VibesError(f"OpenCLIP results folder {str(folder)!r} lacks {', '.join(missing)}; point "
                         f"${ENV_DIR} at a folder with {RESULTS_FILE} and {PROFILE_FILE}")
    return folder


def pretrain_of(tag: pl.Expr) -> pl.Expr:
    """The pretraining dataset of an OpenCLIP ``pretrained`` tag (:data:`PRETRAIN_RULES`; null: unknown)."""
    cp = tag.str.extract_groups(COMMONPOOL)
    commonpool = pl.format("CommonPool-{}", cp.struct.field("1").str.to_uppercase())
    expr = pl.when(cp.struct.field("2").is_not_null()).then(
        pl.format("{} ({} filter)", commonpool, cp.struct.field("2"))
    ).when(cp.struct.field("1").is_not_null()).then(commonpool)
    for pattern, dataset in PRETRAIN_RULES:
        expr = expr.when(tag.str.contains(pattern)).then(pl.lit(dataset))
    return expr.otherwise(pl.lit(None, dtype=pl.String))


@lru_cache(maxsize=4)
def _wide(folder: str) -> tuple[pl.DataFrame, dict[str, str]]:
    """The wide table the importer reads (backbone, params_m, gflops, pretrain_dataset, one column per
    set) and set slug -> column name."""
    results = read_table(Path(folder) / RESULTS_FILE)
    profile = read_table(Path(folder) / PROFILE_FILE)
    sets = [c for c in results.columns if c not in NOT_SETS]
    joined = results.join(profile.select("model", "image_mparams", "image_gflops"),
                          left_on="name", right_on="model", how="left")
    wide = joined.select(
        pl.format("{}.{}", "name", "pretrained").alias("backbone"),
        pl.col("image_mparams").cast(pl.Float64).alias("params_m"),
        pl.col("image_gflops").cast(pl.Float64).alias("gflops"),
        pretrain_of(pl.col("pretrained")).alias("pretrain_dataset"),
        *sets)
    return wide, {slugify(c): c for c in sets}


def openclip_sets(results_dir: str | os.PathLike | None = None) -> list[str]:
    """The set names (slugs), in the table's column order: ``imagenet-1k``, ``caltech-101``, ..."""
    return list(_wide(str(locate_results(results_dir)))[1])


def openclip_oracle(set_name: str, results_dir: str | os.PathLike | None = None) -> Oracle:
    """The ``openclip:<set_name>`` oracle (``set_name`` a slug from :func:`openclip_sets`)."""
    folder = locate_results(results_dir)
    wide, sets = _wide(str(folder))
    if set_name not in sets:
        raise unknown("OpenCLIP set", set_name, sets)
    spec = ImportSpec(datasets=(sets[set_name],), evaluator=EVALUATOR, score_scale="fraction",
                      cost_model="gflops:gflops", images=COST_IMAGES, rate=COST_RATE_GFLOPS, images_are_n_test=False,
                      params_col="params_m", gflops_col="gflops", pretrain_col="pretrain_dataset",
                      pretrain_method="clip", join_pool=False,
                      gflops_label="image-tower GFLOPs (OpenCLIP's model_profile.csv image_gflops)")
    result = import_frame(wide, spec, str(folder / RESULTS_FILE))
    oracle = result.oracles[sets[set_name]]
    name = f"openclip:{set_name}"
    meta = {**oracle.meta, "dataset": name, "set": sets[set_name],
            "source": f"OpenCLIP published zero-shot results (MIT, mlfoundations/open_clip): {folder / RESULTS_FILE} "
                      f"+ {PROFILE_FILE}",
            "protocol": "OpenCLIP zero-shot top-1 (a fraction), one row per (model, pretrained)",
            "gmacs": "the gmacs column holds OpenCLIP's profiled image-tower GFLOPs (image_gflops), not GMACs",
            "params": "params_m is the image tower's (image_mparams): the image tower is the backbone",
            "pretrain": "pretrain_dataset from the pretrained tag (simulate.openclip_oracle.PRETRAIN_RULES); "
                        "pretrain_images where shared/pretrain_datasets.csv lists the dataset, else null",
            "cost_images": COST_IMAGES, "cost_rate_gflops": COST_RATE_GFLOPS,
            "import_notes": result.notes}
    return Oracle(oracle.frame.with_columns(pl.lit(name).alias("dataset")), meta).validate()


def expand_oracle_specs(specs, results_dir: str | os.PathLike | None = None) -> list[str]:
    """Oracle specs with globs expanded, in order, duplicates dropped: ``openclip:*`` / ``openclip:cifar*``
    over :func:`openclip_sets`, ``timm:*`` over the timm set names, a file glob (``oracles/*.parquet``)
    over the files; a spec without ``*``, ``?`` or ``[`` is kept as it is.  A glob matching nothing is refused."""
    out: list[str] = []
    for spec in specs:
        if not any(ch in spec for ch in "*?["):
            out.append(spec)
            continue
        prefix, _, pattern = spec.partition(":") if spec.startswith(("openclip:", "timm:")) else ("", "", spec)
        names = (openclip_sets(results_dir) if prefix == "openclip" else list(N_IMAGES) if prefix == "timm"
                 else sorted(glob.glob(pattern)))
        hits = [f"{prefix}:{n}" if prefix else n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise VibesError(f"oracle spec {spec!r} matches nothing"
                             + (f"; {prefix} sets: {', '.join(names)}" if prefix else ""))
        out += hits
    return list(dict.fromkeys(out))


__all__ = ["ENV_DIR", "COST_IMAGES", "COST_RATE_GFLOPS", "EVALUATOR", "PRETRAIN_RULES", "locate_results",
           "pretrain_of", "openclip_sets", "openclip_oracle", "expand_oracle_specs"]
