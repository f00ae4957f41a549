"""Named oracles ``timm:<set>``: an oracle built from timm's published ImageNet-family results.

For each model of ``results-<set>.csv`` (with ``arch`` = the name before the dot, looked up in a
``benchmark-infer-*.csv``)::

    score    = top1 / 100                       (evaluator "top1", fraction 1.0, seed 0, truth "top1")
    scale    = (img_size / infer_img_size(arch))²
    seconds  = n_images(set) / infer_samples_per_sec(arch) × scale
    gmacs    = infer_gmacs(arch) × scale
    params_m = param_count (results file)

Models with no benchmark row are left out, counted in the oracle metadata and on stderr.
Models listed twice (at their default input size and at timm's larger ``test_input_size``)
keep the row at the smaller, default size.

The files are third-party (Apache-2.0, timm's repository): they are read from a folder
(``--timm-results DIR`` or ``$VIBES_TIMM_RESULTS``) or downloaded once from timm's repository at
a pinned commit into the user's cache directory — never committed to this project.
"""
from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from shared.errors import VibesError, unknown
from shared.oracle import Oracle
from shared.pretrain import pretrain_frame

TIMM_COMMIT = "aa4b5850c1543fa488abf260f18390eda46cf85d"
RAW_URL = "https://raw.githubusercontent.com/huggingface/pytorch-image-models/{commit}/results/{file}"
DEFAULT_BENCHMARK = "benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv"
ENV_DIR = "VIBES_TIMM_RESULTS"

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


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "vibes" / "timm-results" / TIMM_COMMIT


def locate(file: str, results_dir: str | os.PathLike | None) -> Path:
    """Path of a timm results file: from the folder given (or $VIBES_TIMM_RESULTS), else the cache,
    downloading it there once from the pinned commit."""
    results_dir = results_dir or os.environ.get(ENV_DIR)
    if results_dir:
        folder = Path(results_dir)
        if not folder.is_dir():
            raise VibesError(f"timm results folder {str(folder)!r} does not exist "
                             f"(--timm-results DIR or ${ENV_DIR})")
        path = folder / file
        if not path.is_file():
            have = sorted(p.name for p in folder.glob("*.csv"))
            raise VibesError(f"{file!r} is not in {str(folder)!r}; it has: {', '.join(have) or 'no csv'}")
        return path
    path = cache_dir() / file
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    url = RAW_URL.format(commit=TIMM_COMMIT, file=file)
    tmp = path.with_name(f".{file}.{os.getpid()}.tmp")
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
            out.write(resp.read())
        os.replace(tmp, path)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise VibesError(f"cannot download {file} from timm's repository ({exc}); offline? give a "
                         f"local copy with --timm-results DIR (or ${ENV_DIR}) and choose the "
                         f"benchmark file with --timm-benchmark FILE") from None
    return path


def _read_csv(path: Path, needed: list[str]) -> pl.DataFrame:
    try:
        frame = pl.read_csv(path, infer_schema_length=None)
    except Exception as exc:
        raise VibesError(f"cannot read {str(path)!r} as CSV: {exc}") from None
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise VibesError(f"{str(path)!r} lacks column(s) {', '.join(missing)}; is it a timm results file?")
    return frame


def timm_oracle(set_name: str, results_dir: str | os.PathLike | None = None,
                benchmark: str = DEFAULT_BENCHMARK, quiet: bool = False) -> Oracle:
    """Build the ``timm:<set_name>`` oracle."""
    images = n_images(set_name)
    results = _read_csv(locate(f"results-{set_name}.csv", results_dir),
                        ["model", "img_size", "top1", "param_count"])
    # Some models are listed twice: at their default input size and at timm's larger
    # test_input_size.  One row per backbone: keep the default (the smaller) size.
    n_listed = results.height
    results = results.sort("model", "img_size").unique("model", keep="first", maintain_order=True)
    bench = _read_csv(locate(benchmark, results_dir),
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
    scale = (pl.col("img_size").cast(pl.Float64) / pl.col("infer_img_size").cast(pl.Float64)) ** 2
    seconds = images / pl.col("infer_samples_per_sec").cast(pl.Float64) * scale
    frame = kept.select(
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
    pre = pretrain_frame(frame.get_column("backbone").to_list())
    frame = frame.with_columns(
        pre.get_column("pretrain_dataset"),
        pre.get_column("pretrain_images").cast(pl.Float64),
        pre.get_column("pretrain_method"),
    )
    if dropped and not quiet:
        print(f"timm:{set_name}: {len(dropped)} of {results.height} models have no row in "
              f"{benchmark} and are left out (e.g. {dropped[0]})", file=sys.stderr)
    meta = {
        "dataset": f"timm:{set_name}",
        "truth": "top1",
        "source": f"timm published results at commit {TIMM_COMMIT}: results-{set_name}.csv + {benchmark}",
        "protocol": "published ImageNet-family top-1; seconds = images / published inference "
                    "throughput, scaled by (img_size / infer_img_size)^2",
        "n_test": images,
        "weights": "pretrained",
        "hardware": benchmark.removeprefix("benchmark-infer-").removesuffix(".csv"),
        "models_in_results": results.height,
        "rows_at_test_input_size_dropped": n_listed - results.height,
        "models_without_benchmark": len(dropped),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return Oracle(frame, meta).validate()
