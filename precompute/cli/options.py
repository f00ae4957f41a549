"""Helpers of the precompute commands' output; comma lists are parsed in :mod:`precompute.inputs`, times in
:mod:`shared.durations`."""
from __future__ import annotations


def stderr_echo(message: str) -> None:
    """A note for the user on stderr (e.g. backbones the pool leaves out)."""
    import click

    click.echo(message, err=True)


__all__ = ["stderr_echo"]
