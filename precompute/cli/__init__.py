"""``precompute``: the command line, a thin top layer over the domain modules.

Each command lives in its own module (:mod:`.sweep`: pool, run, merge; :mod:`.check`,
:mod:`.estimate`, :mod:`.search`, :mod:`.fetch`) and imports the domain code it drives inside the
command, so ``precompute --help`` and a bad argument answer without loading torch.  No domain
module imports this package.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from shared.console import run_group

from .check import check_cmd
from .estimate import estimate_cmd
from .fetch import fetch_cmd
from .latency import latency_cmd
from .search import search_cmd
from .sweep import merge_cmd, pool_cmd, run_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="\b\nExamples:\n  precompute pool --out data/pool.parquet\n"
                    "  precompute run --dataset cifar10 --pool data/pool.parquet\n"
                    "  precompute merge --dataset cifar10\n"
                    "Each command's --help has more.")
def cli() -> None:
    """VIBES precompute: evaluate a pool of timm backbones on a dataset into an oracle table."""


for _command in (pool_cmd, run_cmd, merge_cmd, check_cmd, estimate_cmd, search_cmd, fetch_cmd, latency_cmd):
    cli.add_command(_command)

INTERRUPTED = "interrupted: parts written so far are kept; rerun the same command to resume"


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (:func:`shared.console.run_group`): one-line ``error: ...`` for user errors,
    130 on Ctrl-C saying that the parts written so far are kept."""
    return run_group(cli, argv, "precompute", INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
