"""Oracles by name, as every ``simulate`` command takes them: a Parquet/HDF5 file, ``timm:<set>`` (timm's
published ImageNet-family results) or ``openclip:<set>`` (OpenCLIP's published zero-shot results).
Importing this module imports nothing heavy: each reader is imported when its kind is asked for."""
from __future__ import annotations


def load_oracle(spec: str, timm_results, timm_benchmark):
    """The oracle a ``--oracle`` spec names."""
    from shared.oracle import read_oracle  # lazy: `simulate --help` answers without polars and plotly

    if spec.startswith("openclip:"):
        from simulate.openclip_oracle import openclip_oracle  # lazy: `simulate --help` answers without polars

        return openclip_oracle(spec.removeprefix("openclip:"))
    if spec.startswith("timm:"):
        from simulate.timm_oracle import timm_oracle  # lazy: `simulate --help` answers without polars and plotly

        return timm_oracle(spec.removeprefix("timm:"), timm_results, timm_benchmark)
    return read_oracle(spec)


__all__ = ["load_oracle"]
