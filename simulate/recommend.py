"""The recommendation: the answer a practitioner reads first.

Per budget t_max, the strategy × evaluator (π × ε̃) to run, the median and IQR of the true score of
what it selects over the runs, and the backbone it selects most often.

Budgets come from the oracle's own time scale, not a fixed list:

* :func:`scale_budgets` — round durations (1 s, 2 s, 5 s, …, 10 min, 30 min, 1 h, 2 h, …) between
  the cheapest evaluation and the exhaustive time (the longest strategy's evaluation of the whole
  pool); of those where some strategy has selected a backbone in most runs (an answer), at most
  :data:`SCALE_POINTS` evenly spaced in log time (:func:`thin`);
* :func:`change_budgets` — the budgets of the BSEC grid where the best choice changes: the
  choices tied with the best (below) share nobody with those of the grid budget before (both
  where the best has selected a backbone in three runs of four at least);
* ``recommend_at`` — the budgets the user asked for (``simulate --recommend-at``), always shown.

Ties within the noise: two choices are tied when their medians differ by at most twice the
standard error of the difference, each median's standard error taken as that of a normal sample,
``1.2533 σ / √n`` with ``σ = IQR / 1.349`` (:func:`median_se`); two deterministic choices (IQR 0)
tie only when equal.  The best is the highest median (ties broken by the higher q25, then the first
listed), the row names every choice tied with it, and the choice the row leads with stays the one
of the budget before while it is still among the tied — a tie is shown as a tie, not as a flip.

Stopping early (:func:`stop_early`): a search run for a budget B can stop at any b ≤ B and keep its
incumbent, so each choice is valued at B by its best budget b ≤ B (highest median, then q25, then
the earlier b), and the row says when to stop.  The recommended median never falls as B grows.
With a proxy evaluator a choice's own median can fall as its budget grows (more backbones
evaluated, and the proxy's favourite is not the best): :func:`worse_with_budget` names those.
"""
from __future__ import annotations

import math

import numpy as np

from shared.durations import ROUND_SECONDS, format_duration
from shared.exactmath import logs as exact_logs
from simulate.workers import worker_label

SCALE_POINTS = 5  # budgets from the oracle's time scale
MAX_CHANGES = 4  # budgets where the best choice changes, at most (the longest-lasting changes first)
SE_MEDIAN = 1.2533  # sqrt(pi / 2): a normal sample's median has this many times the mean's standard error
IQR_SIGMA = 1.349  # a normal distribution's IQR in standard deviations


def scale_budgets(cheapest: float, exhaustive: float) -> list[float]:
    """Every round duration between ``cheapest`` and ``exhaustive`` seconds (``[exhaustive]`` when none
    is): the candidates; :func:`thin` keeps a few of those that have an answer."""
    lo, hi = max(float(cheapest), 1e-9), max(float(exhaustive), float(cheapest))
    return [x for x in ROUND_SECONDS if lo <= x <= hi] or [hi]


def thin(values: list[float], n: int = SCALE_POINTS) -> list[float]:
    """At most ``n`` of the sorted ``values``, evenly spaced in log time, both ends kept."""
    if len(values) <= n:
        return list(values)
    logs = exact_logs(values)  # correctly rounded: the same picks on every CPU
    picks = {int(np.argmin(np.abs(logs - t))) for t in np.linspace(logs[0], logs[-1], n)}
    return [values[i] for i in sorted(picks)]


def median_se(q25: float, q75: float, n_runs: int) -> float:
    """Standard error of a median over ``n_runs`` runs whose IQR is ``q75 - q25``."""
    return SE_MEDIAN * (q75 - q25) / IQR_SIGMA / math.sqrt(max(n_runs, 1))


def tied(a: tuple[float, float, float], b: tuple[float, float, float], n_runs: int) -> bool:
    """(median, q25, q75) of two choices: medians within twice the standard error of their difference."""
    if not (math.isfinite(a[0]) and math.isfinite(b[0])):
        return False
    se = [median_se(x[1], x[2], n_runs) if math.isfinite(x[1]) and math.isfinite(x[2]) else 0.0 for x in (a, b)]
    return abs(a[0] - b[0]) <= 2.0 * math.hypot(*se) + 1e-12


def _key(med: float, q25: float) -> tuple[float, float]:
    return (med, q25 if math.isfinite(q25) else -math.inf)


def best_and_tied(points: list[tuple[float, float, float]], n_runs: int) -> tuple[int | None, list[int]]:
    """Index of the best (highest median, then q25, then the first) and every index tied with it."""
    best = None
    for i, p in enumerate(points):
        if math.isfinite(p[0]) and (best is None or _key(p[0], p[1]) > _key(*points[best][:2])):
            best = i
    if best is None:
        return None, []
    return best, [i for i, p in enumerate(points) if i == best or tied(points[best], p, n_runs)]


def stop_early(stats: dict, budgets: list[float]) -> dict:
    """One choice's statistics (arrays over the ascending ``budgets``) when a search for budget B may
    stop at any b ≤ B: at each B, the statistics at the best b ≤ B so far (highest median, then q25;
    the earlier b on a tie), and ``stop_s``, that b.  Before any finite median, a budget keeps its own."""
    keys = ("median", "q25", "q75", "n_selected", "backbone", "share")
    out = {k: list(stats[k]) for k in keys}
    out["stop_s"] = [float(b) for b in budgets]
    best = None
    for j in range(len(budgets)):
        med = float(stats["median"][j])
        if math.isfinite(med) and (best is None or _key(med, float(stats["q25"][j])) >
                                   _key(float(stats["median"][best]), float(stats["q25"][best]))):
            best = j
        if best is not None:
            for k in keys:
                out[k][j] = stats[k][best]
            out["stop_s"][j] = float(budgets[best])
    return {**stats, **out}


def worse_with_budget(stats: dict, budgets: list[float], n_runs: int) -> dict | None:
    """When one choice's median at its largest budget (with a finite median) is below its peak by
    more than the noise (:func:`tied` false): ``{peak, peak_s, final, final_s}``; else None."""
    med = np.asarray(stats["median"], dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(med))
    if finite.size < 2:
        return None
    peak = max(finite, key=lambda j: (_key(float(med[j]), float(stats["q25"][j])), -j))
    last = int(finite[-1])
    point = lambda j: (float(med[j]), float(stats["q25"][j]), float(stats["q75"][j]))  # noqa: E731
    if med[last] >= med[peak] or tied(point(peak), point(last), n_runs):
        return None
    return {"peak": float(med[peak]), "peak_s": float(budgets[peak]), "final": float(med[last]),
            "final_s": float(budgets[last])}


def worse_text(w: dict) -> str:
    """``random × logme gets worse with more budget: 0.9540 at 1.4 min → 0.7150 at 36 min; its
    evaluator's favourite scores 0.7150`` (the last clause where the favourite is known)."""
    k = f" on {w['workers']} workers" if w.get("workers", 1) != 1 else ""
    fav = ("" if w.get("favourite_score") is None else
           f"; its evaluator's favourite ({w['favourite']}) scores {w['favourite_score']:.4f}")
    return (f"{w['strategy']} × {w['evaluator']}{k} gets worse with more budget: {w['peak']:.4f} at "
            f"{format_duration(w['peak_s'])} → {w['final']:.4f} at {format_duration(w['final_s'])}{fav}")


def change_budgets(budgets: np.ndarray, stats: list[dict], n_runs: int, limit: int = MAX_CHANGES) -> list[float]:
    """Budgets of the grid where the best choice changes: the set tied with the best shares no choice
    with the set of the grid budget before.  At most ``limit``, those whose choice lasts longest."""
    groups = []
    for j in range(len(budgets)):
        pts = [(float(s["median"][j]), float(s["q25"][j]), float(s["q75"][j])) for s in stats]
        best, group = best_and_tied(pts, n_runs)
        # only where the best selects in three runs of four at least (a finite q25): before, the
        # medians move with the share of runs that have selected anything, not with the choice
        groups.append(set(group) if best is not None and math.isfinite(pts[best][1]) else set())
    starts = [j for j in range(1, len(budgets)) if groups[j] and groups[j - 1] and not groups[j] & groups[j - 1]]
    ends = starts[1:] + [len(budgets)]
    lasting = sorted(zip(starts, ends), key=lambda se: (-(se[1] - se[0]), se[0]))[:limit]
    return sorted(float(budgets[j]) for j, _ in lasting)


def recommend(stats: list[dict], budgets: list[float], n_runs: int, sources: list[str] | None = None) -> list[dict]:
    """One row per budget (ascending): the choice to run, its median, IQR and most-selected backbone,
    and the choices tied with the best (``tied``).  ``stats``: per choice, ``strategy``,
    ``evaluator`` and arrays over ``budgets`` (``median``, ``q25``, ``q75``, ``n_selected``,
    ``backbone``, ``share``); ``sources``: why each budget is there (scale, change, asked).  A
    budget where no choice has a finite median (most runs select nothing) recommends nothing."""
    out, lead = [], None
    for j, t_max in enumerate(budgets):
        pts = [(float(s["median"][j]), float(s["q25"][j]), float(s["q75"][j])) for s in stats]
        best, group = best_and_tied(pts, n_runs)
        row = {"budget_s": float(t_max), "label": format_duration(t_max)}
        if sources is not None:
            row["source"] = sources[j]
        if best is None:
            row.update(strategy=None, evaluator=None, median=None, q25=None, q75=None, backbone=None,
                       backbone_share=None, tied=[], reason="no strategy selects a backbone in most runs by then")
            out.append(row)
            lead = None
            continue
        first = lead if lead in group else best  # a tie is not a flip: keep leading with the last choice
        others = sorted((i for i in group if i != first), key=lambda i: _key(*pts[i][:2]), reverse=True)
        lead = first

        row.update(_entry(stats[first], j), n_selected=int(stats[first]["n_selected"][j]), n_runs=int(n_runs),
                   best={"strategy": stats[best]["strategy"], "evaluator": stats[best]["evaluator"]},
                   tied=[_entry(stats[i], j) for i in others])
        out.append(row)
    return out


def row_label(row: dict) -> str:
    """A row's budget as people read it: ``10 min``, or with workers ``8 workers × 10 min``."""
    return row["label"] if "workers" not in row else worker_label(row["workers"], row["budget_s"])


def kept_note(row: dict, before: dict | None) -> str | None:
    """When a row leads with the choice of the budget before although another tied choice has a
    higher median: ``kept from 1 s (within the noise of the highest median: A × e 0.9721, IQR …)``;
    otherwise None.  ``before``: the row of the budget before (its label is named)."""
    best = row.get("best")
    if row.get("strategy") is None or not best or (best["strategy"], best["evaluator"]) == \
            (row["strategy"], row["evaluator"]):
        return None
    top = next((t for t in row.get("tied") or () if (t["strategy"], t["evaluator"]) ==
                (best["strategy"], best["evaluator"])), None)
    if top is None or top["median"] is None or row["median"] is None or top["median"] <= row["median"] + 1e-12:
        return None  # the same median (the best won on q25): nothing to explain
    since = f"kept from {before['label']}" if before and before.get("label") else "kept from the budget before"
    return (f"{since} (within the noise of the highest median: {top['strategy']} × {top['evaluator']} "
            f"{top['median']:.4f}, {iqr_text(top['q25'], top['q75'])})")


def previous_row(rows: list[dict], i: int) -> dict | None:
    """The row of the budget before ``rows[i]``: the row before it with the same worker count (rows of
    several K follow one another, K by K), None for the first."""
    k = rows[i].get("workers")
    return next((r for r in reversed(rows[:i]) if r.get("workers") == k), None)


def lead_changes(row: dict, before: dict | None) -> bool:
    """Whether the row leads with another strategy × evaluator than the row of the budget before (both
    with an answer): where ``← the best choice changes`` goes."""
    return (before is not None and row.get("strategy") is not None and before.get("strategy") is not None
            and (row["strategy"], row["evaluator"]) != (before["strategy"], before["evaluator"]))


def choices_of(summary: dict) -> list[tuple[str, str]]:
    """Every strategy × evaluator a simulation replayed (summary.json ``strategies``), in order."""
    return list(dict.fromkeys((r["strategy"], r["evaluator"]) for r in summary.get("strategies") or ()))


def tie_summary(row: dict, choices: list[tuple[str, str]] | None = None) -> tuple[str, list[str], bool]:
    """How a row's choice reads when ties are summarised: (the headline, the tied choices it does not
    cover, whether the headline covers more than the row's own choice).  ``choices``: every strategy ×
    evaluator replayed (:func:`choices_of`); when every strategy run with the row's evaluator is tied
    with it, the headline is ``any sampler × mlp@0.03`` (every evaluator with its strategy:
    ``cycling × any evaluator``; every choice: ``any sampler × any evaluator``); the others are
    summarised the same way per evaluator, else named with their medians (``random × knn 0.7120``)."""
    lead = (row["strategy"], row["evaluator"])
    tied = row.get("tied") or []
    together = {lead} | {(t["strategy"], t["evaluator"]) for t in tied}
    pool = list(dict.fromkeys(choices or ()))
    samplers = lambda e: [c for c in pool if c[1] == e]  # noqa: E731
    evaluators = [c for c in pool if c[0] == lead[0]]
    if len(pool) > 1 and set(pool) <= together:
        return "any sampler × any evaluator", [], True
    if len(samplers(lead[1])) > 1 and set(samplers(lead[1])) <= together:
        head, covered = f"any sampler × {lead[1]}", set(samplers(lead[1]))
    elif len(evaluators) > 1 and set(evaluators) <= together:
        head, covered = f"{lead[0]} × any evaluator", set(evaluators)
    else:
        head, covered = f"{lead[0]} × {lead[1]}", {lead}
    rest, said = [], set()
    for t in tied:
        c = (t["strategy"], t["evaluator"])
        if c in covered or c in said:
            continue
        group = samplers(c[1])
        if len(group) > 1 and set(group) <= together and not set(group) & covered:
            rest.append(f"any sampler × {c[1]}")
            said |= set(group)
        else:
            med = "—" if t.get("median") is None else f"{t['median']:.4f}"
            rest.append(f"{c[0]} × {c[1]} {med}")
    return head, rest, len(covered) > 1


def stop_text(row: dict) -> str:
    """``, stop at 1.4 min`` when the row's choice is at its best before the row's budget; else ``""``."""
    stop = row.get("stop_s")
    if stop is None or row.get("budget_s") is None or stop >= row["budget_s"] * (1 - 1e-9):
        return ""
    return f", stop at {row.get('stop_label') or format_duration(stop)}"


def iqr_text(q25: float | None, q75: float | None) -> str:
    """``IQR 0.41–0.43``; with a null q25 (a quarter of the runs or more have selected nothing yet)
    says so instead of printing a dash for it."""
    if q25 is None:
        return "q75 —" if q75 is None else f"q75 {q75:.4f}; a quarter of the runs or more select nothing yet"
    return f"IQR {q25:.4f}–{q75:.4f}"


def _entry(s: dict, j: int) -> dict:
    """One choice at budget ``j``: its name, median, IQR and most-selected backbone."""
    entry = {"strategy": s["strategy"], "evaluator": s["evaluator"], "median": _num(s["median"][j]),
             "q25": _num(s["q25"][j]), "q75": _num(s["q75"][j]), "backbone": s["backbone"][j],
             "backbone_share": float(s["share"][j])}
    if "stop_s" in s:
        entry.update(stop_s=float(s["stop_s"][j]), stop_label=format_duration(float(s["stop_s"][j])))
    return entry


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


__all__ = ["SCALE_POINTS", "MAX_CHANGES", "scale_budgets", "thin", "median_se", "tied", "best_and_tied",
           "change_budgets", "recommend", "row_label", "kept_note", "iqr_text", "stop_early", "worse_with_budget",
           "worse_text", "stop_text", "previous_row", "lead_changes", "choices_of", "tie_summary"]
