"""timm's published results files, read without torch or timm (both phases use them).

The files (``results-<set>.csv``: model, img_size, top1, top5, param_count, ...; and
``benchmark-infer-*.csv``: throughput and GMACs) are third-party (Apache-2.0, timm's
repository).  They are read from a folder (``--timm-results DIR`` or ``$VIBES_TIMM_RESULTS``)
or downloaded once from timm's repository at a pinned commit into the user's cache directory
(``$XDG_CACHE_HOME/vibes/timm-results/<commit>``) — never committed to this project.

:func:`imagenet_top1` is the published ImageNet-1k top-1 of every model at its default input
size, the ``imagenet_top1`` backbone metadata column (the ``imagenet-top1`` sampler's key):
``simulate``'s ``timm:<set>`` oracles and the precompute pool take it from here.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl

from shared.errors import VibesError
from shared.timm_files import DEFAULT_BENCHMARK, ENV_DIR, IMAGENET_RESULTS, RAW_URL, TIMM_COMMIT  # noqa: F401


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "vibes" / "timm-results" / TIMM_COMMIT


def locate(file: str, results_dir: str | os.PathLike | None, hint: str = "") -> Path:
    """Path of a timm results file: from the folder given (or $VIBES_TIMM_RESULTS), else the cache,
    downloading it there once from the pinned commit.  ``hint``: what else the caller's command
    can do when the download fails (its own options only: each command says what it accepts)."""
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
    created = [d for d in [path.parent, *path.parent.parents] if not d.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    url = RAW_URL.format(commit=TIMM_COMMIT, file=file)
    tmp = path.with_name(f".{file}.{os.getpid()}.tmp")
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
            out.write(resp.read())
        os.replace(tmp, path)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        for folder in created:  # a failed download leaves no empty cache folders behind
            try:
                folder.rmdir()
            except OSError:  # not empty: another process's download landed there meanwhile
                break
        raise VibesError(f"cannot download {file} from timm's repository ({exc}); offline? give a "
                         f"local copy with --timm-results DIR (or ${ENV_DIR})"
                         + (f"; {hint}" if hint else "")) from None
    return path


def read_csv(path: Path, needed: list[str]) -> pl.DataFrame:
    """A timm results CSV with the ``needed`` columns, or a one-line error."""
    try:
        frame = pl.read_csv(path, infer_schema_length=None)
    except pl.exceptions.NoDataError:
        raise VibesError(f"{str(path)!r} is empty; expected a timm results file with columns "
                         f"{', '.join(needed)}") from None
    except Exception as exc:
        raise VibesError(f"cannot read {str(path)!r} as CSV: {type(exc).__name__}: {exc}") from None
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise VibesError(f"{str(path)!r} lacks column(s) {', '.join(missing)}; is it a timm results file?")
    return frame


def at_default_size(results: pl.DataFrame) -> pl.DataFrame:
    """One row per model.  Some models are listed twice: at their default input size and at
    timm's larger ``test_input_size``; keep the default (the smaller) size."""
    return results.sort("model", "img_size").unique("model", keep="first", maintain_order=True)


def top1_of(results: pl.DataFrame) -> pl.DataFrame:
    """``backbone, imagenet_top1`` (percent, as published) from a results-imagenet frame."""
    return at_default_size(results).select(pl.col("model").alias("backbone"),
                                           pl.col("top1").cast(pl.Float64).alias("imagenet_top1"))


def fill_imagenet_top1(frame: pl.DataFrame, top1: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its ``imagenet_top1`` column (re)filled from ``top1`` (:func:`imagenet_top1`),
    joined by backbone name; rows and their order are ``frame``'s, a backbone ``top1`` lacks gets null."""
    return frame.drop("imagenet_top1", strict=False).join(top1, on="backbone", how="left", maintain_order="left")


def imagenet_top1(results_dir: str | os.PathLike | None = None) -> pl.DataFrame:
    """``backbone, imagenet_top1``: timm's published ImageNet-1k top-1 (percent, as in
    ``results-imagenet.csv``) of every model at its default (the smaller listed) input size,
    sorted by name.  From ``results_dir`` / ``$VIBES_TIMM_RESULTS`` / the cache (downloaded once)."""
    frame = read_csv(locate(IMAGENET_RESULTS, results_dir), ["model", "img_size", "top1"])
    return top1_of(frame).sort("backbone")
