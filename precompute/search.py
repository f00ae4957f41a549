"""Live search (``precompute search``): run one VIBES strategy for real on a dataset under a budget.

The search is the simulator's Eqs. 3-4 done live:

* **order** π: ``SAMPLERS[strategy].orders(pool, 1, strategy_rng(seed, strategy, spec))[0]`` over
  the pool sorted by backbone with its metadata columns (:func:`sampler_pool`), which is how
  ``simulate`` builds its pool from an oracle, so both see the same order for the same seed;
* **evaluator** ε̃ = the spec ``<evaluator>[@<fraction>]``: each backbone is evaluated by the
  sweep's own :func:`precompute.sweep.evaluate_backbone` with a one-fraction, one-seed,
  one-evaluator :class:`~precompute.sweep.SweepConfig` (the same loading, extraction, subsets and
  timing; the subset of fraction f is the sweep's seed 0 subset of f, because nested subsets take
  prefixes of one per-seed ordering whatever the other fractions are);
* **budget** t_max is a hard deadline on the summed row ``seconds`` (Eq. 4): an evaluation whose
  end would pass it is stopped (:func:`precompute.faults.deadline`, checked after the model load,
  each extraction batch and each head epoch) or, if it completes with too many measured seconds,
  discarded; it does not count, is not written and the search ends there.  The deadline is on the
  wall clock: the budget left plus the largest untimed wall time (wall - row seconds) an evaluation
  of this run has shown, so a stop means "its measured seconds would pass the budget";
* **incumbent** b̂ = best ε̃ among the completed evaluations, ties to the earlier (Eq. 3); a failed
  evaluation costs its row's seconds (null counts 0, as in the simulator) and is never selected;
* ``sh:<sampler>``: successive halving over that sampler's order (:class:`Schedule`, the literal
  loop of ``simulate.reference.successive_halving_loop``) at the fractions ``--sh-fractions`` below
  the spec's, then the spec's; chunks of ``eta^(L-1)`` backbones (``--sh-chunk``), the top
  ``ceil(n/eta)`` promoted per rung; the incumbent is the best ε̃ at the highest fraction reached.
  Every promotion is a cold evaluation (load, extract that fraction, fit: features are not kept),
  so ``simulate --promotion-cost cold`` with the same eta and chunk replays it.  A backbone's part
  holds one row per rung it reached.

State lives in part files: every counted evaluation is written exactly as the sweep writes it
(``<out>/parts/<dataset>/<backbone>.parquet``), so a rerun rebuilds the trace by walking the
schedule over the parts, summing their ``seconds`` (never the wall clock), and resumes with the
first evaluation without a row.  A stopped evaluation is remembered in ``search.json`` and retried only
when more budget is left than when it was stopped, so the same command twice does nothing new.
``--final EVALUATOR`` evaluates the incumbent at fraction 1.0 after the budget, outside it
(``<out>/final/<dataset>/<backbone>.parquet``).  Outputs: ``search.json`` and ``report.html``.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import polars as pl

from precompute import faults
from precompute import parts as P
from shared.errors import VibesError, unknown
from shared.oracle import BACKBONE_META, COLUMNS
from shared.samplers import strategy_rng
from simulate.evaluator import format_spec
from simulate.strategies import is_sh

SEARCH_JSON = "search.json"
FINAL_DIR = "final"
REPORT_HTML = "report.html"
LOCK_NAME = ".search.lock"
SEED = 0  # subset and head seed of every evaluation: the sweep's seed 0
DEFAULT_RUNGS = (0.01, 0.1, 1.0)  # successive halving's fidelities below the evaluator's fraction
#: budget units: seconds, minutes, hours, days
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_BUDGET = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd])")


class SearchError(VibesError):
    """A search cannot start or cannot give an answer (bad budget, strategy, evaluator, pool)."""


# ----------------------------------------------------------------------------- parsing
def parse_budget(text: str | float) -> float:
    """``90s``, ``45m``, ``2h``, ``1d``, ``1h30m``, ``1.5h`` or plain seconds -> seconds (> 0)."""
    raw = str(text).strip().lower()
    seconds: float | None = None
    try:
        seconds = float(raw)
    except ValueError:
        pos, total = 0, 0.0
        for m in _BUDGET.finditer(raw):
            if raw[pos:m.start()].strip():
                break
            total += float(m.group(1)) * UNITS[m.group(2)]
            pos = m.end()
        else:
            if pos and not raw[pos:].strip():
                seconds = total
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise SearchError(f"--budget {str(text)!r}: expected a positive duration such as 90s, 45m, "
                          f"2h, 1d, 1h30m or plain seconds")
    return seconds


def parse_evaluator(spec: str) -> tuple[str, float, str]:
    """``'mlp@0.1'`` -> ``('mlp', 0.1, 'mlp@0.1')``: name, fraction and the canonical spec string
    the simulator uses (``format_spec``), checked against the precompute evaluators."""
    from precompute.evaluators import EVALUATORS

    name, _, frac = str(spec).strip().partition("@")
    if name not in EVALUATORS:
        raise unknown("evaluator", name, EVALUATORS)
    try:
        fraction = float(frac) if frac else 1.0
    except ValueError:
        raise SearchError(f"--evaluator {spec!r}: fraction {frac!r} is not a number; expected "
                          f"<evaluator>[@<fraction>], e.g. mlp@0.1") from None
    if not 0 < fraction <= 1:
        raise SearchError(f"--evaluator {spec!r}: the fraction must be in (0, 1], e.g. mlp@0.1")
    return name, fraction, format_spec(name, fraction)


def get_strategy(name: str):
    """The sampler a strategy walks: a sampler name, or ``sh:<sampler>`` (successive halving over
    that sampler's order, :mod:`simulate.strategies`); an unknown name lists the valid ones."""
    from simulate.strategies import sampler_of

    return sampler_of(str(name))


def fidelities(strategy: str, fraction: float, rungs: Sequence[float] = DEFAULT_RUNGS) -> tuple[float, ...]:
    """The fractions a strategy evaluates at, ascending: the spec's one for a sampler; for
    ``sh:<sampler>`` the ``rungs`` below the spec's fraction, then it (the simulator's ladder is the
    oracle's fractions up to the spec's: a search's parts hold exactly these)."""
    if not is_sh(strategy):
        return (fraction,)
    bad = [f for f in rungs if not 0 < float(f) <= 1]
    if bad:
        raise SearchError(f"--sh-fractions must lie in (0, 1], e.g. 0.01,0.1,1.0; got {bad[0]!r}")
    return tuple(sorted({float(f) for f in rungs if float(f) < fraction - 1e-12} | {fraction}))


class Schedule:
    """What to evaluate next, as ``(backbone, level)``: successive halving's literal loop
    (``simulate.reference.successive_halving_loop``): chunks of ``chunk`` backbones of the order;
    in a chunk every candidate at level 0 in order, then the top ``ceil(n / eta)`` by ε̃ (ties:
    earlier in the order) at the next level in rank order, up to the last level.  One level and
    chunk 1 is the order itself.  :meth:`done` takes each evaluation's ε̃ (``-inf``: failed)."""

    def __init__(self, order: Sequence[str], n_levels: int, eta: int, chunk: int):
        self._gen = self._walk(list(order), n_levels, eta, chunk)
        self.next: tuple[str, int] | None = next(self._gen, None)

    @staticmethod
    def _walk(order, n_levels, eta, chunk):
        position = {b: i for i, b in enumerate(order)}
        for start in range(0, len(order), chunk):
            candidates = order[start:start + chunk]
            for lv in range(n_levels):
                scores = {}
                for b in candidates:
                    scores[b] = yield b, lv
                if lv + 1 < n_levels:
                    keep = math.ceil(len(candidates) / eta)
                    candidates = sorted(candidates, key=lambda b: (-scores[b], position[b]))[:keep]

    def done(self, score: float | None) -> None:
        try:
            self.next = self._gen.send(-math.inf if score is None else float(score))
        except StopIteration:
            self.next = None


def check_final(name: str) -> None:
    """``--final`` takes a bare evaluator name: it runs at fraction 1.0."""
    from precompute.evaluators import EVALUATORS

    if "@" in str(name):
        raise SearchError(f"--final {name!r}: give an evaluator name (it runs at fraction 1.0), e.g. mlp")
    if name not in EVALUATORS:
        raise unknown("evaluator", name, EVALUATORS)


def check_fraction(ds, fraction: float, spec: str, needs_test: bool) -> None:
    """The dataset must give the fraction: ``floor(f*N + 0.5)`` train images at least one per class
    (else the subset is not that fraction but the per-class minimum) and one test image."""
    n_train, n_test, k = len(ds.train_labels), len(ds.test_labels), int(ds.n_classes)
    keep_train = math.floor(fraction * n_train + 0.5)
    keep_test = math.floor(fraction * n_test + 0.5)
    smallest = max((k - 0.5) / n_train, (0.5 / n_test) if needs_test else 0.0)
    smallest = math.ceil(smallest * 1e4) / 1e4
    if keep_train < k or (needs_test and keep_test < 1):
        raise SearchError(f"--evaluator {spec}: fraction {fraction:g} of {ds.name} keeps {keep_train} "
                          f"of {n_train} train images for {k} classes and {keep_test} of {n_test} test "
                          f"images; the smallest fraction this dataset gives is {smallest:g}")


# -------------------------------------------------------------------------------- pool
def sampler_pool(pool: pl.DataFrame) -> pl.DataFrame:
    """The pool as the simulator sees it: one row per backbone, sorted by name, with the oracle's
    per-backbone metadata columns (``shared.oracle.BACKBONE_META``, oracle dtypes; absent = null)."""
    if "backbone" not in pool.columns:
        raise SearchError("the pool has no 'backbone' column; expected a table from `precompute pool`")
    try:
        cols = [pl.col(c).cast(COLUMNS[c]) if c in pool.columns else pl.lit(None, dtype=COLUMNS[c]).alias(c)
                for c in BACKBONE_META]
        return (pool.unique("backbone", keep="first", maintain_order=True)
                .select(pl.col("backbone").cast(pl.String), *cols).sort("backbone"))
    except pl.exceptions.PolarsError as exc:
        raise SearchError(f"the pool's metadata cannot be read as the oracle's types: "
                          f"{' '.join(str(exc).split())[:200]}") from None


def search_order(pool: pl.DataFrame, strategy: str, spec: str, seed: int) -> list[str]:
    """The backbones of ``sampler_pool(pool)`` in the order the strategy evaluates them: the run
    the simulator draws for (strategy, spec, seed)."""
    sampler = get_strategy(strategy)
    spool = sampler_pool(pool)
    missing = [c for c in sampler.requires
               if c not in spool.columns or spool.get_column(c).null_count() == spool.height]
    if missing:
        raise SearchError(f"strategy {strategy!r} orders by {', '.join(missing)}, which the pool does "
                          f"not have for any backbone; choose another strategy (e.g. random)")
    order = sampler.orders(spool, 1, strategy_rng(int(seed), strategy, spec))[0]
    names = spool.get_column("backbone").to_list()
    return [names[i] for i in order.tolist()]


# ------------------------------------------------------------------------------ config
@dataclass
class SearchConfig:
    dataset: str
    budget: str | float
    strategy: str
    evaluator: str
    out: str = "out/search"
    seed: int = 0
    weights: str = "pretrained"
    device: str = "auto"
    batch_size: int = 256
    input_size: int | None = None
    data_root: str = "data/datasets"
    download: bool = False
    cache_dir: str = "data/cache"
    final: str | None = None
    eta: int = 3  # successive halving (sh:<sampler>) only, as simulate --eta / --sh-chunk
    sh_chunk: int | None = None
    sh_fractions: tuple[float, ...] = DEFAULT_RUNGS

    def sweep_config(self, evaluator: str, fractions: Sequence[float], parts_dir: Path):
        from precompute.sweep import SweepConfig

        return SweepConfig(dataset=self.dataset, fractions=tuple(fractions), seeds=1, evaluators=(evaluator,),
                           weights=self.weights, device=self.device, batch_size=self.batch_size,
                           input_size=self.input_size, data_root=self.data_root, download=self.download,
                           cache_dir=self.cache_dir, parts_dir=str(parts_dir))


@dataclass
class Evaluation:
    """One entry of the trace (counted evaluations, in order)."""

    backbone: str
    fraction: float
    score: float | None
    seconds: float
    cumulative_seconds: float
    status: str
    incumbent: str | None
    incumbent_score: float | None
    error: str | None = None
    from_part: bool = False  # read back from the parts (an earlier run), not evaluated by this one

    def as_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "fraction": self.fraction, "score": self.score, "seconds": self.seconds,
                "cumulative_seconds": self.cumulative_seconds, "status": self.status,
                "incumbent": self.incumbent, "incumbent_score": self.incumbent_score,
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

    def add(self, backbone: str, level: int, row: dict[str, Any], from_part: bool = False) -> Evaluation:
        ok = row.get("status") == "ok" and row.get("score") is not None
        cost = _cost(row)
        self.spent = self.spent + cost  # sequential float64 sums: what the simulator's cumsum does
        score = float(row["score"]) if ok else None
        if ok and (self._key is None or (level, score) > self._key):
            self.best, self._key = (backbone, score), (level, score)
        e = Evaluation(backbone, float(row["fraction"]), score, cost, self.spent, "ok" if ok else "failed",
                       self.best[0] if self.best else None, self.best[1] if self.best else None,
                       None if ok else (row.get("error") or "failed"), from_part)
        self.entries.append(e)
        return e


def _cost(row: dict[str, Any]) -> float:
    """A row's τ̃: its seconds, null/NaN counted 0 (the simulator's rule for failed rows)."""
    s = row.get("seconds")
    return float(s) if s is not None and math.isfinite(float(s)) else 0.0


def _row_of(frame: pl.DataFrame, evaluator: str, fraction: float) -> dict[str, Any] | None:
    hit = frame.filter((pl.col("evaluator") == evaluator) & ((pl.col("fraction") - fraction).abs() < 1e-12)
                       & (pl.col("seed") == SEED))
    return hit.row(0, named=True) if hit.height else None


def _read_row(path: Path, evaluator: str, fraction: float) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        frame, _ = P.read_part(path)
    except Exception:  # unreadable part (writes are atomic, so unexpected): evaluate again
        return None
    return _row_of(frame, evaluator, fraction)


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
            from tqdm import tqdm

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
    is written under ``cfg.out``; a budget below one evaluation is known after the first evaluation
    is stopped, and is an error too (nothing written)."""
    from precompute.backbone import resolve_device
    from precompute.datasets import load_dataset, resolve
    from precompute.evaluators import EVALUATORS
    from precompute.sweep import check_existing_parts, run_meta, warm_up
    from simulate.strategies import SHConfig

    t_start = time.monotonic()
    budget = parse_budget(cfg.budget)
    name, fraction, spec = parse_evaluator(cfg.evaluator)
    get_strategy(cfg.strategy)
    if cfg.final is not None:
        check_final(cfg.final)
    if pool.height == 0:
        raise SearchError("the pool is empty; give --pool names, globs or a pool file with backbones")
    ladder = fidelities(cfg.strategy, fraction, cfg.sh_fractions)
    sh = SHConfig(cfg.eta, cfg.sh_chunk, "cold") if is_sh(cfg.strategy) else None  # checks --eta, --sh-chunk
    chunk = (sh.chunk or sh.eta ** (len(ladder) - 1)) if sh else 1
    device = resolve_device(cfg.device)  # a bad --device fails here, before anything is written
    order = search_order(pool, cfg.strategy, spec, cfg.seed)
    rows = {r["backbone"]: r for r in pool.unique("backbone", keep="first").iter_rows(named=True)}
    dataset = resolve(cfg.dataset)[0]
    cfg.dataset = dataset
    out = Path(cfg.out)
    parts_dir, final_dir = out / "parts", out / FINAL_DIR
    scfg = cfg.sweep_config(name, ladder, parts_dir)  # the protocol every part of this search records
    ds = load_dataset(dataset, data_root=cfg.data_root, download=cfg.download, cache_dir=cfg.cache_dir)
    for f in ladder:
        check_fraction(ds, f, format_spec(name, f), EVALUATORS[name].needs_test)
    check_existing_parts(scfg, order)
    fcfg = None
    if cfg.final is not None:
        fcfg = cfg.sweep_config(cfg.final, (1.0,), final_dir)
        check_existing_parts(fcfg, order)
    sh_doc = None if sh is None else {"eta": sh.eta, "chunk": chunk, "promotion_cost": "cold"}
    previous = _previous_stop(out, cfg, spec, ladder, sh_doc)

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
        evaluator = _Evaluator(scfg, ds, device, rows, name, warm_up, run_meta)
        schedule = Schedule(order, len(ladder), sh.eta if sh else 1, chunk)
        resumed = new = 0
        loop_wall = 0.0
        # wall seconds an evaluation spends outside its measured seconds (name checks, input-size
        # probing, bookkeeping): the most seen so far in this run extends the wall-clock deadline,
        # so that a stop means "its measured seconds would pass the budget", not "its wall time would"
        slack = 0.0
        while schedule.next is not None:
            b, lv = schedule.next
            f = ladder[lv]
            remaining = budget - trace.spent
            row = _read_row(P.part_path(parts_dir, dataset, b), name, f)
            if row is not None:  # measured by an earlier run: its recorded seconds are what it costs
                if _cost(row) > remaining:
                    stopped = {"backbone": b, "fraction": f, "reason": "over budget", "from_part": True,
                               "seconds": _cost(row), "remaining_s": remaining}
                    break
                e = trace.add(b, lv, row, from_part=True)
                resumed += 1
                progress.show(trace.spent, None, trace.best)
                schedule.done(e.score)
                continue
            if remaining <= 0:
                break
            if (previous and previous.get("backbone") == b and previous.get("fraction", f) == f
                    and remaining <= previous["remaining_s"] + 1e-9):
                stopped = previous  # stopped before with at least this much left: it would stop again
                break
            progress.show(trace.spent, f"{b} (weights)", trace.best)
            _prefetch(scfg, b)  # a download is never charged, so it runs before the deadline starts
            evaluator.prepare(f)
            progress.running(trace.spent, b, trace.best)
            t0 = time.monotonic()
            try:
                with faults.deadline(remaining + slack):
                    frame = evaluator.evaluate(b, f)
            except faults.DeadlineExceeded as stop:
                loop_wall += time.monotonic() - t0
                progress.idle()
                stopped = {"backbone": b, "fraction": f, "reason": "deadline", "from_part": False,
                           "point": stop.where, "remaining_s": remaining, "slack_s": slack, "ran_s": stop.at - t0,
                           "latency_s": stop.latency}
                break
            wall = time.monotonic() - t0
            loop_wall += wall
            progress.idle()
            row = _row_of(frame, name, f)
            if row is None:  # cannot happen: the sweep writes one row per expected key
                raise RuntimeError(f"evaluate_backbone gave no {format_spec(name, f)} row for {b}")
            slack = max(slack, wall - _cost(row))
            if _cost(row) > remaining:  # finished between two points, but too late
                stopped = {"backbone": b, "fraction": f, "reason": "over budget", "from_part": False,
                           "seconds": _cost(row), "remaining_s": remaining, "ran_s": wall}
                break
            evaluator.write(b, frame)
            e = trace.add(b, lv, row)
            new += 1
            progress.write(_line(len(trace.entries), e, sh is not None))
            progress.show(trace.spent, None, trace.best)
            schedule.done(e.score)
        progress.close()
        if not trace.entries and stopped is not None:
            what = (f"stopped after {stopped['ran_s']:.2f} s" if stopped["reason"] == "deadline"
                    else f"needs {stopped['seconds']:.2f} s")
            raise SearchError(f"budget {_human(budget)} is below one evaluation: the first backbone "
                              f"{stopped['backbone']} ({format_spec(name, stopped['fraction'])}) {what}; "
                              f"nothing was written; raise --budget, or put smaller backbones first "
                              f"(--pool with a `precompute pool --max-params N` table)")
        final = None
        if fcfg is not None:
            final = _final(cfg, fcfg, trace, ds, rows, name, parts_dir, final_dir, echo)
        nxt = schedule.next
        doc = _document(cfg, spec, budget, len(order), trace, stopped, final,
                        finished="pool" if nxt is None else "budget",
                        next_evaluation=None if nxt is None else {"backbone": nxt[0], "fraction": ladder[nxt[1]]},
                        ladder=ladder, sh=sh_doc)
        changed = _write_outputs(out, doc)
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


class _Evaluator:
    """One backbone at one fraction with the sweep's own :func:`~precompute.sweep.evaluate_backbone`
    (a one-fraction, one-seed, one-evaluator config), and the part that keeps its row(s)."""

    def __init__(self, scfg, ds, device, rows, name, warm_up, run_meta):
        self.scfg, self.ds, self.device, self.rows, self.name = scfg, ds, device, rows, name
        self._warm_up, self._run_meta = warm_up, run_meta
        self.plans: dict[float, tuple] = {}
        self.images = self.meta = None

    def prepare(self, fraction: float) -> None:
        """Subsets, extraction plan and run meta (once), and the device warm-up: never on a clock."""
        from precompute.datasets import subset_plan
        from precompute.sweep import extraction_plan

        if self.images is None:
            self.images = np.concatenate([self.ds.train_images, self.ds.test_images])
            self.meta = self._run_meta(self.scfg, self.ds)
            self._warm_up(self.device)  # one-time device costs: before the first deadline, never charged
        if fraction not in self.plans:
            plans = subset_plan(self.ds, [fraction], [SEED])
            self.plans[fraction] = (plans, extraction_plan(plans, (fraction,), len(self.ds.train_labels)))

    def evaluate(self, backbone: str, fraction: float) -> pl.DataFrame:
        from dataclasses import replace

        from precompute import sweep

        plans, plan = self.plans[fraction]
        cfg = replace(self.scfg, fractions=(fraction,))
        res = sweep.evaluate_backbone(cfg, backbone, self.rows[backbone], self.ds, plans, plan, self.images)
        return _fill_meta(res.frame, self.rows[backbone])

    def write(self, backbone: str, frame: pl.DataFrame) -> None:
        """The backbone's part: its rows of other fractions (successive halving's earlier rungs), then these."""
        path = P.part_path(self.scfg.parts_dir, self.scfg.dataset, backbone)
        if path.exists():
            old, _ = P.read_part(path)
            keys = frame.select("evaluator", "fraction", "seed")
            frame = pl.concat([old.join(keys, on=["evaluator", "fraction", "seed"], how="anti"), frame])
        frame = frame.sort(["evaluator", "fraction", "seed"], descending=[False, True, False])
        P.write_part(frame, path, {**self.meta, "backbone": backbone})


def _prefetch(scfg, backbone: str) -> None:
    """Put a backbone's pretrained weights into the cache (downloading them if allowed) outside the
    deadline; a failure is left to ``evaluate_backbone``, which records it as a failed row."""
    if scfg.weights != "pretrained" or scfg.pretrained_file is not None:
        return
    from precompute import weights as W

    try:
        W.ensure_weights(backbone)
    except Exception:
        pass


def _final(cfg, fcfg, trace, ds, rows, name, parts_dir, final_dir, echo):
    """``--final``: the incumbent evaluated by ``cfg.final`` at fraction 1.0, outside the budget
    (cached in ``final_dir``; the search's own row when it already is that evaluation)."""
    from precompute.datasets import subset_plan
    from precompute.sweep import evaluate_backbone, extraction_plan, run_meta

    if trace.best is None:
        return {"evaluator": cfg.final, "fraction": 1.0, "backbone": None, "status": "skipped",
                "error": "no incumbent: no evaluation succeeded"}
    b = trace.best[0]
    path = P.part_path(final_dir, cfg.dataset, b)
    source = f"{FINAL_DIR}/ part"
    own = _read_row(P.part_path(parts_dir, cfg.dataset, b), name, 1.0) if cfg.final == name else None
    if own is not None:
        row, source = own, "the search's own evaluation"
    else:
        row = _read_row(path, cfg.final, 1.0)
        if row is None:
            if echo is not None:
                echo(f"final: {cfg.final} at fraction 1.0 on {b} (outside the budget) ...")
            plans = subset_plan(ds, [1.0], [SEED])
            plan = extraction_plan(plans, (1.0,), len(ds.train_labels))
            images = np.concatenate([ds.train_images, ds.test_images])
            t0 = time.monotonic()
            res = evaluate_backbone(fcfg, b, rows[b], ds, plans, plan, images)
            wall = time.monotonic() - t0
            P.write_part(_fill_meta(res.frame, rows[b]), path, {**run_meta(fcfg, ds), "backbone": b,
                                                               "wall_seconds": wall})
            row = _row_of(res.frame, cfg.final, 1.0)
            if echo is not None:
                echo(f"final: done in {wall:.1f} s of wall time")
    keys = ("score", "seconds", "load_seconds", "extract_seconds", "fit_seconds", "n_train", "n_test",
            "epochs", "status", "error")
    return {"evaluator": cfg.final, "fraction": 1.0, "backbone": b, "source": source,
            **{k: row.get(k) for k in keys}}


# ----------------------------------------------------------------------------- outputs
def _previous_stop(out: Path, cfg: SearchConfig, spec: str, ladder: Sequence[float], sh: dict | None
                   ) -> dict | None:
    """The evaluation the last run of the same search in ``out`` stopped or discarded (live), if any."""
    path = out / SEARCH_JSON
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    want = {"dataset": cfg.dataset, "strategy": cfg.strategy, "evaluator": spec, "seed": int(cfg.seed),
            "weights": cfg.weights, "input_size": cfg.input_size, "device": cfg.device, "sh": sh,
            "fidelities": list(ladder)}
    stop = doc.get("stopped")
    if any(doc.get(k) != v for k, v in want.items()) or not isinstance(stop, dict) or stop.get("from_part"):
        return None
    return stop if isinstance(stop.get("remaining_s"), (int, float)) else None


def _document(cfg: SearchConfig, spec: str, budget: float, pool_size: int, trace: Trace,
              stopped: dict | None, final: dict | None, finished: str, next_evaluation: dict | None,
              ladder: Sequence[float], sh: dict | None) -> dict:
    inc = {"backbone": trace.best[0], "score": trace.best[1]} if trace.best else None
    return {
        "dataset": cfg.dataset,
        "strategy": cfg.strategy,
        "evaluator": spec,
        "fidelities": list(ladder),
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


def _write_outputs(out: Path, doc: dict) -> bool:
    """Write ``search.json`` and ``report.html`` unless they already hold exactly this; True if written."""
    changed = False
    text = json.dumps(doc, indent=1, default=_json_default) + "\n"
    html = report_html(doc)
    for path, content in ((out / SEARCH_JSON, text), (out / REPORT_HTML, html)):
        try:
            same = path.read_text(encoding="utf-8") == content
        except OSError:
            same = False
        if not same:
            with P.atomic_path(path) as tmp:
                tmp.write_text(content, encoding="utf-8")
            changed = True
    return changed


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return str(x)


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _line(i: int, e: Evaluation, show_fraction: bool = False) -> str:
    got = f"ε̃ {e.score:.4f}" if e.score is not None else f"failed ({(e.error or '')[:60]})"
    star = "  <- incumbent" if e.status == "ok" and e.incumbent == e.backbone and e.incumbent_score == e.score else ""
    at = f" @{e.fraction:g}" if show_fraction else ""
    return f"{i:>4}  {e.backbone + at:<45} {got}  {e.seconds:7.2f} s  (spent {e.cumulative_seconds:.1f} s){star}"


def ranked_trace(trace: list[dict]) -> list[dict]:
    """The successful evaluations best first: by fraction (successive halving's level), then ε̃,
    then the earlier evaluated -- the incumbent rule's order."""
    ok = [(e["fraction"], e["score"], -i, e) for i, e in enumerate(trace) if e["score"] is not None]
    return [t[-1] for t in sorted(ok, key=lambda t: t[:3], reverse=True)]


def summary_lines(doc: dict, resumed: int = 0, new: int = 0, top: int = 10, loop_wall: float | None = None,
                  changed: bool = True) -> list[str]:
    """The closing table: what was done, the top evaluations, the incumbent and the final score."""
    lines = []
    sh = doc.get("sh")
    evals = (f"{doc['n_evaluated']} evaluations of {doc['n_backbones']} of {doc['pool_size']} backbones at "
             f"fractions {', '.join(f'{f:g}' for f in doc['fidelities'])}" if sh else
             f"{doc['n_evaluated']} of {doc['pool_size']} backbones evaluated")
    head = (f"search {doc['strategy']} x {doc['evaluator']} on {doc['dataset']}, budget {_human(doc['budget_s'])}: "
            f"{evals} ({doc['n_failed']} failed), {doc['spent_s']:.1f} s spent")
    if resumed and not new:
        head += f"; nothing new (all {resumed} from the parts)"
    elif resumed:
        head += f"; {resumed} from the parts, {new} new"
    lines.append(head)
    st = doc.get("stopped")
    if st:
        how = (f"stopped by the deadline after {st['ran_s']:.2f} s (at {st.get('point')}, "
               f"{st['latency_s']:.2f} s late)" if st["reason"] == "deadline"
               else f"needs {st['seconds']:.2f} s, more than the {st['remaining_s']:.2f} s left")
        at = f" at fraction {st['fraction']:g}" if sh and "fraction" in st else ""
        lines.append(f"not counted: {st['backbone']}{at} {how}")
    elif doc["finished"] == "pool":
        lines.append("every backbone of the pool was evaluated")
    for r, e in enumerate(ranked_trace(doc["trace"])[:top], 1):
        if r == 1:
            w = max(len("backbone"), *(len(x["backbone"]) for x in doc["trace"]))
            lines.append(f"{'rank':>4}  {'backbone':<{w}}  " + ("fraction  " if sh else "")
                         + f"{'ε̃':>7}  {'seconds':>8}  {'at (s)':>8}")
        lines.append(f"{r:>4}  {e['backbone']:<{w}}  " + (f"{e['fraction']:>8g}  " if sh else "")
                     + f"{e['score']:>7.4f}  {e['seconds']:>8.2f}  {e['cumulative_seconds']:>8.1f}")
    inc = doc.get("incumbent")
    lines.append(f"incumbent: {inc['backbone']} (ε̃ {doc['evaluator']} = {inc['score']:.4f})" if inc
                 else "incumbent: none (no evaluation succeeded)")
    fin = doc.get("final")
    if fin and fin.get("backbone"):
        if fin.get("status") == "ok":
            lines.append(f"final: {fin['evaluator']} at fraction 1.0 on {fin['backbone']} = {fin['score']:.4f} "
                         f"({fin['seconds']:.1f} s, outside the budget; from {fin['source']})")
        else:
            lines.append(f"final: {fin['evaluator']} on {fin['backbone']} failed: {fin.get('error')}")
    elif fin:
        lines.append(f"final: skipped ({fin.get('error')})")
    if loop_wall:
        lines.append(f"this run: {new} new evaluation(s), {loop_wall:.1f} s of wall time evaluating "
                     f"(the budget counts measured seconds; start-up and writing parts are outside it)")
    folder = Path(doc["parts_dir"]).parent
    lines.append(f"{'wrote' if changed else 'unchanged:'} {folder / SEARCH_JSON} and {folder / REPORT_HTML}")
    return lines


def report_html(doc: dict) -> str:
    """``report.html``: the incumbent's ε̃ against the budget spent (a step line) and every
    evaluation as a point (hover: backbone, ε̃, seconds); self-contained Plotly, no network."""
    import html

    import plotly.graph_objects as go
    import plotly.io as pio

    trace = doc["trace"]
    budget = doc["budget_s"]
    fig = go.Figure()
    ok = [e for e in trace if e["score"] is not None]
    bad = [e for e in trace if e["score"] is None]
    if ok:
        xs, ys, names = [], [], []
        for e in trace:
            if e["incumbent_score"] is not None:
                xs.append(e["cumulative_seconds"])
                ys.append(e["incumbent_score"])
                names.append(e["incumbent"])
        xs.append(max(budget, xs[-1]))
        ys.append(ys[-1])
        names.append(names[-1])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(shape="hv", color="#1f77b4", width=2.5),
                                 name="incumbent b̂", customdata=names,
                                 hovertemplate="incumbent %{customdata}<br>ε̃ %{y:.4f} at %{x:.1f} s<extra></extra>"))
        colors = ["#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
        fractions = doc.get("fidelities") or [None]
        for k, f in enumerate(fractions):
            at = [(i, e) for i, e in enumerate(trace) if e["score"] is not None and (f is None or e["fraction"] == f)]
            fig.add_trace(go.Scatter(
                x=[e["cumulative_seconds"] for _, e in at], y=[e["score"] for _, e in at], mode="markers",
                marker=dict(size=9, color=colors[k % len(colors)]),
                name="evaluations" if len(fractions) == 1 else f"evaluations at fraction {f:g}",
                customdata=[[e["backbone"], e["seconds"], i + 1, e["fraction"]] for i, e in at],
                hovertemplate=("<b>%{customdata[0]}</b> at fraction %{customdata[3]}<br>ε̃ %{y:.4f}<br>took "
                               "%{customdata[1]:.2f} s, done at %{x:.1f} s<br>evaluation #%{customdata[2]}"
                               "<extra></extra>")))
    if bad:
        floor = min([e["score"] for e in ok], default=0.0)
        fig.add_trace(go.Scatter(
            x=[e["cumulative_seconds"] for e in bad], y=[floor] * len(bad), mode="markers",
            marker=dict(size=10, symbol="x", color="#7f7f7f"), name="failed",
            customdata=[[e["backbone"], (e.get("error") or "")[:120]] for e in bad],
            hovertemplate="<b>%{customdata[0]}</b> failed<br>%{customdata[1]}<extra></extra>"))
    fig.add_vline(x=budget, line=dict(color="black", dash="dash", width=1))
    fig.add_annotation(x=budget, y=1, yref="paper", text=f"budget {_human(budget)}", showarrow=False,
                       xanchor="right", yanchor="bottom")
    fig.update_layout(title=f"Live search: {doc['strategy']} x {doc['evaluator']} on {doc['dataset']}",
                      template="plotly_white", height=480, hovermode="closest",
                      margin=dict(l=60, r=20, t=60, b=50), legend=dict(orientation="h", y=-0.2),
                      xaxis=dict(title="budget spent (summed measured evaluation seconds)",
                                 range=[0, budget * 1.02]),
                      yaxis=dict(title=f"ε̃ = {doc['evaluator']}"))
    div = pio.to_html(fig, full_html=False, include_plotlyjs=True, div_id="search-trace",
                      config={"displaylogo": False, "responsive": True})
    esc = html.escape
    inc = doc.get("incumbent")
    rows = "".join(f"<tr><td>{r}</td><td>{esc(e['backbone'])}</td><td>{e['fraction']:g}</td>"
                   f"<td>{e['score']:.4f}</td><td>{e['seconds']:.2f}</td><td>{e['cumulative_seconds']:.1f}</td></tr>"
                   for r, e in enumerate(ranked_trace(trace)[:20], 1))
    fin = doc.get("final") or {}
    final_p = (f"<p>Final: <code>{esc(str(fin['evaluator']))}</code> at fraction 1.0 on "
               f"<b>{esc(fin['backbone'])}</b> = <b>{fin['score']:.4f}</b> ({fin['seconds']:.1f} s, outside "
               f"the budget).</p>" if fin.get("status") == "ok" else "")
    st = doc.get("stopped")
    stop_p = (f"<p>Not counted: {esc(st['backbone'])} ({esc(st['reason'])}).</p>" if st else "")
    warn = (f"<p class='warn'>Backbone weights: <b>{esc(str(doc['weights']))}</b> (an offline demo): the "
            f"scores say nothing about real pretrained backbones.</p>" if doc.get("weights") != "pretrained" else "")
    return "".join([
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>VIBES live search</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px}"
        "table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left}"
        ".warn{background:#fff3cd;border:1px solid #e0c36b;padding:8px}</style></head><body>",
        f"<h1>Live search on {esc(str(doc['dataset']))}</h1>", warn,
        f"<p>Strategy <b>{esc(doc['strategy'])}</b>, evaluator <code>{esc(doc['evaluator'])}</code>, seed "
        f"{doc['seed']}, budget {_human(budget)}: {doc['n_evaluated']} evaluations of {doc['n_backbones']} of "
        f"{doc['pool_size']} backbones ({doc['n_failed']} failed) in {doc['spent_s']:.1f} s"
        + (f", successive halving over fractions {', '.join(f'{f:g}' for f in doc['fidelities'])} "
           f"(η = {doc['sh']['eta']}, chunks of {doc['sh']['chunk']}, every promotion a cold evaluation)"
           if doc.get("sh") else "") + ". Incumbent: "
        + (f"<b>{esc(inc['backbone'])}</b> (ε̃ {inc['score']:.4f})" if inc else "none") + ".</p>",
        stop_p, final_p, f"<div class='fig'>{div}</div>",
        "<table><tr><th>rank</th><th>backbone</th><th>fraction</th><th>ε̃</th><th>seconds</th><th>at (s)</th></tr>",
        rows,
        "</table></body></html>"])


# ------------------------------------------------------------------------------ helpers
def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its parents that do not exist yet (deepest first)."""
    missing = []
    p = path.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    return missing


def _remove_created(created: Sequence[Path], keep_if_parts: bool = False) -> None:
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


# ---------------------------------------------------------------------------------- CLI
def _fractions(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        vals = ()
    if not vals:
        raise SearchError(f"--sh-fractions must be comma-separated fractions, e.g. 0.01,0.1,1.0; got {text!r}")
    return vals


SEARCH_EPILOG = """\b
Examples:
  precompute search --dataset digits --weights random --input-size 32 --budget 90s \\
      --strategy cycling --evaluator mlp@0.1 --pool data/pool-5m.parquet --out out/search-demo
  precompute search --dataset folder:/data/my_images --pool data/pool.parquet --budget 2h \\
      --strategy cycling --evaluator mlp@0.1 --final mlp --out out/my-search
  precompute search --dataset digits --weights random --input-size 32 --budget 5m \\
      --strategy sh:cycling --evaluator mlp --eta 3 --pool 'resnet18*' --pool 'lcnet*' \\
      --out out/search-sh   # rungs 0.01, 0.1, 1.0
(data/pool-5m.parquet: `precompute pool --max-params 5 --out data/pool-5m.parquet`.  On a CPU
give a small pool: the whole pool's order can start with a 0.8 B-parameter ViT.)
Budgets: 90s, 45m, 2h, 1d, 1h30m or plain seconds; the budget is a hard deadline on the summed
measured evaluation seconds.  Rerun the same command to resume (time already spent is counted
from the part files); a larger --budget continues the same search.
"""


@click.command("search", epilog=SEARCH_EPILOG)
@click.option("--dataset", required=True, help="Registry name or folder:PATH.")
@click.option("--budget", required=True, help="Time budget t_max, e.g. 90s, 45m, 2h, 1d.")
@click.option("--strategy", required=True,
              help="Sampler π (e.g. cycling, random, complexity-up) or sh:<sampler> (successive halving).")
@click.option("--evaluator", required=True, help="Evaluator spec ε̃: <evaluator>[@<fraction>], e.g. mlp@0.1.")
@click.option("--pool", "pools", multiple=True,
              help="Pool file (.parquet/.csv from `precompute pool`, .txt names) or a name glob; repeatable. "
                   "Default: all pretrained timm backbones.")
@click.option("--weights", type=click.Choice(["pretrained", "random"]), default="pretrained", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the sampler's order (as simulate --seed).")
@click.option("--out", default="out/search", show_default=True, help="Folder for parts, search.json and report.html.")
@click.option("--final", default=None,
              help="After the budget, evaluate the incumbent with this evaluator at fraction 1.0.")
@click.option("--input-size", type=int, default=None, help="Override the input resolution.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--data-root", default="data/datasets", show_default=True)
@click.option("--download", is_flag=True, help="Download the dataset if missing.")
@click.option("--cache-dir", default="data/cache", show_default=True)
@click.option("--eta", type=int, default=3, show_default=True, help="sh:<sampler>: keep the top 1/eta per rung.")
@click.option("--sh-chunk", type=int, default=None, help="sh:<sampler>: backbones per chunk (default eta^(L-1)).")
@click.option("--sh-fractions", default="0.01,0.1,1.0", show_default=True,
              help="sh:<sampler>: rung fractions; those below the evaluator's fraction, then it.")
@click.option("--top", type=int, default=10, show_default=True, help="Rows of the closing table.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def search_cmd(dataset, budget, strategy, evaluator, pools, weights, device, seed, out, final, input_size,
               batch_size, data_root, download, cache_dir, eta, sh_chunk, sh_fractions, top, no_progress) -> None:
    """Find a backbone for DATASET: run one strategy for real under a time budget."""
    from precompute.cli import resolve_pool

    cfg = SearchConfig(dataset=dataset, budget=budget, strategy=strategy, evaluator=evaluator, out=out,
                       seed=seed, weights=weights, device=device, batch_size=batch_size, input_size=input_size,
                       data_root=data_root, download=download, cache_dir=cache_dir, final=final, eta=eta,
                       sh_chunk=sh_chunk, sh_fractions=_fractions(sh_fractions))
    # cheap checks before the pool is built
    parse_budget(budget)
    _name, fraction, _spec = parse_evaluator(evaluator)
    get_strategy(strategy)
    fidelities(strategy, fraction, cfg.sh_fractions)
    if is_sh(strategy):
        from simulate.strategies import SHConfig

        SHConfig(eta, sh_chunk, "cold")
    if final is not None:
        check_final(final)
    if input_size is not None and input_size < 1:
        raise SearchError(f"--input-size must be a positive integer; got {input_size}")
    pool = resolve_pool(pools, progress=not no_progress)
    res = run_search(cfg, pool, show_progress=not no_progress, echo=None)
    for line in summary_lines(res.doc, res.resumed, res.new_evaluations, top=top,
                              loop_wall=res.evaluation_wall_seconds, changed=res.changed):
        click.echo(line)


__all__ = ["SearchConfig", "SearchError", "SearchResult", "parse_budget", "parse_evaluator", "run_search",
           "sampler_pool", "search_order", "search_cmd", "summary_lines", "report_html", "check_fraction"]
