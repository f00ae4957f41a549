"""The deployment-limit options of every command that takes them (``simulate``, ``precompute search``,
``precompute pool``): one definition, so their names, help and parsing never drift apart.

Kept apart from :mod:`shared.limits` so that decorating a command imports only click: ``--help``
answers without polars."""
from __future__ import annotations

import click


def limit_options(f):
    """``--max-params``, ``--max-gmacs``, ``--max-latency-ms``, ``--latency-device``, ``--max-memory-mb``:
    the deployment limits (:mod:`shared.limits`)."""
    for decorator in reversed((
        click.option("--max-params", type=float, default=None, metavar="M",
                     help="Deployment limit: at most M million parameters (backbones above are never evaluated)."),
        click.option("--max-gmacs", type=float, default=None, metavar="G",
                     help="Deployment limit: at most G GMACs per image."),
        click.option("--max-latency-ms", type=float, default=None, metavar="L",
                     help="Deployment limit: at most L ms per image on --latency-device."),
        click.option("--latency-device", default=None, metavar="DEV|FILE",
                     help="Latency table: a file `precompute latency --out` wrote on your device, or a device "
                          "of timm's published inference benchmarks (rtx4090, rtx3090; read from --timm-results "
                          "where the command takes it, else $VIBES_TIMM_RESULTS)."),
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


__all__ = ["limit_options", "limits_of"]
