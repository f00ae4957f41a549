"""Oracles by name, as every ``simulate`` command takes them: a Parquet/HDF5 file, ``timm:<set>`` (timm's
published ImageNet-family results) or ``openclip:<set>`` (OpenCLIP's published zero-shot results).
Importing this module imports nothing heavy: each reader is imported when its kind is asked for."""
from __future__ import annotations

import os


def load_oracle(spec: str, timm_results, timm_benchmark):
    """The oracle a ``--oracle`` spec names."""
    from shared.oracle import read_oracle  # lazy: `simulate --help` answers without polars and plotly

    if spec.startswith("openclip:"):
        from simulate.openclip_oracle import openclip_oracle  # lazy: `simulate --help` answers without polars

        return openclip_oracle(spec.removeprefix("openclip:"))
    if spec.startswith("timm:"):
        from simulate.timm_oracle import timm_oracle  # lazy: `simulate --help` answers without polars and plotly

        return timm_oracle(spec.removeprefix("timm:"), timm_results, timm_benchmark)
    return read_oracle(spec)


def with_imagenet_top1(oracle, results_dir):
    """The oracle with its empty ``imagenet_top1`` column (an oracle built by ``precompute run`` on a
    pool measured without timm's results) filled from timm's published ``results-imagenet.csv``, joined
    by backbone name, when that file is at hand (``--timm-results DIR``, ``$VIBES_TIMM_RESULTS`` or the
    cache: nothing is downloaded here); and a note saying so.  Otherwise the oracle unchanged, None."""
    import polars as pl  # lazy: `simulate --help` answers without polars

    from shared.oracle import Oracle  # lazy: polars
    from shared.timm_results import ENV_DIR, IMAGENET_RESULTS, cache_dir, fill_imagenet_top1, imagenet_top1

    frame = oracle.frame
    if frame.get_column("imagenet_top1").null_count() < frame.height:
        return oracle, None
    folder = results_dir or os.environ.get(ENV_DIR)
    if not folder and not (cache_dir() / IMAGENET_RESULTS).is_file():
        return oracle, None
    top1 = imagenet_top1(folder)
    filled = fill_imagenet_top1(frame, top1)
    n = filled.filter(pl.col("imagenet_top1").is_not_null()).get_column("backbone").n_unique()
    note = (f"imagenet_top1 filled from timm's {IMAGENET_RESULTS} by backbone name: {n} of "
            f"{frame.get_column('backbone').n_unique()} backbones")
    return Oracle(filled, oracle.meta), note


__all__ = ["load_oracle", "with_imagenet_top1"]
