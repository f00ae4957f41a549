"""Cheap proxy evaluators (eps~): score a backbone's frozen features without training a head.

Every proxy has the evaluator signature ``fn(train_x, train_y, test_x, test_y, n_classes, seed)``,
runs with torch on the device the features live on (CPU or CUDA: nothing device-specific) and
returns a float, higher is better.  ``seed`` is accepted for the interface; every proxy here is
deterministic.  Inputs are validated (``ValueError`` naming what was expected); a score that is
not finite raises ``FloatingPointError`` rather than being returned (the sweep records a failed
row).  They are registered in :data:`precompute.evaluators.EVALUATORS`.

* :func:`knn` (needs the test split) — k-nearest-neighbour test accuracy with a cosine,
  temperature-weighted vote.
* :func:`ridge` (needs the test split) — the closed-form linear probe of scikit-learn's
  ``RidgeClassifierCV(alphas=np.logspace(-6, 6, 25))`` on standardised features; test accuracy.
* :func:`logme` (train split only) — LogME evidence (You et al., ICML 2021), with the log-alpha
  term over the rank ``min(n, d)`` of the thin SVD, correct when samples < dimension: the
  published ``_fit_fixed_point`` (thuml/LogME ``LogME.py``) with the fix of its issue #23 / pull
  request #24, whose ranking of backbones it reproduces (Kendall tau 1, tests/test_proxies.py).
* :func:`hscore` (train split only) — the regularized H-score ``tr(Sigma_alpha^-1 (1 - alpha)
  Sigma_b)`` of Ibrahim, Ponomareva and Mazumder ("Newer is not always better: Rethinking
  transferability metrics, their peculiarities, stability and performance", ECML-PKDD 2022):
  ``Sigma_alpha`` the Ledoit-Wolf covariance with shrinkage ``alpha``, ``Sigma_b`` the covariance
  of the class-conditional means.  Conventions as the published implementation,
  ``regularized_h_score`` in thuml/Transfer-Learning-Library ``tllib/ranking/hscore.py`` (added
  by its pull request #184, the paper's estimator): float64 features, centred but not
  standardised; scikit-learn's ``LedoitWolf`` (biased ``X^T X / n`` empirical part) for
  ``Sigma_alpha``; ``np.cov``'s default ``n - 1`` normalisation for ``Sigma_b``; numpy's
  ``pinv(rcond=1e-15)`` (here a Cholesky solve, the pseudo-inverse only when it is singular).
  Until issue 22 the ``(1 - alpha)`` factor was missing, which reordered backbones whose
  shrinkages differ.

A constant backbone (every feature row equal) carries no information; each proxy then returns
the score of a predictor without information instead of failing inside linear algebra:
``knn`` and ``ridge`` predict the train split's majority class, ``hscore`` is 0 (its minimum),
``logme`` is the evidence of the targets under pure noise (finite, and low).
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from precompute.scores import as_tensor

#: ridge's alpha grid (scikit-learn's RidgeClassifierCV alphas of the issue), ascending
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-6, 6, 25))
#: kNN protocol, one place
KNN_K = 20
KNN_TEMPERATURE = 0.07
#: LogME fixed point: the published division guard, our stopping rule and iteration cap
LOGME_EPSILON = 1e-5
LOGME_TOL = 1e-6
LOGME_MAX_ITER = 10_000
#: elements of one (chunk x n_train) block kept in memory at a time
_BLOCK_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------------------------
# input checks shared by the four proxies


def _as_tensor(x, name: str, device: torch.device | None = None) -> torch.Tensor:
    if x is None:
        raise ValueError(f"{name} is required")
    return as_tensor(x, device)


def _features(name: str, what: str, x, device: torch.device | None = None) -> torch.Tensor:
    t = _as_tensor(x, what, device)
    if t.ndim != 2:
        raise ValueError(f"{name}: {what} must be a 2-D (samples, features) array, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} needs a non-empty {what.split('_')[0]} split, got 0 samples")
    if t.shape[1] == 0:
        raise ValueError(f"{name}: {what} has 0 feature columns")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
        raise ValueError(f"{name}: {what} must be numeric, got {t.dtype}")
    if t.is_floating_point() and not _all_finite(t):
        raise ValueError(f"{name}: {what} contains non-finite values (NaN or inf)")
    return t


def _all_finite(t: torch.Tensor) -> bool:
    """Every element finite.  A NaN or an inf makes the float64 sum non-finite, and a sum of
    finite float32/float16 values cannot overflow float64: one reduction instead of an
    elementwise mask; the exact check runs only when the sum is not finite (float64 overflow)."""
    if math.isfinite(float(t.sum(dtype=torch.float64))):
        return True
    return bool(torch.isfinite(t).all())


def _labels(name: str, what: str, y, n: int, n_classes: int | None, device: torch.device) -> torch.Tensor:
    t = _as_tensor(y, what, device)
    if t.ndim != 1:
        raise ValueError(f"{name}: {what} must be 1-D, got shape {tuple(t.shape)}")
    if len(t) != n:
        raise ValueError(f"{name}: features and labels differ in length ({n} rows, {len(t)} labels in {what})")
    if t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise ValueError(f"{name}: {what} must be integer class indices")
    elif t.dtype == torch.bool:
        raise ValueError(f"{name}: {what} must be integer class indices, got bool")
    t = t.long()
    lo = int(t.min())
    hi = int(t.max())
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        raise ValueError(f"{name}: labels must lie in [0, {n_classes}), got [{lo}, {hi}] in {what}")
    return t


def _split(name: str, train_x, train_y, test_x, test_y, n_classes, *, needs_test: bool, min_classes: int):
    x = _features(name, "train_x", train_x)
    dev = x.device
    if n_classes is not None and int(n_classes) < 1:
        raise ValueError(f"{name}: n_classes must be >= 1, got {n_classes}")
    y = _labels(name, "train_y", train_y, len(x), n_classes, dev)
    classes = torch.unique(y)  # sorted
    if len(classes) < min_classes:
        raise ValueError(f"{name} needs at least {min_classes} classes in the train split, got {len(classes)}")
    if not needs_test:
        return x, y, None, None, classes
    xt = _features(name, "test_x", test_x, dev)
    if xt.shape[1] != x.shape[1]:
        raise ValueError(f"{name}: train and test features differ in dimension ({x.shape[1]} vs {xt.shape[1]})")
    yt = _labels(name, "test_y", test_y, len(xt), n_classes, dev)
    return x, y, xt, yt, classes


def _finite(name: str, value: torch.Tensor | float) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise FloatingPointError(f"{name} score is {v}")
    return v


@contextlib.contextmanager
def single_thread(device: torch.device):
    """One intra-op thread on CPU for the duration, the setting restored afterwards (a no-op on
    other devices).  For work too small or too latency-bound to share: eigh's tridiagonal
    reduction (on a busy 2-core machine MKL's threaded eigh of a 768 x 768 matrix was 4x slower
    than the single-threaded one, 1.1 s vs 0.29 s) and the MLP head's tiny ops (intra-op threads
    only add synchronisation: 10x slower on a loaded 2-core machine).  Matmuls elsewhere keep
    the default."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _eigh(name: str, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """eigh of a Gram matrix, after checking it is finite (features near the float64 range
    overflow it; LAPACK would fail with an unhelpful message)."""
    _finite_matrix(name, a)
    with single_thread(a.device):
        return torch.linalg.eigh(a)


def _finite_matrix(name: str, a: torch.Tensor) -> None:
    if not _all_finite(a):
        raise FloatingPointError(f"{name}: the features' Gram matrix is not finite (values too large for float64)")


def _gram(a: torch.Tensor, block: int = 256) -> torch.Tensor:
    """``a^T a`` from the blocks on and above the diagonal only, mirrored (exactly symmetric; a
    GEMM computes both triangles and torch has no SYRK): ~35% less CPU time for a 4000 x 768
    float64 ``a``.  Up to ``2 * block`` columns: one GEMM."""
    d = a.shape[1]
    if d <= 2 * block:
        return a.T @ a
    g = torch.empty(d, d, dtype=a.dtype, device=a.device)
    for s in range(0, d, block):
        e = min(s + block, d)
        g[s:e, s:] = a[:, s:e].T @ a[:, s:]  # rows s:e, columns s:d
    return g.triu() + g.triu(1).T


def _is_constant(x: torch.Tensor) -> bool:
    """Every row equal (bitwise) to the first."""
    return bool((x == x[:1]).all())


# --------------------------------------------------------------------------------------------
# kNN


def knn(
    train_x,
    train_y,
    test_x,
    test_y,
    n_classes: int | None = None,
    seed: int = 0,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    chunk: int | None = None,
) -> float:
    """k-nearest-neighbour top-1 accuracy of the test split on the train split (the predictions
    of :func:`knn_predict`)."""
    pred, yt = knn_predict(train_x, train_y, test_x, test_y, n_classes, k=k, temperature=temperature,
                           chunk=chunk)
    return _finite("knn", (pred == yt).sum().item() / len(yt))


def knn_predict(train_x, train_y, test_x, test_y, n_classes: int | None = None, *, k: int = KNN_K,
                temperature: float = KNN_TEMPERATURE, chunk: int | None = None):
    """``(predicted labels, test labels)`` of the kNN vote, tensors on the features' device.

    Features are centred by the train mean and L2-normalised (a row equal to the mean stays the
    zero vector: similarity 0 to everything); similarity is the cosine (a dot product, float32);
    the ``min(k, n_train)`` most similar train rows vote, each for its class with weight
    ``exp(similarity / temperature)`` (``temperature=math.inf``: uniform weights); the class with
    the largest vote wins, ties to the lower class index.  Train rows tied with the k-th
    similarity all vote (R's ``class::knn`` convention), so the result never depends on the order
    of the rows; with constant features every train row ties and the vote is the train split's
    majority class.  Memory O(chunk x n_train): test rows go in chunks."""
    name = "knn"
    x, y, xt, yt, _ = _split(name, train_x, train_y, test_x, test_y, n_classes, needs_test=True, min_classes=1)
    if int(k) < 1:
        raise ValueError(f"knn: k must be >= 1, got {k}")
    if not temperature > 0:
        raise ValueError(f"knn: temperature must be > 0, got {temperature}")
    n = len(x)
    n_bins = int(n_classes) if n_classes is not None else int(max(int(y.max()), int(yt.max())) + 1)
    kk = min(int(k), n)
    x = x.to(torch.float32)
    xt = xt.to(torch.float32)
    # float64 accumulation: the mean of bitwise-equal rows is exactly that row, so a constant
    # backbone centres to exact zeros (not rounding noise blown up by the normalisation)
    mean = x.sum(0, dtype=torch.float64).div_(n).to(torch.float32)
    xn = torch.nn.functional.normalize(x - mean, dim=1)
    onehot = torch.nn.functional.one_hot(y, n_bins).to(torch.float32)  # (n, C)
    if chunk is None:
        chunk = max(1, _BLOCK_ELEMENTS // n)
    preds = []
    for s in range(0, len(xt), chunk):
        q = torch.nn.functional.normalize(xt[s:s + chunk] - mean, dim=1)
        sim = q @ xn.T  # (c, n)
        top = torch.topk(sim, kk, dim=1, largest=True, sorted=True).values
        kth = top[:, -1:]
        # weights relative to each row's best neighbour: the common factor exp(max/T) does not
        # change the vote's argmax and keeps small temperatures from overflowing float32
        w = torch.exp((sim - top[:, :1]) / temperature) if math.isfinite(temperature) else torch.ones_like(sim)
        w = torch.where(sim >= kth, w, torch.zeros_like(w))
        votes = w @ onehot  # (c, C)
        preds.append(votes.argmax(1))  # first maximum: ties go to the lower class index
        del sim, w
    return torch.cat(preds), yt


# --------------------------------------------------------------------------------------------
# ridge probe


def ridge(
    train_x,
    train_y,
    test_x,
    test_y,
    n_classes: int | None = None,
    seed: int = 0,
    alphas=RIDGE_ALPHAS,
    chunk: int | None = None,
) -> float:
    """Test accuracy of the ridge probe of :func:`ridge_predict`."""
    pred, yt, _, _ = ridge_predict(train_x, train_y, test_x, test_y, n_classes, alphas=alphas, chunk=chunk)
    return _finite("ridge", (pred == yt).sum().item() / len(yt))


def ridge_predict(train_x, train_y, test_x, test_y, n_classes: int | None = None, *, alphas=RIDGE_ALPHAS,
                  chunk: int | None = None):
    """``(predicted labels, test labels, chosen alpha, mean squared leave-one-out error per alpha)``
    of a ridge classifier equal to scikit-learn's
    ``make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=alphas)).fit(train).score(test)``.

    * features standardised with the train mean and (population) standard deviation; a feature
      scikit-learn deems constant (variance within float64 rounding of 0) keeps scale 1;
    * targets: +1 for the sample's class, -1 elsewhere, one column per class present in the train
      split; with 2 classes ONE column (+1 for the larger label), as scikit-learn's LabelBinarizer;
    * intercept: features and targets centred; alpha chosen by scikit-learn's efficient
      leave-one-out errors (``_RidgeGCV``, including its intercept correction of the leverage),
      minimising their mean square over samples and target columns; ties between alphas go to
      the first (smallest) alpha;
    * ONE eigendecomposition (float64): of ``X X^T`` when ``n <= d`` (scikit-learn's "gram"
      mode), else of ``X^T X`` ("cov"), after which every alpha costs O(n d C);
    * prediction: the argmax of the decision values (2 classes: the larger label where the one
      decision value is > 0)."""
    name = "ridge"
    x, y, xt, yt, classes = _split(name, train_x, train_y, test_x, test_y, n_classes,
                                   needs_test=True, min_classes=2)
    alphas_t = torch.as_tensor(np.asarray(alphas, dtype=np.float64).reshape(-1))
    if len(alphas_t) == 0 or not bool((alphas_t > 0).all()) or not bool(torch.isfinite(alphas_t).all()):
        raise ValueError(f"ridge: alphas must be a non-empty list of finite values > 0, got {alphas}")
    dev = x.device
    f64 = torch.float64
    alphas_t = alphas_t.to(dev)
    n, d = x.shape
    # StandardScaler (population variance; scikit-learn's near-constant rule), in place on float64 copies
    z = x.to(f64, copy=True)
    zt = xt.to(f64, copy=True)
    var, mean = torch.var_mean(z, dim=0, correction=0)
    eps = torch.finfo(f64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = torch.where(constant, torch.ones_like(var), var.sqrt())
    z.sub_(mean).div_(scale)
    zt.sub_(mean).div_(scale)
    # LabelBinarizer(neg_label=-1, pos_label=1)
    pos = torch.searchsorted(classes, y)
    n_cls = len(classes)
    big_y = torch.full((n, n_cls), -1.0, dtype=f64, device=dev)
    big_y[torch.arange(n, device=dev), pos] = 1.0
    if n_cls == 2:
        big_y = big_y[:, 1:]
    # _preprocess_data: centre X (already ~0 after standardising, as in scikit-learn) and Y
    x_off = z.mean(0)
    z.sub_(x_off)
    zt.sub_(x_off)  # the decision function's "- x_offset @ coef" term, applied to the features
    y_off = big_y.mean(0)
    yc = big_y - y_off
    ones = torch.ones(n, dtype=f64, device=dev)
    n_a, n_t = len(alphas_t), yc.shape[1]
    if chunk is None:  # rows per block: a block holds (rows x n) in gram mode, (rows x d) in cov mode
        chunk = max(1, _BLOCK_ELEMENTS // max(min(n, d), n_a * n_t))
    sq_err = torch.zeros(n_a, dtype=f64, device=dev)
    if n <= d:  # gram mode: K = Z Z^T = Q diag(w) Q^T
        w, q = _eigh(name, _gram(z.T))
        qt_y = q.T @ yc  # (n, T)
        qt_1 = q.T @ ones  # (n,)
        dinv = 1.0 / (w[:, None] + alphas_t[None, :])  # (n, A)
        d_qt_y = (dinv[:, :, None] * qt_y[:, None, :]).reshape(n, -1)  # (n, A*T)
        for s in range(0, n, chunk):
            qr = q[s:s + chunk]  # (c, n)
            c = (qr @ d_qt_y).reshape(-1, n_a, n_t)  # G^-1 y per alpha
            diag = (qr * qr) @ dinv  # (c, A)
            diag = diag - (qr @ (dinv * qt_1[:, None])) / n  # intercept correction, sqrt_sw = 1
            sq_err += ((c / diag[:, :, None]) ** 2).sum(dim=(0, 2))
        best = _first_best(sq_err / (n * n_t), name)
        c_best = q @ (dinv[:, best, None] * qt_y)  # (n, T)
        coef = z.T @ c_best  # (d, T)
    else:  # cov mode: C = Z^T Z = V diag(w) V^T
        w, v = _eigh(name, _gram(z))
        vt_xt = v.T @ (torch.cat([yc, ones[:, None]], 1).T @ z).T  # (d, T + 1): V^T X^T [y 1]
        vt_xty, vt_xt1 = vt_xt[:, :n_t], vt_xt[:, n_t]
        dinv = 1.0 / (w[:, None] + alphas_t[None, :])  # (d, A)
        d_vt_xty = (dinv[:, :, None] * vt_xty[:, None, :]).reshape(d, -1)  # (d, A*T)
        # one GEMM per block for X H^-1 X^T y (A*T columns) and X H^-1 X^T 1 (A columns)
        rhs = torch.cat([d_vt_xty, dinv * vt_xt1[:, None]], 1)
        for s in range(0, n, chunk):
            p = z[s:s + chunk] @ v  # (c, d)
            both = p @ rhs
            fitted = both[:, :n_a * n_t].reshape(-1, n_a, n_t)  # X H^-1 X^T y per alpha
            alpha_c = yc[s:s + chunk, None, :] - fitted
            alpha_d = 1.0 - (p * p) @ dinv  # (c, A)
            alpha_d = alpha_d - (1.0 - both[:, n_a * n_t:]) / n  # intercept correction
            sq_err += ((alpha_c / alpha_d[:, :, None]) ** 2).sum(dim=(0, 2))
            del p, both, fitted, alpha_c
        best = _first_best(sq_err / (n * n_t), name)
        coef = v @ (dinv[:, best, None] * vt_xty)  # (d, T)
    decision = zt @ coef + y_off  # (m, T)
    if n_cls == 2:
        pred = classes[(decision[:, 0] > 0).long()]
    else:
        pred = classes[decision.argmax(1)]
    return pred, yt, float(alphas_t[best]), sq_err / (n * n_t)


def _first_best(mse: torch.Tensor, name: str) -> int:
    """Index of the smallest mean squared LOO error; the first one on ties (scikit-learn keeps
    an alpha only when its score is strictly better than every earlier one)."""
    if not bool(torch.isfinite(mse).all()):
        raise FloatingPointError(f"{name}: leave-one-out errors are not finite ({mse.tolist()})")
    return int(torch.argmin(mse))  # argmin returns the first minimal index


# --------------------------------------------------------------------------------------------
# LogME


def logme_evidence(train_x, train_y, tol: float = LOGME_TOL, max_iter: int = LOGME_MAX_ITER,
                   epsilon: float = LOGME_EPSILON):
    """LogME per class present in the train split: ``(evidence / n, alpha, beta)``, float64
    tensors of length C (classes in ascending label order).

    Model (You et al., ICML 2021): for class c, ``y = 1[label == c]`` is ``F w + noise``,
    ``w ~ N(0, alpha^-1 I_d)``, noise ``~ N(0, beta^-1 I_n)``, ``F`` the features as given (no
    centring or scaling, as published).  With the thin SVD ``F = U S V^T`` (rank ``k = min(n, d)``
    values ``sigma = s^2``, from one ``eigh`` of ``F^T F`` or ``F F^T``, whichever is smaller;
    eigenvalues within float64 rounding of 0 are set to 0) and ``x = U^T y``:

    * fixed point from ``alpha = beta = 1``: ``gamma = sum beta sigma / (alpha + beta sigma)``,
      ``m2 = ||m||^2``, ``res2 = ||y - F m||^2`` at the posterior mean ``m``,
      ``alpha <- gamma / (m2 + eps)``, ``beta <- (n - gamma) / (res2 + eps)`` (eps = 1e-5, the
      published guard), until both change by a relative ``< tol``;
    * evidence at the final ``alpha, beta`` (``m2``, ``res2`` recomputed there), exactly the log
      marginal likelihood ``log N(y; 0, alpha^-1 F F^T + beta^-1 I)``:
      ``n/2 log beta - n/2 log 2 pi - beta/2 res2 - alpha/2 m2 - 1/2 sum_{i<=k} log(1 + beta sigma_i / alpha)``.
      The last term is ``k/2 log alpha - 1/2 sum log(alpha + beta sigma_i)``: the published code
      writes ``d/2 log alpha`` there with the ``k`` values of its truncated SVD, wrong by
      ``(d - k)/2 log alpha`` whenever ``k < d``: fewer samples than dimensions (or singular
      values below its 1e-10 cut).

    The published code stops at a relative change of ``alpha / beta`` <= 1e-3 or after 11 steps
    and evaluates the evidence with the previous step's ``m2``, ``res2``; iterated to convergence
    it reaches the same ``alpha, beta`` as this."""
    x, y, _, _, classes = _split("logme", train_x, train_y, None, None, None, needs_test=False, min_classes=1)
    return _logme(x, y, classes, tol, max_iter, epsilon)


def _logme(x: torch.Tensor, y: torch.Tensor, classes: torch.Tensor, tol: float, max_iter: int, epsilon: float):
    name = "logme"
    f = x.to(torch.float64)
    dev = f.device
    n, d = f.shape
    yy = (y[:, None] == classes[None, :]).to(torch.float64)  # (n, C) 0/1 targets
    y2 = yy.square().sum(0)  # (C,)
    eps64 = torch.finfo(torch.float64).eps
    if n > d:
        sigma, v = _eigh(name, _gram(f))  # k = d
        keep = sigma > sigma.max().clamp_min(0) * max(n, d) * eps64
        sigma = torch.where(keep, sigma, torch.zeros_like(sigma))
        # x = U^T y with U = F V / s: only defined where s > 0; the rest of y is residual
        proj = v.T @ (yy.T @ f).T  # (d, C) = s * x
        xs = torch.where(keep[:, None], proj / sigma.clamp_min(1e-300).sqrt()[:, None], torch.zeros_like(proj))
        res_x2 = (y2 - xs.square().sum(0)).clamp_min(0.0)
    else:
        sigma, u = _eigh(name, _gram(f.T))  # k = n: U is a complete basis of R^n
        keep = sigma > sigma.max().clamp_min(0) * max(n, d) * eps64
        sigma = torch.where(keep, sigma, torch.zeros_like(sigma))
        xs = u.T @ yy  # (n, C)
        res_x2 = torch.zeros_like(y2)
    x2 = xs.square()  # (k, C)
    sig = sigma[:, None]
    pos = keep[:, None]

    def terms(alpha, beta):
        den = alpha + beta * sig  # (k, C)
        gamma = torch.where(pos, beta * sig / den, 0.0).sum(0)
        m2 = torch.where(pos, beta.square() * sig * x2 / den.square(), 0.0).sum(0)
        shrink = torch.where(pos, alpha / den, 1.0)  # residual factor; 1 where sigma = 0
        res2 = (x2 * shrink.square()).sum(0) + res_x2
        return gamma, m2, res2

    n_c = len(classes)
    alpha = torch.ones(n_c, dtype=torch.float64, device=dev)
    beta = torch.ones(n_c, dtype=torch.float64, device=dev)
    active = torch.ones(n_c, dtype=torch.bool, device=dev)
    for _ in range(max_iter):
        gamma, m2, res2 = terms(alpha, beta)
        new_alpha = gamma / (m2 + epsilon)
        new_beta = (n - gamma) / (res2 + epsilon)
        change = torch.maximum(_relative_change(new_alpha, alpha), _relative_change(new_beta, beta))
        alpha = torch.where(active, new_alpha, alpha)
        beta = torch.where(active, new_beta, beta)
        active = active & ~(change < tol)
        if not bool(active.any()):
            break
    else:
        raise RuntimeError(f"logme: the alpha/beta fixed point did not converge to a relative change "
                           f"< {tol} in {max_iter} iterations")
    _, m2, res2 = terms(alpha, beta)
    logdet = torch.where(pos, torch.log1p(beta * sig / torch.where(pos, alpha, 1.0)), 0.0).sum(0)
    evidence = (n / 2 * torch.log(beta) - n / 2 * math.log(2 * math.pi) - beta / 2 * res2
                - alpha / 2 * m2 - logdet / 2)
    return evidence / n, alpha, beta


def _relative_change(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """|new - old| / |old|, 0 where the two are equal (alpha stays 0 for all-zero features)."""
    return torch.where(new == old, torch.zeros_like(old), (new - old).abs() / old.abs())


def logme(train_x, train_y, test_x=None, test_y=None, n_classes: int | None = None, seed: int = 0) -> float:
    """LogME score: the mean over the classes present in the train split of the per-class
    evidence / n (see :func:`logme_evidence`).  Needs >= 2 classes; no test split.  A class
    absent from the train split is left out (its all-zero target would carry no information)."""
    x, y, _, _, classes = _split("logme", train_x, train_y, None, None, n_classes, needs_test=False, min_classes=2)
    evidence, _, _ = _logme(x, y, classes, LOGME_TOL, LOGME_MAX_ITER, LOGME_EPSILON)
    return _finite("logme", evidence.mean())


# --------------------------------------------------------------------------------------------
# H-score


def ledoit_wolf(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit-Wolf shrunk covariance of ``x`` (rows = samples) and its shrinkage, as
    scikit-learn's ``LedoitWolf().fit(x)`` (centres ``x``; biased empirical covariance ``X^T X / n``;
    shrinkage towards ``mu I``, ``mu = tr / d``).  float64, on ``x``'s device, one ``X^T X``."""
    xc = x.to(torch.float64)
    xc = xc - xc.mean(0)
    n, d = xc.shape
    emp = _gram(xc) / n
    _finite_matrix("hscore", emp)
    if d == 1:
        return emp, 0.0
    sq_norms = xc.square().sum(1)
    trace = torch.diagonal(emp).sum()
    mu = trace / d
    beta_ = sq_norms.square().sum()  # = sum of the entries of X2^T X2, X2 = X**2
    delta_ = emp.square().sum()  # = sum of the squared entries of X^T X, / n^2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace + d * mu * mu) / d
    beta = torch.minimum(beta, delta)
    shrinkage = 0.0 if float(beta) == 0.0 else float(beta / delta)
    cov = (1.0 - shrinkage) * emp
    cov.diagonal().add_(shrinkage * mu)
    return cov, shrinkage


def hscore(train_x, train_y, test_x=None, test_y=None, n_classes: int | None = None, seed: int = 0) -> float:
    """Regularized H-score ``tr(Sigma_alpha^-1 (1 - alpha) Sigma_b)`` of the train split (Ibrahim,
    Ponomareva, Mazumder, ECML-PKDD 2022; H-score of Bao et al. 2019), with the conventions of the
    published ``regularized_h_score`` (see the module docstring):

    * ``Sigma_alpha`` — the Ledoit-Wolf covariance of the features (:func:`ledoit_wolf`: centred,
      not standardised, biased empirical part ``X^T X / n``), ``alpha`` its shrinkage;
    * ``Sigma_b`` — the covariance of the class-conditional means, each sample replaced by its
      class mean, with numpy's default ``n - 1`` normalisation: ``sum_c n_c (mu_c - mu)(mu_c - mu)^T
      / (n - 1)``;
    * ``(1 - alpha)`` — the factor that makes the score the H-score of the shrunk features'
      between-class part; it changes the ranking of backbones whose shrinkages differ.

    Cholesky solve in float64; a singular ``Sigma_alpha`` (shrinkage 0, rank-deficient features,
    e.g. two samples) falls back to the pseudo-inverse with the reference's cut-off (eigenvalues
    <= 1e-15 x the largest dropped).  Needs >= 2 classes.  Constant features: 0."""
    name = "hscore"
    x, y, _, _, classes = _split(name, train_x, train_y, None, None, n_classes, needs_test=False, min_classes=2)
    if _is_constant(x):
        return 0.0
    f = x.to(torch.float64)
    n, d = f.shape
    cov, shrinkage = ledoit_wolf(f)
    inv = torch.searchsorted(classes, y)
    counts = torch.bincount(inv, minlength=len(classes)).to(torch.float64)
    sums = torch.zeros(len(classes), d, dtype=torch.float64, device=f.device).index_add_(0, inv, f)
    delta = sums / counts[:, None] - f.mean(0)  # (C, d): class mean - overall mean
    # tr(Sigma^-1 Sigma_b) = sum_c n_c delta_c^T Sigma^-1 delta_c / (n - 1)
    quad = _inverse_quadratic(cov, delta.T)  # (C,): delta_c^T Sigma^-1 delta_c
    return _finite(name, (1.0 - shrinkage) * (quad * counts).sum() / (n - 1))


def _inverse_quadratic(cov: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``v_j^T cov^+ v_j`` per column ``j`` of ``v`` (d, m): a Cholesky solve when ``cov`` is
    positive definite, else numpy's ``pinv(cov, rcond=1e-15)`` through ``eigh`` (``cov`` is
    symmetric positive semi-definite: its singular values are its eigenvalues)."""
    with single_thread(cov.device):
        chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) == 0:
        half = torch.linalg.solve_triangular(chol, v, upper=False)  # L^-1 v
        return half.square().sum(0)
    w, q = _eigh("hscore", cov)
    keep = w.abs() > 1e-15 * w.abs().max()
    proj = q.T @ v  # (d, m)
    return torch.where(keep[:, None], proj.square() / torch.where(keep, w, 1.0)[:, None], 0.0).sum(0)
