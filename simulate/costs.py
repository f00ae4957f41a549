"""Costs for your hardware (issue #16): an oracle's seconds predicted for another device from a
sample of backbones timed there.

An oracle's ``seconds`` were measured on the device that built it.  A user with another device
times a few backbones of the pool on it (``precompute estimate --out FILE``) and the simulator
predicts every backbone's cost there (``simulate --costs-from FILE``):

1. **The sample** (:func:`read_costs`): a CSV or Parquet file with ``backbone, seconds`` per
   timed backbone — ``precompute estimate``'s per-backbone seconds (load + one extraction of every
   image the sweep extracts + every evaluator fit of every seed and fraction).  Optional columns:
   ``status`` (rows not ``ok`` are left out, and counted), ``load_seconds``, ``extract_seconds``,
   ``fit_seconds``, ``device``, ``dataset``.
2. **The oracle's own per-backbone cost** (:func:`oracle_costs`), the same quantity read off its
   rows: ``seconds_oracle`` = the largest ``load_seconds`` + the largest ``extract_seconds`` (the
   extraction of every image) + the sum of ``fit_seconds`` over the backbone's ok rows; where a
   row's breakdown is unknown, the largest row ``seconds`` (one cold evaluation).  A ``timm:<set>``
   oracle has one row per backbone: its ``seconds``.  Time the sample with the oracle's protocol
   (``--fractions``, ``--seeds``, ``--evaluators``, ``--input-size``); a uniform difference is
   absorbed by the fit's intercept, any other is not.
3. **The fit** (:func:`fit_costs`), on the log ratio ``y = log(target / seconds_oracle)`` of the
   sampled backbones found in the oracle:

   * the **constant ratio** (the baseline): ``target = r × seconds_oracle`` with ``r`` the median
     of ``target / seconds_oracle`` over the sample;
   * a **log-linear ladder** fitted by ordinary least squares, each rung adding one log feature:
     ``y = a + c₁ log seconds_oracle`` (a power law in the oracle's seconds), then ``+ c₂ log
     gmacs`` (seconds per GMAC: how compute- or memory-bound a backbone is on the oracle's
     device), ``+ c₃ log params_m``, ``+ c₄ log input_size``, ``+ c₅ log feature_dim`` (the
     heads' cost).  In the form of the issue, ``log target = a + b log seconds_oracle + Σ c log x``
     with ``b = 1 + c₁``.  A feature is skipped when a sampled backbone lacks it (null or not
     positive) or it is constant over the sample; a rung needs at least 3 more sampled backbones
     than coefficients.

   Each model's **leave-one-out error** is the median over the sample of ``|log(predicted /
   actual)|``, the backbone predicted by the model refitted without it (OLS: the exact closed form
   ``e_i / (1 - h_ii)``; the constant: the median ratio of the others).  The rung with the lowest
   LOO error is chosen when it beats the constant ratio's (strictly); else the constant ratio is.
   (Choosing among 5 rungs on the same LOO errors makes the chosen error slightly optimistic;
   ``bench/bench_costs.py`` measures the error on backbones outside the sample.)  A fitted log
   ratio is clipped to the range of the sample's log ratios (in the LOO too): the ladder
   interpolates between devices' behaviours it has seen, never extrapolates past them.
4. **The prediction** (:attr:`CostFit.predicted`, written as ``costs.parquet``): per oracle
   backbone a factor ``target / oracle`` — the **measured** ratio for a sampled backbone, the
   chosen model's for the others, the constant ratio where the model needs a feature the backbone
   lacks (``source`` says which) — and ``seconds_predicted = factor × seconds_oracle``.
5. **The oracle for that device** (:func:`with_costs`): every row's ``seconds``, ``load_seconds``,
   ``extract_seconds`` and ``fit_seconds`` times its backbone's factor.  One factor per backbone
   keeps each row's breakdown summing to its seconds, the nested extraction stamps nested (so
   ``sh:``'s incremental promotion costs scale too) and the ratios between a backbone's
   evaluators and fractions as measured; a per-component factor would need samples of the
   breakdown on both devices, which no published table has to check it against.

Only numpy and polars (no torch): the simulator calls it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shared.errors import VibesError
from shared.oracle import Oracle

#: the ladder's features, in the order rungs add them (``seconds_oracle``: the oracle's per-backbone seconds)
LADDER = ("seconds_oracle", "gmacs", "params_m", "input_size", "feature_dim")
#: optional columns of a costs file, read when present
OPTIONAL = {"load_seconds": pl.Float64, "extract_seconds": pl.Float64, "fit_seconds": pl.Float64,
            "device": pl.String, "device_name": pl.String, "dataset": pl.String}
SECONDS_COLUMNS = ("seconds", "load_seconds", "extract_seconds", "fit_seconds")
#: a rung needs this many more sampled backbones than coefficients
MIN_DOF = 3


# ------------------------------------------------------------------------------- the sample
def read_costs(path: str | os.PathLike) -> pl.DataFrame:
    """A costs file (``.csv`` or ``.parquet``): ``backbone, seconds, status`` plus the optional
    columns present (:data:`OPTIONAL`); ``status`` is ``ok`` when the file has none.  Every ok row
    has finite seconds > 0 and a backbone that appears once among the ok rows.  Raises a one-line
    :class:`VibesError` naming the file for anything else."""
    p = Path(path)
    name = repr(str(p))
    if not p.exists():
        raise VibesError(f"costs file {name} does not exist (write one with `precompute estimate --out FILE` "
                         f"on the target device)")
    if p.is_dir():
        raise VibesError(f"costs file {name} is a folder; expected a .csv or .parquet file")
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise VibesError(f"costs file {name} has suffix {suffix or '(none)'!r}; expected .csv or .parquet")
    try:
        frame = (pl.read_csv(p, infer_schema_length=None) if suffix == ".csv" else pl.read_parquet(p))
    except Exception as exc:  # corrupt / truncated / not that format
        raise VibesError(f"cannot read costs file {name} as {suffix[1:]}: {type(exc).__name__}: {exc}") from None
    missing = [c for c in ("backbone", "seconds") if c not in frame.columns]
    if missing:
        raise VibesError(f"costs file {name} lacks column(s) {', '.join(missing)}; it needs backbone, seconds "
                         f"(has: {', '.join(frame.columns) or 'none'})")
    if frame.height == 0:
        raise VibesError(f"costs file {name} has no rows")
    cols = [pl.col("backbone").cast(pl.String)]
    try:
        cols.append(pl.col("seconds").cast(pl.Float64))
        for c, dtype in OPTIONAL.items():
            if c in frame.columns:
                cols.append(pl.col(c).cast(dtype))
        status = (pl.col("status").cast(pl.String).fill_null("ok") if "status" in frame.columns
                  else pl.lit("ok"))
        frame = frame.select(*cols, status.alias("status"))
    except Exception:
        bad = next((c for c in ("seconds", *OPTIONAL) if c in frame.columns
                    and not _castable(frame.get_column(c), OPTIONAL.get(c, pl.Float64))), "seconds")
        raise VibesError(f"costs file {name}: column {bad!r} is not numeric (e.g. "
                         f"{frame.get_column(bad).drop_nulls().head(1).to_list()})") from None
    if frame.get_column("backbone").null_count():
        raise VibesError(f"costs file {name} has {frame.get_column('backbone').null_count()} row(s) "
                         f"without a backbone name")
    ok = frame.filter(pl.col("status") == "ok")
    if ok.height == 0:
        raise VibesError(f"costs file {name} has no ok row (all {frame.height} have another status)")
    bad = ok.filter(pl.col("seconds").is_null() | ~pl.col("seconds").is_finite() | (pl.col("seconds") <= 0))
    if bad.height:
        r = bad.row(0, named=True)
        raise VibesError(f"costs file {name} has {bad.height} row(s) whose seconds are not a positive number, "
                         f"e.g. {r['backbone']!r}: {r['seconds']}")
    dups = ok.group_by("backbone").len().filter(pl.col("len") > 1).sort("backbone")
    if dups.height:
        r = dups.row(0, named=True)
        raise VibesError(f"costs file {name} times {dups.height} backbone(s) more than once, e.g. "
                         f"{r['backbone']!r} {r['len']} times; keep one row per backbone (e.g. the median)")
    return frame


def _castable(series: pl.Series, dtype) -> bool:
    try:
        series.cast(dtype)
        return True
    except Exception:
        return False


# ---------------------------------------------------------------------- the oracle's costs
def oracle_costs(oracle: Oracle) -> pl.DataFrame:
    """One row per oracle backbone: ``backbone, seconds_oracle`` (the module docstring, item 2;
    null when none of its rows has seconds) and the ladder's metadata (``gmacs``, ``params_m``,
    ``input_size``, ``feature_dim``, as floats; the first non-null value of its rows)."""
    f = oracle.frame
    has_ok = pl.col("status") == "ok"
    rows = f.filter(has_ok.any().over("backbone").not_() | has_ok)  # ok rows; all rows of a backbone with none
    unknown = (pl.col("load_seconds").is_null() | pl.col("extract_seconds").is_null()
               | pl.col("fit_seconds").is_null())
    per = (rows.group_by("backbone")
           .agg((pl.col("load_seconds").max() + pl.col("extract_seconds").max()
                 + pl.col("fit_seconds").sum()).alias("_sweep"),
                pl.col("seconds").max().alias("_cold"),
                (unknown | pl.col("seconds").is_null()).any().alias("_unknown"),
                *[pl.col(c).drop_nulls().first().cast(pl.Float64).alias(c) for c in LADDER[1:]])
           .with_columns(pl.when(pl.col("_unknown")).then(pl.col("_cold")).otherwise(pl.col("_sweep"))
                         .alias("seconds_oracle"))
           .select("backbone", "seconds_oracle", *LADDER[1:])
           .sort("backbone"))
    return per


# --------------------------------------------------------------------------------- the fit
@dataclass
class CostFit:
    """What :func:`fit_costs` found.  ``model`` is ``"constant"`` or ``"loglinear"``;
    ``coefficients`` the chosen model in the form ``log target = intercept + Σ coef × log feature``
    (for the constant ratio: ``intercept = log ratio`` and ``seconds_oracle = 1``); ``loo_error`` the
    chosen model's leave-one-out median ``|log(predicted / actual)|`` over the sample,
    ``loo_error_constant`` the constant ratio's (None with fewer than 2 sampled backbones);
    ``predicted`` the per-backbone table written as ``costs.parquet``."""

    model: str
    features: tuple[str, ...]
    coefficients: dict[str, float]
    ratio: float
    loo_error: float | None
    loo_error_constant: float | None
    candidates: list[dict[str, Any]]
    predicted: pl.DataFrame = field(repr=False)
    n_sample: int
    unmatched: list[str]
    n_not_ok: int
    clip: tuple[float, float] | None  # the range fitted log ratios are clipped to; None: not clipped
    device: str | None = None
    source: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_unmatched(self) -> int:
        return len(self.unmatched)

    def formula(self) -> str:
        """The chosen model as text, e.g. ``target = 0.71 x oracle seconds (median ratio)`` or ``log
        target = 0.12 + 0.93 log seconds_oracle + 0.05 log gmacs``."""
        if self.model == "constant":
            return f"target = {self.ratio:.4g} x oracle seconds (median ratio)"
        c = self.coefficients
        terms = " ".join(f"{'-' if c[f] < 0 else '+'} {abs(c[f]):.3g} log {f}" for f in self.features)
        return f"log target = {c['intercept']:.3g} {terms}"

    def counts(self) -> dict[str, int]:
        src = self.predicted.get_column("source")
        return {s: int((src == s).sum()) for s in ("measured", "fit", "constant")}

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for ``summary.json``'s ``costs`` and the oracle's metadata."""
        return {"source": self.source, "device": self.device, "model": self.model, "formula": self.formula(),
                "features": list(self.features), "coefficients": self.coefficients, "ratio": self.ratio,
                "loo_error": self.loo_error, "loo_error_constant": self.loo_error_constant,
                "loo_error_definition": "median over the sample of |log(predicted / actual)|, each sampled "
                                        "backbone predicted by the model refitted without it",
                "candidates": self.candidates, "n_sample": self.n_sample, "n_unmatched": self.n_unmatched,
                "unmatched": self.unmatched[:10], "n_not_ok": self.n_not_ok,
                "clip_log_ratio": None if self.clip is None else list(self.clip),
                "n_backbones": self.predicted.height, "by_source": self.counts(), "notes": list(self.notes)}

    def describe(self) -> str:
        """A few lines for the terminal: where the costs come from, the model chosen and why, its
        leave-one-out error against the constant ratio's, and how every backbone got its cost."""
        where = f" for {self.device}" if self.device else ""
        src = f" from {self.source}" if self.source else ""
        skipped = []
        if self.n_unmatched:
            skipped.append(f"{self.n_unmatched} not in the oracle with seconds, e.g. {self.unmatched[0]}")
        if self.n_not_ok:
            skipped.append(f"{self.n_not_ok} not ok")
        lines = [f"costs predicted{where}{src}: {self.n_sample} timed backbones in the oracle"
                 + (f" ({'; '.join(skipped)} left out)" if skipped else "")]
        if self.loo_error is None:
            lines.append(f"  model: {self.formula()} (one sampled backbone: no leave-one-out error)")
        else:
            best_fit = min((c for c in self.candidates if c["loo_error"] is not None),
                           key=lambda c: c["loo_error"], default=None)
            why = ("it beats the constant ratio" if self.model != "constant" else
                   "no fit beats it" + (f" (best fit {_pct(best_fit['loo_error'])})" if best_fit else ""))
            lines.append(f"  model: {self.formula()}; leave-one-out median |log(predicted/actual)| "
                         f"{_pct(self.loo_error)} vs {_pct(self.loo_error_constant)} for the constant ratio "
                         f"{self.ratio:.4g}: {self.model} chosen, {why}")
        n = self.counts()
        lines.append(f"  {self.predicted.height} backbones: {n['measured']} measured, {n['fit']} by the fit, "
                     f"{n['constant']} at the constant ratio; median factor "
                     f"{float(self.predicted.get_column('factor').median()):.3g} x the oracle's seconds")
        lines += [f"  note: {t}" for t in self.notes]
        return "\n".join(lines)


def _pct(err: float | None) -> str:
    return "?" if err is None else f"{err:.3f} (x{math.exp(err):.3f})"


def _design(x: dict[str, np.ndarray], feats: tuple[str, ...], idx=slice(None)) -> np.ndarray:
    cols = [np.ones_like(x["seconds_oracle"][idx])] + [np.log(x[f][idx]) for f in feats]
    return np.column_stack(cols)


def ols_loo(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(coefficients, leave-one-out predictions of ``y``) of OLS ``y ~ z``; None when ``z`` is rank
    deficient or a point has leverage 1 (its LOO fit is not defined).  Exact: ``y_i - e_i / (1 - h_ii)``."""
    n, p = z.shape
    if n < p or np.linalg.matrix_rank(z) < p:
        return None
    q, r = np.linalg.qr(z)
    beta = np.linalg.solve(r, q.T @ y)
    h = (q ** 2).sum(1)
    if np.any(h > 1 - 1e-9):
        return None
    e = y - z @ beta
    return beta, y - e / (1 - h)


def _clip_loo(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Clip each LOO prediction to the range of the other points' ``y``."""
    order = np.argsort(y, kind="stable")
    lo = np.full(y.size, y[order[0]])
    hi = np.full(y.size, y[order[-1]])
    if y.size > 1:
        lo[order[0]], hi[order[-1]] = y[order[1]], y[order[-2]]
    return np.clip(pred, lo, hi)


def constant_loo(ratio: np.ndarray) -> np.ndarray:
    """Per sampled backbone: log of the median ratio of the others (its constant-ratio LOO prediction
    of ``log ratio``)."""
    return np.array([math.log(float(np.median(np.delete(ratio, i)))) for i in range(ratio.size)])


def fit_costs(oracle: Oracle, sample: pl.DataFrame, source: str | None = None, clip: bool = True) -> CostFit:
    """Fit the target device's costs on ``sample`` (:func:`read_costs`'s frame: ``backbone, seconds``
    and optionally ``status``, ``device``) against ``oracle``'s own (:func:`oracle_costs`), choose the
    model by leave-one-out error (module docstring), and predict every oracle backbone.  ``source``
    (the file's path) is recorded.  ``clip=False`` turns off clipping fitted log ratios to the
    sample's range (for the benchmark's comparison)."""
    ok = sample.filter(pl.col("status") == "ok") if "status" in sample.columns else sample
    costs = oracle_costs(oracle)
    matched, unmatched = _match_sample(ok, costs, source)
    device, notes = _sample_notes(ok, oracle)
    target = matched.get_column("target").to_numpy()
    s_or = matched.get_column("seconds_oracle").to_numpy()
    ratio = target / s_or
    y = np.log(ratio)
    n = y.size
    r_const = float(np.median(ratio))
    lo, hi = (float(y.min()), float(y.max()))
    loo_const = float(np.median(np.abs(constant_loo(ratio) - y))) if n >= 2 else None
    x = {"seconds_oracle": s_or, **{f: matched.get_column(f).fill_null(float("nan")).to_numpy() for f in LADDER[1:]}}
    candidates, betas = _ladder(x, y, clip)
    best = min(betas, key=lambda i: candidates[i]["loo_error"], default=None)  # first of equals: fewer features
    use_fit = best is not None and loo_const is not None and candidates[best]["loo_error"] < loo_const
    if use_fit:
        feats, beta = tuple(candidates[best]["features"]), betas[best]
        coef = {"intercept": float(beta[0]), **{f: float(b) for f, b in zip(feats, beta[1:])}}
        coef["seconds_oracle"] += 1.0  # log target = log ratio + log seconds_oracle
        model, loo_err = "loglinear", candidates[best]["loo_error"]
    else:
        feats, beta = (), None
        coef = {"intercept": math.log(r_const), "seconds_oracle": 1.0}
        model, loo_err = "constant", loo_const
    model_y, src, n_const = _model_log_ratio(costs, feats, beta, r_const, (lo, hi) if clip else None)
    if n_const:
        notes.append(f"{n_const} backbone(s) lack a feature of the fit ({', '.join(feats)}) and take the "
                     f"constant ratio")
    loo_y = None
    if n >= 2:
        loo_y = constant_loo(ratio)
        if use_fit:
            loo_y = ols_loo(_design(x, feats), y)[1]
            loo_y = _clip_loo(loo_y, y) if clip else loo_y
    predicted = _predicted(costs, matched, model_y, src, None if loo_y is None else np.exp(loo_y) * s_or)
    return CostFit(model=model, features=feats, coefficients=coef, ratio=r_const, loo_error=loo_err,
                   loo_error_constant=loo_const, candidates=candidates, predicted=predicted, n_sample=n,
                   unmatched=unmatched, n_not_ok=int(sample.height - ok.height), clip=(lo, hi) if clip else None,
                   device=device, source=source, notes=notes)


def _match_sample(ok: pl.DataFrame, costs: pl.DataFrame, source: str | None) -> tuple[pl.DataFrame, list[str]]:
    """The sample's ok rows joined to the oracle backbones with measured seconds (``target`` = the
    sample's seconds), and the sampled names the oracle lacks; none matched is refused in one line."""
    known = costs.filter(pl.col("seconds_oracle").is_finite() & (pl.col("seconds_oracle") > 0))
    matched = (ok.select("backbone", pl.col("seconds").cast(pl.Float64).alias("target"))
               .join(known, on="backbone", how="inner").sort("backbone"))
    unmatched = sorted(set(ok.get_column("backbone").to_list()) - set(matched.get_column("backbone").to_list()))
    if matched.height == 0:
        eg = ", ".join(unmatched[:3])
        raise VibesError(f"no backbone of the costs file{f' {source}' if source else ''} is in the oracle with "
                         f"measured seconds ({len(unmatched)} timed, e.g. {eg}; the oracle has e.g. "
                         f"{', '.join(costs.get_column('backbone').head(3).to_list())}): time backbones of this "
                         f"oracle's pool, by their full names with tags")
    return matched, unmatched


def _sample_notes(ok: pl.DataFrame, oracle: Oracle) -> tuple[str | None, list[str]]:
    """The device the sample was timed on (its ``device`` / ``device_name`` columns), and notes when
    it names several devices or another dataset than the oracle's."""
    notes: list[str] = []
    device = None
    if "device" in ok.columns:
        devs = sorted({str(d) for d in ok.get_column("device").drop_nulls().to_list()})
        if "device_name" in ok.columns:
            names = sorted({str(d) for d in ok.get_column("device_name").drop_nulls().to_list()})
            devs = [f"{d} ({', '.join(names)})" for d in devs] if len(devs) == 1 and names else devs
        device = ", ".join(devs) or None
        if len(devs) > 1:
            notes.append(f"the sample was timed on {len(devs)} devices ({device}); one device's costs are predicted")
    if "dataset" in ok.columns:
        sets = sorted({str(d) for d in ok.get_column("dataset").drop_nulls().to_list()})
        if sets and sets != [oracle.dataset]:
            notes.append(f"the sample was timed on {', '.join(sets)}, the oracle measured {oracle.dataset}: "
                         f"the fit absorbs a uniform difference only")
    return device, notes


def _ladder(x: dict, y: np.ndarray, clip: bool) -> tuple[list[dict[str, Any]], dict[int, np.ndarray]]:
    """Every model of the feature ladder (:data:`LADDER`, one feature more each) with its leave-one-out
    error, or why it was skipped; and the fitted coefficients by candidate index."""
    usable: list[str] = []
    candidates: list[dict[str, Any]] = []
    betas: dict[int, np.ndarray] = {}
    for f in LADDER:
        v = x[f]
        if not np.all(np.isfinite(v) & (v > 0)):
            candidates.append({"features": [*usable, f], "loo_error": None,
                               "skipped": f"{f} unknown for a sampled backbone"})
            continue
        if np.ptp(np.log(v)) < 1e-9:
            candidates.append({"features": [*usable, f], "loo_error": None, "skipped": f"{f} constant over the sample"})
            continue
        feats = (*usable, f)
        usable.append(f)
        if y.size < len(feats) + 1 + MIN_DOF:
            candidates.append({"features": list(feats), "loo_error": None,
                               "skipped": f"needs {len(feats) + 1 + MIN_DOF} sampled backbones"})
            continue
        res = ols_loo(_design(x, feats), y)
        if res is None:
            candidates.append({"features": list(feats), "loo_error": None, "skipped": "degenerate design"})
            continue
        beta, loo = res
        if clip:
            loo = _clip_loo(loo, y)
        betas[len(candidates)] = beta
        candidates.append({"features": list(feats), "loo_error": float(np.median(np.abs(loo - y)))})
    return candidates, betas


def _model_log_ratio(pool: pl.DataFrame, feats: tuple, beta, r_const: float,
                     clip: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Per oracle backbone: the chosen model's log ratio (the constant's where the fit lacks a feature
    of the backbone, or where there is no fit), its source, and how many took the constant."""
    src = np.array(["constant"] * pool.height, dtype=object)
    model_y = np.full(pool.height, math.log(r_const))
    if beta is None:
        return model_y, src, 0
    px = {"seconds_oracle": pool.get_column("seconds_oracle").fill_null(float("nan")).to_numpy(),
          **{f: pool.get_column(f).fill_null(float("nan")).to_numpy() for f in LADDER[1:]}}
    have = np.ones(pool.height, bool)
    for f in feats:
        have &= np.isfinite(px[f]) & (px[f] > 0)
    if have.any():
        fy = _design({f: px[f][have] for f in px}, feats) @ beta
        model_y[have] = np.clip(fy, *clip) if clip else fy
        src[have] = "fit"
    return model_y, src, int((~have).sum())


def _predicted(pool: pl.DataFrame, matched: pl.DataFrame, model_y: np.ndarray, src: np.ndarray,
               loo_seconds: np.ndarray | None) -> pl.DataFrame:
    """``costs.parquet``: per oracle backbone its oracle seconds, the prediction (a sampled backbone keeps
    its measured seconds), the factor, the source, the model's and the leave-one-out seconds."""
    sampled = matched.get_column("backbone").to_list()
    measured = dict(zip(sampled, matched.get_column("target").to_list()))
    loo_map = {} if loo_seconds is None else dict(zip(sampled, loo_seconds.tolist()))
    names = pool.get_column("backbone").to_list()
    s_pool = pool.get_column("seconds_oracle").to_numpy()
    is_meas = np.array([b in measured for b in names], bool)
    meas = np.array([measured.get(b, np.nan) for b in names], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(is_meas, meas / s_pool, np.exp(model_y))
    src = src.copy()
    src[is_meas] = "measured"
    return pool.select(
        "backbone", "seconds_oracle",
        pl.Series("seconds_predicted", factor * s_pool, dtype=pl.Float64).fill_nan(None),
        pl.Series("factor", factor, dtype=pl.Float64),
        pl.Series("source", src.tolist(), dtype=pl.String),
        pl.Series("seconds_measured", meas, dtype=pl.Float64).fill_nan(None),
        pl.Series("seconds_model", np.exp(model_y) * s_pool, dtype=pl.Float64).fill_nan(None),
        pl.Series("seconds_loo", [loo_map.get(b) for b in names], dtype=pl.Float64),
        *LADDER[1:])


# ------------------------------------------------------------------------------ the oracle
def with_costs(oracle: Oracle, fit: CostFit) -> Oracle:
    """``oracle`` with every row's ``seconds``, ``load_seconds``, ``extract_seconds`` and ``fit_seconds``
    multiplied by its backbone's factor (:attr:`CostFit.predicted`); the metadata gains ``costs``
    (:meth:`CostFit.as_dict`), ``hardware`` names the target device and ``oracle_hardware`` keeps the
    oracle's own."""
    factors = fit.predicted.select("backbone", pl.col("factor").fill_null(fit.ratio).fill_nan(fit.ratio)
                                   .alias("_factor"))
    frame = (oracle.frame.join(factors, on="backbone", how="left", maintain_order="left")
             .with_columns(pl.col("_factor").fill_null(fit.ratio))
             .with_columns(*[(pl.col(c) * pl.col("_factor")).alias(c) for c in SECONDS_COLUMNS])
             .drop("_factor"))
    meta = dict(oracle.meta)
    meta["oracle_hardware"] = oracle.meta.get("hardware")
    meta["hardware"] = (f"{fit.device or 'the target device'} (seconds predicted by simulate --costs-from "
                        f"{fit.source or 'a sample'}: {fit.formula()})")
    meta["costs"] = fit.as_dict()
    return Oracle(frame, meta)


def costs_from(oracle: Oracle, path: str | os.PathLike) -> tuple[Oracle, CostFit]:
    """``simulate --costs-from FILE`` in one call: :func:`read_costs`, :func:`fit_costs` (recording the
    path), :func:`with_costs`.  Returns the oracle with the predicted costs and the fit."""
    fit = fit_costs(oracle, read_costs(path), source=str(path))
    return with_costs(oracle, fit), fit


def write_costs(fit: CostFit, path: str | os.PathLike) -> Path:
    """Write :attr:`CostFit.predicted` (``costs.parquet``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fit.predicted.write_parquet(path)
    return path


__all__ = ["read_costs", "oracle_costs", "fit_costs", "with_costs", "costs_from", "write_costs", "CostFit", "ols_loo",
           "constant_loo", "LADDER"]
