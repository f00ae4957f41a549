"""The one way a VIBES console command ends (``simulate``, ``precompute``): a user's error is one line
``error: <message>`` with its :class:`~shared.errors.VibesError` exit status (2 input, 1 a run that
could not finish), click's own usage errors as click shows them (exit 2), Ctrl-C one line and 130."""
from __future__ import annotations

from collections.abc import Sequence

import click

from shared.errors import VibesError

INTERRUPTED_EXIT = 130


def run_group(group: click.Group, argv: Sequence[str] | None, prog_name: str,
              interrupted: str = "interrupted") -> int:
    """Run ``group`` on ``argv`` (``sys.argv[1:]`` when None) and return the process's exit status;
    ``interrupted`` is what Ctrl-C prints (e.g. what was kept)."""
    try:
        group.main(args=list(argv) if argv is not None else None, prog_name=prog_name, standalone_mode=False)
    except VibesError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(interrupted, err=True)
        return INTERRUPTED_EXIT
    return 0


__all__ = ["INTERRUPTED_EXIT", "run_group"]
