"""``precompute estimate``: time a GMACs-stratified sample of the pool here, project the whole sweep."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import polars as pl

from precompute import pool as pool_mod  # called through the module: tests stub it there
from precompute.datasets import resolve
from precompute.inputs import SweepConfig, check_evaluators, parse_floats, parse_names
from shared.durations import HOUR, format_duration, parse_duration
from shared.errors import VibesError
from shared.protocol import DEFAULT_EVALUATORS, DEFAULT_SEEDS, fractions_text

from .options import stderr_echo
from .sweep import EVALUATORS_HELP

EPILOG = """\b
Examples:
  precompute estimate --dataset cifar10 --sample 12 --within 24h
  precompute estimate --dataset gtsrb --pool data/pool.parquet --within 3d --json est.json
  precompute estimate --dataset digits --sample 8 --input-size 32
  precompute estimate --dataset synthetic:60000@32 --device cuda
  precompute estimate --dataset cifar10 --sample 30 --out my-gpu.csv   # then: simulate --costs-from my-gpu.csv
Prints the sample's timings, the fit, the whole sweep's device-hours with a range, and the
--shards a run needs to finish within --within.  Nothing is written but --json and --out.
With --out FILE (.csv or .parquet) each sampled backbone's measured seconds (and their load /
extract / fit breakdown, the device) are written: `simulate --oracle ORACLE --costs-from FILE`
then predicts the oracle's costs on this device.  For that, time the oracle's protocol (its
--fractions, --seeds, --evaluators, --input-size) and a sample of 12-30 backbones of its pool.
"""


def _check_numbers(json_out, max_memory_gb, threads) -> None:
    """The cheap checks of the numbers and the --json folder, before torch loads."""
    if json_out is not None and not Path(json_out).parent.exists():
        raise VibesError(f"--json folder {str(Path(json_out).parent)!r} does not exist")
    if max_memory_gb is not None and not max_memory_gb > 0:
        raise VibesError(f"--max-memory-gb must be a positive number of GB; got {max_memory_gb}")
    if threads is not None and threads < 1:
        raise VibesError(f"--threads must be a positive integer; got {threads}")


@click.command("estimate", epilog=EPILOG)
@click.option("--dataset", required=True,
              help="Registry name, folder:PATH or synthetic:N@SIZE; a registry dataset whose data is "
                   "missing is timed on a synthetic stand-in of its sizes.")
@click.option("--sample", type=int, default=12, show_default=True,
              help="Backbones to time, one per GMACs stratum.")
@click.option("--within", default="24h", show_default=True,
              help="Wall-clock target, a duration such as 24h, 3d or 90min (plain numbers are seconds).")
@click.option("--pool", "pools", multiple=True,
              help="Pool file or name glob (as for `precompute run`); default: all pretrained timm backbones.")
@click.option("--fractions", default=fractions_text(), show_default=True)
@click.option("--seeds", type=int, default=DEFAULT_SEEDS, show_default=True)
@click.option("--evaluators", default=",".join(DEFAULT_EVALUATORS), show_default=True, help=EVALUATORS_HELP)
@click.option("--weights", type=click.Choice(["pretrained", "random"]), default="random", show_default=True,
              help="random: no download; pretrained: the sample's weights are fetched (untimed) first.")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--input-size", type=int, default=None, help="Override the input resolution (as for run).")
@click.option("--data-root", default="data/datasets", show_default=True)
@click.option("--cache-dir", default="data/cache", show_default=True)
@click.option("--synthetic", is_flag=True, help="Time on a synthetic stand-in even when the data is at hand.")
@click.option("--seed", type=int, default=0, show_default=True, help="Draw of the sample and the bootstrap.")
@click.option("--max-memory-gb", type=float, default=None,
              help="Time no backbone whose fp32 weights need more (default: a quarter of the free memory).")
@click.option("--threads", type=int, default=None, help="torch intra-op threads on CPU (default: torch's, as run).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write JSON here.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Write each sampled backbone's measured seconds here (.csv or .parquet): the file "
                   "`simulate --costs-from` reads to predict an oracle's costs on this device.")
def estimate_cmd(dataset, sample, within, pools, fractions, seeds, evaluators, weights, device, batch_size,
                 input_size, data_root, cache_dir, synthetic, seed, max_memory_gb, threads, json_out,
                 out_file) -> None:
    """Time a GMACs-stratified sample of the pool here and project the whole sweep's device-hours."""
    # everything cheap first (fail fast), then the pool, then the dataset, then the clock
    within_h = parse_duration(within, "--within") / HOUR
    if sample < 2:
        raise VibesError(f"--sample must be at least 2 backbones (a fit needs two); got {sample}")
    canonical = resolve(dataset)[0]
    cfg = SweepConfig(dataset=canonical, fractions=parse_floats(fractions, "fractions"), seeds=seeds,
                      evaluators=parse_names(evaluators, "evaluators"), weights=weights, device=device,
                      batch_size=batch_size, input_size=input_size, data_root=data_root, cache_dir=cache_dir)
    check_evaluators(cfg.evaluators)
    _check_numbers(json_out, max_memory_gb, threads)
    # lazy: torch and timm load once the arguments above are checked
    from precompute import estimate as est
    from precompute.backbone import resolve_device
    from precompute.sweep import check_subsets

    resolve_device(device)
    if out_file is not None:
        est.check_sample_path(out_file)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    dev, dev_name = est.device_info(device)
    guard = max_memory_gb if max_memory_gb is not None else est.memory_guard_gb(dev)
    pool = pool_mod.resolve_pool(pools, progress=sys.stderr.isatty(), echo=stderr_echo)
    runnable, left_out = est.runnable_pool(pool, input_size)
    max_params = guard * 1e9 / 4 / 1e6
    chosen = est.stratified_sample(runnable, sample, seed, max_params_m=max_params)
    above = runnable.filter(pl.col("params_m").fill_null(float("inf")) > max_params).height
    ds, ds_text = est.dataset_for_estimate(canonical, data_root, cache_dir, synthetic)
    check_subsets(cfg, ds)  # the sweep's own refusal: never project the hours of a run it would refuse
    click.echo(f"timing {chosen.height} backbones on {dev} ({ds_text}) ...", err=True)
    t0 = time.perf_counter()
    measured = est.measure_sample(cfg, chosen, ds, echo=lambda s: click.echo(s, err=True))
    wall = time.perf_counter() - t0
    if out_file is not None:  # before the projection, which may refuse the sample: the timings are kept
        table = est.sample_table(measured, dev, dev_name, canonical, weights, input_size)
        est.write_sample(table, out_file)
        n_ok = table.filter(pl.col("status") == "ok").height
        click.echo(f"wrote {out_file}: {n_ok} backbones' measured seconds on {dev} ({dev_name}); "
                   f"`simulate --oracle ORACLE --costs-from {out_file}` predicts an oracle's costs on this device",
                   err=True)
    proj = est.project(measured, runnable, within_h, seed=seed)
    info = {"dataset": ds_text, "device": dev, "device_name": dev_name, "weights": weights,
            "input_size": input_size, "seeds": cfg.seeds, "fractions": ",".join(f"{f:g}" for f in cfg.fractions),
            "evaluators": ",".join(cfg.evaluators), "pool_size": pool.height, "left_out": left_out,
            "seed": seed, "within": within, "stand_in": ds_text.startswith("synthetic")
            or canonical.startswith("synthetic:"), "max_memory_gb": guard, "guard_left_out": above}
    click.echo(est.format_report(info, measured, proj))
    click.echo(f"  (the sample took {format_duration(wall)} here)")
    if json_out is not None:
        doc = {**info, "n_train": int(len(ds.train_labels)), "n_test": int(len(ds.test_labels)),
               "sample_wall_seconds": wall, "projection": proj.as_dict(), "counted": est.COUNTED,
               "not_counted": est.not_counted(weights), "sample": measured.to_dicts()}
        Path(json_out).write_text(json.dumps(doc, indent=1, default=str) + "\n")
        click.echo(f"  wrote {json_out}")
