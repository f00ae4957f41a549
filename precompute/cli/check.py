"""``precompute check``: can every backbone of the pool be loaded and give usable features?"""
from __future__ import annotations

from pathlib import Path

import click
import polars as pl

from precompute.check import STATUSES, CheckConfig, _sample_names, resolve_names, run_check, summary_lines, worker_log
from precompute.inputs import check_device_name
from shared.durations import parse_duration
from shared.errors import VibesError

CHECK_EPILOG = """\b
Examples:
  precompute check --pool 'resnet*' --out check.parquet
  precompute check --sample 150 --input-size 32 --timeout 60 --out small.parquet
  precompute check --out /tmp/check.parquet --timeout 300     # the whole pool; rerun to resume
  precompute check --out /tmp/check.parquet --redo failed,timeout
A backbone whose fp32 weights exceed --max-memory-gb is 'skipped' (this machine's limit), never built.
"""


@click.command("check", epilog=CHECK_EPILOG)
@click.option("--pool", "pools", multiple=True,
              help="Pool file (.parquet/.csv), names file (.txt), name or glob; repeatable. Default: every "
                   "pretrained timm backbone (but timm's toy test_* models).")
@click.option("--include-test-models", is_flag=True,
              help="Keep timm's toy test models (test_*) in the default pool and in globs that also match real "
                   "backbones; named ones are always kept.")
@click.option("--sample", type=int, default=None, help="Only N architectures (one name each), evenly spread.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--timeout", default="5min", show_default=True,
              help="Per backbone, a duration such as 60s or 5min (plain numbers are seconds).")
@click.option("--input-size", type=int, default=None, help="Check at this input size (default: native).")
@click.option("--images", "n_images", type=int, default=4, show_default=True, help="Synthetic images per backbone.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads in the worker.")
@click.option("--max-memory-gb", type=float, default=8.0, show_default=True,
              help="Never build a model whose fp32 weights need more; kill the worker past it (0: no guard).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the table here (.parquet), after every backbone; an existing one is resumed.")
@click.option("--redo", default="", help="Statuses to check again when resuming, e.g. failed,timeout.")
@click.option("--quiet", is_flag=True, help="No line per backbone.")
def check_cmd(pools, include_test_models, sample, device, timeout, input_size, n_images, threads, max_memory_gb,
              out, redo, quiet) -> None:
    """Load every backbone with random weights and extract a few images: ok / failed / timeout / skipped."""
    check_device_name(device)
    if out is not None and Path(out).suffix.lower() != ".parquet":
        raise VibesError(f"--out must end in .parquet; got {out!r}")
    timeout = parse_duration(timeout, "--timeout")
    if n_images < 2:
        raise VibesError(f"--images must be >= 2 (constant features are judged across images), got {n_images}")
    if input_size is not None and input_size < 8:
        raise VibesError(f"--input-size must be an integer >= 8, got {input_size}")
    if threads < 1:
        raise VibesError(f"--threads must be >= 1, got {threads}")
    redo_set = [s.strip() for s in redo.split(",") if s.strip()]
    for s in redo_set:
        if s not in STATUSES:
            raise VibesError(f"--redo takes statuses among {', '.join(STATUSES)}; got {s!r}")
    if sample is not None and sample < 1:
        raise VibesError(f"--sample must be >= 1, got {sample}")
    names, params = resolve_names(pools, include_test_models)
    if sample is not None:
        names = _sample_names(names, sample)
    from precompute.backbone import resolve_device  # lazy: torch loads once the arguments are checked

    dev = str(resolve_device(device))
    cfg = CheckConfig(device=dev, input_size=input_size, timeout=timeout, n_images=n_images, threads=threads,
                      max_memory_gb=max_memory_gb or None)
    echo = None if quiet else (lambda s: click.echo(s, err=True))
    table = run_check(names, cfg, out=out, params=params, redo=redo_set, echo=echo)
    for line in summary_lines(table.filter(pl.col("backbone").is_in(names))):
        click.echo(line)
    if out:
        click.echo(f"check table: {table.height} rows -> {out}")
        if worker_log(out).is_file():
            click.echo(f"worker output (for the backbones not ok): {worker_log(out)}")
