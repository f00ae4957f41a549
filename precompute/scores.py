"""What an evaluator returns, and the one conversion its inputs go through.

:class:`EvalResult` is an evaluator's answer: the score (higher is better) and, for a head, the
epochs it ran (``mlp`` always 200; ``mlp-sklearn`` stops early).  The sweep records both on the
row; the epochs also price the seeds a batched head trained together (``protocol.timing``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class EvalResult:
    """What an evaluator returns: the score (higher is better) and, for heads, the epochs run."""

    score: float
    epochs: int | None = None

    def __float__(self) -> float:
        return float(self.score)


def as_result(value) -> EvalResult:
    """An evaluator's return value (a float or an :class:`EvalResult`) as an EvalResult."""
    return value if isinstance(value, EvalResult) else EvalResult(float(value))


def as_tensor(x, device: torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` (a tensor or array-like) as a tensor on ``device`` (default: where it is) in ``dtype``
    (default: its own)."""
    t = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
    return t.to(device=device if device is not None else t.device, dtype=dtype if dtype is not None else t.dtype)


__all__ = ["EvalResult", "as_result", "as_tensor"]
