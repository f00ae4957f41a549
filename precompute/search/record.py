"""What a live search counted, and how it is read back: the trace (:class:`Evaluation`, :class:`Trace`, each
entry's incumbent on the workers' timeline), the charge of an evaluation (the simulator's rule), the part
file of each backbone (its rows, the evaluation's wall seconds and retries in its metadata) and
``search.json``'s document, with what a rerun of the same search reads back from it."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from precompute import parts as P
from shared.oracle import BACKBONE_META, COLUMNS
from shared.successive_halving import promotion_seconds

from .config import SEED, SearchConfig, SearchError
from .report import SEARCH_JSON

WALL_KEY = "search_wall_seconds"  # part metadata: fraction -> wall seconds of the evaluation
RETRY_KEY = "search_retries"  # part metadata: fraction -> workers that died running it (retried)


@dataclass
class Evaluation:
    """One entry of the trace (counted evaluations, in order)."""

    backbone: str
    fraction: float
    score: float | None
    seconds: float  # the charge (Eq. 4): what the oracle charges for this evaluation
    cumulative_seconds: float
    status: str
    incumbent: str | None
    incumbent_score: float | None
    wall_seconds: float | None = None  # the evaluation's wall time (None: not recorded)
    promotion: str | None = None  # "incremental" or "cold" for a successive-halving promotion
    error: str | None = None
    from_part: bool = False  # read back from the parts (an earlier run), not evaluated by this one
    worker: int = 0  # where it ran on the timeline of the search's K workers
    start_s: float = 0.0  # when it started and ended on that timeline (measured seconds)
    end_s: float = 0.0
    retried: int = 0  # workers that died running it before it ran to its end on another

    def as_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "fraction": self.fraction, "score": self.score, "seconds": self.seconds,
                "wall_seconds": self.wall_seconds, "cumulative_seconds": self.cumulative_seconds,
                "worker": self.worker, "start_s": self.start_s, "end_s": self.end_s,
                "status": self.status, "incumbent": self.incumbent, "incumbent_score": self.incumbent_score,
                **({"promotion": self.promotion} if self.promotion else {}),
                **({"error": self.error} if self.error else {}),
                **({"retried": self.retried} if self.retried else {})}


@dataclass
class Trace:
    """The counted evaluations in the order they started and the incumbent (Eq. 3 on K workers: the
    best (level, ε̃) among the evaluations ended by a time, ties to the earlier end, then the
    earlier position; one level and one worker: the best ε̃ so far, the earlier wins ties)."""

    entries: list[Evaluation] = field(default_factory=list)
    spent: float = 0.0  # the sum of the counted charges: compute spent
    best: tuple[str, float] | None = None
    _key: tuple[int, float] | None = None


def _num(x) -> float:
    """A row value as the simulator reads it: null -> NaN."""
    return float("nan") if x is None else float(x)


def charge(row: dict[str, Any], lower: dict[str, Any] | None, rule: str | None) -> float:
    """What an evaluation costs the budget, exactly as the simulator charges it: the row's
    ``seconds`` (null/NaN counted 0, the simulator's rule for failed rows); a promotion (``lower``,
    the row one rung below) under ``rule`` by :func:`~shared.successive_halving.promotion_seconds`."""
    s = row.get("seconds")
    cold = float(s) if s is not None and math.isfinite(float(s)) else 0.0
    if lower is None or rule is None:
        return cold
    lower_ok = lower.get("status") == "ok" and lower.get("score") is not None
    return float(promotion_seconds(cold, _num(row.get("load_seconds")), _num(row.get("extract_seconds")),
                                   _num(lower.get("extract_seconds")), _num(row.get("fit_seconds")), rule,
                                   lower_ok))


def row_of(frame: pl.DataFrame, evaluator: str, fraction: float) -> dict[str, Any] | None:
    hit = frame.filter((pl.col("evaluator") == evaluator) & ((pl.col("fraction") - fraction).abs() < 1e-12)
                       & (pl.col("seed") == SEED))
    return hit.row(0, named=True) if hit.height else None


def read_part_if_any(path: Path) -> tuple[pl.DataFrame, dict] | None:
    if not path.exists():
        return None
    try:
        return P.read_part(path)
    except Exception:  # unreadable part (writes are atomic, so unexpected): evaluate again
        return None


def fill_meta(frame: pl.DataFrame, pool_row: dict[str, Any]) -> pl.DataFrame:
    """Per-backbone metadata the sweep leaves null (e.g. imagenet_top1) taken from the pool row, so
    the oracle made from the parts orders the pool as the search did."""
    fills = [pl.col(c).fill_null(pl.lit(pool_row[c], dtype=COLUMNS[c])) for c in BACKBONE_META
             if pool_row.get(c) is not None]
    return frame.with_columns(fills) if fills else frame


@dataclass
class Slot:
    """One evaluation of the run's sequence (its index is its position): where it stands."""

    index: int
    backbone: str
    level: int
    fraction: float
    promotion: str | None
    lower: dict | None  # the row one rung below (a promotion)
    row: dict | None = None  # its row, once known
    frame: pl.DataFrame | None = None  # rows to write into its part, once placed and counted
    cost: float | None = None  # its charge; inf: stopped (it cannot end by the budget); resolved once set
    wall: float | None = None
    from_part: bool = False
    stop: dict | None = None  # why it does not count (budget, over budget, lost)
    placed: tuple[int, float, float] | None = None  # (worker, start, end) on the timeline
    counted: bool = False
    lost: bool = False  # its worker died twice: not counted, and it holds no worker on the timeline
    retries: int = 0  # workers that died under it before it ended


def score_of(row: dict) -> float | None:
    ok = row.get("status") == "ok" and row.get("score") is not None
    return float(row["score"]) if ok else None


def write_part(scfg, run_meta: dict, sl: Slot) -> None:
    """The backbone's part: its rows of other fractions (successive halving's earlier rungs), then these;
    the evaluation's wall seconds (and workers that died under it) in the part's metadata."""
    path = P.part_path(scfg.parts_dir, scfg.dataset, sl.backbone)
    frame = sl.frame
    walls: dict[str, float] = {}
    retries: dict[str, int] = {}
    if path.exists():
        old, old_meta = P.read_part(path)
        walls = dict(old_meta.get(WALL_KEY) or {})
        retries = dict(old_meta.get(RETRY_KEY) or {})
        keys = frame.select("evaluator", "fraction", "seed")
        frame = pl.concat([old.join(keys, on=["evaluator", "fraction", "seed"], how="anti"), frame])
    walls[repr(float(sl.fraction))] = float(sl.wall)
    if sl.retries:
        retries[repr(float(sl.fraction))] = int(sl.retries)
    frame = frame.sort(["evaluator", "fraction", "seed"], descending=[False, True, False])
    P.write_part(frame, path, {**run_meta, "backbone": sl.backbone, WALL_KEY: walls,
                               **({RETRY_KEY: retries} if retries else {})})


def trace_of(counted: list[Slot], k: int) -> Trace:
    """The counted evaluations in the order they started, each with the incumbent at its end: the best
    (level, ε̃) among the evaluations ended by then, ties to the earlier end, then position."""
    trace = Trace()
    for sl in counted:
        trace.spent = trace.spent + sl.cost
        ok = score_of(sl.row) is not None
        worker, start, end = sl.placed
        best = None
        for o in counted:
            if o.placed[2] <= end and score_of(o.row) is not None:
                key = (o.level, score_of(o.row), -o.placed[2], -o.index)
                if best is None or key > best[0]:
                    best = (key, o.backbone)
        if best is not None and (trace._key is None or best[0][:2] > trace._key):
            trace._key = best[0][:2]
        trace.best = (best[1], best[0][1]) if best else trace.best
        e = Evaluation(sl.backbone, sl.fraction, score_of(sl.row), sl.cost, trace.spent, "ok" if ok else "failed",
                       best[1] if best else None, best[0][1] if best else None, sl.wall, sl.promotion,
                       None if ok else (sl.row.get("error") or "failed"), sl.from_part,
                       worker=worker, start_s=start, end_s=end, retried=sl.retries)
        trace.entries.append(e)
    if counted:  # the incumbent when the search ends: over every counted evaluation
        best = max(((o.level, score_of(o.row), -o.placed[2], -o.index), o.backbone) for o in counted
                   if score_of(o.row) is not None) if any(score_of(o.row) is not None for o in counted) else None
        trace.best = None if best is None else (best[1], best[0][1])
    return trace


def same_search(doc: dict, cfg: SearchConfig) -> bool:
    want = {"dataset": cfg.dataset, "strategy": cfg.strategy, "evaluator": cfg.spec, "seed": int(cfg.seed),
            "weights": cfg.weights, "input_size": cfg.input_size, "device": cfg.device,
            "fidelities": list(cfg.ladder)}
    lim = cfg.limits.describe() if cfg.limits is not None and cfg.limits.active else None
    return all(doc.get(k) == v for k, v in want.items()) and (doc.get("limits") or {}).get("described") == lim


def read_doc(out: Path) -> dict | None:
    try:
        doc = json.loads((out / SEARCH_JSON).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def check_same_schedule(out: Path, cfg: SearchConfig, sh: dict | None) -> None:
    """Successive halving resumed in the same folder must keep its promotion cost: rows of promotions
    paid one way cannot be charged the other (kept features exist only for ``incremental``)."""
    doc = read_doc(out)
    if sh is None or doc is None or not doc.get("sh") or not doc.get("trace"):
        return
    old = doc["sh"].get("promotion_cost", "cold")
    if old != sh["promotion_cost"] and doc.get("strategy") == cfg.strategy:
        raise SearchError(f"{str(out)!r} holds a search with --promotion-cost {old}; resume it with the same, "
                          f"or use another --out")


def previous_stops(out: Path, cfg: SearchConfig, sh: dict | None) -> dict[tuple[str, float], dict]:
    """The evaluations the last run of the same search in ``out`` stopped or discarded live (not read
    from parts), by (backbone, fraction), each with the seconds it was allowed (``remaining_s``)."""
    doc = read_doc(out)
    if doc is None or not same_search(doc, cfg) or doc.get("sh") != sh or doc.get("workers", 1) != cfg.workers:
        return {}
    stops = doc.get("not_counted") or ([doc["stopped"]] if isinstance(doc.get("stopped"), dict) else [])
    return {(s["backbone"], float(s["fraction"])): s for s in stops
            if isinstance(s, dict) and not s.get("from_part") and s.get("reason") in ("budget", "over budget")
            and isinstance(s.get("remaining_s"), (int, float))}


def search_doc(cfg: SearchConfig, budget: float, pool_size: int, trace: Trace, stopped: dict | None,
              final: dict | None, finished: str, next_evaluation: dict | None, sh: dict | None, workers: int = 1,
              not_counted: list | None = None, engine: str | None = None, limits: dict | None = None) -> dict:
    inc = {"backbone": trace.best[0], "score": trace.best[1]} if trace.best else None
    return {
        "dataset": cfg.dataset,
        "strategy": cfg.strategy,
        "evaluator": cfg.spec,
        "fidelities": list(cfg.ladder),
        "sh": sh,
        "seed": int(cfg.seed),
        "budget": str(cfg.budget),
        "budget_s": budget,
        "spent_s": trace.spent,
        "pool_size": pool_size,
        "limits": limits,  # deployment limits and what they left out (None: no limit)
        "n_evaluated": len(trace.entries),
        "n_backbones": len({e.backbone for e in trace.entries}),
        "n_failed": sum(e.status != "ok" for e in trace.entries),
        "weights": cfg.weights,
        "input_size": cfg.input_size,
        "device": cfg.device,
        "workers": workers,
        "engine": engine,
        "finished": finished,  # "budget": the next evaluation did not fit; "pool": all evaluated; "interrupted": Ctrl-C
        "next": next_evaluation,
        "incumbent": inc,
        "trace": [e.as_dict() for e in trace.entries],
        "stopped": stopped,  # the first evaluation that does not count
        "not_counted": not_counted or [],
        "final": final,
        "parts_dir": str(Path(cfg.out) / "parts"),
        "config": cfg.command_config,  # each option of `precompute search` and where it came from (--config)
    }


__all__ = ["WALL_KEY", "RETRY_KEY", "Evaluation", "Trace", "Slot", "charge", "row_of", "read_part_if_any",
           "fill_meta", "score_of", "write_part", "trace_of", "same_search", "read_doc", "check_same_schedule",
           "previous_stops", "search_doc"]
