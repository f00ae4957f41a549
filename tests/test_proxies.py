"""Proxy evaluators (precompute/proxies.py), each against an independent implementation:
plain NumPy transcriptions of the definitions, scikit-learn (KNeighborsClassifier,
RidgeClassifierCV, LedoitWolf) and a dense Gaussian log-likelihood for LogME."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from sklearn.covariance import LedoitWolf  # noqa: E402
from sklearn.linear_model import RidgeClassifierCV  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from precompute import proxies as px  # noqa: E402
from precompute.evaluators import EVALUATORS  # noqa: E402

ALPHAS = np.logspace(-6, 6, 25)
PROXIES = {"knn": px.knn, "ridge": px.ridge, "logme": px.logme, "hscore": px.hscore}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small problems, a shared machine: torch's OpenMP threads spinning between calls starve
    NumPy's BLAS threads (and vice versa) when the two alternate, as these tests do."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def gaussian_classes(n: int, d: int, n_classes: int, sep: float, seed: int, labels=None, mix: float = 0.0):
    """Gaussian class means (scale ``sep``) plus unit noise; every class present; ``mix`` > 0
    correlates the features (times I + mix * a Gaussian matrix)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_classes, d)) * sep
    y = rng.integers(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)
    rng.shuffle(y)
    x = means[y] + rng.normal(size=(n, d))
    if mix:
        x = x @ (np.eye(d) + mix * rng.normal(size=(d, d)))
    if labels is not None:
        y = np.asarray(labels)[y]
    return x, y


def split(x, y, n_train):
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# ------------------------------------------------------------------------------------------
# registry


def test_registry_entries():
    for name, fn in PROXIES.items():
        spec = EVALUATORS[name]
        assert spec.name == name and spec.fn is fn and spec.batched is None
    assert EVALUATORS["knn"].needs_test and EVALUATORS["ridge"].needs_test
    assert not EVALUATORS["logme"].needs_test and not EVALUATORS["hscore"].needs_test


# ------------------------------------------------------------------------------------------
# kNN


def knn_numpy(xtr, ytr, xte, n_classes, k=20, temperature=0.07):
    """The definition, transcribed: centre by the train mean, L2-normalise (a zero row stays 0),
    cosine similarity, the k most similar train rows (and any tied with the k-th) vote
    exp(sim / T) for their class, argmax with ties to the lower class.  float64.  Also returns,
    per test row, the gap between the k-th and (k+1)-th similarity and the relative margin of
    the winning vote (rows where float32 rounding could change the answer have tiny ones)."""
    mu = xtr.mean(0)

    def unit(a):
        a = a - mu
        norm = np.linalg.norm(a, axis=1, keepdims=True)
        return np.divide(a, norm, out=np.zeros_like(a), where=norm > 0)

    sim = unit(xte) @ unit(xtr).T
    k = min(k, len(xtr))
    preds, gaps, margins = [], [], []
    for row in sim:
        ranked = np.sort(row)[::-1]
        kth = ranked[k - 1]
        gaps.append(kth - ranked[k] if k < len(row) else np.inf)
        nb = np.flatnonzero(row >= kth)
        votes = np.zeros(n_classes)
        weights = np.ones(len(nb)) if math.isinf(temperature) else np.exp(row[nb] / temperature)
        np.add.at(votes, ytr[nb], weights)
        preds.append(int(np.argmax(votes)))
        top2 = np.sort(votes)[-2:]
        margins.append((top2[1] - top2[0]) / top2[1])
    return np.array(preds), np.array(gaps), np.array(margins)


@pytest.mark.parametrize("n,d,c,k,temp,chunk", [
    (300, 16, 5, 20, 0.07, None), (300, 16, 5, 20, 0.07, 7), (200, 40, 3, 5, 0.5, 64),
    (15, 8, 4, 20, 0.07, None),  # k > n_train: every train row votes
    (400, 64, 10, 20, 0.01, 50),  # a small temperature: no overflow
])
def test_knn_matches_numpy_transcription(n, d, c, k, temp, chunk):
    x, y = gaussian_classes(n + 150, d, c, sep=0.6, seed=n + d)
    xtr, ytr, xte, yte = split(x.astype(np.float32), y, n)
    want, gaps, margins = knn_numpy(xtr.astype(np.float64), ytr, xte.astype(np.float64), c, k, temp)
    robust = (gaps > 1e-5) & (margins > 1e-4)
    assert robust.mean() > 0.9
    got, got_y = px.knn_predict(t(xtr), t(ytr), t(xte), t(yte), c, k=k, temperature=temp, chunk=chunk)
    assert torch.equal(got_y, t(yte))
    np.testing.assert_array_equal(got.numpy()[robust], want[robust])
    acc = px.knn(t(xtr), t(ytr), t(xte), t(yte), c, 0, k=k, temperature=temp, chunk=chunk)
    assert acc == pytest.approx((got.numpy() == yte).mean(), abs=0)
    assert 0.2 < acc < 1.0  # non-trivial data: the test can fail


@pytest.mark.parametrize("temp", [math.inf, 1e9])
@pytest.mark.parametrize("k", [1, 7, 20])
def test_knn_large_temperature_is_sklearn_uniform_vote(temp, k):
    """exp(s / 1e9) is exactly 1 in float32: the vote is uniform, and matches scikit-learn's
    KNeighborsClassifier(weights='uniform', metric='cosine') on train-mean-centred features
    (ties between class counts: the lower class, in both)."""
    x, y = gaussian_classes(450, 24, 6, sep=0.5, seed=k)
    xtr, ytr, xte, yte = split(x, y, 300)
    mu = xtr.mean(0)
    ref = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(xtr - mu, ytr)
    want = ref.predict(xte - mu)
    _, gaps, _ = knn_numpy(xtr, ytr, xte, 6, k, math.inf)
    robust = gaps > 1e-5  # sklearn breaks exact ties at the k-th neighbour arbitrarily
    assert robust.mean() > 0.95
    got, _ = px.knn_predict(t(xtr).float(), t(ytr), t(xte).float(), t(yte), 6, k=k, temperature=temp)
    np.testing.assert_array_equal(got.numpy()[robust], want[robust])


def test_knn_hand_computed_ties():
    # 1-NN: two train rows at the same place, classes 2 and 1: both tie with the k-th, both
    # vote, the vote ties, the lower class (1) wins -- whatever the train order
    xtr = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    ytr = torch.tensor([2, 1, 0, 0])
    # the train mean is (0.25, 0.25): centred train rows (0.75,-0.25) x2, (-1.25,-0.25), (-0.25,0.75)
    xte = torch.tensor([[5.0, 0.25]])  # centred (4.75, 0): nearest are the two tied rows
    for perm in ([0, 1, 2, 3], [1, 0, 3, 2], [3, 2, 1, 0]):
        pred, _ = px.knn_predict(xtr[perm], ytr[perm], xte, torch.tensor([1]), 3, k=1)
        assert pred.tolist() == [1]
    # k = 3: the tied pair (cos 0.949) and (-0.25, 0.75) of class 0 (cos -0.316, weight
    # exp(-1.265 / 0.07) relative to the pair's 1 each): classes 1 and 2 tie again -> 1
    pred, _ = px.knn_predict(xtr, ytr, xte, torch.tensor([1]), 3, k=3)
    assert pred.tolist() == [1]


def test_knn_weights_hand_computed():
    # centred at the origin by construction (train mean 0): one class-1 row right next to the
    # query, two class-0 rows at 60 degrees.  Uniform vote (T = inf): 2 vs 1 -> class 0.
    # T = 0.07: class 1 gets exp(1 / 0.07), class 0 gets 2 exp(0.5 / 0.07): 1 wins (e^(0.5/0.07) > 2).
    c, s = 0.5, math.sqrt(3) / 2
    xtr = torch.tensor([[1.0, 0.0], [c, s], [c, -s], [-2.0, 0.0]], dtype=torch.float64)
    ytr = torch.tensor([1, 0, 0, 2])
    xte = torch.tensor([[3.0, 0.0]])
    assert px.knn_predict(xtr, ytr, xte, torch.tensor([0]), 3, k=3, temperature=math.inf)[0].tolist() == [0]
    assert px.knn_predict(xtr, ytr, xte, torch.tensor([0]), 3, k=3)[0].tolist() == [1]
    # where 2 e^(0.5/T) > e^(1/T), i.e. T > 0.5 / ln 2 = 0.72, class 0 wins again
    assert px.knn_predict(xtr, ytr, xte, torch.tensor([0]), 3, k=3, temperature=0.8)[0].tolist() == [0]
    assert px.knn_predict(xtr, ytr, xte, torch.tensor([0]), 3, k=3, temperature=0.65)[0].tolist() == [1]


def test_knn_constant_backbone_votes_majority():
    rng = np.random.default_rng(0)
    ytr = np.array([0, 1, 1, 2, 1, 0, 2, 1])  # class 1 is the majority
    yte = rng.integers(0, 3, 30)
    row = rng.normal(size=(1, 5)).astype(np.float32)
    xtr = np.repeat(row, len(ytr), 0)
    xte = rng.normal(size=(30, 5)).astype(np.float32)  # any test features: every train row ties
    pred, _ = px.knn_predict(t(xtr), t(ytr), t(xte), t(yte), 3)
    assert pred.tolist() == [1] * 30
    assert px.knn(t(xtr), t(ytr), t(np.repeat(row, 30, 0)), t(yte), 3, 0) == pytest.approx((yte == 1).mean())


# ------------------------------------------------------------------------------------------
# ridge


def sklearn_ridge(xtr, ytr, xte):
    sc = StandardScaler().fit(xtr)
    model = RidgeClassifierCV(alphas=ALPHAS, store_cv_results=True).fit(sc.transform(xtr), ytr)
    errs = model.cv_results_.reshape(len(xtr), -1, len(ALPHAS)).mean(axis=(0, 1))
    return model.predict(sc.transform(xte)), float(model.alpha_), errs


@pytest.mark.parametrize("n,d,c", [
    (400, 30, 6), (400, 30, 2),  # n > d: the eigendecomposition of X^T X
    (80, 300, 6), (80, 300, 2),  # n < d: of X X^T
    (120, 120, 4),  # n == d: scikit-learn's gram mode
])
def test_ridge_equals_sklearn(n, d, c):
    x, y = gaussian_classes(n + 200, d, c, 0.2, seed=n * d + c, mix=0.3)
    xtr, ytr, xte, yte = split(x, y, n)
    want, want_alpha, want_errs = sklearn_ridge(xtr, ytr, xte)
    pred, got_y, alpha, errs = px.ridge_predict(t(xtr), t(ytr), t(xte), t(yte), c)
    assert alpha == want_alpha and 1e-6 < alpha < 1e6  # an interior choice: the LOO errors matter
    # the LOO errors per alpha (gram mode at alpha 1e-6 cancels ~8 digits in both codes)
    np.testing.assert_allclose(errs.numpy(), want_errs, rtol=1e-6)
    np.testing.assert_array_equal(pred.numpy(), want)
    acc = px.ridge(t(xtr), t(ytr), t(xte), t(yte), c, 0)
    assert acc == (want == yte).mean() and 0.3 < acc < 1.0


def test_ridge_chunking_and_float32_input():
    x, y = gaussian_classes(500, 40, 5, 0.3, seed=1)
    xtr, ytr, xte, yte = split(x, y, 350)
    a = px.ridge_predict(t(xtr), t(ytr), t(xte), t(yte), 5)
    b = px.ridge_predict(t(xtr), t(ytr), t(xte), t(yte), 5, chunk=33)
    assert torch.equal(a[0], b[0]) and a[2] == b[2]
    np.testing.assert_allclose(a[3].numpy(), b[3].numpy(), rtol=1e-12)
    x32 = x.astype(np.float32)  # what the sweep passes: the float32 values, in float64 inside
    want, want_alpha, _ = sklearn_ridge(x32[:350].astype(np.float64), ytr, x32[350:].astype(np.float64))
    pred, _, alpha, _ = px.ridge_predict(t(x32[:350]), t(ytr), t(x32[350:]), t(yte), 5)
    assert alpha == want_alpha
    np.testing.assert_array_equal(pred.numpy(), want)


def test_ridge_labels_constant_feature_and_absent_class():
    # labels 1, 4, 7 of 9 classes (some absent from train, one test-only), a constant column
    x, y = gaussian_classes(420, 25, 3, 0.35, seed=3, labels=[1, 4, 7])
    x[:, 5] = 3.0
    xtr, ytr, xte, yte = split(x, y, 300)
    yte = yte.copy()
    yte[:10] = 8  # a class the train split lacks: never predicted, counted wrong
    want, want_alpha, _ = sklearn_ridge(xtr, ytr, xte)
    pred, _, alpha, _ = px.ridge_predict(t(xtr), t(ytr), t(xte), t(yte), 9)
    assert alpha == want_alpha
    np.testing.assert_array_equal(pred.numpy(), want)
    assert px.ridge(t(xtr), t(ytr), t(xte), t(yte), 9, 0) == (want == yte).mean()


@pytest.mark.parametrize("c", [2, 4])
def test_ridge_constant_backbone_is_majority_class_as_sklearn(c):
    rng = np.random.default_rng(c)
    ytr = rng.integers(0, c, 60)
    ytr[:c] = np.arange(c)
    yte = rng.integers(0, c, 40)
    xtr = np.repeat(rng.normal(size=(1, 12)), 60, 0)
    xte = np.repeat(xtr[:1], 40, 0)
    want, want_alpha, _ = sklearn_ridge(xtr, ytr, xte)
    pred, _, alpha, _ = px.ridge_predict(t(xtr), t(ytr), t(xte), t(yte), c)
    majority = np.bincount(ytr).argmax()
    assert alpha == want_alpha == ALPHAS[0]  # every alpha ties: the first
    np.testing.assert_array_equal(pred.numpy(), want)
    assert set(want) == {majority}


# ------------------------------------------------------------------------------------------
# LogME


def logme_published(f, y, tol=1e-3, max_iter=11, pad_sigma=False):
    """Plain float64 transcription of the published LogME (thuml/LogME ``_fit_fixed_point``):
    truncated SVD (through F^T F, keeping singular values > 1e-10, when n > d; else the thin SVD),
    fixed point on t = alpha / beta, the evidence with ``d/2 log alpha``.  Per class 0..max(y):
    (evidence / n, alpha, beta).  ``pad_sigma``: the fix of thuml/LogME issue #23 / pull request
    #24 for n < d, the k values of sigma padded with d - k zeros in the evidence's log|A|."""
    n, d = f.shape
    if n > d:
        _, lam, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(lam)
        k = int((s > 1e-10).sum())
        s, vh = s[:k], vh[:k]
        u = (f @ vh.T) / s
    else:
        u, s, vh = np.linalg.svd(f, full_matrices=False)
    sigma = s ** 2
    out = []
    for c in range(int(y.max()) + 1):
        yc = (y == c).astype(np.float64)
        x2 = (u.T @ yc) ** 2
        res_x2 = yc @ yc - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t_ = alpha / beta
            gamma = (sigma / (sigma + t_)).sum()
            m2 = (sigma * x2 / (t_ + sigma) ** 2).sum()
            res2 = (x2 / (1 + sigma / t_) ** 2).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t_) / t_ <= tol:
                break
        full = np.concatenate([sigma, np.zeros(d - sigma.size)]) if pad_sigma else sigma
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * full))
                    - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        out.append((evidence / n, alpha, beta))
    return np.array(out)


def dense_log_marginal(f, yc, alpha, beta):
    """log N(y; 0, alpha^-1 F F^T + beta^-1 I) / n, densely (n x n), with slogdet and solve."""
    n = len(yc)
    cov = f @ f.T / alpha + np.eye(n) / beta
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    return -0.5 * (n * np.log(2 * np.pi) + logdet + yc @ np.linalg.solve(cov, yc)) / n


def dense_fixed_point(f, yc, alpha, beta, eps=1e-5):
    """The published update evaluated densely at (alpha, beta): the posterior A = alpha I +
    beta F^T F (d x d), m = beta A^-1 F^T y, gamma = d - alpha tr(A^-1); returns the
    (alpha, beta) one update would give: gamma / (|m|^2 + eps), (n - gamma) / (|y - F m|^2 + eps)."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    a_inv = np.linalg.inv(a)
    m = beta * a_inv @ f.T @ yc
    gamma = d - alpha * np.trace(a_inv)
    return gamma / (m @ m + eps), (n - gamma) / (((yc - f @ m) ** 2).sum() + eps)


def features_for_logme(n, d, c, seed):
    x, y = gaussian_classes(n, d, c, sep=0.5, seed=seed)
    return x * 0.3 + 0.1, y  # not centred, not unit scale: LogME takes the features as given


@pytest.mark.parametrize("n,d,c", [(400, 20, 4), (300, 60, 7), (250, 10, 2)])
def test_logme_matches_published_when_samples_exceed_dimension(n, d, c):
    f, y = features_for_logme(n, d, c, seed=n + d)
    ev, alpha, beta = px.logme_evidence(t(f), t(y))
    # published stopping rule (relative change of alpha/beta <= 1e-3, <= 11 steps): close
    pub = logme_published(f, y)
    np.testing.assert_allclose(ev.numpy(), pub[:, 0], rtol=1e-4)
    # iterated to convergence, the published algorithm gives the same alpha, beta and evidence
    pub = logme_published(f, y, tol=1e-13, max_iter=100_000)
    np.testing.assert_allclose(alpha.numpy(), pub[:, 1], rtol=1e-5)
    np.testing.assert_allclose(beta.numpy(), pub[:, 2], rtol=1e-5)
    np.testing.assert_allclose(ev.numpy(), pub[:, 0], rtol=1e-9)
    assert px.logme(t(f), t(y), None, None, c, 0) == pytest.approx(pub[:, 0].mean(), rel=1e-9)
    for cls in range(c):
        yc = (y == cls).astype(np.float64)
        a, b = alpha[cls].item(), beta[cls].item()
        exact = dense_log_marginal(f, yc, a, b)
        assert ev[cls].item() == pytest.approx(exact, rel=1e-9, abs=1e-9)  # the exact log marginal likelihood
        assert dense_fixed_point(f, yc, a, b) == pytest.approx((a, b), rel=1e-5)  # at the fixed point
        for da, db in ((1.05, 1), (0.95, 1), (1, 1.05), (1, 0.95)):  # which is its maximum here
            assert dense_log_marginal(f, yc, a * da, b * db) < exact


@pytest.mark.parametrize("n,d,c", [(40, 200, 3), (25, 80, 2)])
def test_logme_rank_fix_when_samples_below_dimension(n, d, c):
    f, y = features_for_logme(n, d, c, seed=n * d)
    ev, alpha, beta = px.logme_evidence(t(f), t(y))
    pub = logme_published(f, y, tol=1e-13, max_iter=100_000)
    # same fixed point (the updates do not involve d) ...
    np.testing.assert_allclose(alpha.numpy(), pub[:, 1], rtol=1e-5)
    np.testing.assert_allclose(beta.numpy(), pub[:, 2], rtol=1e-5)
    # ... but the published evidence is off by (d - k)/2 log(alpha) / n, k = min(n, d) = n
    np.testing.assert_allclose(pub[:, 0] - ev.numpy(), (d - n) / 2 * np.log(alpha.numpy()) / n, rtol=1e-6)
    assert np.abs(pub[:, 0] - ev.numpy()).min() > 0.1
    for cls in range(c):
        yc = (y == cls).astype(np.float64)
        a, b = alpha[cls].item(), beta[cls].item()
        exact = dense_log_marginal(f, yc, a, b)
        assert ev[cls].item() == pytest.approx(exact, rel=1e-9, abs=1e-9)  # ours is the likelihood
        assert abs(pub[cls, 0] - exact) > 0.1  # the published formula is not
        # alpha, beta are the published fixed point, evaluated densely (with its 1e-5 guard, which
        # near interpolation keeps beta finite and so the point off the exact maximum)
        assert dense_fixed_point(f, yc, a, b) == pytest.approx((a, b), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_logme_ranks_like_the_published_reference_with_its_rank_fix(seed):
    """20 backbones on one task (n = 60, d from 5 to 149: both n > d and n < d): LogME ranks them
    exactly as the published algorithm with the fix of thuml/LogME #23/#24 (Kendall tau 1), with
    close values at its own stopping rule and equal ones iterated to convergence.  Without the fix
    the published evidence ranks them differently."""
    rng = np.random.default_rng(seed)
    n, c = 60, 4
    y = np.arange(n) % c
    rng.shuffle(y)
    ours, as_published, converged, unfixed = [], [], [], []
    for _ in range(20):
        d = int(rng.integers(5, 150))
        means = rng.normal(size=(c, d)) * rng.uniform(0.1, 1.0)
        f = (means[y] + rng.normal(size=(n, d))) * rng.uniform(0.1, 1.0) + rng.normal(size=d) * 0.2
        ours.append(px.logme(t(f), t(y), n_classes=c))
        as_published.append(logme_published(f, y, pad_sigma=True)[:, 0].mean())
        converged.append(logme_published(f, y, tol=1e-13, max_iter=100_000, pad_sigma=True)[:, 0].mean())
        unfixed.append(logme_published(f, y)[:, 0].mean())
    assert stats.kendalltau(ours, as_published).statistic == pytest.approx(1.0, abs=1e-12)
    assert stats.kendalltau(ours, converged).statistic == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(ours, as_published, rtol=1e-2)
    np.testing.assert_allclose(ours, converged, rtol=1e-7)
    assert stats.kendalltau(ours, unfixed).statistic < 0.9


def test_logme_degenerate_features():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    y[:3] = [0, 1, 2]
    for f in (np.zeros((50, 8)), np.repeat(rng.normal(size=(1, 8)), 50, 0), np.zeros((50, 80))):
        ev, alpha, beta = px.logme_evidence(t(f), t(y))
        assert torch.isfinite(ev).all()
        for cls in range(3):
            yc = (y == cls).astype(np.float64)
            a = max(alpha[cls].item(), 1e-300)  # all-zero features: alpha -> 0 and F F^T = 0
            assert ev[cls].item() == pytest.approx(dense_log_marginal(f, yc, a, beta[cls].item()), rel=1e-8)
        assert math.isfinite(px.logme(t(f), t(y), None, None, 3, 0))
    # informative features score higher than constant ones
    f, y2 = features_for_logme(200, 10, 3, seed=5)
    assert px.logme(t(f), t(y2), n_classes=3) > px.logme(t(np.ones_like(f)), t(y2), n_classes=3)


# ------------------------------------------------------------------------------------------
# H-score


def hscore_numpy(x, y):
    """The regularized H-score transcribed from its definition (Ibrahim et al. 2022) with the
    published implementation's conventions (tllib ``regularized_h_score``): centred float64
    features, scikit-learn's LedoitWolf, np.cov's default (n - 1) for the class-mean covariance,
    numpy's pinv(rcond=1e-15), times (1 - shrinkage)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    lw = LedoitWolf().fit(x)
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(0) for c in classes])
    g = means[np.searchsorted(classes, y)]  # each sample replaced by its class mean
    cov_g = np.atleast_2d(np.cov(g, rowvar=False))
    return float(np.trace(np.linalg.pinv(lw.covariance_, rcond=1e-15) @ ((1 - lw.shrinkage_) * cov_g)))


def hscore_without_shrinkage_factor(x, y):
    """The formula this project used before issue 22: no (1 - shrinkage) factor, biased (/ n)
    class-mean covariance."""
    lw = LedoitWolf().fit(x)
    classes = np.unique(y)
    g = np.stack([x[y == c].mean(0) for c in classes])[np.searchsorted(classes, y)]
    return float(np.trace(np.linalg.solve(lw.covariance_, np.atleast_2d(np.cov(g, rowvar=False, bias=True)))))


@pytest.mark.parametrize("n,d,c,labels", [(500, 30, 5, None), (60, 150, 4, None), (300, 12, 3, [2, 5, 9]),
                                          (200, 1, 2, None)])
def test_hscore_matches_sklearn_ledoit_wolf(n, d, c, labels):
    x, y = gaussian_classes(n, d, c, sep=0.4, seed=n + c, labels=labels)
    x = x * 2.0 + 1.0
    lw = LedoitWolf().fit(x)
    cov, shrink = px.ledoit_wolf(t(x))
    np.testing.assert_allclose(cov.numpy(), lw.covariance_, rtol=1e-10, atol=1e-12)
    assert shrink == pytest.approx(lw.shrinkage_, rel=1e-9, abs=1e-15)
    want = hscore_numpy(x, y)
    assert px.hscore(t(x), t(y), None, None, 10, 0) == pytest.approx(want, rel=1e-9)
    assert px.hscore(t(x.astype(np.float32)), t(y), n_classes=10) == pytest.approx(
        hscore_numpy(x.astype(np.float32).astype(np.float64), y), rel=1e-9)
    # separated classes score higher than shuffled labels
    assert want > hscore_numpy(x, np.random.default_rng(0).permutation(y))


def test_hscore_constant_backbone_is_zero():
    x = np.repeat(np.array([[1.5, -2.0, 0.25]]), 20, 0)
    y = np.arange(20) % 3
    assert px.hscore(t(x), t(y), n_classes=3) == 0.0
    # a constant column among informative ones is fine (shrinkage keeps the covariance definite)
    x2, y2 = gaussian_classes(100, 6, 3, 0.5, seed=2)
    x2[:, 0] = 7.0
    assert px.hscore(t(x2), t(y2), n_classes=3) == pytest.approx(hscore_numpy(x2, y2), rel=1e-9)


def test_hscore_hand_computed():
    # centred rows (2,0), (0,1) | (-2,0), (0,-1): S = diag(2, 1/2), mu = tr S / 2 = 5/4,
    # ||S||_F^2 = 17/4, sum ||x_i||^4 / n = 34/4 -> Ledoit-Wolf beta = 17/32, delta = 9/16,
    # shrinkage alpha = 17/18; Sigma_alpha = S / 18 + 17/18 * 5/4 I = diag(93, 87) / 72
    x = np.array([[2.0, 0.0], [0.0, 1.0], [-2.0, 0.0], [0.0, -1.0]])
    y = np.array([0, 0, 1, 1])
    lw = LedoitWolf().fit(x)
    assert lw.shrinkage_ == pytest.approx(17 / 18, rel=1e-12)
    np.testing.assert_allclose(lw.covariance_, np.diag([93.0, 87.0]) / 72, rtol=1e-12)
    # class means +-(1, 1/2): Sigma_b = 4 (1, 1/2)(1, 1/2)^T / (n - 1) = [[4, 2], [2, 1]] / 3;
    # (1 - alpha) tr(Sigma_alpha^-1 Sigma_b) = 1/18 * 72/3 * (4/93 + 1/87) = 196/2697
    assert px.hscore(t(x), t(y), n_classes=2) == pytest.approx(196 / 2697, rel=1e-12)
    assert hscore_numpy(x, y) == pytest.approx(196 / 2697, rel=1e-12)
    # the formula before issue 22 (no 1 - alpha, Sigma_b / n): 72 (4/93 + 1/87) / 4 = 7938/8091
    assert hscore_without_shrinkage_factor(x, y) == pytest.approx(7938 / 8091, rel=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_hscore_matches_the_definition_on_random_features(seed):
    rng = np.random.default_rng(1000 + seed)
    n, c = int(rng.integers(20, 400)), int(rng.integers(2, 8))
    d = int(rng.integers(1, 120))
    x, y = gaussian_classes(n, d, c, sep=rng.uniform(0.05, 1.0), seed=seed, mix=rng.uniform(0, 1))
    x = x * rng.uniform(0.1, 10) + rng.normal(size=d)  # neither centred nor unit scale
    assert px.hscore(t(x), t(y), n_classes=c) == pytest.approx(hscore_numpy(x, y), rel=1e-8)


def test_hscore_singular_covariance_uses_the_pseudo_inverse():
    # two samples: Ledoit-Wolf shrinkage 0 and a rank-1 covariance in 3 dimensions
    x = np.array([[1.0, 2.0, -1.0], [0.0, 0.5, 3.0]])
    y = np.array([0, 1])
    assert LedoitWolf().fit(x).shrinkage_ == 0.0
    assert px.hscore(t(x), t(y), n_classes=2) == pytest.approx(hscore_numpy(x, y), rel=1e-9)
    assert hscore_numpy(x, y) == pytest.approx(2.0, rel=1e-9)  # tr(S^+ S) (n / (n - 1)) = 1 x 2


def test_hscore_shrinkage_factor_reorders_backbones():
    """Two backbones on one task: A (60 weakly separated dimensions, Ledoit-Wolf shrinkage ~0.86)
    and B (4 well separated ones, shrinkage ~0.16).  Without the (1 - alpha) factor A ranks first;
    the regularized H-score ranks B first."""
    y = np.arange(90) % 3

    def features(d, sep, seed):
        rng = np.random.default_rng(seed)
        return (rng.normal(size=(3, d)) * sep)[y] + rng.normal(size=(90, d))

    a, b = features(60, 0.35, 1), features(4, 0.9, 2)
    alpha_a, alpha_b = LedoitWolf().fit(a).shrinkage_, LedoitWolf().fit(b).shrinkage_
    assert alpha_a > 0.8 and alpha_b < 0.2
    assert hscore_without_shrinkage_factor(a, y) > 2 * hscore_without_shrinkage_factor(b, y)
    assert hscore_numpy(a, y) < hscore_numpy(b, y)
    got_a, got_b = px.hscore(t(a), t(y), n_classes=3), px.hscore(t(b), t(y), n_classes=3)
    assert got_a == pytest.approx(hscore_numpy(a, y), rel=1e-9)
    assert got_b == pytest.approx(hscore_numpy(b, y), rel=1e-9)
    assert got_a < got_b


# ------------------------------------------------------------------------------------------
# shared behaviour: inputs, validation, failures


def small_task(seed=0):
    x, y = gaussian_classes(120, 10, 3, 0.5, seed)
    return split(x.astype(np.float32), y, 80)


@pytest.mark.parametrize("name", list(PROXIES))
def test_inputs_numpy_float16_and_seed(name):
    fn = PROXIES[name]
    xtr, ytr, xte, yte = small_task()
    base = fn(t(xtr), t(ytr), t(xte), t(yte), 3, 0)
    assert math.isfinite(base)
    assert fn(xtr, ytr, xte, yte, 3, 0) == base  # numpy in
    assert fn(t(xtr), t(ytr), t(xte), t(yte), 3, 7) == base  # deterministic: the seed plays no part
    h = [t(a.astype(np.float16)) for a in (xtr, xte)]
    f = [a.float() for a in h]
    assert fn(h[0], t(ytr), h[1], t(yte), 3, 0) == pytest.approx(fn(f[0], t(ytr), f[1], t(yte), 3, 0), rel=1e-6)


@pytest.mark.parametrize("name", list(PROXIES))
def test_bad_inputs_raise_clear_value_errors(name):
    fn = PROXIES[name]
    xtr, ytr, xte, yte = (t(a) for a in small_task())
    cases = [
        ((xtr, ytr[:-1], xte, yte, 3), "differ in length"),
        ((xtr[:0], ytr[:0], xte, yte, 3), "non-empty train split"),
        ((xtr[0], ytr, xte, yte, 3), "2-D"),
        ((xtr, ytr + 5, xte, yte, 3), r"labels must lie in \[0, 3\)"),
        ((xtr, -ytr, xte, yte, 3), "labels must lie"),
        ((torch.full_like(xtr, math.nan), ytr, xte, yte, 3), "non-finite"),
        ((xtr, ytr.float() + 0.5, xte, yte, 3), "integer class indices"),
    ]
    if name in ("knn", "ridge"):
        cases += [((xtr, ytr, xte, yte[:-1], 3), "differ in length"),
                  ((xtr, ytr, xte[:0], yte[:0], 3), "non-empty test split"),
                  ((xtr, ytr, xte[:, :5], yte, 3), "differ in dimension"),
                  ((xtr, ytr, None, None, 3), "test_x is required")]
    if name != "knn":  # one class: no classifier to assess (kNN's vote is still defined)
        cases.append(((xtr, torch.zeros_like(ytr), xte, yte, 3), "at least 2 classes"))
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            fn(*args, seed=0)


def test_knn_one_class_is_defined():
    xtr, _, xte, yte = (t(a) for a in small_task())
    want = (yte == 0).double().mean().item()
    assert px.knn(xtr, torch.zeros(len(xtr), dtype=torch.long), xte, yte, 3, 0) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("name", ["ridge", "logme", "hscore"])
def test_overflowing_features_fail_clearly(name):
    xtr, ytr, xte, yte = small_task()
    big = t(xtr.astype(np.float64) * 1e160)
    with pytest.raises(FloatingPointError, match="not finite"):
        PROXIES[name](big, t(ytr), t(xte.astype(np.float64)), t(yte), 3, 0)


def test_non_finite_score_raises():
    with pytest.raises(FloatingPointError, match="knn score is nan"):
        px._finite("knn", float("nan"))
    with pytest.raises(FloatingPointError, match="inf"):
        px._finite("logme", torch.tensor(math.inf))


def test_logme_non_convergence_is_an_error():
    f, y = features_for_logme(100, 10, 3, seed=1)
    with pytest.raises(RuntimeError, match="did not converge"):
        px.logme_evidence(t(f), t(y), max_iter=2)


@pytest.mark.parametrize("n,d", [(40, 100), (30, 513), (25, 1030)])
def test_gram_blocks_equal_matmul(n, d):
    a = np.random.default_rng(d).normal(size=(n, d))
    g = px._gram(t(a)).numpy()
    np.testing.assert_allclose(g, a.T @ a, rtol=1e-12, atol=1e-12)
    if d > 512:
        assert np.array_equal(g, g.T)  # the blocked path mirrors its upper triangle
    np.testing.assert_allclose(px._gram(t(a).T).numpy(), a @ a.T, rtol=1e-12, atol=1e-12)


def test_wide_features_use_the_block_gram():
    # d > 512: the blocked X^T X in hscore and logme; X X^T (n > 512) in ridge's gram mode
    x, y = gaussian_classes(600, 530, 3, 0.3, seed=9)
    assert px.hscore(t(x), t(y), n_classes=3) == pytest.approx(hscore_numpy(x, y), rel=1e-9)
    f = x * 0.3
    ev, alpha, beta = px.logme_evidence(t(f), t(y))  # n = 600 > d = 530: blocked F^T F
    for cls in range(3):
        yc = (y == cls).astype(np.float64)
        assert ev[cls].item() == pytest.approx(dense_log_marginal(f, yc, alpha[cls].item(), beta[cls].item()),
                                               rel=1e-9, abs=1e-9)
    xtr, ytr, xte, yte = split(x, y, 520)  # n = 520 <= d = 530: gram mode, blocked X X^T
    want, want_alpha, _ = sklearn_ridge(xtr, ytr, xte)
    pred, _, alpha, _ = px.ridge_predict(t(xtr), t(ytr), t(xte), t(yte), 3)
    assert alpha == want_alpha
    np.testing.assert_array_equal(pred.numpy(), want)
