"""Heads (precompute.heads): batched heads are the heads trained alone, and ``mlp-sklearn`` is
scikit-learn's ``MLPClassifier``.

Independent references: a plain transcription of the paper's head (``nn.Sequential`` +
``torch.optim.Adam`` + ``F.cross_entropy``, autograd), ``torch.optim.Adam`` itself, NumPy
transcriptions of scikit-learn's Adam and loss, scikit-learn's own ``AdamOptimizer`` and
``MLPClassifier``, and ``torch.autograd`` for the gradients."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.usefixtures("one_torch_thread")]  # autograd references

import torch.nn.functional as F  # noqa: E402
from sklearn.datasets import load_digits, make_blobs  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

from precompute import faults, heads  # noqa: E402
from precompute.evaluators import EVALUATORS, mlp_score  # noqa: E402
from precompute.heads import build_head  # noqa: E402
from precompute.scores import EvalResult  # noqa: E402


# --------------------------------------------------------------------------- helpers
def reference_head(x, y, n_classes: int, seed: int, epochs: int, hidden: int = 50):
    """The paper's head as plainly as it can be written: torch.manual_seed(seed) + build_head,
    torch.optim.Adam(lr=1e-3), one randperm per epoch from a Generator seeded by seed, batches of
    200 with the remainder last, mean cross-entropy, autograd."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = build_head(x.shape[1], n_classes, hidden)
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), 200):
            idx = perm[s : s + 200]
            loss = F.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def blob_task(n: int, seed: int, d: int = 24, n_classes: int = 5, n_test: int = 400, sep: float = 0.5):
    """Overlapping classes (the heads disagree with each other, so agreement means something)."""
    return heads.synthetic_task(n, d, n_classes, n_test, seed=seed, sep=sep)


def stacked(tasks):
    return torch.stack([t[0] for t in tasks]), torch.stack([t[1] for t in tasks])


# S = 1, 2, 3 with different seeds; n < 200, n not a multiple of 200, n a multiple of 200
CASES = [([0], 150), ([3, 11], 450), ([5, 0, 42], 450), ([1, 2, 3], 130), ([8, 9], 400)]


# ---------------------------------------------------------------------------- mlp
@pytest.mark.parametrize("seeds,n", CASES)
def test_batched_heads_have_the_reference_parameters(seeds, n):
    tasks = [blob_task(n, seed=100 + i) for i in range(len(seeds))]
    xs, ys = stacked(tasks)
    init = heads.mlp_init(seeds, 24, 5, 50, "cpu").views()
    trained = heads.train_mlp(xs, ys, seeds, 5, epochs=4).views()
    for s, seed in enumerate(seeds):
        ref = reference_head(tasks[s][0], tasks[s][1], 5, seed, epochs=4)
        ref0 = reference_head(tasks[s][0], tasks[s][1], 5, seed, epochs=0)
        ref_params = [ref[0].weight, ref[0].bias, ref[2].weight, ref[2].bias]
        for got, want, start, want0 in zip(trained, ref_params, init, [ref0[0].weight, ref0[0].bias, ref0[2].weight,
                                                                        ref0[2].bias]):
            assert torch.equal(start[s], want0.detach())  # the very init mlp_score's head has
            assert torch.allclose(got[s], want.detach(), atol=2e-6, rtol=0)
            assert (got[s] - start[s]).abs().max() > 1e-3  # it trained: the tolerance is 500x smaller
    if len(seeds) > 1:  # other seeds, other heads
        assert (trained[0][0] - trained[0][1]).abs().max() > 1e-2


@pytest.mark.parametrize("seeds,n", CASES)
def test_batched_heads_predict_as_the_reference_and_the_single_path(seeds, n):
    epochs = 25
    tasks = [blob_task(n, seed=200 + i) for i in range(len(seeds))]
    xs, ys = stacked(tasks)
    txs = torch.stack([t[2] for t in tasks])
    pred = heads.predict(heads.train_mlp(xs, ys, seeds, 5, epochs=epochs), txs).argmax(2)
    batched = heads.mlp_batched(tasks, 5, seeds, epochs=epochs)
    for s, seed in enumerate(seeds):
        ref = reference_head(tasks[s][0], tasks[s][1], 5, seed, epochs)
        with torch.no_grad():
            want = ref(tasks[s][2]).argmax(1)
        assert (pred[s] == want).double().mean() >= 0.99
        acc = float((want == tasks[s][3]).double().mean())
        assert 0.35 < acc < 0.97  # overlapping classes: a non-trivial head
        alone = mlp_score(*tasks[s], n_classes=5, seed=seed, epochs=epochs)
        assert isinstance(alone, EvalResult) and alone.epochs == epochs == batched[s].epochs
        assert abs(batched[s].score - alone.score) <= 0.01 and abs(alone.score - acc) <= 0.01


def test_torch_adam_step_is_torch_optim_adam():
    g = torch.Generator().manual_seed(0)
    p0 = torch.randn(300, generator=g)
    grads = [torch.randn(300, generator=g) * 10 ** (k % 3 - 1) for k in range(6)]
    mine, m, v, buf = p0.clone(), torch.zeros(300), torch.zeros(300), torch.empty(300)
    theirs = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([theirs], lr=1e-3, foreach=False)
    for t, gr in enumerate(grads, 1):
        heads.torch_adam_step(mine, gr, m, v, t, 1e-3, buf=buf)
        theirs.grad = gr.clone()
        opt.step()
    assert torch.allclose(mine, theirs.detach(), atol=1e-7, rtol=0)
    assert (mine - p0).abs().max() > 1e-3


def test_fault_point_once_per_epoch_and_global_rng_untouched(monkeypatch):
    calls = []
    monkeypatch.setattr(faults, "point", lambda name: calls.append(name))
    tasks = [blob_task(130, seed=i, d=8) for i in range(3)]
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    heads.mlp_batched(tasks, 5, [0, 1, 2], epochs=3)
    assert calls == ["mlp-epoch"] * 3
    mlp_score(*tasks[0], n_classes=5, seed=0, epochs=2)
    assert calls == ["mlp-epoch"] * 5
    heads.mlp_sklearn_batched(tasks, 5, [0, 1, 2], max_epochs=4)
    assert calls == ["mlp-epoch"] * 9
    assert torch.rand(1) == expected


def test_registry_batched_as_the_sweep_calls_it():
    """sweep: spec.fn for seed 0 (timed), spec.batched(tasks, n_classes=..., seeds=...) for the rest."""
    tasks = [blob_task(120, seed=i, d=8, n_test=50) for i in range(3)]
    for name in ("mlp", "mlp-sklearn"):
        spec = EVALUATORS[name]
        assert spec.needs_test and spec.batched is not None
        out = spec.batched(tasks[1:], n_classes=5, seeds=[1, 2])
        assert len(out) == 2 and all(isinstance(r, EvalResult) and 0 <= r.score <= 1 for r in out)
        alone = [spec.fn(*t, n_classes=5, seed=s) for s, t in ((1, tasks[1]), (2, tasks[2]))]
        assert [r.epochs for r in out] == [r.epochs for r in alone]
        assert np.allclose([r.score for r in out], [r.score for r in alone], atol=0.021)  # <= 1 of 50 samples
        assert float(out[0]) == out[0].score
    assert [r.epochs for r in out] and all(1 <= r.epochs <= 200 for r in out)


def test_batched_inputs_are_checked():
    a, b = blob_task(120, seed=0, d=8), blob_task(130, seed=1, d=8)
    with pytest.raises(ValueError, match="equal shapes"):
        heads.mlp_batched([a, b], 5, [0, 1], epochs=1)
    with pytest.raises(ValueError, match="one task per seed"):
        heads.mlp_batched([a, a], 5, [0], epochs=1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        heads.mlp_batched([a], 3, [0], epochs=1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        heads.mlp_sklearn_score(a[0], torch.zeros(120, dtype=torch.long), a[2], a[3], 5, 0)


def test_timing_helper_reports_the_sweeps_pattern_against_sequential(monkeypatch):
    """The helper times (a) each seed alone, (b) the sweep's pattern: seed 0 alone, then seeds > 0
    in ONE batched call, (c) all seeds batched; the speed-up it reports is (a) / (b)."""
    calls = []
    real = heads.mlp_batched

    def spy(tasks, n_classes, seeds, **kw):
        calls.append(list(seeds))
        return real(tasks, n_classes, seeds, **kw)

    monkeypatch.setitem(heads.BATCHED_HEADS, "mlp", (spy, "epochs"))
    out = heads.time_sequential_vs_batched(n_train=130, dim=8, n_classes=3, seeds=3, epochs=3, n_test=40)
    assert calls == [[0], [1], [2], [0], [1, 2], [0, 1, 2]]
    assert out["sequential_seconds"] > 0 and out["sweep_seconds"] > 0 and out["batched_seconds"] > 0
    assert out["speedup"] == pytest.approx(out["sequential_seconds"] / out["sweep_seconds"])
    assert out["speedup_all_batched"] == pytest.approx(out["sequential_seconds"] / out["batched_seconds"])
    assert out["agree"] and len(out["sweep_scores"]) == 3
    with pytest.raises(ValueError, match="no batched path"):
        heads.time_sequential_vs_batched(head="silhouette")


# --------------------------------------------------------------------- mlp-sklearn
def numpy_sklearn_adam(params, grads_seq, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """scikit-learn's AdamOptimizer._get_updates, transcribed."""
    p = params.astype(np.float64).copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads_seq, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        p = p - lr_t * m / (np.sqrt(v) + eps)
    return p


def test_sklearn_adam_step_is_sklearns():
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer

    rng = np.random.default_rng(0)
    p0 = rng.normal(size=200)
    grads = [rng.normal(size=200) * 10.0 ** (k % 4 - 2) for k in range(7)]  # tiny grads: eps matters
    mine, m, v = (torch.tensor(p0), torch.zeros(200, dtype=torch.float64), torch.zeros(200, dtype=torch.float64))
    for t, g in enumerate(grads, 1):
        heads.sklearn_adam_step(mine, torch.tensor(g), m, v, t)
    want = numpy_sklearn_adam(p0, grads)
    assert np.allclose(mine.numpy(), want, atol=1e-12, rtol=0)
    theirs = [p0.copy()]
    opt = AdamOptimizer(theirs, learning_rate_init=1e-3)
    for g in grads:
        opt.update_params(theirs, [g])
    assert np.allclose(mine.numpy(), theirs[0], atol=1e-12, rtol=0)
    # torch's Adam puts eps elsewhere: with gradients of 1e-10..1e-8 the two differ
    torch_p, tm, tv = torch.tensor(p0), torch.zeros(200, dtype=torch.float64), torch.zeros(200, dtype=torch.float64)
    for t, g in enumerate(grads, 1):
        heads.torch_adam_step(torch_p, torch.tensor(g), tm, tv, t, 1e-3)
    assert not np.allclose(torch_p.numpy(), want, atol=1e-9, rtol=0)
    # a mask freezes the masked entries
    mask = torch.tensor([1.0, 0.0]).repeat_interleave(100).double()
    frozen = torch.tensor(p0)
    heads.sklearn_adam_step(frozen, torch.tensor(grads[0]), torch.zeros(200).double(), torch.zeros(200).double(), 1,
                            mask=mask)
    assert torch.equal(frozen[100:], torch.tensor(p0)[100:]) and not torch.equal(frozen[:100], torch.tensor(p0)[:100])


@pytest.mark.parametrize("n_out", [1, 4])
def test_sklearn_loss_delta_and_gradients(n_out):
    """Loss = log loss (clipped probabilities) + alpha / 2 * sum ||W||^2 / B, per head; gradients
    = autograd of that loss (float64): checks the L2 scaling and the backward pass."""
    from sklearn.metrics import log_loss

    S, B, d, H, alpha = 2, 37, 6, 5, 0.3  # a large alpha so the penalty is visible
    g = torch.Generator().manual_seed(1)
    xb = torch.randn(S, B, d, generator=g, dtype=torch.float64)
    k = 2 if n_out == 1 else n_out
    yb = torch.randint(0, k, (S, B), generator=g)
    st = heads.glorot_init([3, 4], d, n_out, H, "cpu")
    st.flat = st.flat.double() * 3
    p = st.views()
    h, logits = heads._forward(p, xb)
    loss, delta = heads.sklearn_batch_loss_and_delta(logits, yb, p[0], p[2], alpha=alpha)
    grads = st.like()
    heads._backward(p, grads.views(), xb, h, delta, l2=alpha / B)
    for s in range(S):
        z = logits[s].numpy()
        prob = 1 / (1 + np.exp(-z[:, 0])) if n_out == 1 else np.exp(z - z.max(1, keepdims=True))
        prob = np.stack([1 - prob, prob], 1) if n_out == 1 else prob / prob.sum(1, keepdims=True)
        penalty = 0.5 * alpha * ((p[0][s].numpy() ** 2).sum() + (p[2][s].numpy() ** 2).sum()) / B
        want = log_loss(yb[s].numpy(), prob, labels=list(range(k))) + penalty
        assert float(loss[s]) == pytest.approx(want, rel=1e-10)
        # autograd of the plain loss, one head at a time
        leaves = [t[s].detach().clone().requires_grad_(True) for t in p]
        w1, b1, w2, b2 = leaves
        out = torch.relu(xb[s] @ w1.T + b1) @ w2.T + b2
        if n_out == 1:
            data = F.binary_cross_entropy_with_logits(out[:, 0], yb[s].double())
        else:
            data = F.cross_entropy(out, yb[s])
        total = data + 0.5 * alpha * (w1.square().sum() + w2.square().sum()) / B
        total.backward()
        for leaf, got in zip(leaves, grads.views()):
            assert torch.allclose(got[s], leaf.grad, atol=1e-12, rtol=1e-9)


def sklearn_from_init(X, y, init: heads.Stacked, **params):
    """MLPClassifier(hidden_layer_sizes=(50,), shuffle=False) trained from OUR init: one fit of one
    epoch builds its state, then the weights are replaced and the stopping state reset (private
    attributes of scikit-learn 1.x: loss_curve_, best_loss_, _no_improvement_count), and a warm
    fit runs the real training loop from there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(50,), shuffle=False, max_iter=1, random_state=0, **params).fit(X, y)
        w1, b1, w2, b2 = (t[0].numpy() for t in init.views())
        clf.coefs_, clf.intercepts_ = [w1.T.copy(), w2.T.copy()], [b1.copy(), b2.copy()]
        clf.loss_curve_, clf.best_loss_, clf._no_improvement_count, clf.t_ = [], np.inf, 0, 0
        clf.set_params(max_iter=200, warm_start=True)
        return clf.fit(X, y)


@pytest.mark.parametrize("classes,n,tol,alpha", [((3, 7), 360, 1e-4, 1e-4), ((0, 1, 2, 4), 150, 1e-3, 1e-4),
                                                 ((1, 5, 8), 500, 1e-4, 1e-4), ((0, 6), 250, 1e-4, 0.5),
                                                 ((2, 3, 9), 300, 1e-4, 0.5)])
def test_mlp_sklearn_is_mlpclassifier_given_the_same_init_and_order(classes, n, tol, alpha):
    """Same init, no shuffling: the loss curve, the epoch it stops at and the weights are
    scikit-learn's (two classes -> one logistic output; n < 200 -> one batch of n; a large
    alpha makes the L2 term matter)."""
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, classes)
    X, y = (X[keep] / 16).astype(np.float32)[:n], y[keep][:n]
    n_out = 1 if len(classes) == 2 else len(classes)
    init = heads.glorot_init([7], 64, n_out, 50, "cpu")
    clf = sklearn_from_init(X, y, init, tol=tol, alpha=alpha)
    fit = heads.train_mlp_sklearn(torch.from_numpy(X)[None], torch.from_numpy(y)[None], [7], shuffle=False,
                                  init=init, tol=tol, alpha=alpha)
    assert fit.epochs[0] == clf.n_iter_ == len(fit.loss_curves[0])
    assert np.allclose(fit.loss_curves[0], clf.loss_curve_, rtol=2e-4, atol=0)  # float32, up to 200 epochs
    w1 = fit.params.views()[0][0].numpy().T
    assert np.allclose(w1, clf.coefs_[0], atol=1e-3, rtol=0)  # float32 drift over 600 steps: ~4e-4
    assert np.abs(clf.coefs_[0] - init.views()[0][0].numpy().T).max() > 0.05
    pred = heads.predict_sklearn(fit, torch.from_numpy(X)[None])[0].numpy()
    assert (pred == clf.predict(X)).mean() >= 0.99 and set(np.unique(pred)) <= set(classes)


def test_mlp_sklearn_stops_early_only_by_the_rule():
    """Stopping: after more than n_iter_no_change epochs without an improvement by tol."""
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, (0, 1, 2, 4))
    X, y = torch.from_numpy((X[keep] / 16).astype(np.float32)[:300]), torch.from_numpy(y[keep][:300])
    fit = heads.train_mlp_sklearn(X[None], y[None], [0], tol=1e-2, n_iter_no_change=3)
    curve, e = fit.loss_curves[0], fit.epochs[0]
    assert e < 200 and len(curve) == e
    best, bad, stop = math.inf, 0, None
    for i, loss in enumerate(curve):  # the rule, replayed on the recorded curve
        bad = bad + 1 if loss > best - 1e-2 else 0
        best = min(best, loss)
        if bad > 3:
            stop = i + 1
            break
    assert stop == e


def test_mlp_sklearn_statistically_matches_mlpclassifier():
    """Other RNG, same semantics: over seeds, test accuracy and epochs run agree within noise."""
    X, y = make_blobs(900, n_features=16, centers=4, cluster_std=6.0, random_state=1)
    X = X.astype(np.float32)
    Xtr, ytr, Xte, yte = X[:500], y[:500], X[500:], y[500:]
    seeds = list(range(6))
    sk = [MLPClassifier(hidden_layer_sizes=(50,), random_state=s).fit(Xtr, ytr) for s in seeds]
    sk_acc, sk_ep = np.array([c.score(Xte, yte) for c in sk]), np.array([c.n_iter_ for c in sk])
    task = tuple(torch.from_numpy(a) for a in (Xtr, ytr, Xte, yte))
    ours = heads.mlp_sklearn_batched([task] * len(seeds), 4, seeds)
    acc, ep = np.array([r.score for r in ours]), np.array([r.epochs for r in ours])
    assert sk_ep.max() < 200 and ep.max() < 200  # the stopping rule is what ends both
    se_acc = math.sqrt((acc.var(ddof=1) + sk_acc.var(ddof=1)) / len(seeds))
    assert abs(acc.mean() - sk_acc.mean()) <= 3 * se_acc + 0.01
    se_ep = math.sqrt((ep.var(ddof=1) + sk_ep.var(ddof=1)) / len(seeds))
    assert abs(ep.mean() - sk_ep.mean()) <= 3 * se_ep + 5


def test_mlp_sklearn_batched_heads_stop_and_freeze_on_their_own():
    X, y = make_blobs(900, n_features=16, centers=4, cluster_std=6.0, random_state=1)
    X, y = torch.from_numpy(X.astype(np.float32)), torch.from_numpy(y)
    tasks = [(X[i * 100 : i * 100 + 500], y[i * 100 : i * 100 + 500], X[700:], y[700:]) for i in range(3)]
    seeds = [0, 1, 3]
    xs, ys = stacked(tasks)
    txs = torch.stack([t[2] for t in tasks])
    together = heads.train_mlp_sklearn(xs, ys, seeds)
    assert len(set(together.epochs)) == 3 and max(together.epochs) < 200  # each head stops on its own
    pred = heads.predict_sklearn(together, txs)
    for s, seed in enumerate(seeds):
        alone = heads.train_mlp_sklearn(xs[s : s + 1], ys[s : s + 1], [seed])
        assert alone.epochs[0] == together.epochs[s]
        assert np.allclose(alone.loss_curves[0], together.loss_curves[s], rtol=1e-4)
        for a, b in zip(alone.params.views(), together.params.views()):  # frozen where it stopped
            assert torch.allclose(a[0], b[s], atol=1e-4, rtol=0)
        assert (heads.predict_sklearn(alone, txs[s : s + 1])[0] == pred[s]).double().mean() >= 0.99


def test_mlp_sklearn_batched_groups_heads_by_their_classes():
    """A split missing a class has another output layer (scikit-learn's classes_ = labels present):
    it trains in its own group, and every head is still what it is alone."""
    tasks = [blob_task(150, seed=i, d=8, n_classes=4, n_test=60) for i in range(3)]
    x, y, tx, ty = tasks[1]
    y = torch.where(y == 3, 2, y)  # class 3 absent from this train split
    tasks[1] = (x, y, tx, ty)
    together = heads.mlp_sklearn_batched(tasks, 4, [0, 1, 2], max_epochs=15)
    alone = [heads.mlp_sklearn_score(*t, n_classes=4, seed=s, max_epochs=15) for s, t in enumerate(tasks)]
    assert [r.epochs for r in together] == [r.epochs for r in alone]
    assert np.allclose([r.score for r in together], [r.score for r in alone], atol=1 / 60 + 1e-9)
