"""The precompute sweep: every backbone of a pool × seed × fraction × evaluator on one dataset.

Every row's ``seconds`` is what a live search pays for that one evaluation on this device
(``seconds = load_seconds + extract_seconds + fit_seconds``; the exact rules go into the oracle
metadata, ``protocol.timing``, by :func:`timing_protocol`).  Per backbone
(:func:`evaluate_backbone`):

0. once per worker process and device, :func:`warm_up` pays the one-time costs (CUDA context,
   cuDNN / cuBLAS / cuSOLVER handles, first-call costs of every op the pipeline uses) so that no
   timed backbone does; with pretrained weights the file is put into the cache first
   (:func:`precompute.weights.ensure_weights`): a download never enters any clock;
1. load it (``load_seconds``, measured: creation, reading the cached weights, to the device);
2. extract features ONCE over one order of images built from seed 0's nested subsets,
   smallest fraction first: ``[train 1%, test 1%, train 10%∖1%, test 10%∖1%, train rest,
   test rest]`` (only the fractions asked for), the clock stamped at every segment boundary
   (:func:`extraction_plan`).  When the largest fraction is below 1.0 the other seeds' subsets
   may hold images outside seed 0's; those are extracted last in an untimed extra segment;
3. for each fraction × evaluator × seed, fit/score the evaluator on that seed's subset
   (``fit_seconds``, CUDA-synchronised).  ``extract_seconds`` is the sum of the measured
   segments the evaluation needs: train and test segments of every fraction ≤ its fraction
   when the evaluator needs the test split (``mlp``), the train segments only otherwise
   (``silhouette``).  Seeds > 0 draw other images of the same sizes; their extraction time is
   *that of seed 0's segments* (same counts, same backbone, same batches: the cost of a subset
   depends on its size, not on which images it holds).  An evaluator with a ``batched`` form
   trains seed 0 alone with ``fn`` (timed: what one head costs trained alone) and the other
   seeds together in one ``batched`` call; their rows carry seed 0's ``fit_seconds``.
   Each row records the sizes it used (``n_train``, ``n_test``; 0 test images for an evaluator
   that needs none) and the head epochs run (``epochs``, from ``EvalResult``).

Any exception while loading or extracting a backbone (unknown name, weights not cached offline,
unsupported input size, non-finite features, CUDA OOM after the batch back-off, ...) makes one
``failed`` row per expected (evaluator, fraction, seed) with ``error = "<ExcType>: <message>"``
and the seconds spent until the failure (the load call, the extraction so far); an exception
inside one evaluator's fit fails only that row, charged load + extract + the fit so far.  The
sweep goes on.

:func:`run_sweep` drives a (sharded) pool: parts, locks and resume are in :mod:`precompute.parts`.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from precompute import parts as P
from shared.errors import VibesError, unknown
from shared.oracle import BACKBONE_META, COLUMNS, SCHEMA_VERSION

DEFAULT_FRACTIONS = (1.0, 0.1, 0.01)
#: what `precompute run` and `make precompute` evaluate by default: the paper's head and
#: silhouette, and the four cheap proxies (mlp-sklearn, the second head, is opt-in)
DEFAULT_EVALUATORS = ("mlp", "silhouette", "knn", "ridge", "logme", "hscore")
WEIGHTS = ("pretrained", "random")
TRUTH = "mlp"
EXTRACTION_ORDER = ("one pass per backbone over seed 0's nested subsets, smallest fraction first: "
                    "train f1, test f1, train f2\\f1, test f2\\f1, ...; other seeds reuse the "
                    "measured segment seconds (same sizes)")
META_COLUMNS = BACKBONE_META  # per-backbone metadata repeated on every row (shared.oracle)


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
    evict_weights: bool = False  # delete each backbone's freshly downloaded weights after it

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

    def batched_evaluators(self) -> list[str]:
        """The run's evaluators whose seeds > 0 go through one ``batched`` call."""
        from precompute.evaluators import EVALUATORS

        if self.seeds < 2:
            return []
        return [e for e in self.evaluators if e in EVALUATORS and EVALUATORS[e].batched is not None]

    def protocol(self) -> dict[str, Any]:
        from precompute.evaluators import MLP_PROTOCOL

        return {"head": dict(MLP_PROTOCOL), "fractions": list(self.fractions), "seeds": self.seed_list,
                "evaluators": list(self.evaluators), "extraction_order": EXTRACTION_ORDER,
                "input_size": self.input_size, "subsets": "stratified, nested per seed",
                "timing": timing_protocol(self)}


def timing_protocol(cfg: SweepConfig) -> dict[str, Any]:
    """How every timed quantity of a row was measured (part of the protocol: parts measured
    otherwise, e.g. on another device type, are refused by :func:`check_existing_parts`)."""
    from precompute.backbone import resolve_device

    batched = cfg.batched_evaluators()
    alone = [e for e in cfg.evaluators if e not in batched]
    return {
        "clock": "time.perf_counter wall seconds; CUDA synchronised at every boundary",
        "device": resolve_device(cfg.device).type,
        "seconds": "load_seconds + extract_seconds + fit_seconds: one evaluation run on its own",
        "warm_up": ("once per worker process, before its first timed backbone: device context, "
                    "cuDNN/cuBLAS/cuSOLVER handles and the first call of every op the pipeline uses "
                    "(conv, interpolate, matmul, cdist, cross-entropy backward, Adam step, randperm with "
                    "a generator, eigh/cholesky/solve); never charged to a row"),
        "load_seconds": ("measured per backbone: model creation, reading the cached weight file "
                         "through timm's pretrained path (hub offline: no HTTP request), transfer to "
                         "the device; never a download (weights are cached before the clock starts)"
                         if cfg.weights == "pretrained" else
                         "measured per backbone: model creation with random weights (seeded by the "
                         "name), transfer to the device; no weight file is read")
                        + ("; plus the meta-device check of the requested input size"
                           if cfg.input_size else ""),
        "extract_seconds": ("measured per backbone on seed 0's nested subsets, segment by segment; a "
                            "row at fraction f is charged the measured segments it needs (train, and "
                            "test when the evaluator needs it, of every fraction <= f); rows of seeds > 0 "
                            "reuse seed 0's measured segments (same sizes)"),
        "fit_seconds": {
            "measured per row (each seed alone)": alone,
            "seed 0 trained alone and measured; seeds > 0 trained together in one batched call and "
            "carrying seed 0's fit_seconds": batched,
        },
        "failed_rows": ("seconds spent until the failure: the load call (or the weight check), the "
                        "extraction so far, the fit so far"),
        "sizes": "n_train, n_test: images the row used (n_test 0 for evaluators without a test split)",
    }


def check_evaluators(names: Sequence[str]) -> None:
    from precompute.evaluators import EVALUATORS

    for n in names:
        if n not in EVALUATORS:
            raise unknown("evaluator", n, EVALUATORS)


def check_dataset_name(name: str) -> str:
    """The canonical dataset name, checked without loading anything: an unknown name lists the
    valid ones; ``folder:PATH`` must be a folder holding sub-folders (one-line DatasetError)."""
    from precompute.datasets import check_folder, resolve

    canonical, _spec, extra = resolve(name)
    if extra.get("path") is not None:
        check_folder(extra["path"])
    return canonical


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


def _sizes(cfg: SweepConfig, plans: dict, needs_test: dict[str, bool]) -> dict:
    """``(evaluator, fraction, seed) -> (n_train, n_test)`` the evaluation uses."""
    out = {}
    for ev in cfg.evaluators:
        for f in cfg.fractions:
            for s in cfg.seed_list:
                tr, te = plans[s][f] if plans and s in plans else ((), ())
                out[(ev, f, s)] = (len(tr), len(te) if needs_test.get(ev, True) else 0)
    return out


def failed_rows(cfg: SweepConfig, backbone: str, pool_row: dict[str, Any], error: str,
                load_seconds: float | None = None, extract_seconds: float = 0.0,
                sizes: dict | None = None) -> pl.DataFrame:
    """One failed row per expected (evaluator, fraction, seed), each charged the seconds spent
    until the failure (``load_seconds + extract_seconds``)."""
    load = float(load_seconds or 0.0)
    extract = float(extract_seconds or 0.0)
    rows = [{"dataset": cfg.dataset, "backbone": backbone, "evaluator": ev, "fraction": f,
             "seed": s, "score": None, "seconds": load + extract, "load_seconds": load,
             "extract_seconds": extract, "fit_seconds": 0.0, "status": "failed", "error": error,
             "n_train": (sizes or {}).get((ev, f, s), (None, None))[0],
             "n_test": (sizes or {}).get((ev, f, s), (None, None))[1],
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


#: devices this process has warmed up (``str(torch.device)``)
_WARM: set[str] = set()


def warm_up(device) -> float:
    """Pay this process's one-time costs on ``device`` once, before its first timed backbone:
    the device context, cuDNN / cuBLAS / cuSOLVER handles and the first call of each op the
    pipeline uses (a channels-last conv forward under inference mode and autocast, antialiased
    interpolation, matmul, cdist, a cross-entropy backward, an Adam step (fused on CUDA), randperm
    with a device generator, eigh / cholesky / triangular solve, topk, unique).  Idempotent per
    process and device; returns the seconds it took (0.0 when already warm).  The global RNG
    state is restored afterwards (``fork_rng``): warming up changes no seeded result."""
    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    key = str(dev)
    if key in _WARM:
        return 0.0
    start = time.perf_counter()
    cuda = dev.type == "cuda"
    with torch.random.fork_rng(devices=[dev] if cuda else []):  # module inits draw from it
        gen = torch.Generator(device=dev).manual_seed(0)
        amp = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.bfloat16
        img = torch.randint(0, 256, (4, 40, 40, 3), dtype=torch.uint8, generator=gen, device=dev)
        x = img.permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(36, 36), mode="bicubic", antialias=True, align_corners=False)
        x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        x = ((x / 255.0) - 0.5).contiguous(memory_format=torch.channels_last)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                  torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.LayerNorm(8))
        net = net.to(device=dev, memory_format=torch.channels_last).eval()
        with torch.inference_mode(), torch.autocast(dev.type, dtype=amp, enabled=cuda):
            feats = net(x).float()
        feats = feats.clone()
        head = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).to(dev)
        opt = torch.optim.Adam(head.parameters(), lr=1e-3, **({"fused": True} if cuda else {}))
        y = torch.randint(0, 2, (4,), generator=gen, device=dev)
        with torch.enable_grad():
            for _ in range(2):
                perm = torch.randperm(4, generator=gen, device=dev)
                loss = F.cross_entropy(head(feats[perm]), y[perm])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.inference_mode():
            _ = (head(feats).argmax(1) == y).sum().item()
            f64 = feats.double() + torch.rand(4, 8, generator=gen, device=dev, dtype=torch.float64)
            _ = torch.cdist(f64, f64) @ F.one_hot(y, 2).double()
            gram = f64.T @ f64 + torch.eye(8, dtype=torch.float64, device=dev)
            torch.linalg.eigh(gram)
            chol, _info = torch.linalg.cholesky_ex(gram)
            torch.linalg.solve_triangular(chol, f64.T, upper=False)
            torch.topk(f64, 2, dim=1)
            torch.unique(y, return_inverse=True, return_counts=True)
    _sync(dev)
    _WARM.add(key)
    return time.perf_counter() - start


@dataclass
class BackboneResult:
    frame: pl.DataFrame
    status: str  # "ok" if every row is ok, else "failed"
    features: np.ndarray | None = None  # float16 rows of plan.order (keep_features)


def _timed_fit(spec, args: tuple, n_classes: int, seed: int, device):
    """``(EvalResult | None, seconds, error | None)`` of ``spec.fn`` on one seed's split, timed."""
    from precompute.evaluators import as_result

    _sync(device)
    t0 = time.perf_counter()
    try:
        res = as_result(spec.fn(*args, n_classes=n_classes, seed=seed))
        _sync(device)
        if not math.isfinite(res.score):
            raise FloatingPointError(f"{spec.name} score is {res.score}")
        return res, time.perf_counter() - t0, None
    except Exception as exc:  # this evaluation only
        _sync(device)
        return None, time.perf_counter() - t0, error_text(exc)


def _batched_fit(spec, tasks: list[tuple], n_classes: int, seeds: list[int]):
    """``spec.batched`` over seeds > 0 -> EvalResults, or None when it fails (then each seed is
    trained alone instead)."""
    from precompute.evaluators import as_result

    try:
        out = [as_result(r) for r in spec.batched(tasks, n_classes=n_classes, seeds=seeds)]
    except Exception as exc:  # correct either way, but a bug in the batched path must not hide
        warnings.warn(f"{spec.name}: batched training of seeds {seeds} failed ({error_text(exc)}); "
                      f"training them one by one", RuntimeWarning, stacklevel=2)
        return None
    if len(out) != len(seeds) or not all(math.isfinite(r.score) for r in out):
        return None
    return out


def evaluate_backbone(cfg: SweepConfig, backbone: str, pool_row: dict[str, Any], ds,
                      plans: dict, plan: ExtractionPlan, images: np.ndarray,
                      progress: Callable | None = None) -> BackboneResult:
    """Load, extract once, score every (fraction, evaluator, seed); never raises for a backbone
    problem (see the module docstring).  ``images`` = train and test images concatenated.

    Usable on its own (the live search evaluates one backbone at a time with it): it warms the
    device up on its first call in a process (:func:`warm_up`), fetches pretrained weights into
    the cache before any clock (offline: a failed row naming ``precompute fetch``) and, with
    ``cfg.evict_weights``, deletes the files it downloaded when done.  Only a bad ``cfg.device``
    raises (VibesError), and BaseExceptions (Ctrl-C, a search deadline) pass through."""
    import torch

    from precompute import faults
    from precompute import weights as W
    from precompute.backbone import load_backbone, resolve_device
    from precompute.evaluators import EVALUATORS
    from precompute.extract import extract_features

    warm_up(resolve_device(cfg.device))
    meta = _meta_of(pool_row)
    specs = {ev: EVALUATORS[ev] for ev in cfg.evaluators if ev in EVALUATORS}
    sizes = _sizes(cfg, plans, {ev: sp.needs_test for ev, sp in specs.items()})
    bb = feats = fetched = None
    load_s = extract_s = 0.0
    try:
        if cfg.weights == "pretrained" and cfg.pretrained_file is None:
            t0 = time.perf_counter()
            try:  # before any clock: a download is never charged
                fetched = W.ensure_weights(backbone)
            except Exception as exc:
                load_s = time.perf_counter() - t0 - getattr(exc, "download_seconds", 0.0)
                raise
        t0 = time.perf_counter()
        try:
            bb = load_backbone(backbone, weights=cfg.weights, device=cfg.device,
                               input_size=cfg.input_size, pretrained_file=cfg.pretrained_file)
        except Exception:
            load_s = time.perf_counter() - t0  # the load call until it failed
            raise
        load_s = float(bb.load_seconds)
        faults.point("backbone-load")  # a live search's deadline: checked once the model is loaded
        t0 = time.perf_counter()
        try:
            feats, seg_s = extract_features(bb, images, plan.order, plan.segments,
                                            batch_size=cfg.batch_size, progress=progress)
        except Exception:
            with contextlib.suppress(Exception):  # a broken device may fail to synchronise too
                _sync(bb.device)
            extract_s = time.perf_counter() - t0  # the extraction so far
            raise
        extract_s = float(sum(seg_s))
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
        rows = _score_all(cfg, backbone, ds, plans, plan, feats, seg_s, load_s, meta, sizes)
        frame = _frame(rows)
        status = "ok" if (frame.get_column("status") == "ok").all() else "failed"
        return BackboneResult(frame, status, kept)
    except Exception as exc:
        return BackboneResult(failed_rows(cfg, backbone, pool_row, error_text(exc), load_s, extract_s,
                                          sizes), "failed")
    finally:
        del bb, feats
        if cfg.evict_weights:
            W.evict(fetched)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _score_all(cfg, backbone, ds, plans, plan, feats, seg_s, load_s, meta, sizes) -> list[dict]:
    """Every (fraction, evaluator, seed) row of one backbone: seed 0 alone and timed; seeds > 0
    alone and timed, or through one ``batched`` call carrying seed 0's fit time."""
    import torch

    from precompute.evaluators import EVALUATORS

    dev = feats.device
    y_tr_all = torch.as_tensor(np.asarray(ds.train_labels), dtype=torch.int64)
    y_te_all = torch.as_tensor(np.asarray(ds.test_labels), dtype=torch.int64)
    batched = set(cfg.batched_evaluators())
    rows = []
    for f in cfg.fractions:
        split = {}
        for seed in cfg.seed_list:
            tr, te = (np.asarray(a, np.int64) for a in plans[seed][f])
            split[seed] = (feats[torch.as_tensor(tr, device=dev)], y_tr_all[tr].to(dev),
                           feats[torch.as_tensor(te + plan.n_train, device=dev)], y_te_all[te].to(dev))
        for ev in cfg.evaluators:
            spec = EVALUATORS[ev]
            extract_s = plan.seconds_for(seg_s, f, spec.needs_test)

            def row(seed, res, fit_s, error, ev=ev, f=f, extract_s=extract_s):
                n_tr, n_te = sizes[(ev, f, seed)]
                r = {"dataset": cfg.dataset, "backbone": backbone, "evaluator": ev, "fraction": f,
                     "seed": seed, "load_seconds": load_s, "extract_seconds": extract_s,
                     "fit_seconds": fit_s, "seconds": load_s + extract_s + fit_s,
                     "n_train": n_tr, "n_test": n_te, **meta}
                if res is None:
                    return {**r, "score": None, "epochs": None, "status": "failed", "error": error}
                return {**r, "score": res.score, "epochs": res.epochs, "status": "ok", "error": None}

            first, rest = cfg.seed_list[0], cfg.seed_list[1:]
            res0, fit0, err0 = _timed_fit(spec, split[first], ds.n_classes, first, dev)
            rows.append(row(first, res0, fit0, err0))
            together = None
            if rest and ev in batched and res0 is not None:
                together = _batched_fit(spec, [split[s] for s in rest], ds.n_classes, rest)
            if together is not None:  # seeds > 0 carry seed 0's measured fit time
                rows += [row(s, r, fit0, None) for s, r in zip(rest, together)]
            else:
                for s in rest:
                    rows.append(row(s, *_timed_fit(spec, split[s], ds.n_classes, s, dev)))
        del split
    return rows


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
        from precompute.backbone import resolve_device

        warm_up(resolve_device(cfg.device))  # this worker's one-time costs, before any timed backbone
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
                if not lock.owns():  # its heartbeat went stale and another worker took it over
                    summary.locked += 1
                    outer.write(f"lost the lock of {name} to another worker; not writing its part")
                    continue
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
           "check_evaluators", "error_text", "warm_up", "timing_protocol", "check_dataset_name"]
