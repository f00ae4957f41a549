"""``precompute fetch``: the pool's pretrained weights into the cache, before a (possibly offline) sweep."""
from __future__ import annotations

import click

from precompute.pool import pool_names
from precompute.weights import fetch
from shared.errors import VibesError

FETCH_EPILOG = """\b
Examples:
  precompute fetch --pool 'resnet*' --pool 'convnext_*'
  precompute fetch --pool data/pool.parquet --jobs 16
  HF_HOME=/shared/hf precompute fetch --pool data/pool.parquet   # then, on the compute nodes:
  HF_HOME=/shared/hf HF_HUB_OFFLINE=1 precompute run --dataset gtsrb --pool data/pool.parquet
Files go to the Hugging Face cache (HF_HUB_CACHE / HF_HOME) or, for the few url-only
backbones, torch hub's cache (TORCH_HOME); an interrupted fetch resumes where it stopped.
"""


@click.command("fetch", epilog=FETCH_EPILOG)
@click.option("--pool", "pools", multiple=True,
              help="Pool file (.parquet/.csv/.txt) or a name glob; repeatable. Default: all pretrained timm "
                   "backbones (but timm's toy test_* models).")
@click.option("--include-test-models", is_flag=True,
              help="Keep timm's toy test models (test_*) in the default pool and in globs that also match real "
                   "backbones; named ones are always kept.")
@click.option("--jobs", type=int, default=8, show_default=True, help="Parallel downloads.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def fetch_cmd(pools, include_test_models, jobs, no_progress) -> None:
    """Download the pool's pretrained weights into the cache before a (possibly offline) sweep."""

    report = fetch(pool_names(pools, include_test_models), jobs=jobs, progress=not no_progress)
    if report.failed:
        raise VibesError(f"{len(report.failed)} of {len(report.items)} backbones' weights could not "
                         f"be fetched (listed above); rerun the same command to retry them")
