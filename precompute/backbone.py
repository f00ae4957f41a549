"""Load a frozen timm backbone that outputs pooled pre-logits features.

``weights="pretrained"`` goes through timm's own pretrained path (the hub for real users, or a
local file through timm's ``pretrained_cfg_overlay=dict(file=...)`` override); ``weights="random"``
builds the same architecture randomly initialised.
"""
from __future__ import annotations

import contextlib
import logging
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from shared.errors import VibesError, unknown

WEIGHTS = ("pretrained", "random")


@dataclass
class Backbone:
    name: str
    model: torch.nn.Module
    data_config: dict  # timm.data.resolve_model_data_config: input_size, mean, std, crop_pct, interpolation, crop_mode
    feature_dim: int
    device: torch.device
    load_seconds: float
    weights: str


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; any other torch device string is checked."""
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise VibesError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VibesError(f"device {str(dev)!r} requested but CUDA is not available; use --device cpu or auto")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise VibesError(f"unsupported device {str(dev)!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return dev


def _check_name(name: str, weights: str) -> None:
    arch, tag = timm.models.split_model_name_tag(name)
    if not timm.is_model(arch):
        raise unknown("backbone", name, timm.list_models(pretrained=weights == "pretrained"))
    if tag and name not in set(timm.list_models(arch, pretrained=True)):
        raise unknown("backbone", name, timm.list_models(arch, pretrained=True))


@contextlib.contextmanager
def _missing_keys_log():
    """Collect the state-dict keys timm reports missing while loading pretrained weights.

    With ``num_classes=0`` timm loads non-strictly (the classifier is dropped), so a checkpoint that
    does not fit the architecture would silently leave layers random; timm logs the missing keys."""
    missing: list[str] = []

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            m = re.match(r"Missing keys \((.*)\) discovered", record.getMessage(), re.S)
            if m:
                missing.extend(k.strip() for k in m.group(1).split(","))

    logger = logging.getLogger("timm.models._builder")
    handler, level = _Handler(logging.INFO), logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    try:
        yield missing
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_backbone(
    name: str,
    weights: str = "pretrained",
    device: str | torch.device = "auto",
    input_size: int | None = None,
    pretrained_file: str | None = None,
) -> Backbone:
    """Create ``name`` with ``num_classes=0`` (pooled pre-logits features), frozen, in eval mode,
    channels_last on ``device``.  ``input_size`` overrides the input resolution (``img_size=`` for
    archs that take it; the data config follows).  ``load_seconds`` covers creation, weight loading
    and the transfer to the device."""
    if weights not in WEIGHTS:
        raise unknown("weights", weights, WEIGHTS)
    if pretrained_file is not None:
        if weights != "pretrained":
            raise VibesError("pretrained_file is only used with weights='pretrained'")
        if not Path(pretrained_file).is_file():
            raise VibesError(f"pretrained weights file {pretrained_file!r} not found; "
                             f"expected a .safetensors/.pth state dict")
    if input_size is not None and (not isinstance(input_size, int) or input_size < 8):
        raise VibesError(f"input_size must be an integer >= 8, got {input_size!r}")
    _check_name(name, weights)
    dev = resolve_device(device)

    kwargs: dict = {"num_classes": 0, "pretrained": weights == "pretrained"}
    if pretrained_file is not None:
        kwargs["pretrained_cfg_overlay"] = dict(file=str(pretrained_file))
    start = time.perf_counter()
    # Random initialisation is seeded by the name (and leaves the global RNG as it was), so a
    # resumed or repeated sweep with random weights reproduces the same backbone exactly.
    with _missing_keys_log() as missing, torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(name.encode()))
        if input_size is not None:
            try:
                model = timm.create_model(name, img_size=input_size, **kwargs)
            except TypeError:  # the arch takes no img_size: it is resolution-agnostic
                model = timm.create_model(name, **kwargs)
        else:
            model = timm.create_model(name, **kwargs)
    params = dict(model.named_parameters())
    random_params = [k for k in missing if k in params]
    if random_params:
        more = f", ... ({len(random_params)} in all)" if len(random_params) > 5 else ""
        shown = ", ".join(random_params[:5]) + more
        raise RuntimeError(f"pretrained weights for {name} do not fit the architecture: missing {shown}")
    model.eval().requires_grad_(False)
    model = model.to(device=dev, memory_format=torch.channels_last)
    _synchronize(dev)
    load_seconds = time.perf_counter() - start

    data_config = timm.data.resolve_model_data_config(model)
    if input_size is not None:
        data_config["input_size"] = (3, input_size, input_size)
    feature_dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return Backbone(
        name=name,
        model=model,
        data_config=data_config,
        feature_dim=feature_dim,
        device=dev,
        load_seconds=load_seconds,
        weights=weights,
    )
