"""Evaluators: the paper's MLP head protocol and the chunked silhouette."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from sklearn.metrics import silhouette_score  # noqa: E402

from precompute import evaluators as ev  # noqa: E402
from precompute.evaluators import EVALUATORS, get_evaluator, mlp_score, silhouette  # noqa: E402
from precompute.heads import build_head  # noqa: E402
from shared.errors import UnknownNameError  # noqa: E402
from shared.protocol import MLP_PROTOCOL  # noqa: E402


def blobs(n_per: int, n_classes: int, dim: int, sep: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=g) * sep
    y = torch.arange(n_classes).repeat_interleave(n_per)
    x = centres[y] + torch.randn(len(y), dim, generator=g)
    return x, y


def test_registry():
    assert {"mlp", "mlp-sklearn", "silhouette"} <= set(EVALUATORS)
    assert EVALUATORS["mlp"].needs_test and not EVALUATORS["silhouette"].needs_test
    assert EVALUATORS["mlp"].fn is mlp_score and get_evaluator("silhouette").fn is silhouette
    assert EVALUATORS["mlp"].batched is not None and EVALUATORS["mlp-sklearn"].needs_test
    with pytest.raises(UnknownNameError, match=r"unknown evaluator 'knnn'; valid: .*mlp, mlp-sklearn, .*silhouette"):
        get_evaluator("knnn")


def test_head_architecture():
    head = build_head(768, 10)
    layers = list(head)
    assert [type(m) for m in layers] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    assert (layers[0].in_features, layers[0].out_features) == (768, 50)
    assert (layers[2].in_features, layers[2].out_features) == (50, 10)
    assert MLP_PROTOCOL == {"hidden": 50, "optimizer": "Adam", "lr": 1e-3, "epochs": 200,
                               "batch_size": 200, "loss": "cross_entropy"}


def test_training_follows_protocol(monkeypatch):
    """Adam at lr 1e-3 over the head's parameters only, epochs * ceil(n / 200) steps, batches of 200.

    mlp_score writes the Adam step out (precompute.heads.torch_adam_step, checked against
    torch.optim.Adam in tests/test_heads.py, as is the whole head against nn.Sequential +
    torch.optim.Adam + mean F.cross_entropy); here the steps and batches are counted."""
    from precompute import heads

    steps, lrs, sizes, batches = [], [], [], []
    real_step, real_forward = heads.torch_adam_step, heads._forward

    def counting_step(params, grads, m, v, t, lr, **k):
        steps.append(t)
        lrs.append(lr)
        sizes.append(params.numel())
        return real_step(params, grads, m, v, t, lr, **k)

    def counting_forward(p, xb):
        batches.append(xb.shape[1])
        return real_forward(p, xb)

    monkeypatch.setattr(heads, "torch_adam_step", counting_step)
    monkeypatch.setattr(heads, "_forward", counting_forward)
    x, y = blobs(50, 5, 16, 3.0, 0)  # n = 250 -> 2 batches per epoch: 200, 50
    res = mlp_score(x, y, x[:20], y[:20], n_classes=5, seed=0)
    assert res.epochs == 200
    assert set(lrs) == {1e-3} and set(sizes) == {16 * 50 + 50 + 50 * 5 + 5}
    assert steps == list(range(1, 200 * math.ceil(250 / 200) + 1)) and len(steps) == 400
    # 400 training batches, then one forward over the 20 test samples
    assert batches[:4] == [200, 50, 200, 50] and batches[:-1] == [200, 50] * 200 and batches[-1] == 20


def test_mlp_learns_separable_data_and_is_deterministic():
    x, y = blobs(60, 4, 32, 4.0, 1)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    tr, te = slice(0, 180), slice(180, None)
    a = mlp_score(x[tr], y[tr], x[te], y[te], n_classes=4, seed=3, epochs=30).score
    b = mlp_score(x[tr], y[tr], x[te], y[te], n_classes=4, seed=3, epochs=30).score
    assert a > 0.9 and a == b
    # labels shuffled: chance level, not > 0.9 (the score reflects the features)
    y_bad = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(5))]
    assert mlp_score(x[tr], y_bad[tr], x[te], y_bad[te], n_classes=4, seed=3, epochs=30).score < 0.6


def test_mlp_seed_changes_init_but_not_global_rng():
    x, y = blobs(30, 3, 8, 0.5, 2)  # overlapping classes: seeds give different heads
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    scores = {mlp_score(x, y, x, y, n_classes=3, seed=s, epochs=3).score for s in range(6)}
    assert torch.rand(1) == expected  # the global RNG stream is untouched
    assert len(scores) > 1


def test_mlp_accepts_numpy_and_rejects_bad_labels():
    x, y = blobs(20, 2, 4, 5.0, 3)
    assert 0.0 <= mlp_score(x.numpy(), y.numpy(), x.numpy(), y.numpy(), n_classes=2, seed=0, epochs=2).score <= 1.0
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        mlp_score(x, y + 1, x, y, n_classes=2, seed=0, epochs=1)


@pytest.mark.parametrize("n,k,dim,chunk", [(50, 2, 3, 7), (301, 7, 16, 64), (1000, 10, 32, 4096), (257, 30, 5, 100)])
def test_silhouette_matches_sklearn(n, k, dim, chunk):
    rng = np.random.default_rng(n + k)
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)  # every class present
    x = rng.normal(size=(n, dim)) + y[:, None] * 0.3
    x = x.astype(np.float32)
    got = silhouette(torch.from_numpy(x), torch.from_numpy(y), chunk=chunk)
    assert got == pytest.approx(silhouette_score(x, y), abs=1e-4)


def test_silhouette_singleton_class_and_label_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = np.repeat([3, 10, 42], [20, 19, 1])  # class 42 has one sample: s = 0 for it (sklearn)
    got = silhouette(torch.from_numpy(x), torch.from_numpy(y), chunk=16)
    assert got == pytest.approx(silhouette_score(x, y), abs=1e-4)
    # every class a singleton: sklearn refuses; we return 0 (each s(i) = 0 by convention)
    assert silhouette(torch.from_numpy(x[:3]), torch.tensor([0, 1, 2])) == 0.0
    with pytest.raises(ValueError, match="at least 2 classes"):
        silhouette(torch.from_numpy(x), torch.zeros(40, dtype=torch.long))


def test_silhouette_separated_beats_mixed():
    x, y = blobs(50, 3, 8, 6.0, 4)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    assert silhouette(x, y) > 0.5 > silhouette(x, shuffled)
