"""Named oracles ``timm:<set>``: an oracle built from timm's published ImageNet-family results.

For each model of ``results-<set>.csv`` (with ``arch`` = the name before the dot, looked up in a
``benchmark-infer-*.csv``)::

    score    = top1 / 100                       (evaluator "top1", fraction 1.0, seed 0, truth "top1")
    scale    = (img_size / infer_img_size(arch))²
    seconds  = n_images(set) / infer_samples_per_sec(arch) × scale
    gmacs    = infer_gmacs(arch) × scale
    params_m = param_count (results file)

Models with no benchmark row are left out, and so are timm's toy ``test_*`` models
(:func:`shared.toy_models.is_test_model`, the definition ``precompute``'s pool uses): tiny
architectures of near-chance top-1 that would top every cheap-first order.  Both are counted in the
oracle metadata (``models_without_benchmark``, ``toy_test_models_left_out``) and said on stderr in
one note, once per process (:data:`_SAID`; ``simulate --list`` shows the counts).
Models listed twice (at their default input size and at timm's larger ``test_input_size``)
keep the row at the smaller, default size.  ``imagenet_top1`` (metadata, the ``imagenet-top1``
sampler's key) is the model's published ImageNet-1k top-1 in percent from
``results-imagenet.csv`` at its default size (:func:`shared.timm_results.imagenet_top1`); null
for a model not in that file, or for every model when the file is not available (a note).

The files are third-party (Apache-2.0, timm's repository): they are read from a folder
(``--timm-results DIR`` or ``$VIBES_TIMM_RESULTS``) or downloaded once from timm's repository at
a pinned commit into the user's cache directory — never committed to this project
(:mod:`shared.timm_results`).
"""
from __future__ import annotations

import os
import sys
from datetime import datetime, timezone

import polars as pl

from shared.errors import VibesError, unknown
from shared.oracle import Oracle
from shared.pretrain import pretrain_frame
from shared.timm_results import (  # noqa: F401  (re-exported: the simulator's names for them)
    DEFAULT_BENCHMARK,
    ENV_DIR,
    IMAGENET_RESULTS,
    RAW_URL,
    TIMM_COMMIT,
    at_default_size,
    cache_dir,
    fill_imagenet_top1,
    imagenet_top1,
    locate,
    top1_of,
)
from shared.timm_results import read_csv as _read_csv
from shared.toy_models import TEST_MODEL_PREFIX, is_test_model

#: images in each evaluation set (the -clean sets count as their base set)
N_IMAGES = {
    "imagenet": 50_000,
    "imagenet-real": 50_000,
    "imagenetv2-matched-frequency": 10_000,
    "sketch": 50_889,
    "imagenet-r": 30_000,
    "imagenet-a": 7_500,
}


def n_images(set_name: str) -> int:
    base = set_name.removesuffix("-clean")
    if base not in N_IMAGES:
        raise unknown("timm result set", set_name, list(N_IMAGES) + [f"{s}-clean" for s in N_IMAGES])
    return N_IMAGES[base]


#: what simulate (the one command with --timm-benchmark) adds when a results file cannot be downloaded
BENCHMARK_HINT = "choose the benchmark file with --timm-benchmark FILE"


def timm_oracle(set_name: str, results_dir: str | os.PathLike | None = None,
                benchmark: str = DEFAULT_BENCHMARK, quiet: bool = False) -> Oracle:
    """Build the ``timm:<set_name>`` oracle."""
    images = n_images(set_name)
    results = _read_csv(locate(f"results-{set_name}.csv", results_dir, hint=BENCHMARK_HINT),
                        ["model", "img_size", "top1", "param_count"])
    # Some models are listed twice: at their default input size and at timm's larger
    # test_input_size.  One row per backbone: keep the default (the smaller) size.
    n_listed = results.height
    results = at_default_size(results)
    toys = [m for m in results.get_column("model").to_list() if is_test_model(m)]
    n_models = results.height
    results = results.filter(~pl.col("model").is_in(toys))
    bench = _read_csv(locate(benchmark, results_dir, hint=BENCHMARK_HINT),
                      ["model", "infer_img_size", "infer_samples_per_sec", "infer_gmacs"])
    bench = (bench.select(pl.col("model").alias("architecture"), "infer_img_size",
                          "infer_samples_per_sec", "infer_gmacs")
             .unique("architecture", keep="first"))
    joined = (results
              .with_columns(pl.col("model").str.split(".").list.first().alias("architecture"))
              .join(bench, on="architecture", how="left"))
    has_bench = pl.col("infer_samples_per_sec").is_not_null() & (pl.col("infer_samples_per_sec") > 0)
    dropped = joined.filter(~has_bench).get_column("model").to_list()
    kept = joined.filter(has_bench)
    frame = _rows(kept, set_name, images)
    pre = pretrain_frame(frame.get_column("backbone").to_list())
    frame = frame.with_columns(
        pre.get_column("pretrain_dataset"),
        pre.get_column("pretrain_images").cast(pl.Float64),
        pre.get_column("pretrain_method"),
    )
    top1_note = None
    try:
        top1 = top1_of(results) if set_name == "imagenet" else imagenet_top1(results_dir)
    except VibesError as exc:  # the prior is optional: the oracle stands without it
        top1, top1_note = None, f"imagenet_top1 unavailable ({exc})"
        if not quiet:
            print(f"timm:{set_name}: {top1_note}", file=sys.stderr)
    if top1 is not None:
        frame = fill_imagenet_top1(frame, top1)
    if not quiet:
        _say_once(left_out_note(set_name, benchmark, n_models, dropped, toys), benchmark)
    meta = _meta(set_name, benchmark, images, top1_note, models_in_results=n_models,
                 rows_at_test_input_size_dropped=n_listed - n_models, models_without_benchmark=len(dropped),
                 toy_test_models_left_out=len(toys))
    return Oracle(frame, meta).validate()


def _rows(kept: pl.DataFrame, set_name: str, images: int) -> pl.DataFrame:
    """The oracle rows of the models with a benchmark row (the formulas of the module docstring)."""
    scale = (pl.col("img_size").cast(pl.Float64) / pl.col("infer_img_size").cast(pl.Float64)) ** 2
    seconds = images / pl.col("infer_samples_per_sec").cast(pl.Float64) * scale
    return kept.select(
        pl.lit(f"timm:{set_name}").alias("dataset"),
        pl.col("model").alias("backbone"),
        pl.lit("top1").alias("evaluator"),
        pl.lit(1.0).alias("fraction"),
        pl.lit(0, dtype=pl.Int32).alias("seed"),
        (pl.col("top1").cast(pl.Float64) / 100).alias("score"),
        seconds.alias("seconds"),
        pl.lit(0.0).alias("load_seconds"),
        seconds.alias("extract_seconds"),
        pl.lit(0.0).alias("fit_seconds"),
        pl.lit("ok").alias("status"),
        pl.lit(None, dtype=pl.String).alias("error"),
        "architecture",
        pl.col("param_count").cast(pl.String).str.replace_all(",", "").cast(pl.Float64).alias("params_m"),
        (pl.col("infer_gmacs").cast(pl.Float64) * scale).alias("gmacs"),
        pl.col("img_size").cast(pl.Int32).alias("input_size"),
    )


def _meta(set_name: str, benchmark: str, images: int, top1_note: str | None, **counts) -> dict:
    """The oracle metadata: where the rows come from, how costs are modelled, what was left out (``counts``)."""
    hardware = benchmark.removeprefix("benchmark-infer-").removesuffix(".csv")
    return {
        "dataset": f"timm:{set_name}",
        "truth": "top1",
        "source": f"timm published results at commit {TIMM_COMMIT}: results-{set_name}.csv + {benchmark}",
        "protocol": "published ImageNet-family top-1; seconds = images / published inference "
                    "throughput, scaled by (img_size / infer_img_size)^2",
        "n_test": images,
        "costs": "modelled",
        "cost_model": f"modelled: {images:,} images ÷ timm's published inference throughput ({hardware}), "
                      f"scaled by (img_size / infer_img_size)² (not measured)",
        "weights": "pretrained",
        "hardware": hardware,
        **counts,
        "imagenet_top1": top1_note or f"published ImageNet-1k top-1 (percent) at the default size, "
                                      f"{IMAGENET_RESULTS}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


#: the left-out notes already said in this process (by benchmark file): a league over ``timm:*``, or a
#: prior ``timm:`` oracle beside the one under study, says it once, not once per oracle
_SAID: set[str] = set()


def left_out_note(set_name: str, benchmark: str, n_models: int, dropped: list[str], toys: list[str]) -> str | None:
    """``timm:sketch: left out 77 of 1266 models with no row in <benchmark> (e.g. x) and timm's 13 toy
    test_* models (...)``; None when nothing is left out."""
    parts = []
    if dropped:
        parts.append(f"{len(dropped)} of {n_models} models with no row in {benchmark} (e.g. {dropped[0]})")
    if toys:
        parts.append(f"timm's {len(toys)} toy {TEST_MODEL_PREFIX}* models (unit-test architectures of "
                     f"near-chance top-1, e.g. {toys[0]})")
    if not parts:
        return None
    return (f"timm:{set_name}: left out " + " and ".join(parts) + "; counted in the oracle metadata "
            "(`simulate --list`), said once per run")


def _say_once(note: str | None, key: str) -> None:
    if note is not None and key not in _SAID:
        _SAID.add(key)
        print(note, file=sys.stderr)
