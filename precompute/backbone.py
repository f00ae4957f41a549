"""Load a frozen timm backbone that outputs pooled pre-logits features.

``weights="pretrained"`` goes through timm's own pretrained path (the hub for real users, or a
local file through timm's ``pretrained_cfg_overlay=dict(file=...)`` override); ``weights="random"``
builds the same architecture randomly initialised.
"""
from __future__ import annotations

import contextlib
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from precompute import clock
from precompute import weights as W
from precompute.inputs import WEIGHTS
from shared.errors import VibesError, unknown


@dataclass
class Backbone:
    name: str
    model: torch.nn.Module
    data_config: dict  # timm.data.resolve_model_data_config: input_size, mean, std, crop_pct, interpolation, crop_mode
    feature_dim: int
    device: torch.device
    load_seconds: float
    weights: str
    input_size_note: str | None = None  # set when the requested input size was rounded (fit_input_size)


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
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise VibesError(f"device {str(dev)!r} does not exist: this machine has {torch.cuda.device_count()} "
                         f"CUDA device(s), cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
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


def _create_model(name: str, input_size: int | None, kwargs: dict) -> torch.nn.Module:
    """``timm.create_model`` at ``input_size`` (``img_size=`` for archs that take it)."""
    if input_size is None:
        return timm.create_model(name, **kwargs)
    try:
        return timm.create_model(name, img_size=input_size, **kwargs)
    except TypeError:  # the arch takes no img_size: it is resolution-agnostic
        return timm.create_model(name, **kwargs)


def _to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device``, channels-last; a model holding 5-D tensors (the Conv3d of lambda
    layers: lambda_resnet*) stays contiguous, since torch refuses channels-last (a rank-4 format) for them."""
    if any(t.dim() == 5 for t in (*model.parameters(), *model.buffers())):
        return model.to(device=device)
    return model.to(device=device, memory_format=torch.channels_last)


def _meta_forward_error(name: str, size: int) -> str | None:
    """``None`` when ``name`` built at ``size`` on the meta device (no memory, no initialisation, no
    arithmetic) runs one forward pass to a (1, D) or (1, T, D) tensor; else the error, one line."""
    try:
        with torch.device("meta"):
            model = _create_model(name, size, {"num_classes": 0, "pretrained": False})
        model.eval().requires_grad_(False)
        with torch.no_grad():
            out = model(torch.empty((1, 3, size, size), device="meta"))
        if not torch.is_tensor(out) or out.ndim not in (2, 3):
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            return f"ValueError: the model returns {shape}, expected (1, D) features or (1, T, D) tokens"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
    return None


#: sizes are rounded up to a multiple of one of these (patches of 14/16, windows x patches, strides)
_SIZE_STEPS = (8, 14, 16, 28, 32, 48, 56, 64, 96, 112, 128, 192, 224)


def fit_input_size(name: str, size: int, max_tries: int = 12) -> tuple[int, str | None]:
    """The input size to use for ``name`` when ``size`` is asked for, checked before any real forward
    pass: ``(size, None)`` when the model takes it; else the smallest larger size it takes (a multiple
    of a patch, window or pooling stride; at most ``max(2 * size, size + 64)``) and a note saying why;
    :class:`VibesError` with the model's reason when none does.  Checked on the meta device; a model
    that cannot run there at its native size either (an op without a meta kernel) is not judged:
    ``(size, None)``."""
    err = _meta_forward_error(name, size)
    if err is None:
        return size, None
    cfg = timm.models.get_pretrained_cfg(name)
    native = int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else None
    # rounding, not substitution: at most twice the size asked for (or +64 px for tiny sizes)
    limit = max(2 * size, size + 64)
    candidates = sorted({-(-size // step) * step for step in _SIZE_STEPS} | ({native} if native else set()))
    candidates = [c for c in candidates if size < c <= limit][:max_tries]
    for cand in candidates:
        if _meta_forward_error(name, cand) is None:
            return cand, f"input size {size} -> {cand} ({name} cannot take {size}: {err})"
    if native is not None and native in candidates:  # it failed on meta at its native size too: not judged
        return size, None
    if native is not None and native != size and _meta_forward_error(name, native) is not None:
        return size, None  # the meta device cannot judge this model: the real forward will
    raise VibesError(f"{name} cannot take input size {size} (nor larger sizes up to {limit}, "
                     f"twice the size asked for; its native size is {native}): {err}")


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
    and the transfer to the device (plus, with ``input_size``, the meta-device size check of
    :func:`fit_input_size`), never a download: with ``weights="pretrained"`` the weight file
    is put into the cache first (:func:`precompute.weights.ensure_weights`; offline and not cached ->
    ``WeightsNotCachedError``), then the clock starts and timm's own pretrained path reads the cached
    file with the hub switched offline (:func:`precompute.weights.hub_offline`: no HTTP request)."""
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
    size_note = None
    size_check_s = 0.0  # a search pays the size check too: it is part of load_seconds
    if input_size is not None:  # before any download or forward: round to a size the model takes, or refuse
        with clock.span() as sp:
            input_size, size_note = fit_input_size(name, input_size)
        size_check_s = sp.seconds

    kwargs: dict = {"num_classes": 0, "pretrained": weights == "pretrained"}
    if pretrained_file is not None:
        kwargs["pretrained_cfg_overlay"] = dict(file=str(pretrained_file))
    if weights == "pretrained" and pretrained_file is None:
        W.ensure_weights(name)  # a download, if any, happens here: before the clock
    with clock.span(dev) as sp:  # measured: what a row (and a live search's budget) charges
        # Random initialisation is seeded by the name (and leaves the global RNG as it was), so a
        # resumed or repeated sweep with random weights reproduces the same backbone exactly.
        with _missing_keys_log() as missing, torch.random.fork_rng(devices=[]), \
                W.hub_offline(weights == "pretrained"):
            torch.manual_seed(zlib.crc32(name.encode()))
            model = _create_model(name, input_size, kwargs)
        params = dict(model.named_parameters())
        random_params = [k for k in missing if k in params]
        if random_params:
            more = f", ... ({len(random_params)} in all)" if len(random_params) > 5 else ""
            shown = ", ".join(random_params[:5]) + more
            raise RuntimeError(f"pretrained weights for {name} do not fit the architecture: missing {shown}")
        model.eval().requires_grad_(False)
        model = _to_device(model, dev)
    load_seconds = sp.seconds + size_check_s

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
        input_size_note=size_note,
    )
