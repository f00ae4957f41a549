"""This machine's GPUs: ONE discovery for every command that gives each of its tasks its own GPU
(``precompute run --launcher local``'s shards, ``precompute search --workers K``'s workers).

:func:`visible_gpus` lists them as ``CUDA_VISIBLE_DEVICES`` entries: the entries of our own
``CUDA_VISIBLE_DEVICES`` when it is set (physical indices, UUIDs or MIG names; CUDA stops at the
first negative entry, so empty or ``-1``: none), else ``0 .. torch.cuda.device_count() - 1``.
:func:`gpus_for` picks K of them for K tasks from a ``--device``: ``cuda`` (or ``cuda:0``) is the
first K visible GPUs, ``cuda:N`` the K from the N-th on (what ``cuda:N`` names in this process), and
fewer GPUs than tasks is refused in one line (two tasks on one GPU would distort each other's
measured seconds).  Each task then sees only its own GPU, as ``cuda:0``.
"""
from __future__ import annotations

import os

from shared.errors import VibesError


def visible_gpus() -> list[str]:
    """This process's GPUs as ``CUDA_VISIBLE_DEVICES`` entries (see the module docstring)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = []
        for g in (x.strip() for x in env.split(",")):
            if not g or g.startswith("-"):  # CUDA ignores this entry and every one after it
                break
            ids.append(g)
        return ids
    import torch  # lazy: only when the environment does not say

    return [str(k) for k in range(torch.cuda.device_count())]


def device_index(device: str) -> int:
    """``cuda`` -> 0, ``cuda:N`` -> N (VibesError for anything else)."""
    text = str(device).strip()
    if text == "cuda":
        return 0
    head, _, index = text.partition(":")
    if head != "cuda" or not index.isdigit():
        raise VibesError(f"{device!r} is not a CUDA device; expected 'cuda' or 'cuda:N'")
    return int(index)


def gpus_for(device: str, k: int, option: str = "--workers", task: str = "worker") -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` entry of each of ``k`` tasks on ``device`` (``cuda`` or
    ``cuda:N``): GPUs N .. N+k-1 of :func:`visible_gpus`; VibesError (one line) when there are fewer."""
    first = device_index(device)
    gpus = visible_gpus()
    if first + k > len(gpus):
        have = f"{len(gpus)} visible GPU(s)" + (f" ({','.join(gpus)})" if gpus else "")
        fit = len(gpus) - first
        hint = f"use {option} {fit} or fewer" if fit >= 1 else "use a device this machine has, or --device cpu"
        names = f"cuda:{first}" + (f" .. cuda:{first + k - 1}" if k > 1 else "")
        raise VibesError(f"{option} {k} on --device {device} gives each {task} its own GPU ({names}), but this "
                         f"machine has {have}; {hint}")
    return gpus[first:first + k]


__all__ = ["visible_gpus", "device_index", "gpus_for"]
