"""``precompute latency``: per-image inference latency and memory of each backbone on this device."""
from __future__ import annotations

from pathlib import Path

import click

from precompute.inputs import check_device_name
from precompute.parts import write_frame
from precompute.pool import pool_names
from shared.errors import VibesError

from .options import stderr_echo

EPILOG = """\b
Examples:
  precompute latency --pool data/pool-100m.parquet --device cuda --out data/latency-a10.csv
  precompute latency --pool 'resnet*' --device cpu --batch-size 1 --out data/latency-laptop.csv
  simulate --oracle data/oracles/cifar10.parquet --max-latency-ms 5 --latency-device data/latency-a10.csv
The table (backbone, latency_ms, memory_mb, ...) is what --latency-device FILE reads in simulate and
precompute search / pool.  Random weights by default: the latency of an architecture does not
depend on its weights.
"""


@click.command("latency", epilog=EPILOG)
@click.option("--pool", "pools", multiple=True,
              help="Pool file (.parquet/.csv/.txt) or a name glob; repeatable. Default: every pretrained backbone.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=1, show_default=True,
              help="Images per forward pass; latency is per image (1: what one image waits).")
@click.option("--input-size", type=int, default=None, help="Override the input resolution.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed passes first.")
@click.option("--repeats", type=int, default=10, show_default=True, help="Timed passes (the median counts).")
@click.option("--weights", type=click.Choice(["random", "pretrained"]), default="random", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The table (.csv or .parquet).")
@click.option("--quiet", is_flag=True, help="No line per backbone.")
def latency_cmd(pools, device, batch_size, input_size, warmup, repeats, weights, out, quiet) -> None:
    """Measure each backbone's per-image inference latency and memory here, for --max-latency-ms."""
    if Path(out).suffix.lower() not in (".csv", ".parquet"):
        raise VibesError(f"--out must end in .csv or .parquet; got {out!r}")
    for name, v, low in (("--batch-size", batch_size, 1), ("--repeats", repeats, 1), ("--warmup", warmup, 0)):
        if v < low:
            raise VibesError(f"{name} must be an integer >= {low}; got {v}")
    check_device_name(device)
    names = pool_names(pools)
    # lazy: torch and timm load once the arguments are checked
    from precompute.backbone import resolve_device
    from precompute.latency import measure_all

    dev = str(resolve_device(device))
    table = measure_all(names, dev, batch_size, warmup, repeats, weights, input_size,
                        echo=None if quiet else stderr_echo)
    write_frame(table, out)  # atomically: an interrupted write never leaves half a table
    ok = table.filter(table["error"].is_null())
    click.echo(f"latency: {ok.height} of {table.height} backbones measured on {dev} "
               f"(batch {batch_size}) -> {out}")
