"""The live search loop: evaluate in the schedule's order until the budget, resume from parts.

* Every evaluation is the sweep's own :func:`precompute.sweep.evaluate_backbone` with a
  one-fraction, one-seed, one-evaluator configuration: the same loading, subsets and timing, and
  an extraction plan holding only the images and splits its evaluator needs.
* Its charge is what the oracle charges for it: the row's ``seconds``, or, for a successive-halving
  promotion with ``incremental`` cost, :func:`shared.successive_halving.promotion_seconds` of the
  row and the lower fraction's row (load + Δextract + fit) — the simulator's very formula.
* The budget t_max is a hard deadline on the summed charges (Eq. 4).  The evaluation in flight
  runs inside :func:`precompute.clock.budget` with what is left: the meter reads the measured
  spans (load, each extraction segment, each fit) and stops the evaluation at the first fault
  point (after the load, each extraction batch, each head epoch) once they pass it; untimed
  bookkeeping never stops anything.  An evaluation that finishes with a charge over what is left
  is discarded.  A stop or a discard writes nothing, is remembered in ``search.json``, and the
  search ends there.
* State lives in part files (``<out>/parts/<dataset>/<backbone>.parquet``): a rerun rebuilds the
  trace by walking the schedule over the parts, charging their recorded rows (never the wall
  clock), and resumes with the first evaluation without a row.  With ``incremental`` promotions
  the features of a backbone still in the running are kept (``<out>/kept/``: float32, written
  before the part, so a resumed search finds them; rebuilt untimed if lost).
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from precompute import backbone as B
from precompute import clock, sweep
from precompute import datasets as D
from precompute import evaluators as E
from precompute import parts as P
from precompute import weights as W
from shared.evaluator_spec import format_spec
from shared.oracle import BACKBONE_META, COLUMNS
from shared.successive_halving import promotion_seconds

from .config import SEED, SearchConfig, SearchError, check_fraction
from .report import SEARCH_JSON, evaluation_line, summary_lines, write_outputs
from .schedule import schedule, search_order

FINAL_DIR = "final"
KEPT_DIR = "kept"
LOCK_NAME = ".search.lock"
WALL_KEY = "search_wall_seconds"  # part metadata: fraction -> wall seconds of the evaluation


# --------------------------------------------------------------------------------- trace
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

    def as_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "fraction": self.fraction, "score": self.score, "seconds": self.seconds,
                "wall_seconds": self.wall_seconds, "cumulative_seconds": self.cumulative_seconds,
                "status": self.status, "incumbent": self.incumbent, "incumbent_score": self.incumbent_score,
                **({"promotion": self.promotion} if self.promotion else {}),
                **({"error": self.error} if self.error else {})}


@dataclass
class Trace:
    """The counted evaluations and the incumbent rule (Eq. 3: best ε̃, the earlier wins ties; with
    successive halving the best ε̃ at the highest level evaluated, i.e. the lexicographic maximum of
    (level, ε̃), as :func:`simulate.engine.best_at_highest_level`)."""

    entries: list[Evaluation] = field(default_factory=list)
    spent: float = 0.0
    best: tuple[str, float] | None = None
    _key: tuple[int, float] | None = None

    def add(self, backbone: str, level: int, row: dict[str, Any], cost: float, wall: float | None = None,
            promotion: str | None = None, from_part: bool = False) -> Evaluation:
        ok = row.get("status") == "ok" and row.get("score") is not None
        self.spent = self.spent + cost  # sequential float64 sums: what the simulator's cumsum does
        score = float(row["score"]) if ok else None
        if ok and (self._key is None or (level, score) > self._key):
            self.best, self._key = (backbone, score), (level, score)
        e = Evaluation(backbone, float(row["fraction"]), score, cost, self.spent, "ok" if ok else "failed",
                       self.best[0] if self.best else None, self.best[1] if self.best else None, wall, promotion,
                       None if ok else (row.get("error") or "failed"), from_part)
        self.entries.append(e)
        return e


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


def _row_of(frame: pl.DataFrame, evaluator: str, fraction: float) -> dict[str, Any] | None:
    hit = frame.filter((pl.col("evaluator") == evaluator) & ((pl.col("fraction") - fraction).abs() < 1e-12)
                       & (pl.col("seed") == SEED))
    return hit.row(0, named=True) if hit.height else None


def _read_part(path: Path) -> tuple[pl.DataFrame, dict] | None:
    if not path.exists():
        return None
    try:
        return P.read_part(path)
    except Exception:  # unreadable part (writes are atomic, so unexpected): evaluate again
        return None


def _fill_meta(frame: pl.DataFrame, pool_row: dict[str, Any]) -> pl.DataFrame:
    """Per-backbone metadata the sweep leaves null (e.g. imagenet_top1) taken from the pool row, so
    the oracle made from the parts orders the pool as the search did."""
    fills = [pl.col(c).fill_null(pl.lit(pool_row[c], dtype=COLUMNS[c])) for c in BACKBONE_META
             if pool_row.get(c) is not None]
    return frame.with_columns(fills) if fills else frame


# ----------------------------------------------------------------------------- progress
class _Progress:
    """A tqdm bar of the budget spent (seconds); while an evaluation runs a thread moves it with
    the wall clock; the postfix names the current backbone and the incumbent."""

    def __init__(self, total: float, initial: float, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm  # lazy: only a search with a bar draws one

            self.bar = tqdm(total=round(total, 1), initial=round(min(initial, total), 1), unit="s",
                            desc="budget", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s{postfix}")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)

    def show(self, spent: float, current: str | None, best: tuple[str, float] | None) -> None:
        if self.bar is None:
            return
        inc = f"best {best[0]} {best[1]:.4f}" if best else "best -"
        self.bar.set_postfix_str((f"now {current} | " if current else "") + inc, refresh=False)
        self.bar.n = round(min(spent, self.bar.total), 1)
        self.bar.refresh()

    def running(self, base: float, current: str, best) -> None:
        self.idle()
        self.show(base, current, best)
        if self.bar is None:
            return
        self._stop = threading.Event()
        t0 = time.monotonic()

        def tick(stop=self._stop):
            while not stop.wait(0.5):
                self.show(base + time.monotonic() - t0, current, best)

        self._thread = threading.Thread(target=tick, daemon=True)
        self._thread.start()

    def idle(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self.idle()
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------- kept features
class Kept:
    """Features kept for incremental promotions, one file per (backbone, fraction) under
    ``<out>/kept/<dataset>/``: the image indices, float32 features and the row's cumulative
    ``extract_seconds``.  Dropped once the backbone is promoted or its chunk is done."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, backbone: str, fraction: float) -> Path:
        return self.folder / f"{P.safe_name(backbone)}@{fraction:g}.npz"

    def save(self, backbone: str, fraction: float, prior: sweep.Prior) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with P.atomic_path(self.path(backbone, fraction)) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, index=prior.index, features=prior.features.numpy(),
                         extract_seconds=np.float64(prior.extract_seconds))

    def load(self, backbone: str, fraction: float) -> sweep.Prior | None:
        path = self.path(backbone, fraction)
        try:
            with np.load(path) as z:
                return sweep.Prior(z["index"].astype(np.int64), torch.from_numpy(z["features"].copy()),
                                   float(z["extract_seconds"]))
        except (OSError, ValueError, KeyError):
            return None

    def drop(self, backbone: str, fraction: float) -> None:
        self.path(backbone, fraction).unlink(missing_ok=True)

    def clear(self) -> None:
        if self.folder.is_dir():
            for p in self.folder.glob("*.npz"):
                p.unlink(missing_ok=True)


# ---------------------------------------------------------------------- one evaluation
class _Evaluator:
    """One backbone at one fraction with the sweep's own :func:`~precompute.sweep.evaluate_backbone`
    (a one-fraction, one-seed, one-evaluator config), and the part that keeps its row(s)."""

    def __init__(self, scfg: sweep.SweepConfig, ds, device, rows: dict, name: str):
        self.scfg, self.ds, self.device, self.rows, self.name = scfg, ds, device, rows, name
        self.needs_test = E.EVALUATORS[name].needs_test
        self.plans: dict[float, dict] = {}
        self.images = self.meta = None

    def prepare(self, fraction: float) -> None:
        """Subsets and run meta (once), and the device warm-up: never on a clock."""
        if self.images is None:
            self.images = np.concatenate([self.ds.train_images, self.ds.test_images])
            self.meta = sweep.run_meta(self.scfg, self.ds)
            sweep.warm_up(self.device)  # one-time device costs: before the first budget, never charged
        if fraction not in self.plans:
            self.plans[fraction] = D.subset_plan(self.ds, [fraction], [SEED])

    def plan(self, fraction: float, prior: sweep.Prior | None) -> sweep.ExtractionPlan:
        """The images this evaluation extracts: its subset's train (and test, if its evaluator needs
        it) split, less what ``prior`` holds."""
        return sweep.extraction_plan(self.plans[fraction], (fraction,), len(self.ds.train_labels),
                                     len(self.images), self.needs_test, None if prior is None else prior.index)

    def evaluate(self, backbone: str, fraction: float, prior: sweep.Prior | None = None,
                 keep: bool = False) -> sweep.BackboneResult:
        cfg = replace(self.scfg, fractions=(fraction,))
        plan = self.plan(fraction, prior)
        res = sweep.evaluate_backbone(cfg, backbone, self.rows[backbone], self.ds, self.plans[fraction], plan,
                                      self.images, prior=prior, keep=keep)
        res.frame = _fill_meta(res.frame, self.rows[backbone])
        return res

    def write(self, backbone: str, frame: pl.DataFrame, fraction: float, wall: float) -> None:
        """The backbone's part: its rows of other fractions (successive halving's earlier rungs), then these;
        the evaluation's wall seconds in the part's metadata."""
        path = P.part_path(self.scfg.parts_dir, self.scfg.dataset, backbone)
        walls: dict[str, float] = {}
        if path.exists():
            old, old_meta = P.read_part(path)
            walls = dict(old_meta.get(WALL_KEY) or {})
            keys = frame.select("evaluator", "fraction", "seed")
            frame = pl.concat([old.join(keys, on=["evaluator", "fraction", "seed"], how="anti"), frame])
        walls[repr(float(fraction))] = float(wall)
        frame = frame.sort(["evaluator", "fraction", "seed"], descending=[False, True, False])
        P.write_part(frame, path, {**self.meta, "backbone": backbone, WALL_KEY: walls})

    def rebuild(self, backbone: str, fraction: float, row: dict[str, Any]) -> sweep.Prior | None:
        """Kept features lost (deleted, or a kill between the part and the file): extract them again,
        untimed, and keep the row's recorded ``extract_seconds``."""
        self.prepare(fraction)
        res = self.evaluate(backbone, fraction, keep=True)
        if res.kept is None:
            return None
        return sweep.Prior(res.kept.index, res.kept.features, float(row["extract_seconds"]))


def _prefetch(scfg, backbone: str) -> None:
    """Put a backbone's pretrained weights into the cache (downloading them if allowed) outside the
    budget; a failure is left to ``evaluate_backbone``, which records it as a failed row."""
    if scfg.weights != "pretrained" or scfg.pretrained_file is not None:
        return
    try:
        W.ensure_weights(backbone)
    except Exception:
        pass


# -------------------------------------------------------------------------------- search
@dataclass
class SearchResult:
    doc: dict[str, Any]  # what search.json holds
    out: Path
    resumed: int  # trace entries read back from the parts
    new_evaluations: int
    wall_seconds: float  # the whole call
    evaluation_wall_seconds: float  # wall time inside evaluate_backbone (counted or stopped)
    changed: bool  # search.json / report.html were (re)written


def run_search(cfg: SearchConfig, pool: pl.DataFrame, show_progress: bool = True,
               echo: Callable[[str], None] | None = print) -> SearchResult:
    """Run (or resume) the search; write parts, ``search.json`` and ``report.html`` under ``cfg.out``.

    Every input problem is a :class:`SearchError` (or another ``VibesError``) raised before anything
    is written under ``cfg.out`` (``SearchConfig`` checked the cheap ones when it was made); a budget
    below one evaluation is known after the first evaluation is stopped, and is an error too
    (nothing written)."""
    t_start = time.monotonic()
    budget, name, ladder, spec = cfg.budget_s, cfg.name, cfg.ladder, cfg.spec
    if pool.height == 0:
        raise SearchError("the pool is empty; give --pool names, globs or a pool file with backbones")
    device = B.resolve_device(cfg.device)  # a bad --device fails here, before anything is written
    order = search_order(pool, cfg.strategy, spec, cfg.seed)
    rows = {r["backbone"]: r for r in pool.unique("backbone", keep="first").iter_rows(named=True)}
    dataset = D.resolve(cfg.dataset)[0]
    cfg.dataset = dataset
    out = Path(cfg.out)
    parts_dir, final_dir = out / "parts", out / FINAL_DIR
    scfg = cfg.sweep_config(name, ladder, parts_dir)  # the protocol every part of this search records
    ds = D.load_dataset(dataset, data_root=cfg.data_root, download=cfg.download, cache_dir=cfg.cache_dir)
    for f in ladder:
        check_fraction(ds, f, format_spec(name, f), E.EVALUATORS[name].needs_test)
    sweep.check_existing_parts(scfg, order)
    fcfg = None
    if cfg.final is not None:
        fcfg = cfg.sweep_config(cfg.final, (1.0,), final_dir)
        sweep.check_existing_parts(fcfg, order)
    sh_doc = cfg.sh_doc()
    rule = cfg.sh.promotion_cost if cfg.sh else None
    _check_same_schedule(out, cfg, sh_doc)
    previous = _previous_stop(out, cfg, sh_doc)

    created = _missing_dirs(out)
    lock = P.BackboneLock(out / LOCK_NAME)
    out.mkdir(parents=True, exist_ok=True)
    if not lock.acquire():
        _remove_created(created)
        raise SearchError(f"another search is running in {str(out)!r} (lock {str(lock.path)!r}); wait for "
                          f"it or use another --out")
    progress = None
    try:
        P.remove_stale_tmp(out)
        trace, stopped = Trace(), None
        progress = _Progress(budget, 0.0, show_progress)
        evaluator = _Evaluator(scfg, ds, device, rows, name)
        kept = Kept(out / KEPT_DIR / dataset)
        walk = schedule(order, len(ladder), cfg.sh)
        resumed = new = 0
        loop_wall = 0.0
        while walk.next is not None:
            b, lv = walk.next
            f = ladder[lv]
            remaining = budget - trace.spent
            part = _read_part(P.part_path(parts_dir, dataset, b))
            row = _row_of(part[0], name, f) if part else None
            lower = _row_of(part[0], name, ladder[lv - 1]) if part and lv > 0 else None
            lower_ok = lower is not None and lower.get("status") == "ok" and lower.get("score") is not None
            # a promotion keeps features only from a lower evaluation that succeeded (else it is cold)
            promotion = None if lv == 0 else (rule if lower_ok else "cold")
            if row is not None:  # measured by an earlier run: its recorded rows are what it costs
                cost = charge(row, lower, promotion)
                if cost > remaining:
                    stopped = {"backbone": b, "fraction": f, "reason": "over budget", "from_part": True,
                               "seconds": cost, "remaining_s": remaining}
                    break
                wall = (part[1].get(WALL_KEY) or {}).get(repr(float(f)))
                e = trace.add(b, lv, row, cost, wall, promotion, from_part=True)
                resumed += 1
                progress.show(trace.spent, None, trace.best)
                walk.done(e.score)
                continue
            if remaining <= 0:
                break
            if (previous and previous.get("backbone") == b and previous.get("fraction", f) == f
                    and remaining <= previous["remaining_s"] + 1e-9):
                stopped = previous  # stopped before with at least this much left: it would stop again
                break
            progress.show(trace.spent, f"{b} (weights)", trace.best)
            _prefetch(scfg, b)  # a download is never charged, so it runs before the budget starts
            evaluator.prepare(f)
            prior = None
            if promotion == "incremental":
                prior = kept.load(b, ladder[lv - 1])
                if prior is None:
                    progress.write(f"note: the kept features of {b} at fraction {ladder[lv - 1]:g} are gone; "
                                   f"extracting them again (untimed)")
                    prior = evaluator.rebuild(b, ladder[lv - 1], lower)
            keep = rule == "incremental" and lv + 1 < len(ladder)
            progress.running(trace.spent, b, trace.best)
            t0 = time.monotonic()
            try:
                with clock.budget(remaining):
                    res = evaluator.evaluate(b, f, prior, keep=keep)
            except clock.OverBudget as stop:
                loop_wall += time.monotonic() - t0
                progress.idle()
                stopped = {"backbone": b, "fraction": f, "reason": "budget", "from_part": False,
                           "point": stop.where, "remaining_s": remaining, "measured_s": stop.spent,
                           "latency_s": stop.latency, "wall_s": time.monotonic() - t0}
                break
            wall = time.monotonic() - t0
            loop_wall += wall
            progress.idle()
            row = _row_of(res.frame, name, f)
            if row is None:  # cannot happen: the sweep writes one row per expected key
                raise RuntimeError(f"evaluate_backbone gave no {format_spec(name, f)} row for {b}")
            cost = charge(row, lower, promotion)
            if cost > remaining:  # finished between two points, but over what was left
                stopped = {"backbone": b, "fraction": f, "reason": "over budget", "from_part": False,
                           "seconds": cost, "remaining_s": remaining, "wall_s": wall}
                break
            if keep and res.kept is not None and row.get("status") == "ok":
                kept.save(b, f, res.kept)  # before the part: a part at f implies its kept features
            evaluator.write(b, res.frame, f, wall)
            e = trace.add(b, lv, row, cost, wall, promotion)
            new += 1
            progress.write(evaluation_line(len(trace.entries), e, cfg.sh is not None))
            progress.show(trace.spent, None, trace.best)
            walk.done(e.score)
            if lv > 0:
                kept.drop(b, ladder[lv - 1])
            if walk.next is None or walk.next[1] == 0:  # the chunk is done: nothing kept is needed
                kept.clear()
        progress.close()
        if not trace.entries and stopped is not None:
            what = (f"stopped after {stopped['measured_s']:.2f} measured s" if stopped["reason"] == "budget"
                    else f"needs {stopped['seconds']:.2f} s")
            raise SearchError(f"budget {cfg.budget_s:.3g} s is below one evaluation: the first backbone "
                              f"{stopped['backbone']} ({format_spec(name, stopped['fraction'])}) {what}; "
                              f"nothing was written; raise --budget, or put smaller backbones first "
                              f"(--pool with a `precompute pool --max-params N` table)")
        final = None
        if fcfg is not None:
            final = _final(cfg, fcfg, trace, ds, rows, name, parts_dir, final_dir, echo)
        nxt = walk.next
        doc = _document(cfg, budget, len(order), trace, stopped, final,
                        finished="pool" if nxt is None else "budget",
                        next_evaluation=None if nxt is None else {"backbone": nxt[0], "fraction": ladder[nxt[1]]},
                        sh=sh_doc)
        changed = write_outputs(out, doc)
        result = SearchResult(doc, out, resumed, new, time.monotonic() - t_start, loop_wall, changed)
        if echo is not None:
            for line in summary_lines(doc, resumed, new, loop_wall=loop_wall, changed=changed):
                echo(line)
        return result
    except BaseException:
        if progress is not None:
            progress.close()
        lock.release()
        _remove_created(created, keep_if_parts=True)
        raise
    finally:
        lock.release()


def _final(cfg, fcfg, trace, ds, rows, name, parts_dir, final_dir, echo):
    """``--final``: the incumbent evaluated by ``cfg.final`` at fraction 1.0, outside the budget
    (cached in ``final_dir``; the search's own row when it already is that evaluation)."""
    if trace.best is None:
        return {"evaluator": cfg.final, "fraction": 1.0, "backbone": None, "status": "skipped",
                "error": "no incumbent: no evaluation succeeded"}
    b = trace.best[0]
    path = P.part_path(final_dir, cfg.dataset, b)
    source = f"{FINAL_DIR}/ part"
    own_part = _read_part(P.part_path(parts_dir, cfg.dataset, b)) if cfg.final == name else None
    own = _row_of(own_part[0], name, 1.0) if own_part else None
    if own is not None:
        row, source = own, "the search's own evaluation"
    else:
        got = _read_part(path)
        row = _row_of(got[0], cfg.final, 1.0) if got else None
        if row is None:
            if echo is not None:
                echo(f"final: {cfg.final} at fraction 1.0 on {b} (outside the budget) ...")
            plans = D.subset_plan(ds, [1.0], [SEED])
            images = np.concatenate([ds.train_images, ds.test_images])
            plan = sweep.extraction_plan(plans, (1.0,), len(ds.train_labels), len(images),
                                         E.EVALUATORS[cfg.final].needs_test)
            t0 = time.monotonic()
            res = sweep.evaluate_backbone(fcfg, b, rows[b], ds, plans, plan, images)
            wall = time.monotonic() - t0
            P.write_part(_fill_meta(res.frame, rows[b]), path, {**sweep.run_meta(fcfg, ds), "backbone": b,
                                                               "wall_seconds": wall})
            row = _row_of(res.frame, cfg.final, 1.0)
            if echo is not None:
                echo(f"final: done in {wall:.1f} s of wall time")
    keys = ("score", "seconds", "load_seconds", "extract_seconds", "fit_seconds", "n_train", "n_test",
            "epochs", "status", "error")
    return {"evaluator": cfg.final, "fraction": 1.0, "backbone": b, "source": source,
            **{k: row.get(k) for k in keys}}


# ----------------------------------------------------------------------------- outputs
def _same_search(doc: dict, cfg: SearchConfig) -> bool:
    want = {"dataset": cfg.dataset, "strategy": cfg.strategy, "evaluator": cfg.spec, "seed": int(cfg.seed),
            "weights": cfg.weights, "input_size": cfg.input_size, "device": cfg.device,
            "fidelities": list(cfg.ladder)}
    return all(doc.get(k) == v for k, v in want.items())


def _read_doc(out: Path) -> dict | None:
    try:
        doc = json.loads((out / SEARCH_JSON).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _check_same_schedule(out: Path, cfg: SearchConfig, sh: dict | None) -> None:
    """Successive halving resumed in the same folder must keep its promotion cost: rows of promotions
    paid one way cannot be charged the other (kept features exist only for ``incremental``)."""
    doc = _read_doc(out)
    if sh is None or doc is None or not doc.get("sh") or not doc.get("trace"):
        return
    old = doc["sh"].get("promotion_cost", "cold")
    if old != sh["promotion_cost"] and doc.get("strategy") == cfg.strategy:
        raise SearchError(f"{str(out)!r} holds a search with --promotion-cost {old}; resume it with the same, "
                          f"or use another --out")


def _previous_stop(out: Path, cfg: SearchConfig, sh: dict | None) -> dict | None:
    """The evaluation the last run of the same search in ``out`` stopped or discarded (live), if any."""
    doc = _read_doc(out)
    if doc is None or not _same_search(doc, cfg) or doc.get("sh") != sh:
        return None
    stop = doc.get("stopped")
    if not isinstance(stop, dict) or stop.get("from_part"):
        return None
    return stop if isinstance(stop.get("remaining_s"), (int, float)) else None


def _document(cfg: SearchConfig, budget: float, pool_size: int, trace: Trace, stopped: dict | None,
              final: dict | None, finished: str, next_evaluation: dict | None, sh: dict | None) -> dict:
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
        "n_evaluated": len(trace.entries),
        "n_backbones": len({e.backbone for e in trace.entries}),
        "n_failed": sum(e.status != "ok" for e in trace.entries),
        "weights": cfg.weights,
        "input_size": cfg.input_size,
        "device": cfg.device,
        "finished": finished,  # "budget": the next evaluation did not fit; "pool": all evaluated
        "next": next_evaluation,
        "incumbent": inc,
        "trace": [e.as_dict() for e in trace.entries],
        "stopped": stopped,
        "final": final,
        "parts_dir": str(Path(cfg.out) / "parts"),
    }


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its parents that do not exist yet (deepest first)."""
    missing = []
    p = path.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    return missing


def _remove_created(created, keep_if_parts: bool = False) -> None:
    """Undo the folders this run created when it wrote nothing in them."""
    if not created:
        return
    top = created[-1]
    if not top.exists():
        return
    files = [p for p in top.rglob("*") if p.is_file()]
    if keep_if_parts and files:
        return
    if not files:
        shutil.rmtree(top, ignore_errors=True)


__all__ = ["Evaluation", "Trace", "SearchResult", "run_search", "charge", "Kept"]
