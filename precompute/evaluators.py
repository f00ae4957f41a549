"""Evaluators: score a backbone's frozen features on a dataset split (higher is better).

* ``mlp`` — the paper's head (the truth): Linear(D, 50) -> ReLU -> Linear(50, C), Adam lr 1e-3,
  200 epochs, batch 200, cross-entropy; score = test top-1 accuracy.  Seeds can train together
  (``batched``, :mod:`precompute.heads`), each exactly as it would alone.
* ``mlp-sklearn`` — the same head with scikit-learn ``MLPClassifier``'s defaults around the
  paper's settings: Glorot init, L2 penalty 1e-4, scikit-learn's Adam, and stopping when the
  training loss stops improving (tol 1e-4, 10 epochs); records the epochs it ran.
* ``silhouette`` — silhouette score (Euclidean) of the train features with the labels as clusters;
  no training, no test split.

Every evaluator takes ``(train_x, train_y, test_x, test_y, n_classes, seed)`` tensors on one device
and runs there, and returns a float or a :class:`precompute.scores.EvalResult`.  This module is
the registry (:data:`EVALUATORS`); the heads are in :mod:`precompute.heads`, the cheap proxies in
:mod:`precompute.proxies`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from precompute import heads, proxies
from precompute.scores import EvalResult, as_tensor
from shared.errors import unknown
from shared.protocol import EVALUATOR_NAMES, MLP_PROTOCOL


def mlp_score(
    train_x,
    train_y,
    test_x,
    test_y,
    n_classes: int,
    seed: int,
    epochs: int = MLP_PROTOCOL["epochs"],
    batch_size: int = MLP_PROTOCOL["batch_size"],
    hidden: int = MLP_PROTOCOL["hidden"],
    lr: float = MLP_PROTOCOL["lr"],
) -> EvalResult:
    """Train the head on (train_x, train_y) where the features live; return
    ``EvalResult(test top-1 accuracy in [0, 1], epochs)``.

    Init is ``torch.manual_seed(seed)`` then :func:`build_head` (independent of the global RNG
    and of the device); each epoch draws a fresh permutation from a ``torch.Generator`` seeded by
    ``seed`` on the device; the last batch of an epoch is the remainder (no sample dropped); mean
    cross-entropy; ``torch.optim.Adam``'s update.  This is the single-head (timed) path of
    :mod:`precompute.heads`, which writes the forward, backward and Adam step out (no autograd, no
    optimizer object: on a CPU those cost more than the head's arithmetic) and trains several
    seeds at once in :func:`mlp_batched`."""
    return heads.mlp_batched([(train_x, train_y, test_x, test_y)], n_classes, [seed], epochs=epochs,
                             batch_size=batch_size, hidden=hidden, lr=lr)[0]


def mlp_batched(tasks, n_classes: int, seeds, **kw) -> list[EvalResult]:
    """``mlp`` for several seeds' equally shaped splits at once (:func:`precompute.heads.mlp_batched`)."""
    return heads.mlp_batched(tasks, n_classes, seeds, **kw)


def mlp_sklearn_score(train_x, train_y, test_x, test_y, n_classes: int, seed: int, **kw) -> EvalResult:
    """``mlp-sklearn``: scikit-learn ``MLPClassifier(hidden_layer_sizes=(50,))`` semantics on the
    features' device (:func:`precompute.heads.mlp_sklearn_score`)."""
    return heads.mlp_sklearn_score(train_x, train_y, test_x, test_y, n_classes, seed, **kw)


def mlp_sklearn_batched(tasks, n_classes: int, seeds, **kw) -> list[EvalResult]:
    """``mlp-sklearn`` for several seeds at once (:func:`precompute.heads.mlp_sklearn_batched`)."""
    return heads.mlp_sklearn_batched(tasks, n_classes, seeds, **kw)


def silhouette(
    train_x,
    train_y,
    test_x=None,
    test_y=None,
    n_classes: int | None = None,
    seed: int = 0,
    chunk: int = 4096,
    dtype: torch.dtype = torch.float64,
) -> float:
    """Mean silhouette coefficient (Euclidean) of ``train_x`` with ``train_y`` as clusters, as
    ``sklearn.metrics.silhouette_score``; computed on the features' device in chunks of rows
    (memory O(chunk x N)).  A sample alone in its class scores 0 (sklearn's convention); when every
    class is a singleton the score is 0 (sklearn raises there).  Fewer than 2 classes -> ValueError."""
    x = as_tensor(train_x, dtype=dtype)
    dev = x.device
    labels = as_tensor(train_y, dev, torch.long)
    n = len(x)
    if len(labels) != n:
        raise ValueError("features and labels differ in length")
    _, inv, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    k = len(counts)
    if k < 2:
        raise ValueError(f"silhouette needs at least 2 classes in the train split, got {k}")
    onehot = F.one_hot(inv, k).to(dtype)  # (N, K)
    counts_f = counts.to(dtype)
    total = torch.zeros((), dtype=dtype, device=dev)
    for s in range(0, n, chunk):
        rows = slice(s, min(s + chunk, n))
        dist = torch.cdist(x[rows], x)  # (c, N)
        ar = torch.arange(rows.stop - rows.start, device=dev)
        dist[ar, ar + s] = 0.0
        sums = dist @ onehot  # (c, K): summed distance to each cluster
        own = inv[rows]
        own_n = counts_f[own]
        a = sums[ar, own] / (own_n - 1).clamp_min(1)
        mean_other = sums / counts_f
        mean_other[ar, own] = torch.inf
        b = mean_other.min(dim=1).values
        sil = (b - a) / torch.maximum(a, b)
        sil = torch.where(own_n > 1, torch.nan_to_num(sil, nan=0.0), torch.zeros_like(sil))
        total += sil.sum()
    return float(total.item() / n)


@dataclass(frozen=True)
class EvaluatorSpec:
    """A registered evaluator.  ``fn(train_x, train_y, test_x, test_y, n_classes, seed)`` scores one
    seed's split (tensors on one device) and returns a float or an :class:`EvalResult`.
    ``batched(tasks, n_classes, seeds)``, when given, scores several seeds' equally shaped splits
    ``tasks = [(train_x, train_y, test_x, test_y), ...]`` together and returns one EvalResult per
    seed, each exactly what ``fn`` would give for that seed (same init, same permutation stream,
    up to float rounding)."""

    name: str
    needs_test: bool
    fn: Callable
    batched: Callable | None = None


#: registry: one place per evaluator
EVALUATORS: dict[str, EvaluatorSpec] = {
    "mlp": EvaluatorSpec("mlp", needs_test=True, fn=mlp_score, batched=mlp_batched),
    "mlp-sklearn": EvaluatorSpec("mlp-sklearn", needs_test=True, fn=mlp_sklearn_score, batched=mlp_sklearn_batched),
    "silhouette": EvaluatorSpec("silhouette", needs_test=False, fn=silhouette),
    # cheap proxies (precompute/proxies.py): no head is trained
    "knn": EvaluatorSpec("knn", needs_test=True, fn=proxies.knn),
    "ridge": EvaluatorSpec("ridge", needs_test=True, fn=proxies.ridge),
    "logme": EvaluatorSpec("logme", needs_test=False, fn=proxies.logme),
    "hscore": EvaluatorSpec("hscore", needs_test=False, fn=proxies.hscore),
}
if tuple(EVALUATORS) != EVALUATOR_NAMES:  # the command line checks and lists the names without torch
    raise AssertionError(f"shared.protocol.EVALUATOR_NAMES {EVALUATOR_NAMES} != the registry {tuple(EVALUATORS)}")


def get_evaluator(name: str) -> EvaluatorSpec:
    """The registered evaluator ``name`` or an UnknownNameError listing them."""
    if name not in EVALUATORS:
        raise unknown("evaluator", name, EVALUATORS)
    return EVALUATORS[name]
