"""Frozen feature extraction on the device, with timm's eval preprocessing done on tensors.

``preprocess`` reproduces ``timm.data.create_transform(**data_config, is_training=False)`` (resize by
crop_pct, centre crop / squash / border, /255, mean-std normalisation) on a uint8 batch already on
the device, so images never go through PIL.  ``extract_features`` times measured segments of the
extraction order (e.g. the 1% images, then the rest of the 10%, then the rest).  A model whose
forward returns a token sequence (B, T, D) instead of pooled features (the multimodal ``_enc``
vision towers of gemma4, qwen3, deepseek: their projector's tokens) is mean-pooled over tokens.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from precompute import clock, faults
from precompute.backbone import Backbone
from shared.errors import VibesError

_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}


def _resized_size(h: int, w: int, target: tuple[int, int], crop_pct: float, crop_mode: str) -> tuple[int, int]:
    """Size after the resize step of timm's eval transform (torchvision/timm rounding rules)."""
    th, tw = target
    scale = (math.floor(th / crop_pct), math.floor(tw / crop_pct))
    if crop_mode == "squash":
        return scale
    if crop_mode == "center" and scale[0] == scale[1]:
        # torchvision Resize(int): shorter side -> size, longer side truncated
        size = scale[0]
        if h <= w:
            return size, int(size * w / h)
        return int(size * h / w), size
    # timm ResizeKeepRatio: 'center' (non-square target) matches the shortest edge, 'border' the longest
    longest = 1.0 if crop_mode == "border" else 0.0
    rh, rw = h / scale[0], w / scale[1]
    ratio = max(rh, rw) * longest + min(rh, rw) * (1.0 - longest)
    return round(h / ratio), round(w / ratio)


def _center_crop_or_pad(x: torch.Tensor, size: tuple[int, int], fill: torch.Tensor | float) -> torch.Tensor:
    """torchvision ``center_crop`` semantics (pads with ``fill`` when the image is smaller)."""
    th, tw = size
    h, w = x.shape[-2:]
    if th > h or tw > w:
        pl, pt = max(tw - w, 0) // 2, max(th - h, 0) // 2
        pr, pb = (max(tw - w, 0) + 1) // 2, (max(th - h, 0) + 1) // 2
        padded = torch.empty((*x.shape[:-2], h + pt + pb, w + pl + pr), dtype=x.dtype, device=x.device)
        padded[:] = fill if not torch.is_tensor(fill) else fill.view(1, -1, 1, 1)
        padded[..., pt : pt + h, pl : pl + w] = x
        x, (h, w) = padded, padded.shape[-2:]
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return x[..., top : top + th, left : left + tw]


def preprocess(batch_uint8: torch.Tensor, data_config: dict) -> torch.Tensor:
    """(B, H, W, 3) uint8 on the device -> (B, 3, S, S) float, as timm's eval transform does on PIL images."""
    if batch_uint8.dtype != torch.uint8 or batch_uint8.ndim != 4 or batch_uint8.shape[-1] != 3:
        raise VibesError(
            f"images must be a uint8 (B, H, W, 3) batch, got {tuple(batch_uint8.shape)} {batch_uint8.dtype}"
        )
    interpolation = data_config.get("interpolation", "bilinear")
    if interpolation not in _MODES:
        raise VibesError(f"unsupported interpolation {interpolation!r}; expected one of {sorted(_MODES)}")
    crop_mode = data_config.get("crop_mode", "center") or "center"
    if crop_mode not in ("center", "squash", "border"):
        raise VibesError(f"unsupported crop_mode {crop_mode!r}; expected center, squash or border")
    crop_pct = float(data_config.get("crop_pct") or 0.875)
    target = tuple(int(s) for s in data_config["input_size"][-2:])
    mean = torch.tensor(data_config["mean"], dtype=torch.float32, device=batch_uint8.device).view(1, 3, 1, 1)
    std = torch.tensor(data_config["std"], dtype=torch.float32, device=batch_uint8.device).view(1, 3, 1, 1)

    x = batch_uint8.permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    new = _resized_size(h, w, target, crop_pct, crop_mode)
    if new != (h, w):
        mode = _MODES[interpolation]
        kw = {} if mode == "nearest" else {"antialias": True, "align_corners": False}
        # PIL resamples uint8 images horizontally then vertically, rounding and clamping to uint8
        # after each pass; doing the same keeps bicubic overshoot on sharp edges identical
        if new[1] != w:
            x = F.interpolate(x, size=(h, new[1]), mode=mode, **kw).clamp_(0, 255).round_()
        if new[0] != h:
            x = F.interpolate(x, size=new, mode=mode, **kw).clamp_(0, 255).round_()
    fill = torch.round(mean.view(-1) * 255) if crop_mode == "border" else 0.0
    x = _center_crop_or_pad(x, target, fill)
    return ((x / 255.0) - mean) / std


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The precision the forward passes autocast to on ``device`` (extraction, latency, the warm-up):
    bfloat16 on a GPU that has it, else float16; on a CPU autocast stays off (the dtype is unused)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def extract_features(
    backbone: Backbone,
    images: np.ndarray,
    order: np.ndarray,
    segments: Sequence[int],
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """Features (N, D) float32 on the device (row i = image i; rows not in ``order`` are zero) and the
    measured wall seconds of each segment of ``order`` (host->device copy and preprocessing
    included; each segment one :func:`precompute.clock.span`).

    ``backbone.feature_dim`` is set to the width the model actually returns.
    ``progress`` is called with the number of images finished after each batch.  On out-of-memory
    the batch size is halved and the batch retried (down to 1, then a clear RuntimeError); the
    smaller batch size is kept for the rest of the extraction."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        got = getattr(images, "shape", type(images))
        raise VibesError(f"images must be a uint8 numpy array (N, H, W, 3), got {got}")
    order = np.asarray(order, dtype=np.int64)
    segments = [int(s) for s in segments]
    if any(s < 0 for s in segments) or sum(segments) != len(order):
        raise VibesError(f"segments {segments} must be non-negative counts summing to len(order)={len(order)}")
    if len(order) and (order.min() < 0 or order.max() >= len(images)):
        raise VibesError(f"order holds indices outside [0, {len(images)})")
    if batch_size < 1:
        raise VibesError(f"batch_size must be >= 1, got {batch_size}")

    dev, model, cfg = backbone.device, backbone.model, backbone.data_config
    cuda = dev.type == "cuda"
    out: torch.Tensor | None = None  # allocated at the first batch, at the width the model really gives
    seconds: list[float] = []
    bs = batch_size
    amp_dtype = autocast_dtype(dev)

    def run(idx: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images[idx]).to(dev, non_blocking=True)
        x = preprocess(x, cfg).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=amp_dtype, enabled=cuda):
            f = model(x)
        if torch.is_tensor(f) and f.ndim == 3:  # a token sequence (B, T, D), e.g. the multimodal
            f = f.float().mean(dim=1)  # `_enc` towers' projector tokens: mean-pooled over tokens
        if not torch.is_tensor(f):
            raise ValueError(f"backbone {backbone.name} returned {type(f).__name__}, expected a (B, D) tensor")
        if f.ndim != 2 or (out is not None and f.shape[1] != out.shape[1]):
            raise ValueError(f"backbone {backbone.name} returned features of shape {tuple(f.shape)}, expected (B, D)")
        return f.float()

    done = 0
    pos = 0
    with torch.inference_mode():
        for count in segments:
            seg = order[pos : pos + count]
            with clock.span(dev) as sp:  # measured: what a row (and a live search's budget) charges
                i = 0
                while i < len(seg):
                    idx = seg[i : i + bs]
                    try:
                        feats = run(idx)
                        if out is None:
                            out = torch.zeros((len(images), feats.shape[1]), dtype=torch.float32, device=dev)
                            backbone.feature_dim = int(feats.shape[1])
                        out[torch.from_numpy(idx).to(dev)] = feats
                        del feats
                        oom = False
                    except (torch.OutOfMemoryError, RuntimeError) as err:
                        if not _is_oom(err):
                            raise
                        if bs == 1:
                            raise RuntimeError(
                                f"out of device memory extracting {backbone.name} even with batch size 1 "
                                f"at input size {tuple(cfg['input_size'])}"
                            ) from err
                        oom = True
                    if oom:  # outside the except block, so the failed batch's tensors are freed first
                        if cuda:
                            torch.cuda.empty_cache()
                        bs = max(1, bs // 2)
                        continue
                    i += len(idx)
                    done += len(idx)
                    faults.point("extract-batch")
                    if progress is not None:
                        progress(done)
            seconds.append(sp.seconds)
            pos += count
    if out is None:
        out = torch.zeros((len(images), backbone.feature_dim), dtype=torch.float32, device=dev)
    if len(order) and not bool(torch.isfinite(out[torch.from_numpy(order).to(dev)]).all()):
        raise ValueError(f"non-finite features from backbone {backbone.name}")
    return out, seconds
