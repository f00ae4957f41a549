"""Option parsing shared by the precompute commands (comma lists); times use :mod:`shared.durations`."""
from __future__ import annotations

from shared.errors import VibesError


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise VibesError(f"--{what} must be comma-separated numbers, e.g. 1.0,0.1,0.01; "
                         f"got {text!r}") from None
    if not vals:
        raise VibesError(f"--{what} is empty; expected e.g. 1.0,0.1,0.01")
    return vals


def parse_names(text: str, what: str) -> tuple[str, ...]:
    vals = tuple(x.strip() for x in text.split(",") if x.strip())
    if not vals:
        raise VibesError(f"--{what} is empty; expected comma-separated names, e.g. mlp,silhouette")
    return vals


def stderr_echo(message: str) -> None:
    """A note for the user on stderr (e.g. backbones the pool leaves out)."""
    import click

    click.echo(message, err=True)


__all__ = ["parse_floats", "parse_names", "stderr_echo"]
