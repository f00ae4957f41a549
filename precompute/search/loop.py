"""The live search loop: evaluate in the schedule's order until the budget, resume from parts.

* Every evaluation is the sweep's own :func:`precompute.sweep.evaluate_backbone` with a
  one-fraction, one-seed, one-evaluator configuration: the same loading, subsets and timing, and
  an extraction plan holding only the images and splits its evaluator needs.
* Its charge is what the oracle charges for it: the row's ``seconds``, or, for a successive-halving
  promotion with ``incremental`` cost, :func:`shared.successive_halving.promotion_seconds` of the
  row and the lower fraction's row (load + Δextract + fit) — the simulator's very formula.
* The budget t_max is a hard deadline on the search's time: every charge is laid, in the
  sequence's order, on the timeline of K workers (:class:`shared.workers.Timeline`: the worker
  free earliest, ties to the lowest index; a successive-halving rung waits for the rung below in
  its chunk), and an evaluation counts when it ends by t_max (one worker: Eq. 4, the summed charges).
  An evaluation runs inside :func:`precompute.clock.budget` of t_max minus the earliest it can
  start (exact on one worker; on K, a bound, as the evaluations before it may still run): the
  meter reads the measured spans (load, each extraction segment, each fit) and stops it at the
  first fault point (after the load, each extraction batch, each head epoch) once they pass that;
  untimed bookkeeping never stops anything.  An evaluation that finishes after t_max on the
  timeline does not count.  Neither writes anything; both are remembered in ``search.json``
  (``not_counted``) and not run again for the same budget.  On one worker the search ends at the
  first evaluation that does not count; on K, an evaluation stopped (its worker busy past t_max)
  does not keep the others from counting.
* ``asha:<sampler>`` (:class:`_AshaSearch`, :mod:`.asha`): no fixed sequence; each decision (promote, or
  start the next backbone) is taken on the timeline itself, by the worker free earliest, from the
  evaluations ended by then, so an outcome is laid out when the walk decides it; the workers the walk
  leaves idle evaluate the next backbones of the order ahead.
* Failures are told apart (:mod:`.workers`).  A failed evaluation (any exception in it) is a row like
  any other: counted, written, charged the seconds it measured, its worker free again.  A lost one
  (its worker died, and the one it was retried on) is not counted, holds no worker on the timeline
  and is evaluated again by a rerun.  The one stopping rule (:meth:`_Search.taking`): evaluations are
  taken until one cannot start by the budget, on one worker until the first that does not count.
  A search whose every evaluation failed, or was lost, is an error naming why (never the budget).
* What counted and how it is read back (the trace, the parts, ``search.json``) is :mod:`.record`; the
  progress bar :mod:`.progress`.
* State lives in part files (``<out>/parts/<dataset>/<backbone>.parquet``), written in the
  sequence's order once an evaluation is placed and counted: a rerun rebuilds the trace by walking
  the schedule over the parts, charging their recorded rows (never the wall clock), and resumes
  with the first evaluation without a row.  With ``incremental`` promotions
  the features of a backbone still in the running are kept (``<out>/kept/``: float32, written
  before the part, so a resumed search finds them; rebuilt untimed if lost).
"""
from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from precompute import backbone as B
from precompute import datasets as D
from precompute import evaluators as E
from precompute import gpus as G
from precompute import parts as P
from precompute import sweep
from precompute import weights as W
from shared.errors import VibesError
from shared.evaluator_spec import format_spec
from shared.limits import Limits, latency_table
from shared.limits import apply as apply_limits
from shared.workers import Timeline

from .asha import AshaWalk
from .config import SEED, SearchConfig, SearchError, check_fraction
from .progress import Progress, progress_line
from .record import (
    RETRY_KEY,
    WALL_KEY,
    Slot,
    Trace,
    charge,
    check_same_schedule,
    fill_meta,
    previous_stops,
    read_part_if_any,
    row_of,
    score_of,
    search_doc,
    trace_of,
    write_part,
)
from .report import SEARCH_JSON, mark_stale, put_back, summary_lines, write_outputs
from .schedule import schedule, search_order
from .workers import Done, Failed, InProcess, Lost, Task, failed_frame, local_workers, slurm_workers

FINAL_DIR = "final"
KEPT_DIR = "kept"
LOCK_NAME = ".search.lock"


















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




@dataclass
class _Setup:
    """What one search works with, every input checked before anything is written."""

    order: list[str]
    rows: dict[str, dict]  # pool row by backbone
    out: Path
    scfg: Any  # the sweep configuration of its evaluations (parts under out/parts)
    fcfg: Any  # --final's (None without)
    ds: Any
    sh_doc: dict | None
    previous: dict  # evaluations the last run stopped, by (backbone, fraction)
    limits_doc: dict | None
    gpus: list[str] | None  # local GPU workers: each one's GPU


def run_search(cfg: SearchConfig, pool: pl.DataFrame, show_progress: bool = True,
               echo: Callable[[str], None] | None = print, workers=None,
               latency: pl.DataFrame | None = None) -> SearchResult:
    """Run (or resume) the search; write parts, ``search.json`` and ``report.html`` under ``cfg.out``.

    ``workers``: where the evaluations run (:mod:`precompute.search.workers`; default: this
    process, or a local Dask cluster of ``cfg.workers`` processes); ``latency``: the latency table of
    ``cfg.limits`` when the caller has read it (else it is read here).  Every input problem is a
    :class:`SearchError` (or another ``VibesError``) raised before anything is written under
    ``cfg.out`` (``SearchConfig`` checked the cheap ones when it was made); a budget below one
    evaluation is known after the first evaluation is stopped, and is an error too (nothing written).
    A search whose every evaluation failed writes what it did, then is an error naming the failure."""
    t_start = time.monotonic()
    setup = _prepare(cfg, pool, latency, own_workers=workers is None)
    out = setup.out
    created = _missing_dirs(out)
    lock = P.BackboneLock(out / LOCK_NAME)
    out.mkdir(parents=True, exist_ok=True)
    if not lock.acquire():
        _remove_created(created)
        raise SearchError(f"another search is running in {str(out)!r} (lock {str(lock.path)!r}); wait for "
                          f"it or use another --out")
    progress = engine = search = None
    earlier: dict[Path, str] = {}
    try:
        P.remove_stale_tmp(out)
        earlier = mark_stale(out, time.strftime("%Y-%m-%d %H:%M:%S"))  # an earlier run's outputs say so
        progress = Progress(cfg.budget_s, 0.0, show_progress)
        engine = workers if workers is not None else start_workers(cfg, setup.gpus)
        search = (_AshaSearch if cfg.asha else _Search)(cfg, setup, engine, progress)
        search.run()
        return search.finish(echo, t_start)
    except BaseException as exc:
        if progress is not None:
            progress.close()
        _ended_early(exc, search, earlier)
        lock.release()
        _remove_created(created, keep_if_parts=True)
        raise
    finally:
        if engine is not None and workers is None:
            engine.close()
        lock.release()


def _ended_early(exc: BaseException, search: _Search | None, earlier: dict[Path, str]) -> None:
    """The outputs of a search that ends in an exception before writing its own: on Ctrl-C those of the
    evaluations counted so far (none counted: the earlier run's keep their stale mark); on a refusal
    before any evaluation counted (e.g. a budget below one evaluation), the earlier run's as they were."""
    if search is not None and search.wrote:
        return
    if isinstance(exc, KeyboardInterrupt):
        if search is not None:
            with contextlib.suppress(OSError, VibesError):  # a second problem never hides the Ctrl-C
                search.write_interrupted()
    elif isinstance(exc, VibesError) and (search is None or not any(sl.counted for sl in search.slots)):
        put_back(earlier)


def _prepare(cfg: SearchConfig, pool: pl.DataFrame, latency, own_workers: bool) -> _Setup:
    """Every check a search makes before it writes anything, and what it works with."""
    if pool.height == 0:
        raise SearchError("the pool is empty; give --pool names, globs or a pool file with backbones")
    gpus = worker_gpus(cfg) if own_workers else None  # more workers than GPUs fails here
    B.resolve_device(cfg.device)  # a bad --device fails here, before anything is written
    pool, limits_doc = _within_limits(pool, cfg.limits, latency)
    order = search_order(pool, cfg.strategy, cfg.spec, cfg.seed)
    rows = {r["backbone"]: r for r in pool.unique("backbone", keep="first").iter_rows(named=True)}
    cfg.dataset = D.resolve(cfg.dataset)[0]
    out = Path(cfg.out)
    scfg = cfg.sweep_config(cfg.name, cfg.ladder, out / "parts")  # the protocol every part of this search records
    ds = D.load_dataset(cfg.dataset, data_root=cfg.data_root, download=cfg.download, cache_dir=cfg.cache_dir)
    for f in cfg.ladder:
        check_fraction(ds, f, format_spec(cfg.name, f), E.EVALUATORS[cfg.name].needs_test)
    sweep.check_existing_parts(scfg, order, "--out")
    fcfg = None
    if cfg.final is not None:
        fcfg = cfg.sweep_config(cfg.final, (1.0,), out / FINAL_DIR)
        sweep.check_existing_parts(fcfg, order, "--out")
    sh_doc = cfg.sh_doc()
    check_same_schedule(out, cfg, sh_doc)
    return _Setup(order, rows, out, scfg, fcfg, ds, sh_doc, previous_stops(out, cfg, sh_doc), limits_doc, gpus)


def worker_gpus(cfg: SearchConfig) -> list[str] | None:
    """The GPU of each of the search's K local workers (None: one worker, a Slurm cluster, or a CPU):
    :func:`precompute.gpus.gpus_for` the ``--device``, refused in one line when the box has fewer."""
    if cfg.workers == 1 or cfg.cluster != "local":
        return None
    device = str(cfg.device)
    if not device.startswith("cuda"):
        device = str(B.resolve_device(device))  # auto: CUDA when this machine has it
        if not device.startswith("cuda"):
            return None
    try:
        return G.gpus_for(device, cfg.workers, "--workers", "worker")
    except VibesError as exc:
        raise SearchError(str(exc)) from None


class _Search:
    """One run of the search loop: the sequence's slots, the timeline of K workers and what counted.

    Evaluations are taken in the walk's order while :meth:`taking` (the one stopping rule), each read
    from its part or sent to a free worker; every outcome resolves its slot, and the resolved prefix
    is laid on the timeline (:meth:`_lay_out`), counted when it ends by the budget."""

    def __init__(self, cfg: SearchConfig, setup: _Setup, engine, progress: Progress):
        self.cfg, self.setup, self.engine, self.progress = cfg, setup, engine, progress
        self.k = engine.k
        self.budget = cfg.budget_s
        self.rule = cfg.sh.promotion_cost if cfg.sh else None
        self.walk = schedule(setup.order, len(cfg.ladder), cfg.sh)
        self.group, self.waits = self.walk.layout.barriers()
        self.kept_dir = setup.out / KEPT_DIR / cfg.dataset
        self.timeline = Timeline(self.k, int(self.group.max()) + 1 if len(self.group) else 1)
        self.slots: list[Slot] = []
        self.laid = 0  # slots[:laid] are laid out: placed on the timeline, or lost
        self.resumed = self.new = 0
        self.loop_wall = 0.0  # wall seconds of the evaluations run
        self.spent = 0.0  # sum of the charges of the counted evaluations
        self.best = None  # the incumbent so far: ((level, score), backbone)
        self.nxt = None  # the evaluation taken but not started: it cannot end by the budget
        self.budget_stop = False  # an evaluation laid out did not count because of the budget
        self.wrote = False  # search.json and report.html describe this run
        self.run_meta = sweep.run_meta(setup.scfg, setup.ds)

    # ------------------------------------------------------------------------- the loop
    def taking(self) -> bool:
        """The stopping rule: take evaluations until one cannot start by the budget; on one worker,
        only until the first that does not count (Eq. 4).  A failed or lost evaluation stops nothing."""
        return self.nxt is None and not (self.k == 1 and self.budget_stop)

    def run(self) -> None:
        while True:
            while self.taking() and self.engine.busy < self.k:
                got = self.walk.take()
                if got is None:
                    break
                self._take(*got)
            if self.engine.busy == 0:
                break
            outcome = self.engine.wait()
            self.progress.idle()
            self._receive(outcome)
            self._lay_out()
            self._drop_kept()
        self.progress.close()

    def _slot(self, i: int, b: str, lv: int) -> Slot:
        """Evaluation i (backbone b at rung lv) with the row one rung below; its own row, charge and
        wall seconds when its part holds them (measured by an earlier run: what it costs)."""
        f = self.cfg.ladder[lv]
        part = read_part_if_any(P.part_path(self.setup.scfg.parts_dir, self.cfg.dataset, b))
        row = row_of(part[0], self.cfg.name, f) if part else None
        lower = row_of(part[0], self.cfg.name, self.cfg.ladder[lv - 1]) if part and lv > 0 else None
        lower_ok = lower is not None and lower.get("status") == "ok" and lower.get("score") is not None
        # a promotion keeps features only from a lower evaluation that succeeded (else it is cold)
        promotion = None if lv == 0 else (self.rule if lower_ok else "cold")
        sl = Slot(i, b, lv, f, promotion, lower)
        if row is not None:
            sl.row, sl.cost, sl.from_part = row, charge(row, lower, promotion), True
            sl.wall = (part[1].get(WALL_KEY) or {}).get(repr(float(f)))
            sl.retries = int((part[1].get(RETRY_KEY) or {}).get(repr(float(f)), 0))
            self.resumed += 1
        return sl

    def _take(self, i: int, b: str, lv: int) -> None:
        """Evaluation i (backbone b at rung lv): from its part, refused by the budget, or submitted."""
        f = self.cfg.ladder[lv]
        sl = self._slot(i, b, lv)
        self.slots.append(sl)
        if sl.from_part:
            self.walk.done(i, score_of(sl.row))
            self._lay_out()
            return
        start = self._lower_bound_start(i)
        if start >= self.budget:
            self.slots.pop()
            self.nxt = {"backbone": b, "fraction": f}
            return
        again = self.setup.previous.get((b, f))
        if again is not None and self.budget - start <= again["remaining_s"] + 1e-9:
            sl.cost, sl.stop = math.inf, again  # stopped before with at least this much left
            self.walk.done(i, None)
            self._lay_out()
            return
        self._submit(sl, self.budget - start)

    def _submit(self, sl: Slot, cap: float) -> None:
        """Send evaluation ``sl`` to a worker, stopped once its measured seconds pass ``cap``."""
        b, lv, ladder, incremental = sl.backbone, sl.level, self.cfg.ladder, sl.promotion == "incremental"
        best = self._best()
        self.progress.show(self.spent, f"{b} (weights)", best)
        _prefetch(self.setup.scfg, b)  # a download is never charged, so it runs before the budget starts
        self.progress.running(self.spent, b, best)
        self.engine.submit(Task(
            sl.index, b, sl.fraction, self.setup.scfg, self.setup.rows[b], cap, threads=self.cfg.threads,
            prior=self._kept_path(b, ladder[lv - 1]) if incremental else None,
            prior_fraction=ladder[lv - 1] if incremental else None,
            prior_extract=float(sl.lower["extract_seconds"]) if incremental else None,
            keep=self._kept_path(b, sl.fraction) if self.rule == "incremental" and lv + 1 < len(ladder) else None))
        sl.stop = {"remaining_s": cap}  # until it comes back

    def _receive(self, outcome: Done | Failed | Lost) -> None:
        """Resolve the slot of a task that came back; the walk learns its ε̃ (None: none)."""
        sl = self.slots[outcome.index]
        self._resolve(sl, outcome)
        self.walk.done(sl.index, None if sl.row is None else score_of(sl.row))

    def _resolve(self, sl: Slot, outcome: Done | Failed | Lost) -> None:
        """A task that came back: rows (ok or failed), a budget stop, or lost."""
        if isinstance(outcome, Lost):
            sl.lost, sl.cost = True, 0.0
            sl.stop = {"backbone": sl.backbone, "fraction": sl.fraction, "reason": "lost", "error": outcome.error,
                       "from_part": False, "remaining_s": sl.stop["remaining_s"]}
            return
        self.loop_wall += outcome.wall
        if isinstance(outcome, Failed):  # an exception Dask gave back: a failed evaluation, nothing measured
            frame = failed_frame(self.setup.scfg, sl.fraction, sl.backbone, self.setup.rows[sl.backbone],
                                 outcome.error)
            outcome = Done(outcome.index, frame, outcome.wall)
        sl.wall, sl.retries = outcome.wall, outcome.retries
        if outcome.stopped is not None:
            sl.cost = math.inf
            sl.stop = {"backbone": sl.backbone, "fraction": sl.fraction, "reason": "budget", "from_part": False,
                       **{k_: v for k_, v in outcome.stopped.items() if k_ != "cap_s"},
                       "remaining_s": outcome.stopped["cap_s"], "wall_s": outcome.wall}
            return
        row = row_of(outcome.frame, self.cfg.name, sl.fraction)
        if row is None:  # cannot happen: the sweep writes one row per expected key
            raise RuntimeError(f"evaluate_backbone gave no {format_spec(self.cfg.name, sl.fraction)} row for "
                               f"{sl.backbone}")
        sl.row, sl.frame = row, fill_meta(outcome.frame, self.setup.rows[sl.backbone])
        sl.cost, sl.stop = charge(row, sl.lower, sl.promotion), None

    # ---------------------------------------------------------------------- the timeline
    def _lay_out(self) -> None:
        """Lay every resolved evaluation after the laid-out prefix on the timeline, in order; count
        it if it ends by the budget, and write its part.  A lost one holds no worker."""
        while self.laid < len(self.slots) and self.slots[self.laid].cost is not None:
            sl = self.slots[self.laid]
            self.laid += 1
            if sl.lost:
                continue
            self._settle(sl, self.timeline.place(sl.cost, int(self.group[sl.index]), int(self.waits[sl.index])))

    def _settle(self, sl: Slot, placed: tuple[int, float, float]) -> None:
        """An evaluation laid on the timeline at ``placed``: counted (its part written) if it ends by
        the budget, else remembered with why."""
        sl.placed = placed
        sl.counted = sl.placed[2] <= self.budget
        if not sl.counted:
            self.budget_stop = True
            if sl.stop is None:  # it finished, but after the budget
                sl.stop = {"backbone": sl.backbone, "fraction": sl.fraction, "reason": "over budget",
                           "from_part": sl.from_part, "seconds": sl.cost, "remaining_s": self.budget - sl.placed[1],
                           **({"wall_s": sl.wall} if not sl.from_part else {})}
        else:
            self._count(sl)
        self.progress.show(self.spent, None, self._best())

    def _count(self, sl: Slot) -> None:
        if not sl.from_part:
            write_part(self.setup.scfg, self.run_meta, sl)
            self.new += 1
        self.spent = self.spent + sl.cost
        score = score_of(sl.row)
        if score is not None and (self.best is None or (sl.level, score) > self.best[0]):
            self.best = ((sl.level, score), sl.backbone)
        if not sl.from_part:
            self.progress.write(progress_line(sl, self.spent, self.k, self.cfg.sh is not None))

    def _lower_bound_start(self, i: int) -> float:
        """The earliest evaluation i can start: the laid-out prefix, then the evaluations in flight
        (or resolved but not laid out yet) at their known cost, or 0 while running."""
        tmp = self.timeline.copy()
        for sl in self.slots[self.laid:i]:
            if not sl.lost:
                tmp.place(0.0 if sl.cost is None else sl.cost, int(self.group[sl.index]), int(self.waits[sl.index]))
        return tmp.place(0.0, int(self.group[i]), int(self.waits[i]))[1]

    def _best(self) -> tuple[str, float] | None:
        return None if self.best is None else (self.best[1], self.best[0][1])

    def _kept_path(self, b: str, f: float) -> str:
        return str(self.kept_dir / f"{P.safe_name(b)}@{f:g}.npz")

    def _drop_kept(self) -> None:
        """Delete kept features a resolved promotion consumed, and those of a finished chunk."""
        ladder = self.cfg.ladder
        for sl in self.slots[:self.laid]:
            if sl.promotion == "incremental" and sl.cost is not None:
                Path(self._kept_path(sl.backbone, ladder[sl.level - 1])).unlink(missing_ok=True)
        unresolved = {s.backbone for s in self.slots if s.cost is None}
        for chunk in list(self.walk.completed):
            if unresolved.isdisjoint(chunk):
                for b in chunk:
                    for f in ladder[:-1]:
                        Path(self._kept_path(b, f)).unlink(missing_ok=True)
                self.walk.completed.remove(chunk)

    # ------------------------------------------------------------------------- the end
    def finish(self, echo, t_start: float) -> SearchResult:
        """The trace, ``--final``, ``search.json`` and the report; an error when there is no answer."""
        cfg, setup = self.cfg, self.setup
        counted, not_counted = self._outcomes()
        _refuse_without_evaluation(cfg, counted, not_counted)
        trace = trace_of(counted, self.k)
        final = None
        if setup.fcfg is not None:
            final = _final(cfg, setup.fcfg, trace, setup.ds, setup.rows, cfg.name, setup.out / "parts",
                           setup.out / FINAL_DIR, echo)
        whole = self.walk.finished and len(counted) == len(self.slots) and self.nxt is None
        if whole and self.kept_dir.is_dir():
            shutil.rmtree(self.kept_dir, ignore_errors=True)
        doc = self._document(trace, not_counted, final, "pool" if whole else "budget", self.nxt)
        changed = write_outputs(setup.out, doc)
        self.wrote = True
        _refuse_all_failed(trace, not_counted, setup.out)
        result = SearchResult(doc, setup.out, self.resumed, self.new, time.monotonic() - t_start, self.loop_wall,
                              changed)
        if echo is not None:
            for line in summary_lines(doc, self.resumed, self.new, loop_wall=self.loop_wall, changed=changed):
                echo(line)
        return result


    def write_interrupted(self) -> None:
        """Ctrl-C: ``search.json`` and the report of the evaluations counted so far (``finished:
        "interrupted"``; a rerun resumes from the parts); nothing when none counted."""
        counted, not_counted = self._outcomes()
        if counted:
            write_outputs(self.setup.out, self._document(trace_of(counted, self.k), not_counted, None, "interrupted"))
            self.wrote = True

    def _outcomes(self) -> tuple[list[Slot], list[dict]]:
        """The counted evaluations, and the stops of those laid out that did not count."""
        laid = self.slots[:self.laid]
        return ([sl for sl in self.slots if sl.counted],
                [dict(sl.stop, backbone=sl.backbone, fraction=sl.fraction) for sl in laid if not sl.counted])

    def _document(self, trace: Trace, not_counted: list[dict], final: dict | None, finished: str,
                  nxt: dict | None = None) -> dict:
        setup = self.setup
        return search_doc(self.cfg, self.budget, len(setup.order), trace, not_counted[0] if not_counted else None,
                         final, finished=finished, next_evaluation=nxt, sh=setup.sh_doc, workers=self.k,
                         not_counted=not_counted, engine=self.engine.name, limits=setup.limits_doc)


class _AshaSearch(_Search):
    """``asha:<sampler>`` live (:mod:`.asha`): every decision is taken on the timeline of charges by
    :class:`~.asha.AshaWalk`, the simulator's rule, so the trace is the run the simulator replays.

    A decision whose outcome is not known yet (the *frontier*) is evaluated first; the other workers
    evaluate ahead the next backbones of the order at the lowest rung (ASHA evaluates them in that
    order whatever happens), each stopped once its measured seconds pass what the budget leaves after
    the frontier's time.  An outcome is laid on the timeline only when the walk decides it, so an
    evaluation run ahead but never reached by the budget is dropped (nothing written)."""

    def __init__(self, cfg: SearchConfig, setup: _Setup, engine, progress: Progress):
        super().__init__(cfg, setup, engine, progress)
        self.walk = AshaWalk(setup.order, len(cfg.ladder), cfg.sh.eta, self.k)
        self.tasks: dict[int, Slot] = {}  # in flight, by task id
        self.ready: dict[tuple[str, int], Slot] = {}  # came back, not decided yet, by (backbone, level)
        self.frontier: tuple[float, str, int] | None = None  # (time, backbone, level) the walk waits for
        self._ids = 0

    def run(self) -> None:
        while True:
            self._advance()
            self._fill()
            if self.engine.busy == 0:
                break
            outcome = self.engine.wait()
            self.progress.idle()
            sl = self.tasks.pop(outcome.index)
            self._resolve(sl, outcome)
            self.ready[(sl.backbone, sl.level)] = sl
            self._drop_kept()
        for sl in self.ready.values():  # run ahead, never reached: their kept features go too
            if sl.level + 1 < len(self.cfg.ladder):
                Path(self._kept_path(sl.backbone, sl.fraction)).unlink(missing_ok=True)
        self.progress.close()

    def _advance(self) -> None:
        """Lay every decision whose outcome is known on the timeline, up to the frontier or the budget."""
        self.frontier = None
        while self.nxt is None:
            got = self.walk.decide()
            if got is None:
                return
            t, _w, b, lv = got
            if t >= self.budget:  # it cannot start by the budget
                self.nxt = {"backbone": b, "fraction": self.cfg.ladder[lv]}
                return
            sl = self.ready.pop((b, lv), None) or self._known(b, lv, t)
            if sl is None:
                self.frontier = (t, b, lv)
                return
            sl.index = len(self.slots)
            self.slots.append(sl)
            self.laid = len(self.slots)
            if sl.lost:
                self.walk.skip()
                continue
            self._settle(sl, self.walk.place(None if sl.row is None else score_of(sl.row), sl.cost))

    def _known(self, b: str, lv: int, t: float) -> Slot | None:
        """Decision (b, lv) at time t without running it: from its part, or stopped by an earlier run
        with at least as much left; None: it must run."""
        sl = self._slot(-1, b, lv)
        if sl.from_part:
            return sl
        again = self.setup.previous.get((b, sl.fraction))
        if again is not None and self.budget - t <= again["remaining_s"] + 1e-9:
            sl.cost, sl.stop = math.inf, again
            return sl
        return None

    def _fill(self) -> None:
        """The frontier's evaluation to a worker (unless in flight), then the next new backbones."""
        if self.frontier is None:
            return
        t, b, lv = self.frontier
        flying = {(s.backbone, s.level) for s in self.tasks.values()}
        if (b, lv) not in flying:
            self._send(self._slot(-1, b, lv), self.budget - t)
        ahead = self.walk.ahead(self.k + len(self.tasks) + len(self.ready))
        for name in ahead:
            if self.engine.busy >= self.k:
                return
            if (name, 0) in flying or (name, 0) in self.ready or (name, 0) == (b, lv) \
                    or P.part_path(self.setup.scfg.parts_dir, self.cfg.dataset, name).exists() \
                    or (name, self.cfg.ladder[0]) in self.setup.previous:
                continue
            self._send(self._slot(-1, name, 0), self.budget - t)

    def _send(self, sl: Slot, cap: float) -> None:
        sl.index, self._ids = self._ids, self._ids + 1
        self.tasks[sl.index] = sl
        self._submit(sl, cap)


def _refuse_without_evaluation(cfg: SearchConfig, counted: list[Slot], not_counted: list[dict]) -> None:
    """No evaluation counted (nothing written): the budget is below one evaluation, or every
    evaluation was lost with its workers; each says its own cause."""
    if counted or not not_counted:
        return
    stops = [s for s in not_counted if s.get("reason") != "lost"]
    if not stops:
        raise SearchError(f"every evaluation was lost ({len(not_counted)}): {not_counted[0]['error']}; nothing "
                          f"was written; the workers keep dying (out of memory? a Slurm job's time?): rerun to "
                          f"evaluate them again")
    stopped = stops[0]
    what = (f"stopped after {stopped['measured_s']:.2f} measured s" if stopped.get("reason") == "budget"
            else f"needs {stopped['seconds']:.2f} s")
    raise SearchError(f"budget {cfg.budget_s:.3g} s is below one evaluation: the first backbone "
                      f"{stopped['backbone']} ({format_spec(cfg.name, stopped['fraction'])}) {what}; "
                      f"nothing was written; raise --budget, or put smaller backbones first "
                      f"(--pool with a `precompute pool --max-params N` table)")


def _refuse_all_failed(trace: Trace, not_counted: list[dict], out: Path) -> None:
    """Every evaluation failed (none succeeded, none was stopped by the budget): an error naming the
    failure, once ``search.json`` and the failed parts recorded them."""
    if not trace.entries or any(e.status == "ok" for e in trace.entries) \
            or any(s.get("reason") != "lost" for s in not_counted):
        return
    errors = Counter(e.error or "failed" for e in trace.entries)
    error, n = errors.most_common(1)[0]
    more = f" ({n} of them; {len(errors) - 1} other error(s) in search.json)" if len(errors) > 1 else ""
    raise SearchError(f"every evaluation failed ({len(trace.entries)}), with {error}{more}; no incumbent. "
                      f"Recorded in {str(out / SEARCH_JSON)!r} and the failed parts; fix the cause, delete those "
                      f"parts and rerun")


def start_workers(cfg: SearchConfig, gpus: list[str] | None = None):
    """The search's workers: this process for one worker on this machine, else a Dask cluster (on
    CUDA, one worker per GPU of ``gpus``: :func:`worker_gpus`)."""
    if cfg.cluster == "slurm":
        return slurm_workers(cfg.workers, cfg.slurm, cfg.device, cfg.wait_timeout_s)
    if cfg.workers == 1:
        return InProcess()
    device = str(B.resolve_device(cfg.device))
    return local_workers(cfg.workers, device, gpus if device.startswith("cuda") else None, cfg.wait_timeout_s)


def _within_limits(pool: pl.DataFrame, limits: Limits | None,
                   table: pl.DataFrame | None = None) -> tuple[pl.DataFrame, dict | None]:
    """The pool within the deployment limits (backbones outside are never evaluated) and what
    ``search.json`` records of them: the limits, the pool before, and each backbone left out, with why.
    ``table``: the limits' latency table when the caller has read it already."""
    if limits is None or not limits.active:
        return pool, None
    if table is None and limits.latency_device:
        table = latency_table(limits.latency_device)
    try:
        kept, dropped = apply_limits(pool, limits, table)
    except VibesError as exc:
        raise SearchError(str(exc)) from None
    doc = {**limits.record(pool.height, kept.height),
           "left_out": dropped.select("backbone", "limit_reason").to_dicts()}
    return kept, doc










def _final(cfg, fcfg, trace, ds, rows, name, parts_dir, final_dir, echo):
    """``--final``: the incumbent evaluated by ``cfg.final`` at fraction 1.0, outside the budget
    (cached in ``final_dir``; the search's own row when it already is that evaluation)."""
    if trace.best is None:
        return {"evaluator": cfg.final, "fraction": 1.0, "backbone": None, "status": "skipped",
                "error": "no incumbent: no evaluation succeeded"}
    b = trace.best[0]
    path = P.part_path(final_dir, cfg.dataset, b)
    source = f"{FINAL_DIR}/ part"
    own_part = read_part_if_any(P.part_path(parts_dir, cfg.dataset, b)) if cfg.final == name else None
    own = row_of(own_part[0], name, 1.0) if own_part else None
    if own is not None:
        row, source = own, "the search's own evaluation"
    else:
        got = read_part_if_any(path)
        row = row_of(got[0], cfg.final, 1.0) if got else None
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
            P.write_part(fill_meta(res.frame, rows[b]), path, {**sweep.run_meta(fcfg, ds), "backbone": b,
                                                               "wall_seconds": wall})
            row = row_of(res.frame, cfg.final, 1.0)
            if echo is not None:
                echo(f"final: done in {wall:.1f} s of wall time")
    keys = ("score", "seconds", "load_seconds", "extract_seconds", "fit_seconds", "n_train", "n_test",
            "epochs", "status", "error")
    return {"evaluator": cfg.final, "fraction": 1.0, "backbone": b, "source": source,
            **{k: row.get(k) for k in keys}}












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


__all__ = ["SearchResult", "run_search", "start_workers", "worker_gpus"]
