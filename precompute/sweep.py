"""The precompute sweep: every backbone of a pool × seed × fraction × evaluator on one dataset.

Per backbone (:func:`evaluate_backbone`):

1. load it (``load_seconds``, measured);
2. extract features ONCE over one order of images built from seed 0's nested subsets,
   smallest fraction first: ``[train 1%, test 1%, train 10%∖1%, test 10%∖1%, train rest,
   test rest]`` (only the fractions asked for), the clock stamped at every segment boundary
   (:func:`extraction_plan`).  When the largest fraction is below 1.0 the other seeds' subsets
   may hold images outside seed 0's; those are extracted last in an untimed extra segment;
3. for each seed × fraction × evaluator, fit/score the evaluator on that seed's subset
   (``fit_seconds``, CUDA-synchronised).  ``extract_seconds`` is the sum of the measured
   segments the evaluation needs: train and test segments of every fraction ≤ its fraction
   when the evaluator needs the test split (``mlp``), the train segments only otherwise
   (``silhouette``).  Seeds > 0 draw other images of the same sizes; their extraction time is
   *that of seed 0's segments* (same counts, same backbone, same batches: the cost of a subset
   depends on its size, not on which images it holds).  ``seconds = load + extract + fit``.

Any exception while loading or extracting a backbone (unknown name, unsupported input size,
non-finite features, CUDA OOM after the batch back-off, ...) makes one ``failed`` row per
expected (evaluator, fraction, seed) with ``error = "<ExcType>: <message>"`` and null
seconds; an exception inside one evaluator's fit fails only that row.  The sweep goes on.

:func:`run_sweep` drives a (sharded) pool: parts, locks and resume are in :mod:`precompute.parts`.
"""
from __future__ import annotations

import math
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from precompute import parts as P
from shared.errors import VibesError, unknown
from shared.oracle import COLUMNS, SCHEMA_VERSION

DEFAULT_FRACTIONS = (1.0, 0.1, 0.01)
DEFAULT_EVALUATORS = ("mlp", "silhouette")
WEIGHTS = ("pretrained", "random")
TRUTH = "mlp"
EXTRACTION_ORDER = ("one pass per backbone over seed 0's nested subsets, smallest fraction first: "
                    "train f1, test f1, train f2\\f1, test f2\\f1, ...; other seeds reuse the "
                    "measured segment seconds (same sizes)")
META_COLUMNS = ("architecture", "params_m", "gmacs", "input_size", "feature_dim",
                "pretrain_dataset", "pretrain_images", "pretrain_method")


@dataclass
class SweepConfig:
    """Everything a sweep (or one shard of it) needs; plain data, so it pickles to Slurm."""

    dataset: str
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    seeds: int = 3
    evaluators: tuple[str, ...] = DEFAULT_EVALUATORS
    weights: str = "pretrained"
    pretrained_file: str | None = None
    device: str = "auto"
    batch_size: int = 256
    input_size: int | None = None
    data_root: str = "data/datasets"
    download: bool = False
    cache_dir: str = "data/cache"
    parts_dir: str = P.DEFAULT_PARTS_DIR
    keep_features: bool = False
    retry_failed: bool = False

    def __post_init__(self):
        self.fractions = tuple(sorted({float(f) for f in self.fractions}, reverse=True))
        self.evaluators = tuple(dict.fromkeys(self.evaluators))
        if not self.fractions or any(not (0 < f <= 1) for f in self.fractions):
            raise VibesError(f"fractions must be in (0, 1], e.g. 1.0,0.1,0.01; got "
                             f"{list(self.fractions)}")
        if int(self.seeds) < 1:
            raise VibesError(f"seeds must be a positive number of replicates; got {self.seeds}")
        self.seeds = int(self.seeds)
        if self.weights not in WEIGHTS:
            raise VibesError(f"weights must be one of {', '.join(WEIGHTS)}; got {self.weights!r}")
        if int(self.batch_size) < 1:
            raise VibesError(f"batch size must be a positive integer; got {self.batch_size}")
        if self.input_size is not None and int(self.input_size) < 1:
            raise VibesError(f"input size must be a positive integer; got {self.input_size}")
        if not self.evaluators:
            raise VibesError("at least one evaluator is needed, e.g. mlp,silhouette")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def protocol(self) -> dict[str, Any]:
        from precompute.evaluators import MLP_PROTOCOL

        return {"head": dict(MLP_PROTOCOL), "fractions": list(self.fractions), "seeds": self.seed_list,
                "evaluators": list(self.evaluators), "extraction_order": EXTRACTION_ORDER,
                "input_size": self.input_size, "subsets": "stratified, nested per seed"}


def check_evaluators(names: Sequence[str]) -> None:
    from precompute.evaluators import EVALUATORS

    for n in names:
        if n not in EVALUATORS:
            raise unknown("evaluator", n, EVALUATORS)


# --------------------------------------------------------------------- extraction plan
@dataclass
class ExtractionPlan:
    """One extraction order over train+test concatenated (test image j is ``n_train + j``).

    ``segments[k]`` images of ``order`` form segment k, labelled ``labels[k] = (fraction,
    split)`` with split ``"train"``/``"test"``, or ``(nan, "extra")`` for other seeds' images."""

    order: np.ndarray
    segments: list[int]
    labels: list[tuple[float, str]]
    n_train: int

    def seconds_for(self, segment_seconds: Sequence[float], fraction: float,
                    needs_test: bool) -> float:
        """Measured extraction seconds an evaluation at ``fraction`` needs."""
        splits = ("train", "test") if needs_test else ("train",)
        return float(sum(s for (f, sp), s in zip(self.labels, segment_seconds)
                         if sp in splits and f <= fraction + 1e-12))


def extraction_plan(plans: dict, fractions: Sequence[float], n_train: int) -> ExtractionPlan:
    """Build the order from ``subset_plan``'s ``{seed: {fraction: (train_idx, test_idx)}}``."""
    fr = sorted(float(f) for f in fractions)
    seed0 = plans[min(plans)]
    order: list[np.ndarray] = []
    segments: list[int] = []
    labels: list[tuple[float, str]] = []
    seen_tr = np.empty(0, np.int64)
    seen_te = np.empty(0, np.int64)
    for f in fr:
        tr, te = (np.asarray(a, np.int64) for a in seed0[f])
        new_tr = np.setdiff1d(tr, seen_tr)
        new_te = np.setdiff1d(te, seen_te)
        for idx, split in ((new_tr, "train"), (new_te + n_train, "test")):
            if len(idx):
                order.append(idx)
                segments.append(len(idx))
                labels.append((f, split))
        seen_tr = np.union1d(seen_tr, tr)
        seen_te = np.union1d(seen_te, te)
    covered = np.concatenate([seen_tr, seen_te + n_train])
    needed = [np.asarray(s[f][0], np.int64) for s in plans.values() for f in fr]
    needed += [np.asarray(s[f][1], np.int64) + n_train for s in plans.values() for f in fr]
    extra = np.setdiff1d(np.unique(np.concatenate(needed)), covered)
    if len(extra):
        order.append(extra)
        segments.append(len(extra))
        labels.append((math.nan, "extra"))
    return ExtractionPlan(np.concatenate(order), segments, labels, n_train)


# ------------------------------------------------------------------------- one backbone
def error_text(exc: BaseException, limit: int = 500) -> str:
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _meta_of(pool_row: dict[str, Any]) -> dict[str, Any]:
    return {c: pool_row.get(c) for c in META_COLUMNS}


def failed_rows(cfg: SweepConfig, backbone: str, pool_row: dict[str, Any], error: str,
                load_seconds: float | None = None) -> pl.DataFrame:
    rows = [{"dataset": cfg.dataset, "backbone": backbone, "evaluator": ev, "fraction": f,
             "seed": s, "score": None, "seconds": None, "load_seconds": load_seconds,
             "extract_seconds": None, "fit_seconds": None, "status": "failed", "error": error,
             **_meta_of(pool_row),
             **({"input_size": cfg.input_size} if cfg.input_size else {})}
            for ev in cfg.evaluators for f in cfg.fractions for s in cfg.seed_list]
    return _frame(rows)


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=COLUMNS, strict=False)


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclass
class BackboneResult:
    frame: pl.DataFrame
    status: str  # "ok" if every row is ok, else "failed"
    features: np.ndarray | None = None  # float16 rows of plan.order (keep_features)


def evaluate_backbone(cfg: SweepConfig, backbone: str, pool_row: dict[str, Any], ds,
                      plans: dict, plan: ExtractionPlan, images: np.ndarray,
                      progress: Callable | None = None) -> BackboneResult:
    """Load, extract once, score every (seed, fraction, evaluator); never raises for a backbone
    problem (see the module docstring).  ``images`` = train and test images concatenated."""
    import torch

    from precompute.backbone import load_backbone
    from precompute.evaluators import EVALUATORS
    from precompute.extract import extract_features

    meta = _meta_of(pool_row)
    bb = feats = None
    load_s = None
    try:
        bb = load_backbone(backbone, weights=cfg.weights, device=cfg.device,
                           input_size=cfg.input_size, pretrained_file=cfg.pretrained_file)
        load_s = float(bb.load_seconds)
        feats, seg_s = extract_features(bb, images, plan.order, plan.segments,
                                        batch_size=cfg.batch_size, progress=progress)
        used = feats[torch.as_tensor(plan.order, device=feats.device)]
        if not bool(torch.isfinite(used).all()):
            n_bad = int((~torch.isfinite(used)).any(dim=1).sum())
            raise FloatingPointError(f"{n_bad} of {used.shape[0]} feature rows are not finite")
        meta["feature_dim"] = int(feats.shape[1])
        size = (getattr(bb, "data_config", None) or {}).get("input_size")
        if size is not None:
            meta["input_size"] = int(size[-1])
        kept = used.to(torch.float16).cpu().numpy() if cfg.keep_features else None
        del used
        y_tr_all = torch.as_tensor(np.asarray(ds.train_labels), dtype=torch.int64)
        y_te_all = torch.as_tensor(np.asarray(ds.test_labels), dtype=torch.int64)
        rows = []
        for seed in cfg.seed_list:
            for f in cfg.fractions:
                tr, te = (np.asarray(a, np.int64) for a in plans[seed][f])
                x_tr = feats[torch.as_tensor(tr, device=feats.device)]
                x_te = feats[torch.as_tensor(te + plan.n_train, device=feats.device)]
                y_tr = y_tr_all[tr].to(feats.device)
                y_te = y_te_all[te].to(feats.device)
                for ev in cfg.evaluators:
                    spec = EVALUATORS[ev]
                    extract_s = plan.seconds_for(seg_s, f, spec.needs_test)
                    row = {"dataset": cfg.dataset, "backbone": backbone, "evaluator": ev,
                           "fraction": f, "seed": seed, "load_seconds": load_s,
                           "extract_seconds": extract_s, **meta}
                    try:
                        _sync(feats.device)
                        t0 = time.perf_counter()
                        score = float(spec.fn(x_tr, y_tr, x_te, y_te, n_classes=ds.n_classes,
                                              seed=seed))
                        _sync(feats.device)
                        fit_s = time.perf_counter() - t0
                        if not math.isfinite(score):
                            raise FloatingPointError(f"{ev} score is {score}")
                        row.update(score=score, fit_seconds=fit_s, status="ok", error=None,
                                   seconds=load_s + extract_s + fit_s)
                    except Exception as exc:  # this evaluation only
                        row.update(score=None, fit_seconds=None, seconds=None, status="failed",
                                   error=error_text(exc))
                    rows.append(row)
        frame = _frame(rows)
        status = "ok" if (frame.get_column("status") == "ok").all() else "failed"
        return BackboneResult(frame, status, kept)
    except Exception as exc:
        return BackboneResult(failed_rows(cfg, backbone, pool_row, error_text(exc), load_s),
                              "failed")
    finally:
        del bb, feats
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# -------------------------------------------------------------------------------- sweep
def run_meta(cfg: SweepConfig, ds) -> dict[str, Any]:
    """The run description every part carries (merged into the oracle metadata)."""
    import timm
    import torch

    from precompute.backbone import resolve_device

    facts = dict(ds.facts()) if hasattr(ds, "facts") else {}
    device = str(resolve_device(cfg.device))
    dev_name = (torch.cuda.get_device_name(torch.device(device))
                if device.startswith("cuda") and torch.cuda.is_available()
                else f"cpu ({platform.processor() or platform.machine()})")
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": cfg.dataset,
        "dataset_facts": facts,
        "n_train": int(len(ds.train_labels)),
        "n_test": int(len(ds.test_labels)),
        "n_classes": int(ds.n_classes),
        "skipped_images": facts.get("skipped", getattr(ds, "skipped", None)),
        "protocol": cfg.protocol(),
        "truth": TRUTH,
        "weights": cfg.weights,
        "hardware": {"device": device, "device_name": dev_name, "cpu_count": os.cpu_count(),
                     "host": socket.gethostname()},
        "versions": {"torch": torch.__version__, "timm": timm.__version__,
                     "python": sys.version.split()[0]},
        "source": "vibes precompute",
    }


@dataclass
class SweepSummary:
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # part already there
    locked: int = 0  # another worker holds it
    written: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # backbone -> wall time

    def line(self) -> str:
        s = (f"sweep done: {self.ok} ok, {self.failed} failed, "
             f"{self.skipped} skipped (already done)")
        return s + (f", {self.locked} locked by another worker" if self.locked else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def todo_backbones(cfg: SweepConfig, names: Sequence[str]) -> tuple[list[str], int]:
    """(names to compute, number skipped).  A part (ok or failed) means done; with
    ``retry_failed`` only backbones whose part has failed rows are redone."""
    todo, skipped = [], 0
    for n in names:
        st = P.part_status(P.part_path(cfg.parts_dir, cfg.dataset, n))
        if (cfg.retry_failed and st == "failed") or (not cfg.retry_failed and st is None):
            todo.append(n)
        else:
            skipped += 1
    return todo, skipped


def check_existing_parts(cfg: SweepConfig, names: Sequence[str]) -> None:
    """Parts already in ``parts_dir`` must come from the same configuration (weights, protocol),
    else skipping them would silently mix two runs in one oracle."""
    import json

    want = json.loads(json.dumps({"weights": cfg.weights, "protocol": cfg.protocol()},
                                 default=str))
    for n in names:
        path = P.part_path(cfg.parts_dir, cfg.dataset, n)
        if not path.exists():
            continue
        meta = P.read_part_meta(path)
        for key in ("weights", "protocol"):
            if key in meta and meta[key] != want[key]:
                raise VibesError(f"part {str(path)!r} was made with a different {key} "
                                 f"({json.dumps(meta[key], sort_keys=True)[:120]}); use another "
                                 f"--parts-dir or delete the old parts")


def run_sweep(cfg: SweepConfig, pool: pl.DataFrame, shard: tuple[int, int] | None = None,
              show_progress: bool = True, echo: Callable[[str], None] | None = print,
              ) -> SweepSummary:
    """Evaluate this shard's share of ``pool`` (0-based ``shard=(i, n)``; None = all), writing
    one part per backbone.  Returns the counts; prints a one-line summary via ``echo``."""
    from precompute.datasets import load_dataset, subset_plan

    check_evaluators(cfg.evaluators)
    if pool.height == 0:
        raise VibesError("the pool is empty; nothing to precompute")
    P.write_manifest(cfg.parts_dir, cfg.dataset, pool.get_column("backbone").to_list(),
                     {"protocol": cfg.protocol(), "weights": cfg.weights})
    mine = P.select_shard(pool, shard)
    rows = {r["backbone"]: r for r in mine.iter_rows(named=True)}
    # leftovers of killed workers: temporary files and the locks of backbones they finished
    P.remove_stale_tmp(P.dataset_dir(cfg.parts_dir, cfg.dataset))
    for name in rows:
        P.lock_for(cfg.parts_dir, cfg.dataset, name).clear_if_stale()
    check_existing_parts(cfg, list(rows))
    todo, skipped = todo_backbones(cfg, list(rows))
    summary = SweepSummary(skipped=skipped)
    if todo:
        ds = load_dataset(cfg.dataset, data_root=cfg.data_root, download=cfg.download,
                          cache_dir=cfg.cache_dir)
        plans = subset_plan(ds, list(cfg.fractions), cfg.seed_list)
        plan = extraction_plan(plans, cfg.fractions, len(ds.train_labels))
        images = np.concatenate([ds.train_images, ds.test_images])
        meta = run_meta(cfg, ds)
        _sweep_loop(cfg, todo, rows, ds, plans, plan, images, meta, summary, show_progress)
    if echo is not None:
        echo(summary.line())
    return summary


def _sweep_loop(cfg, todo, rows, ds, plans, plan, images, meta, summary, show_progress):
    from tqdm import tqdm

    outer = tqdm(todo, desc="backbones", unit="bb", disable=not show_progress, position=0)
    inner = tqdm(total=len(plan.order), desc="images", unit="img", leave=False,
                 disable=not show_progress, position=1)

    def progress(done: int) -> None:  # extract_features: images finished so far, per batch
        inner.update(int(done) - inner.n)

    try:
        for name in outer:
            outer.set_postfix_str(name)
            lock = P.lock_for(cfg.parts_dir, cfg.dataset, name)
            if not lock.acquire():
                summary.locked += 1
                continue
            try:
                path = P.part_path(cfg.parts_dir, cfg.dataset, name)
                if [name] != todo_backbones(cfg, [name])[0]:  # another worker finished it
                    summary.skipped += 1
                    continue
                inner.reset(total=len(plan.order))
                t0 = time.perf_counter()
                res = evaluate_backbone(cfg, name, rows[name], ds, plans, plan, images, progress)
                if cfg.keep_features and res.features is not None:
                    P.save_features(P.features_path(cfg.parts_dir, cfg.dataset, name),
                                    res.features, plan.order, plan.n_train,
                                    {"backbone": name, "weights": cfg.weights})
                P.write_part(res.frame, path, {**meta, "backbone": name})
                summary.seconds[name] = time.perf_counter() - t0
                summary.written.append(name)
                if res.status == "ok":
                    summary.ok += 1
                else:
                    summary.failed += 1
                    err = res.frame.get_column("error").drop_nulls()
                    outer.write(f"failed: {name}: {err[0] if err.len() else '?'}")
            finally:
                lock.release()
    finally:
        inner.close()
        outer.close()


__all__ = ["SweepConfig", "ExtractionPlan", "extraction_plan", "evaluate_backbone",
           "failed_rows", "run_sweep", "run_meta", "SweepSummary", "todo_backbones",
           "check_evaluators", "error_text"]
