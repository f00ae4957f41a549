"""Heads trained on frozen features, several seeds at once: the paper's ``mlp`` and ``mlp-sklearn``.

Both heads are Linear(d, 50) -> ReLU -> Linear(50, C) trained with Adam (lr 1e-3) in batches of
200 for at most 200 epochs.  The heads of S seeds of one (backbone, fraction) -- equally shaped
splits -- train as ONE batched model: stacked weights ``(S, 50, d)`` and ``(S, C, 50)`` (the
``nn.Linear`` layout), forward and backward written out with ``torch.baddbmm``/``torch.bmm``, one
optimiser step over a flat buffer holding every head's parameters.  Nothing couples the heads:
each head's gradient is that of its own mean loss (the batched model's loss is the sum of the
heads' mean losses), Adam is elementwise, and each head keeps its own init and its own
permutation stream, so head ``s`` of a batch is head ``s`` trained alone, up to float rounding
(``tests/test_heads.py`` checks it against a plain ``nn.Sequential`` + ``torch.optim.Adam``
transcription).  One head alone (S = 1) is the single-head, timed path.

* ``mlp`` -- the paper's head (:func:`precompute.evaluators.mlp_score` is the single-head path,
  :func:`mlp_batched` the batched one): PyTorch semantics.  Init = ``torch.manual_seed(seed)`` then
  :func:`build_head` (``nn.Linear``'s default init), on the CPU; each epoch
  one ``torch.randperm(n)`` from a ``torch.Generator`` on the features' device seeded by ``seed``;
  the last batch of an epoch is the remainder; loss = mean cross-entropy; ``torch.optim.Adam``'s
  update (betas 0.9/0.999, eps 1e-8 added to ``sqrt(v / (1 - beta2^t))``); always 200 epochs.
* ``mlp-sklearn`` -- the same settings with scikit-learn's ``MLPClassifier`` defaults around them
  (:func:`mlp_sklearn_score`, :func:`mlp_sklearn_batched`): Glorot-uniform init
  ``U(-sqrt(6 / (fan_in + fan_out)), +...)`` for weights and biases (a ``torch.Generator`` on the
  CPU seeded by ``seed``); batch = min(200, n); an L2 penalty ``alpha = 1e-4`` added per batch as
  ``alpha / 2 * sum ||W||^2 / batch`` (weights only, not biases); scikit-learn's Adam
  (``lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)``, ``update = -lr_t * m / (sqrt(v) + eps)``);
  softmax + log loss over the classes present in the train split, or ONE logistic output +
  binary log loss when there are two; the epoch's training loss is the batch losses (penalty
  included) weighted by batch size, and training stops after the first epoch at which more than
  ``n_iter_no_change = 10`` consecutive epochs have failed to bring the loss below the best so far
  minus ``tol = 1e-4`` (at most 200 epochs).  Its RNG is not scikit-learn's (it cannot be); the
  tests compare it with ``MLPClassifier`` statistically.  In a batch a head that has stopped is
  frozen (its update is masked to zero) while the others go on.

Every head loop calls ``faults.point("mlp-epoch")`` once per epoch (the live search's
cancellation point).  On CPU the heads train with one intra-op thread (see
:func:`precompute.proxies.single_thread`).

:func:`time_sequential_vs_batched` times S seeds trained one after the other against the sweep's
own pattern (seed 0 alone, seeds > 0 batched) and against all S batched, on synthetic features
(``make bench-precompute`` and ``bench/bench_evaluators.py`` call it).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from precompute import faults
from precompute.proxies import single_thread
from precompute.scores import EvalResult, as_tensor
from shared.protocol import MLP_PROTOCOL

#: scikit-learn's ``MLPClassifier`` defaults that ``mlp-sklearn`` follows, one place
SKLEARN_PROTOCOL = {"hidden": 50, "optimizer": "Adam (scikit-learn)", "lr": 1e-3, "max_epochs": 200,
                    "batch_size": 200, "alpha": 1e-4, "tol": 1e-4, "n_iter_no_change": 10,
                    "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8, "init": "glorot_uniform",
                    "loss": "log_loss", "reference": "sklearn.neural_network.MLPClassifier(hidden_layer_sizes=(50,))"}

_ADAM = {"beta_1": 0.9, "beta_2": 0.999, "eps": 1e-8}  # torch.optim.Adam's defaults (mlp)


def build_head(in_dim: int, n_classes: int, hidden: int = MLP_PROTOCOL["hidden"]) -> nn.Module:
    """The paper's head: Linear(in_dim, hidden) -> ReLU -> Linear(hidden, n_classes)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


# ----------------------------------------------------------------------------- inputs
def head_inputs(train_x, train_y, test_x, test_y, n_classes: int, name: str = "mlp"):
    """Validate one split and return it as (float32, long, float32, long) tensors on train_x's device."""
    train_x = as_tensor(train_x, dtype=torch.float32)
    dev = train_x.device
    train_y = as_tensor(train_y, dev, torch.long)
    test_x = as_tensor(test_x, dev, torch.float32)
    test_y = as_tensor(test_y, dev, torch.long)
    if train_x.ndim != 2 or test_x.ndim != 2:
        raise ValueError(f"{name} needs 2-d feature matrices, got {tuple(train_x.shape)} and {tuple(test_x.shape)}")
    n = train_x.shape[0]
    if n == 0 or len(test_y) == 0:
        raise ValueError(f"{name} needs non-empty train and test splits, got {n} train and {len(test_y)} test samples")
    if len(train_y) != n or len(test_x) != len(test_y) or test_x.shape[1] != train_x.shape[1]:
        raise ValueError("features and labels differ in length")
    if int(train_y.min()) < 0 or int(torch.maximum(train_y.max(), test_y.max())) >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes})")
    return train_x, train_y, test_x, test_y


def _stack_tasks(tasks: Sequence, n_classes: int, seeds: Sequence[int], name: str):
    if len(tasks) != len(seeds) or not tasks:
        raise ValueError(f"{name}: need one task per seed, got {len(tasks)} tasks and {len(seeds)} seeds")
    checked = [head_inputs(*t, n_classes=n_classes, name=name) for t in tasks]
    shapes = {(tuple(a.shape), tuple(c.shape), a.device) for a, _, c, _ in checked}
    if len(shapes) != 1:
        raise ValueError(f"{name}: batched tasks must have equal shapes on one device, got {sorted(map(str, shapes))}")
    # xs (S, n, d), ys (S, n), txs, tys; one task: views, no copy
    return [torch.stack(parts) if len(parts) > 1 else parts[0].unsqueeze(0) for parts in zip(*checked)]


# ------------------------------------------------------------------ stacked parameters
@dataclass
class Stacked:
    """S heads' parameters in one flat buffer, laid out tensor by tensor: ``w1 (S, H, d)``,
    ``b1 (S, H)``, ``w2 (S, C, H)``, ``b2 (S, C)`` (``nn.Linear``'s weight and bias of each
    layer, stacked) are contiguous views of ``flat``."""

    flat: torch.Tensor
    shapes: tuple

    @staticmethod
    def zeros(S: int, d: int, hidden: int, n_out: int, device, dtype=torch.float32) -> Stacked:
        shapes = ((S, hidden, d), (S, hidden), (S, n_out, hidden), (S, n_out))
        return Stacked(torch.zeros(sum(math.prod(s) for s in shapes), device=device, dtype=dtype), shapes)

    def like(self) -> Stacked:
        return Stacked(torch.zeros_like(self.flat), self.shapes)

    def views(self) -> list[torch.Tensor]:
        out, at = [], 0
        for s in self.shapes:
            k = math.prod(s)
            out.append(self.flat[at : at + k].view(s))
            at += k
        return out

    def head_mask(self, active: torch.Tensor) -> torch.Tensor:
        """A flat 0/1 mask that is ``active[s]`` on every parameter of head s."""
        return torch.cat([active.to(self.flat.dtype).repeat_interleave(math.prod(s[1:])) for s in self.shapes])


def mlp_init(seeds: Sequence[int], d: int, n_classes: int, hidden: int, device) -> Stacked:
    """Each seed's head exactly as ``mlp_score`` builds it: ``torch.manual_seed(seed)`` then
    ``build_head`` on the CPU (nn.Linear's default init), the global RNG left untouched."""
    st = Stacked.zeros(len(seeds), d, hidden, n_classes, "cpu")
    w1, b1, w2, b2 = st.views()
    for s, seed in enumerate(seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            head = build_head(d, n_classes, hidden)
        w1[s] = head[0].weight.detach()
        b1[s] = head[0].bias.detach()
        w2[s] = head[2].weight.detach()
        b2[s] = head[2].bias.detach()
    st.flat = st.flat.to(device)
    return st


def glorot_init(seeds: Sequence[int], d: int, n_out: int, hidden: int, device) -> Stacked:
    """scikit-learn's ``_init_coef`` for relu: per layer, weights then biases drawn from
    U(-b, b) with b = sqrt(6 / (fan_in + fan_out)); drawn in float64 from a CPU
    ``torch.Generator`` seeded by the seed, cast to float32 (scikit-learn casts to X's dtype)."""
    st = Stacked.zeros(len(seeds), d, hidden, n_out, "cpu")
    w1, b1, w2, b2 = st.views()
    for s, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        for w, b, (fan_in, fan_out) in ((w1, b1, (d, hidden)), (w2, b2, (hidden, n_out))):
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            w[s] = ((torch.rand(fan_in, fan_out, generator=g, dtype=torch.float64) * 2 - 1) * bound).T
            b[s] = (torch.rand(fan_out, generator=g, dtype=torch.float64) * 2 - 1) * bound
    st.flat = st.flat.to(device)
    return st


# ------------------------------------------------------------------------ the loop
class _Batches:
    """Each head's own permutation stream: a ``torch.Generator`` on the device seeded by its seed,
    one ``randperm(n)`` per epoch; batches are consecutive slices, the last one the remainder."""

    def __init__(self, xs: torch.Tensor, ys: torch.Tensor, seeds: Sequence[int], batch_size: int,
                 shuffle: bool = True):
        S, n, d = xs.shape
        self.S, self.n, self.batch, self.shuffle = S, n, int(batch_size), shuffle
        self.x = xs.reshape(S * n, d)
        self.y = ys.reshape(S * n)
        self.gens = [torch.Generator(device=xs.device).manual_seed(int(s)) for s in seeds]
        self.offsets = (torch.arange(S, device=xs.device) * n).unsqueeze(1)

    def epoch(self):
        dev = self.x.device
        if self.shuffle:
            perm = torch.stack([torch.randperm(self.n, generator=g, device=dev) for g in self.gens])
        else:  # scikit-learn's shuffle=False: the given order every epoch
            perm = torch.arange(self.n, device=dev).expand(self.S, self.n).clone()
        perm += self.offsets  # rows of the flattened (S*n, d) features
        for a in range(0, self.n, self.batch):
            idx = perm[:, a : a + self.batch].reshape(-1)
            B = idx.numel() // self.S
            yield (self.x.index_select(0, idx).view(self.S, B, -1), self.y.index_select(0, idx).view(self.S, B))


def _forward(p: list[torch.Tensor], xb: torch.Tensor):
    w1, b1, w2, b2 = p
    h = torch.baddbmm(b1.unsqueeze(1), xb, w1.transpose(1, 2)).clamp_min_(0)  # (S, B, H)
    return h, torch.baddbmm(b2.unsqueeze(1), h, w2.transpose(1, 2))  # (S, B, C)


def _softmax_(z: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim, in place, as scikit-learn writes it (exp(z - max) / sum); on a
    CPU it is ~4x faster than ``torch.softmax`` for a last dim of ~10."""
    z.sub_(z.amax(-1, keepdim=True)).exp_()
    return z.div_(z.sum(-1, keepdim=True))


def _backward(p, g, xb, h, delta, l2: float = 0.0) -> None:
    """Gradients into ``g`` (views) from ``delta`` = dLoss/dlogits (S, B, C), already divided by
    the batch size; ``l2`` adds ``l2 * W`` to the weight gradients (scikit-learn's alpha / batch)."""
    w1, _, w2, _ = p
    gw1, gb1, gw2, gb2 = g
    delta_t = delta.transpose(1, 2)
    if l2:
        torch.baddbmm(w2, delta_t, h, beta=l2, out=gw2)
    else:
        torch.bmm(delta_t, h, out=gw2)
    torch.sum(delta, 1, out=gb2)
    dh = torch.ops.aten.threshold_backward(torch.bmm(delta, w2), h, 0.0)  # relu'(z) = [h > 0]
    if l2:
        torch.baddbmm(w1, dh.transpose(1, 2), xb, beta=l2, out=gw1)
    else:
        torch.bmm(dh.transpose(1, 2), xb, out=gw1)
    torch.sum(dh, 1, out=gb1)


def torch_adam_step(params: torch.Tensor, grads: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int,
                    lr: float = MLP_PROTOCOL["lr"], beta_1: float = _ADAM["beta_1"], beta_2: float = _ADAM["beta_2"],
                    eps: float = _ADAM["eps"], buf: torch.Tensor | None = None) -> None:
    """``torch.optim.Adam``'s update number ``t`` (1-based; its single-tensor path, no weight
    decay), in place on flat tensors: ``m`` lerps towards the gradient, ``denom = sqrt(v) /
    sqrt(1 - beta2^t) + eps``, step ``lr / (1 - beta1^t)``.  ``buf`` (like ``params``) avoids
    allocating ``denom``."""
    m.lerp_(grads, 1 - beta_1)
    v.mul_(beta_2).addcmul_(grads, grads, value=1 - beta_2)
    denom = torch.sqrt(v, out=buf) if buf is not None else v.sqrt()
    denom.div_(math.sqrt(1 - beta_2**t)).add_(eps)
    params.addcdiv_(m, denom, value=-lr / (1 - beta_1**t))


def train_mlp(xs: torch.Tensor, ys: torch.Tensor, seeds: Sequence[int], n_classes: int,
              epochs: int = MLP_PROTOCOL["epochs"], batch_size: int = MLP_PROTOCOL["batch_size"],
              hidden: int = MLP_PROTOCOL["hidden"], lr: float = MLP_PROTOCOL["lr"]) -> Stacked:
    """Train the paper's head for each seed on ``xs (S, n, d)``, ``ys (S, n)`` together; return
    the stacked parameters.  Per head this is ``mlp_score``'s loop: PyTorch's init, permutation
    stream, mean cross-entropy and ``torch.optim.Adam`` update, transcribed."""
    S, n, d = xs.shape
    dev = xs.device
    params = mlp_init(seeds, d, n_classes, hidden, dev)
    grads, m, v = params.like(), params.like(), params.like()
    p, g = params.views(), grads.views()
    batches = _Batches(xs, ys, seeds, batch_size)
    minus_one = torch.tensor(-1.0, device=dev)
    buf = torch.empty_like(params.flat)
    t = 0
    with torch.no_grad(), single_thread(dev):
        for _ in range(int(epochs)):
            for xb, yb in batches.epoch():
                h, logits = _forward(p, xb)
                delta = _softmax_(logits)
                delta.scatter_add_(2, yb.unsqueeze(2), minus_one.expand(*yb.shape, 1))
                delta.mul_(1.0 / yb.shape[1])  # d mean-CE / d logits = (softmax - onehot) / B
                _backward(p, g, xb, h, delta)
                t += 1
                torch_adam_step(params.flat, grads.flat, m.flat, v.flat, t, lr, buf=buf)
            faults.point("mlp-epoch")
    return params


def predict(params: Stacked, test_x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Logits of every head on its own test features ``(S, m, d)`` -> ``(S, m, C)``."""
    p = params.views()
    with torch.no_grad():
        return torch.cat([_forward(p, test_x[:, s : s + chunk])[1] for s in range(0, test_x.shape[1], chunk)], 1)


def _accuracies(pred: torch.Tensor, tys: torch.Tensor) -> list[float]:
    return [int(c) / tys.shape[1] for c in (pred == tys).sum(1).tolist()]


def mlp_batched(tasks: Sequence, n_classes: int, seeds: Sequence[int],
                epochs: int = MLP_PROTOCOL["epochs"], batch_size: int = MLP_PROTOCOL["batch_size"],
                hidden: int = MLP_PROTOCOL["hidden"], lr: float = MLP_PROTOCOL["lr"]) -> list[EvalResult]:
    """The ``mlp`` evaluator for several seeds at once: ``tasks = [(train_x, train_y, test_x,
    test_y), ...]`` of equal shapes, one per seed; returns ``EvalResult(test accuracy, epochs)``
    per seed, each what ``mlp_score(*task, n_classes, seed)`` gives (up to float rounding)."""
    xs, ys, txs, tys = _stack_tasks(tasks, n_classes, seeds, "mlp")
    params = train_mlp(xs, ys, seeds, n_classes, epochs, batch_size, hidden, lr)
    return [EvalResult(a, epochs=int(epochs)) for a in _accuracies(predict(params, txs).argmax(2), tys)]


# ---------------------------------------------------------------------- mlp-sklearn
def sklearn_adam_step(params: torch.Tensor, grads: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int,
                      lr: float = SKLEARN_PROTOCOL["lr"], beta_1: float = SKLEARN_PROTOCOL["beta_1"],
                      beta_2: float = SKLEARN_PROTOCOL["beta_2"], eps: float = SKLEARN_PROTOCOL["epsilon"],
                      mask: torch.Tensor | None = None) -> None:
    """scikit-learn's ``AdamOptimizer`` update number ``t`` (1-based), in place: the bias
    corrections go into the step size and eps is added to sqrt(v) itself (torch adds it to
    sqrt(v / (1 - beta2^t))).  ``mask`` (0/1 per parameter) freezes stopped heads."""
    m.mul_(beta_1).add_(grads, alpha=1 - beta_1)
    v.mul_(beta_2).addcmul_(grads, grads, value=1 - beta_2)
    step = lr * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    params.addcdiv_(m if mask is None else m * mask, v.sqrt().add_(eps), value=-step)


def sklearn_batch_loss_and_delta(logits: torch.Tensor, yb: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                                 alpha: float = SKLEARN_PROTOCOL["alpha"]):
    """For logits ``(S, B, K)`` (K = number of classes, or 1 for two classes: a logistic output)
    and class indices ``yb (S, B)``: scikit-learn's batch loss per head ``(S,)`` -- log loss
    (probabilities clipped to [eps, 1 - eps], eps of the dtype) plus ``alpha / 2 * (||W1||^2 +
    ||W2||^2) / B`` -- and ``delta = (output activation - target) / B``."""
    B = yb.shape[1]
    eps = torch.finfo(logits.dtype).eps
    if logits.shape[2] == 1:  # binary: sigmoid + binary log loss, target 1 for the second class
        prob = torch.sigmoid(logits)
        target = yb.unsqueeze(2).to(logits.dtype)
        clipped = prob.clamp(eps, 1 - eps)
        data = -(target * clipped.log() + (1 - target) * (1 - clipped).log()).sum((1, 2)) / B
        delta = prob.sub_(target)
    else:
        prob = _softmax_(logits.clone())
        data = -prob.gather(2, yb.unsqueeze(2)).clamp(eps, 1 - eps).log().sum((1, 2)) / B
        delta = prob.scatter_add_(2, yb.unsqueeze(2), torch.full_like(prob[..., :1], -1.0))
    penalty = 0.5 * alpha * (w1.square().sum((1, 2)) + w2.square().sum((1, 2))) / B
    return data + penalty, delta.mul_(1.0 / B)


@dataclass
class SklearnFit:
    params: Stacked
    classes: torch.Tensor  # the train split's classes (sorted), shared by every head
    epochs: list[int]  # epochs run per head
    loss_curves: list[list[float]]


def train_mlp_sklearn(xs: torch.Tensor, ys: torch.Tensor, seeds: Sequence[int],
                      max_epochs: int = SKLEARN_PROTOCOL["max_epochs"],
                      batch_size: int = SKLEARN_PROTOCOL["batch_size"], hidden: int = SKLEARN_PROTOCOL["hidden"],
                      lr: float = SKLEARN_PROTOCOL["lr"], alpha: float = SKLEARN_PROTOCOL["alpha"],
                      tol: float = SKLEARN_PROTOCOL["tol"],
                      n_iter_no_change: int = SKLEARN_PROTOCOL["n_iter_no_change"],
                      shuffle: bool = True, init: Stacked | None = None) -> SklearnFit:
    """``MLPClassifier(hidden_layer_sizes=(hidden,))``'s ``fit`` (solver adam, no early stopping)
    for each seed on ``xs (S, n, d)``, ``ys (S, n)`` together; every head must see the same
    classes (scikit-learn's ``classes_`` = the sorted labels present).  ``shuffle=False`` keeps
    the given order every epoch and ``init`` replaces the seeded Glorot init (both as in
    scikit-learn, where they serve the tests: with the same init and order the two agree)."""
    S, n, d = xs.shape
    dev = xs.device
    classes = torch.unique(ys[0])
    for s in range(1, S):
        if not torch.equal(torch.unique(ys[s]), classes):
            raise ValueError("mlp-sklearn: batched heads must see the same classes in their train splits")
    if len(classes) < 2:
        raise ValueError(f"mlp-sklearn needs at least 2 classes in the train split, got {len(classes)}")
    k = len(classes)
    yi = torch.searchsorted(classes, ys)  # labels -> 0..k-1 (binary: 0/1)
    n_out = 1 if k == 2 else k
    params = glorot_init(seeds, d, n_out, hidden, dev) if init is None else Stacked(init.flat.clone(), init.shapes)
    grads, m, v = params.like(), params.like(), params.like()
    p, g = params.views(), grads.views()
    batches = _Batches(xs, yi, seeds, min(int(batch_size), n), shuffle=shuffle)
    active = [True] * S
    mask = None
    epochs_run = [0] * S
    best = [math.inf] * S
    bad = [0] * S
    curves: list[list[float]] = [[] for _ in range(S)]
    t = 0
    with torch.no_grad(), single_thread(dev):
        for epoch in range(int(max_epochs)):
            acc = torch.zeros(S, device=dev, dtype=xs.dtype)
            for xb, yb in batches.epoch():
                h, logits = _forward(p, xb)
                loss, delta = sklearn_batch_loss_and_delta(logits, yb, p[0], p[2], alpha)
                acc.add_(loss, alpha=yb.shape[1])
                _backward(p, g, xb, h, delta, l2=alpha / yb.shape[1])
                t += 1
                sklearn_adam_step(params.flat, grads.flat, m.flat, v.flat, t, lr=lr, mask=mask)
            faults.point("mlp-epoch")
            losses = (acc / n).tolist()
            for s in range(S):
                if not active[s]:
                    continue
                curves[s].append(losses[s])
                epochs_run[s] = epoch + 1
                # scikit-learn's _update_no_improvement_count, then its stopping test
                bad[s] = bad[s] + 1 if losses[s] > best[s] - tol else 0
                best[s] = min(best[s], losses[s])
                if bad[s] > n_iter_no_change:
                    active[s] = False
            if not any(active):
                break
            if not all(active):
                mask = params.head_mask(torch.tensor(active, device=dev))
    return SklearnFit(params, classes, epochs_run, curves)


def predict_sklearn(fit: SklearnFit, test_x: torch.Tensor) -> torch.Tensor:
    """Class labels ``(S, m)`` as ``MLPClassifier.predict``: argmax of the softmax, or, for two
    classes, the second class where the logistic output is > 0.5."""
    logits = predict(fit.params, test_x)
    idx = (torch.sigmoid(logits[..., 0]) > 0.5).long() if logits.shape[2] == 1 else logits.argmax(2)
    return fit.classes[idx]


def mlp_sklearn_batched(tasks: Sequence, n_classes: int, seeds: Sequence[int], **kw) -> list[EvalResult]:
    """The ``mlp-sklearn`` evaluator for several seeds at once (equally shaped tasks, one per
    seed); ``EvalResult(test accuracy, epochs run)`` per seed, each what
    :func:`mlp_sklearn_score` gives for that seed.  Heads whose train splits hold different
    classes are trained in separate groups."""
    xs, ys, txs, tys = _stack_tasks(tasks, n_classes, seeds, "mlp-sklearn")
    groups: dict[tuple, list[int]] = {}
    for s in range(len(seeds)):
        groups.setdefault(tuple(torch.unique(ys[s]).tolist()), []).append(s)
    out: list[EvalResult | None] = [None] * len(seeds)
    for idx in groups.values():
        sel = slice(None) if len(idx) == len(seeds) else torch.as_tensor(idx, device=xs.device)  # usually all
        fit = train_mlp_sklearn(xs[sel], ys[sel], [seeds[i] for i in idx], **kw)
        accs = _accuracies(predict_sklearn(fit, txs[sel]), tys[sel])
        for j, i in enumerate(idx):
            out[i] = EvalResult(accs[j], epochs=fit.epochs[j])
    return out


def mlp_sklearn_score(train_x, train_y, test_x, test_y, n_classes: int, seed: int, **kw) -> EvalResult:
    """``mlp-sklearn`` for one seed: scikit-learn ``MLPClassifier(hidden_layer_sizes=(50,))``
    semantics (see the module docstring) on the features' device; returns
    ``EvalResult(test accuracy, epochs actually run)``."""
    return mlp_sklearn_batched([(train_x, train_y, test_x, test_y)], n_classes, [seed], **kw)[0]


# ---------------------------------------------------------------------------- timing
def synthetic_task(n_train: int, dim: int, n_classes: int, n_test: int, seed: int, device="cpu", sep: float = 1.0):
    """Gaussian-blob features (class centres ~ N(0, sep^2), unit noise) as one head task."""
    g = torch.Generator().manual_seed(int(seed))
    centres = torch.randn(n_classes, dim, generator=g) * sep
    y = torch.randint(0, n_classes, (n_train + n_test,), generator=g)
    y[:n_classes] = torch.arange(n_classes)  # every class in the train split
    x = centres[y] + torch.randn(len(y), dim, generator=g)
    x, y = x.to(device), y.to(device)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


#: the heads that train several seeds at once: name -> (batched trainer, its epochs keyword)
BATCHED_HEADS = {"mlp": (mlp_batched, "epochs"), "mlp-sklearn": (mlp_sklearn_batched, "max_epochs")}


def time_sequential_vs_batched(n_train: int = 5000, dim: int = 768, n_classes: int = 10, seeds: int = 3,
                               epochs: int = 200, n_test: int = 1000, device: str = "cpu", head: str = "mlp",
                               repeat: int = 1) -> dict:
    """Time ``seeds`` heads of one (backbone, fraction) three ways, on synthetic features of
    ``n_train x dim`` (``n_classes`` classes, each seed its own draw, as the sweep's seeds have
    their own subsets):

    * ``sequential`` — each seed trained alone, one after the other (no batching at all);
    * ``sweep`` — the sweep's own pattern: seed 0 alone (it is timed: what one head costs alone),
      then seeds 1..S−1 together in one batched call;
    * ``batched`` — all S seeds in one batched call.

    ``head`` is ``mlp`` or ``mlp-sklearn`` (:data:`BATCHED_HEADS`).  Returns ``{"sequential_seconds",
    "sweep_seconds", "batched_seconds", "speedup" (sequential / sweep: what batching saves the
    sweep), "speedup_all_batched", ..._cpu_seconds, "agree"}``: wall-clock seconds
    (device-synchronised; the best of ``repeat`` runs), the process CPU seconds of the same runs
    (less sensitive to other load on a shared machine) and whether all paths gave the same scores."""
    if head not in BATCHED_HEADS:
        raise ValueError(f"head {head!r} has no batched path; expected one of {', '.join(BATCHED_HEADS)}")
    batched, epochs_kw = BATCHED_HEADS[head]
    kw = {epochs_kw: epochs}
    dev = torch.device(device)
    # centres ~2.8 noise units apart: a head that is right on most, not all, test samples
    tasks = [synthetic_task(n_train, dim, n_classes, n_test, seed=1000 + s, device=dev, sep=2.0 / math.sqrt(dim))
             for s in range(seeds)]
    seed_list = list(range(seeds))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def clock(fn):
        sync()
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        sync()
        return time.perf_counter() - w, time.process_time() - c, [r.score for r in out]

    def sequential():
        return [batched([t], n_classes, [s], **kw)[0] for t, s in zip(tasks, seed_list)]

    def sweep():
        first = batched(tasks[:1], n_classes, seed_list[:1], **kw)
        return first + (batched(tasks[1:], n_classes, seed_list[1:], **kw) if seeds > 1 else [])

    runs: dict[str, list] = {"sequential": [], "sweep": [], "batched": []}
    for _ in range(max(1, int(repeat))):
        runs["sequential"].append(clock(sequential))
        runs["sweep"].append(clock(sweep))
        runs["batched"].append(clock(lambda: batched(tasks, n_classes, seed_list, **kw)))
    best = {k: min(v, key=lambda r: r[0]) for k, v in runs.items()}
    out = {"head": head, "device": str(dev), "n_train": n_train, "dim": dim, "n_classes": n_classes,
           "seeds": seeds, "epochs": epochs, "threads": torch.get_num_threads()}
    for k, (wall, cpu, scores) in best.items():
        out.update({f"{k}_seconds": wall, f"{k}_cpu_seconds": cpu, f"{k}_scores": scores})
    out["speedup"] = out["sequential_seconds"] / out["sweep_seconds"]
    out["speedup_all_batched"] = out["sequential_seconds"] / out["batched_seconds"]
    ref = best["sequential"][2]
    out["agree"] = all(bool(np.allclose(ref, b[2], atol=0.011)) for b in best.values())
    return out


__all__ = ["SKLEARN_PROTOCOL", "Stacked", "head_inputs", "mlp_init", "glorot_init", "train_mlp", "mlp_batched",
           "predict", "sklearn_adam_step", "sklearn_batch_loss_and_delta", "train_mlp_sklearn", "SklearnFit",
           "predict_sklearn", "mlp_sklearn_batched", "mlp_sklearn_score", "synthetic_task",
           "time_sequential_vs_batched", "build_head", "BATCHED_HEADS"]
