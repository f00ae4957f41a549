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


def limit_options(f):
    """``--max-params``, ``--max-gmacs``, ``--max-latency-ms``, ``--latency-device``, ``--max-memory-mb``:
    the deployment limits (:mod:`shared.limits`), the same options as ``simulate``'s."""
    import click

    for decorator in reversed((
        click.option("--max-params", type=float, default=None, metavar="M",
                     help="Deployment limit: at most M million parameters (backbones above are never evaluated)."),
        click.option("--max-gmacs", type=float, default=None, metavar="G",
                     help="Deployment limit: at most G GMACs per image."),
        click.option("--max-latency-ms", type=float, default=None, metavar="L",
                     help="Deployment limit: at most L ms per image on --latency-device."),
        click.option("--latency-device", default=None, metavar="DEV|FILE",
                     help="Latency table: a file `precompute latency --out` wrote on your device, or a device "
                          "of timm's published inference benchmarks (e.g. rtx4090, read from $VIBES_TIMM_RESULTS)."),
        click.option("--max-memory-mb", type=float, default=None, metavar="MB",
                     help="Deployment limit: inference memory (the latency table's, else fp32 weights)."),
    )):
        f = decorator(f)
    return f


def limits_of(max_params, max_gmacs, max_latency_ms, latency_device, max_memory_mb, timm_results=None):
    """The options above -> (:class:`shared.limits.Limits`, its latency table or None), checked."""
    from shared.limits import Limits, latency_table  # lazy: `--help` stays light (polars)

    limits = Limits(max_params, max_gmacs, max_latency_ms, max_memory_mb, latency_device)
    return limits, (latency_table(latency_device, timm_results) if latency_device else None)


def stderr_echo(message: str) -> None:
    """A note for the user on stderr (e.g. backbones the pool leaves out)."""
    import click

    click.echo(message, err=True)


__all__ = ["parse_floats", "parse_names", "limit_options", "limits_of", "stderr_echo"]
