"""How good is each evaluator ε̃ at ranking backbones by their true score ε (issue 8, item 3).

For every evaluator spec of the oracle (every evaluator × fraction with ok rows, the truth
evaluator at every fraction included) and for static baselines read from the backbone
metadata, :func:`evaluate` compares ε̃ with ε over the pool (the backbones with a true score):

* ε̃(b) = mean over seeds of that spec's ok rows of backbone b; ε(b) = the true score (mean over
  seeds of the truth evaluator's ok rows at fraction 1.0).  A pool backbone with no ok row for a
  spec (or a null metadata value for a static baseline) is left out of that spec's statistics;
  ``n`` counts the backbones compared, ``n_pool`` the pool.
* ``kendall_tau_b`` — Kendall's τ-b (ties in either variable corrected, as in
  ``scipy.stats.kendalltau``); ``spearman_rho`` — Pearson's r of the average ranks;
  ``weighted_tau`` — the weighted Kendall τ with hyperbolic weights on rank, exactly
  ``scipy.stats.weightedtau``'s default (Vigna 2015; the figure LogME, SFDA and Model Spider
  publish): a swap near the top of either ranking costs more than one near the bottom.  All three
  are null when fewer than 2 backbones are compared or when either side is constant.
* ``top1_regret`` — best ε among the compared backbones minus ε of the backbone ε̃ picks
  (its argmax).  When several backbones tie for ε̃'s maximum, the regret is the **mean** over
  them: the expected regret of a search that meets them in random order (the replay engine
  keeps the earliest evaluated, so a random sampler breaks ties uniformly).  ``pick`` names
  the tied backbone first by name and ``n_pick_ties`` counts the tie.
* ``best_in_top5`` — the probability that a backbone with the best ε is among ε̃'s top 5, ties
  at the 5th place broken uniformly at random: 1.0 / 0.0 whenever ε̃ has no tie across the
  5th place, so it reads as yes / no.
* ``median_seconds`` — the median over the compared backbones of each backbone's mean seconds
  over its ok rows (what one evaluation of one backbone costs); ``total_seconds`` — their sum
  (evaluating every compared backbone once).  Static baselines cost 0.

Static baselines (``kind = "static"``): ``params_m``, ``gmacs``, ``feature_dim`` and
``imagenet_top1``, each where at least one pool backbone has a value, all read as **bigger is
better** (a larger, costlier backbone with wider features and a higher published ImageNet top-1
is expected to transfer better).  The reverse ("smaller is better") is not reported: its τ-b and
ρ are exactly the negatives of these, and as a pick it names the smallest backbone, which no
user wants as a quality guess.  With reference oracles (``--prior-oracle``; :func:`evaluate`'s
``priors``) the ``meta`` prior is one more static baseline (:func:`meta_baseline`, which a league
can call with leave-one-out references): ε̃ = 1 − the ``meta`` sampler's mean normalised rank
of the backbone over the references (1 = the best everywhere).

The **noise ceiling** (``kind = "noise ceiling"``): τ-b and ρ between two single seeds of the
truth (the two smallest seed ids, over the pool backbones that have both ok rows) — how well
one run of the truth evaluator ranks like another.  With one seed there is no ceiling: the row
is absent and a note says so.  (The rows above compare means over seeds with the truth's mean,
so an evaluator averaged over several seeds can exceed this single-seed ceiling.)

``--truth NAME`` (:func:`with_truth`) makes evaluator NAME at fraction 1.0 the truth; every
figure then follows it.  Only numpy and polars are used here (no scipy at run time).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from shared.durations import format_duration
from shared.errors import VibesError
from shared.evaluator_spec import format_spec
from shared.oracle import Oracle
from shared.samplers import META_RANK, meta_rank

#: static baselines: metadata column -> what the column is (all "bigger is better")
STATIC_BASELINES = {
    "params_m": "parameters (millions)",
    "gmacs": "GMACs per image",
    "feature_dim": "feature dimension",
    "imagenet_top1": "published ImageNet top-1",
}
STATIC_DIRECTION = "bigger is better"
#: the meta prior as a static baseline: its spec name and how its ε̃ reads
META_SPEC = "meta"
META_DIRECTION = "1 - mean reference rank, bigger is better"
TOP_K = 5

#: the columns of quality.parquet, in order
TABLE_SCHEMA: dict[str, pl.DataType] = {
    "spec": pl.String,
    "kind": pl.String,  # truth | evaluator | static | noise ceiling
    "evaluator": pl.String,  # evaluator name, metadata column, or the truth (noise ceiling)
    "fraction": pl.Float64,
    "direction": pl.String,
    "n": pl.Int64,
    "n_pool": pl.Int64,
    "kendall_tau_b": pl.Float64,
    "spearman_rho": pl.Float64,
    "weighted_tau": pl.Float64,
    "top1_regret": pl.Float64,
    "best_in_top5": pl.Float64,
    "pick": pl.String,
    "n_pick_ties": pl.Int64,
    "median_seconds": pl.Float64,
    "total_seconds": pl.Float64,
}


@dataclass
class Quality:
    truth: str
    table: pl.DataFrame  # TABLE_SCHEMA, one row per spec
    points: pl.DataFrame  # spec, backbone, eps_tilde, true_score, pretrain_dataset
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- statistics
def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    return x, y


def _tied_pairs(x: np.ndarray) -> int:
    _, counts = np.unique(x, return_counts=True)
    return int(np.sum(counts * (counts - 1) // 2))


def _inversions(v: np.ndarray) -> int:
    """Pairs i < j with v[i] > v[j], for non-negative integer ``v``: a bottom-up merge sort whose
    every level is one vectorised pass (a searchsorted counts, for each element of a right
    block, the larger elements of its left block; one sort merges the pairs): O(n log² n)."""
    n = v.size
    if n < 2:
        return 0
    m = int(v.max()) + 1
    pos = np.arange(n, dtype=np.int64)
    cur = v.astype(np.int64)
    total, w = 0, 1
    while w < n:
        block = pos // w
        pair = block // 2
        right = (block & 1) == 1
        key = pair * m + cur  # sorted within each block, so the left blocks' keys are sorted
        left_keys, left_pair = key[~right], pair[~right]
        ends = np.searchsorted(left_pair, pair[right], side="right")  # end of the pair's left block
        total += int(np.sum(ends - np.searchsorted(left_keys, key[right], side="right")))
        cur = np.sort(key) - pair * m  # merge: each pair keeps its positions, now sorted
        w *= 2
    return total


def kendall_tau_b(x, y) -> float:
    """Kendall's τ-b = (C − D) / sqrt((n0 − n1)(n0 − n2)); NaN when n < 2 or a side is constant.

    Knight's method: sort by (x, y); D = the strict inversions of y in that order; then
    C − D = n0 − n1 − n2 + n3 − 2D, n3 = pairs tied in both.  O(n log² n), all in numpy."""
    x, y = _pair(x, y)
    n = x.size
    if n < 2:
        return float("nan")
    xr = np.unique(x, return_inverse=True)[1].astype(np.int64).ravel()  # dense ranks
    yr = np.unique(y, return_inverse=True)[1].astype(np.int64).ravel()
    order = np.lexsort((yr, xr))
    d = _inversions(yr[order])
    n0 = n * (n - 1) // 2
    n1, n2 = _tied_pairs(xr), _tied_pairs(yr)
    n3 = _tied_pairs(xr * (int(yr.max()) + 1) + yr)
    denom = (n0 - n1) * (n0 - n2)
    return (n0 - n1 - n2 + n3 - 2 * d) / math.sqrt(denom) if denom > 0 else float("nan")


def average_ranks(x) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span (scipy's ``rankdata`` default)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.empty(n, dtype=bool)
    new[:1] = True
    np.not_equal(xs[1:], xs[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    ranks = np.empty(n)
    ranks[order] = ((starts + ends + 1) / 2)[np.cumsum(new) - 1]
    return ranks


def spearman_rho(x, y) -> float:
    """Spearman's ρ = Pearson's r of the average ranks; NaN when n < 2 or a side is constant."""
    x, y = _pair(x, y)
    if x.size < 2:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denom if denom > 0 else float("nan")


def _concordance(x: np.ndarray, y: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Per element i: #{j: (x_j - x_i)(y_j - y_i) > 0} - #{j: ... < 0}, exact integers; O(n²)
    time in row blocks of ``chunk`` (memory O(chunk · n))."""
    out = np.empty(x.size, dtype=np.int64)
    for s in range(0, x.size, chunk):
        xi, yi = x[s:s + chunk, None], y[s:s + chunk, None]
        gx, lx, gy, ly = x > xi, x < xi, y > yi, y < yi
        out[s:s + chunk] = (np.count_nonzero((gx & gy) | (lx & ly), axis=1)
                            - np.count_nonzero((gx & ly) | (lx & gy), axis=1))
    return out


def _untied(x: np.ndarray) -> np.ndarray:
    """Per element: how many others differ from it."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (x.size - counts[inverse.ravel()]).astype(np.float64)


def weighted_tau(x, y) -> float:
    """Weighted Kendall τ with hyperbolic weights, exactly ``scipy.stats.weightedtau(x, y)``'s
    default (Vigna 2015; weigher ``1 / (r + 1)``, additive, ``rank=True``); NaN when n < 2 or a
    side is constant.

    The elements are ranked by decreasing ``(x, y)`` lexicographically (rank 0 = the largest; the
    order within joint ties changes nothing); a pair (i, j) weighs ``w_i + w_j``, ``w = 1 / (rank
    + 1)``; τ_w = Σ_pairs sign(Δx) sign(Δy) w_ij / sqrt(Σ_{Δx ≠ 0} w_ij · Σ_{Δy ≠ 0} w_ij), clipped
    to [-1, 1]; the statistic is the mean of τ_w ranked by (x, y) and by (y, x).  The weights being
    additive, each pair sum is Σ_i w_i times a per-element count (its concordant minus discordant
    partners, its partners not tied with it): O(n²) time, O(n) per extra ranking."""
    x, y = _pair(x, y)
    if x.size < 2:
        return float("nan")
    c = _concordance(x, y).astype(np.float64)
    tx, ty = _untied(x), _untied(y)

    def ranked_by(first: np.ndarray, second: np.ndarray) -> float:
        rank = np.empty(first.size)
        rank[np.lexsort((second, first))[::-1]] = np.arange(first.size)
        w = 1.0 / (rank + 1.0)
        den = float(w @ tx) * float(w @ ty)
        return min(1.0, max(-1.0, float(w @ c) / math.sqrt(den))) if den > 0 else float("nan")

    return (ranked_by(x, y) + ranked_by(y, x)) / 2


def top1_regret(pred, truth) -> float:
    """max(truth) − mean(truth over the argmax set of pred): the expected regret when ties for
    pred's maximum are broken uniformly at random."""
    pred, truth = _pair(pred, truth)
    if pred.size == 0:
        return float("nan")
    top = pred == pred.max()
    return float(truth.max() - truth[top].mean())


def best_in_top_k(pred, truth, k: int = TOP_K) -> float:
    """Probability that some backbone with the best truth is among pred's top k, ties across
    the k-th place broken uniformly at random (1.0 or 0.0 when there is no such tie)."""
    pred, truth = _pair(pred, truth)
    n = pred.size
    if n == 0:
        return float("nan")
    k = min(k, n)
    best = truth == truth.max()
    kth = np.sort(pred)[::-1][k - 1]  # the k-th largest pred
    above = pred > kth
    if np.any(best & above):
        return 1.0
    tied = pred == kth
    m, need, j = int(tied.sum()), k - int(above.sum()), int((best & tied).sum())
    if j == 0:
        return 0.0
    return 1.0 - math.comb(m - j, need) / math.comb(m, need)  # P(at least one best drawn)


# --------------------------------------------------------------------------- the truth
def with_truth(oracle: Oracle, name: str | None) -> Oracle:
    """The oracle with evaluator ``name`` at fraction 1.0 as its truth (``--truth NAME``);
    ``None`` keeps the oracle's own.  The oracle's own truth is kept as ``meta['oracle_truth']``."""
    if name is None or name == oracle.truth:
        return oracle
    ok = oracle.frame.filter((pl.col("status") == "ok") & pl.col("score").is_not_null())
    at_one = ok.filter(pl.col("fraction") == 1.0)
    if at_one.filter(pl.col("evaluator") == name).height == 0:
        have = sorted(at_one.get_column("evaluator").unique().to_list())
        other = sorted(ok.filter(pl.col("evaluator") == name).get_column("fraction").unique().to_list())
        where = (f" (it has {name!r} only at fraction(s) {', '.join(f'{f:g}' for f in other)})"
                 if other else "")
        raise VibesError(f"--truth {name!r}: the oracle has no ok rows of evaluator {name!r} at "
                         f"fraction 1.0{where}; evaluators it has at fraction 1.0: "
                         f"{', '.join(have) or 'none'}")
    return Oracle(oracle.frame, dict(oracle.meta, truth=name, oracle_truth=oracle.truth))


# --------------------------------------------------------------------------- the table
def spec_scores(oracle: Oracle, pool: pl.DataFrame) -> pl.DataFrame:
    """ε̃ per (spec, pool backbone): mean score and mean seconds over the ok rows' seeds."""
    per = (oracle.frame
           .filter((pl.col("status") == "ok") & pl.col("score").is_finite())  # null/NaN/inf: no score
           .group_by("evaluator", "fraction", "backbone")
           .agg(pl.col("score").mean().alias("eps_tilde"),
                pl.col("seconds").fill_null(0.0).mean().alias("seconds"))
           .join(pool.select("backbone", "true_score"), on="backbone", how="inner"))
    specs = per.select("evaluator", "fraction").unique()
    specs = specs.with_columns(pl.Series("spec", [format_spec(e, f) for e, f in specs.iter_rows()],
                                         dtype=pl.String))  # one name per spec, not per row
    return (per.join(specs, on=["evaluator", "fraction"], how="left")
            .with_columns((pl.col("evaluator") != oracle.truth).alias("_not_truth"))
            .sort("_not_truth", "evaluator", "fraction", "backbone", descending=[False, False, True, False])
            .drop("_not_truth"))


def _row(spec, kind, evaluator, fraction, direction, backbones, pred, truth, seconds, n_pool) -> dict:
    n = pred.size
    top = np.flatnonzero(pred == pred.max()) if n else np.array([], dtype=int)
    return {
        "spec": spec, "kind": kind, "evaluator": evaluator, "fraction": fraction,
        "direction": direction, "n": n, "n_pool": n_pool,
        "kendall_tau_b": _num(kendall_tau_b(pred, truth)),
        "spearman_rho": _num(spearman_rho(pred, truth)),
        "weighted_tau": _num(weighted_tau(pred, truth)),
        "top1_regret": _num(top1_regret(pred, truth)),
        "best_in_top5": _num(best_in_top_k(pred, truth)),
        "pick": min(backbones[i] for i in top) if n else None, "n_pick_ties": int(top.size),
        "median_seconds": float(np.median(seconds)) if n else None,
        "total_seconds": float(np.sum(seconds)) if n else None,
    }


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def evaluate(oracle: Oracle, priors=None) -> Quality:
    """The quality table of every evaluator spec and static baseline of ``oracle``; ``priors``
    (reference oracles of other datasets, ``Oracle`` or ``(label, Oracle)``, as ``--prior-oracle``)
    add the ``meta`` static baseline (:func:`meta_baseline`)."""
    pool = oracle.true_scores()
    truth = oracle.truth
    notes: list[str] = []
    rows: list[dict] = []
    scores = spec_scores(oracle, pool)
    points = [scores.select("spec", "backbone", "eps_tilde", "true_score")]
    for (spec, evaluator, fraction), part in scores.group_by("spec", "evaluator", "fraction",
                                                             maintain_order=True):
        kind = "truth" if evaluator == truth and fraction == 1.0 else "evaluator"
        rows.append(_row(spec, kind, evaluator, fraction, "higher is better",
                         part.get_column("backbone").to_list(), part.get_column("eps_tilde").to_numpy(),
                         part.get_column("true_score").to_numpy(), part.get_column("seconds").to_numpy(),
                         pool.height))
    for column in STATIC_BASELINES:
        part = pool.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan()
                           if pool.schema[column].is_float() else pl.col(column).is_not_null())
        if part.height == 0:
            notes.append(f"static baseline {column}: no pool backbone has a value; not reported")
            continue
        value = part.get_column(column).cast(pl.Float64)
        rows.append(_static_row(column, column, STATIC_DIRECTION, part.get_column("backbone").to_list(),
                                value.to_numpy(), part.get_column("true_score").to_numpy(), pool.height))
        points.append(part.select(pl.lit(column).alias("spec"), "backbone", value.alias("eps_tilde"),
                                  "true_score"))
    if priors:
        row, pts, meta_notes = meta_baseline(pool, _references(oracle, priors))
        notes += meta_notes
        if row is not None:
            rows.append(row)
            points.append(pts)
    rows += _noise_ceiling(oracle, pool, notes)
    table = pl.DataFrame(rows, schema=TABLE_SCHEMA) if rows else pl.DataFrame(schema=TABLE_SCHEMA)
    missing = table.filter(pl.col("kind").is_in(["truth", "evaluator"]) & (pl.col("n") < pl.col("n_pool")))
    for r in missing.iter_rows(named=True):
        notes.append(f"evaluator {r['spec']}: {r['n_pool'] - r['n']} of {r['n_pool']} pool backbone(s) "
                     f"have no ok row; left out of its statistics")
    pts = (pl.concat(points, how="vertical_relaxed")
           .join(pool.select("backbone", "pretrain_dataset"), on="backbone", how="left"))
    return Quality(truth, table, pts, notes)


def _static_row(spec, evaluator, direction, backbones, value, truth, n_pool) -> dict:
    return _row(spec, "static", evaluator, None, direction, backbones, value, truth, np.zeros(len(backbones)),
                n_pool)


def _references(oracle: Oracle, priors) -> list[Oracle]:
    """The prior oracles, refusing the oracle under study (same dataset) as its own reference."""
    refs = []
    for item in priors:
        label, ref = item if isinstance(item, tuple) else (None, item)
        if ref.dataset == oracle.dataset:
            raise VibesError(f"--prior-oracle {label or ref.dataset}: it is the oracle under study (dataset "
                             f"{oracle.dataset!r}); a prior must come from other datasets")
        refs.append(ref)
    return refs


def meta_baseline(pool: pl.DataFrame, references) -> tuple[dict | None, pl.DataFrame | None, list[str]]:
    """The ``meta`` static baseline: the pool ranked by the ``meta`` sampler's prior
    (:func:`shared.samplers.meta_rank`: the mean over the ``references`` of each backbone's
    normalised rank by that reference's own truth, 0 = best everywhere), read as ε̃ = 1 − meta_rank
    (:data:`META_DIRECTION`).  ``pool``: backbone and true_score (``Oracle.true_scores()``);
    ``references``: ``Oracle``, ``(label, Oracle)`` or frames with backbone and true_score, e.g.
    the other oracles of a league (leave one out).  A backbone in no reference is left out.
    Returns ``(table row, points, notes)``; the row and points are None when no pool backbone is
    in any reference."""
    frames = [_reference_scores(r) for r in references]
    ranked = (meta_rank(pool.get_column("backbone").to_list(), frames)
              .join(pool.select("backbone", "true_score"), on="backbone", how="left", maintain_order="left"))
    part = ranked.filter(pl.col(META_RANK).is_not_null())
    notes = []
    if part.height == 0:
        return None, None, [f"static baseline {META_SPEC}: no pool backbone is in any of the "
                            f"{len(frames)} reference oracle(s); not reported"]
    if part.height < pool.height:
        notes.append(f"static baseline {META_SPEC}: {pool.height - part.height} of {pool.height} pool "
                     f"backbone(s) are in no reference oracle; left out of its statistics")
    value = (1.0 - part.get_column(META_RANK)).alias("eps_tilde")
    row = _static_row(META_SPEC, META_SPEC, META_DIRECTION, part.get_column("backbone").to_list(),
                      value.to_numpy(), part.get_column("true_score").to_numpy(), pool.height)
    pts = part.select(pl.lit(META_SPEC).alias("spec"), "backbone", value, "true_score")
    return row, pts, notes


def _reference_scores(ref) -> pl.DataFrame:
    if isinstance(ref, tuple):
        ref = ref[1]
    if isinstance(ref, Oracle):
        ref = ref.true_scores()
    return ref.select("backbone", "true_score")


def _noise_ceiling(oracle: Oracle, pool: pl.DataFrame, notes: list[str]) -> list[dict]:
    rows = (oracle.frame
            .filter((pl.col("evaluator") == oracle.truth) & (pl.col("fraction") == 1.0)
                    & (pl.col("status") == "ok") & pl.col("score").is_not_null()
                    & pl.col("backbone").is_in(pool.get_column("backbone").implode())))
    seeds = sorted(rows.get_column("seed").unique().to_list())
    if len(seeds) < 2:
        notes.append(f"truth {oracle.truth}: one seed only, so no noise ceiling (τ between two seeds)")
        return []
    a, b = seeds[:2]
    wide = (rows.filter(pl.col("seed") == a).select("backbone", pl.col("score").alias("a"))
            .join(rows.filter(pl.col("seed") == b).select("backbone", pl.col("score").alias("b")),
                  on="backbone", how="inner").sort("backbone"))
    x, y = wide.get_column("a").to_numpy(), wide.get_column("b").to_numpy()
    return [{"spec": f"{oracle.truth} seed {a} vs seed {b}", "kind": "noise ceiling",
             "evaluator": oracle.truth, "fraction": 1.0, "direction": None, "n": x.size,
             "n_pool": pool.height, "kendall_tau_b": _num(kendall_tau_b(x, y)),
             "spearman_rho": _num(spearman_rho(x, y)), "weighted_tau": _num(weighted_tau(x, y)),
             "top1_regret": None, "best_in_top5": None,
             "pick": None, "n_pick_ties": None, "median_seconds": None, "total_seconds": None}]


# --------------------------------------------------------------------------- text output
def format_table(q: Quality) -> str:
    """The table as aligned text, one line per spec (``simulate --quality-only``)."""
    def f(x, fmt="{:+.4f}"):
        return "—" if x is None else fmt.format(x)

    def top5(p):
        return "—" if p is None else "yes" if p == 1.0 else "no" if p == 0.0 else f"p={p:.2g}"

    width = max([len("spec")] + [len(s) for s in q.table.get_column("spec").to_list()])
    head = (f"{'spec':<{width}}  {'kind':<13} {'tau_b':>7} {'rho':>7} {'tau_w':>7} {'regret':>7} {'top5':>6} "
            f"{'s/backbone':>10} {'n':>9}  pick")
    lines = [head]
    for r in q.table.iter_rows(named=True):
        cost = "—" if r["median_seconds"] is None else format_duration(r["median_seconds"])
        pick = "" if r["pick"] is None else r["pick"] + (f" (+{r['n_pick_ties'] - 1} tied)"
                                                        if r["n_pick_ties"] > 1 else "")
        lines.append(f"{r['spec']:<{width}}  {r['kind']:<13} {f(r['kendall_tau_b']):>7} "
                     f"{f(r['spearman_rho']):>7} {f(r['weighted_tau']):>7} {f(r['top1_regret'], '{:.4f}'):>7} "
                     f"{top5(r['best_in_top5']):>6} {cost:>10} {str(r['n']) + '/' + str(r['n_pool']):>9}  {pick}")
    return "\n".join(lines)
