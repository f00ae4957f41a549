"""The precompute sweep: every backbone of a pool × seed × fraction × evaluator on one dataset.

**Costs: one definition.**  A row's ``seconds`` is what a live evaluation of that (backbone,
evaluator, fraction, seed) pays from a cold start on this device: ``load_seconds +
extract_seconds + fit_seconds``, each measured with :func:`precompute.clock.span` — the very
spans a live search's budget reads — or derived from measured work by a rule written once, in
:func:`timing_protocol` (the oracle metadata's ``protocol.timing``).  Per backbone
(:func:`evaluate_backbone`):

0. once per worker process and device, :func:`warm_up` pays the one-time costs (CUDA context,
   cuDNN / cuBLAS / cuSOLVER handles, first-call costs of every op the pipeline uses) so that no
   timed backbone does; with pretrained weights the file is put into the cache first
   (:func:`precompute.weights.ensure_weights`): a download never enters any clock;
1. load it (``load_seconds``, measured: creation, reading the cached weights, to the device);
2. extract features in one pass (:func:`extraction_plan`): fraction by fraction, smallest first;
   below 1.0 seed by seed, each seed's nested difference (its subset less its subset at the
   previous fraction: batch for batch what an evaluation of that seed alone extracts, the few
   images another seed's subset shares extracted again), train then test (only the splits some
   evaluator needs); 1.0, the same for every seed, once, for the images not extracted yet; the
   clock stamped at every segment boundary;
3. for each fraction × evaluator × seed, fit/score the evaluator on that seed's subset
   (``fit_seconds``).  ``extract_seconds`` of a row = its own seed's segments (and the shared
   ones) at fractions ≤ its own, in the splits it uses — the nested clock stamps — plus, at 1.0,
   the images other seeds extracted below 1.0, each charged its share (seconds / images) of the
   segment that extracted it.  For one seed it is exactly the sum of the segments of every
   fraction ≤ the row's.
   An evaluator with a ``batched`` form trains seed 0 alone (measured: what one head costs
   alone) and the other seeds together in one ``batched`` call; their ``fit_seconds`` are
   derived from their own work: seed 0's measured seconds per epoch × the seed's own epochs
   (``mlp`` always runs 200; ``mlp-sklearn`` stops early).  Each row records the sizes it used
   (``n_train``, ``n_test``; 0 test images for an evaluator that needs none) and the head
   epochs run (``epochs``, from ``EvalResult``).

A live search's successive-halving promotion with kept features (``incremental``) passes the
features of the lower fraction as ``prior``: only the images the higher fraction adds are
extracted, and the row's ``extract_seconds`` is the lower row's plus those (cumulative, as the
nested clock stamps make it in a sweep).

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
import json
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
import timm
import torch
import torch.nn.functional as F

from precompute import backbone as B
from precompute import clock, faults
from precompute import datasets as D
from precompute import evaluators as E
from precompute import extract as X
from precompute import parts as P
from precompute import weights as W
from precompute.inputs import (  # the torch-free checks, re-exported: callers import them from here too
    WEIGHTS,
    Setup,
    SweepConfig,
    check_dataset_name,
    check_evaluators,
    check_truth,
)
from precompute.scores import as_result
from shared.errors import VibesError
from shared.oracle import BACKBONE_META, COLUMNS, SCHEMA_VERSION
from shared.protocol import MLP_PROTOCOL

EXTRACTION_ORDER = ("one pass per backbone: fraction by fraction (smallest first); below 1.0 seed by seed, "
                    "each seed's nested difference (its subset less its subset at the previous fraction), "
                    "train then test; a fraction every seed shares (1.0) once, for the images not extracted "
                    "yet; the clock stamped at every segment boundary")
META_COLUMNS = BACKBONE_META  # per-backbone metadata repeated on every row (shared.oracle)


def sweep_protocol(cfg: SweepConfig) -> dict[str, Any]:
    """The protocol a sweep's parts record (and a rerun's parts must match)."""
    return {"head": dict(MLP_PROTOCOL), "fractions": list(cfg.fractions), "seeds": cfg.seed_list,
            "evaluators": list(cfg.evaluators), "extraction_order": EXTRACTION_ORDER,
            "input_size": cfg.input_size, "subsets": "stratified, nested per seed",
            "timing": timing_protocol(cfg)}


def derived_fit_seconds(fit0: float, epochs0: int | None, epochs: int | None) -> float:
    """A batched seed's ``fit_seconds``: seed 0's measured seconds per epoch × its own epochs
    (seed 0's seconds when either count is unknown). The ratio of the counts is taken first, so a
    seed with seed 0's epochs pays exactly seed 0's seconds (``fit0 / e * e`` is off in the last bit
    for about one value in ten)."""
    if epochs0 and epochs is not None:
        return fit0 * (epochs / epochs0)
    return fit0


def timing_protocol(cfg: SweepConfig) -> dict[str, Any]:
    """How every timed quantity of a row was measured or derived (part of the protocol: parts
    measured otherwise, e.g. on another device type, are refused by :func:`check_existing_parts`)."""
    batched = cfg.batched_evaluators()
    alone = [e for e in cfg.evaluators if e not in batched]
    return {
        "clock": "precompute.clock spans: time.perf_counter wall seconds; CUDA synchronised at every boundary",
        "device": B.resolve_device(cfg.device).type,
        "seconds": "load_seconds + extract_seconds + fit_seconds: one evaluation run on its own from a cold start",
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
        "extract_seconds": ("measured per backbone in segments (see extraction_order); a row is charged its "
                            "own seed's segments and the shared ones at fractions <= its own, in the splits "
                            "it uses (train, and test when the evaluator needs it); an image of its subset "
                            "none of those holds (at 1.0: one another seed extracted below 1.0) is charged "
                            "its share, seconds / images, of the first segment that extracted it"),
        "fit_seconds": {
            "measured per row (each seed alone)": alone,
            "seed 0 trained alone and measured; seeds > 0 trained together in one batched call, each "
            "charged seed 0's seconds per epoch x its own epochs": batched,
        },
        "failed_rows": ("seconds spent until the failure: the load call (or the weight check), the "
                        "extraction so far, the fit so far"),
        "sizes": "n_train, n_test: images the row used (n_test 0 for evaluators without a test split)",
    }


def scored_on_test(cfg: SweepConfig) -> list[str]:
    """The run's evaluators that score on the test split."""
    return [e for e in cfg.evaluators if e in E.EVALUATORS and E.EVALUATORS[e].needs_test]


def check_subsets(cfg: SweepConfig, ds) -> None:
    """Refuse, before anything is written, a fraction at which a class has no test image while an
    evaluator of the run scores on the test split (:func:`precompute.datasets.check_fractions`)."""
    free = [e for e, spec in E.EVALUATORS.items() if not spec.needs_test]
    D.check_fractions(ds, cfg.fractions, cfg.seed_list, scored_on_test(cfg),
                      hint=f"evaluators without a test split ({', '.join(free)}) run at any fraction")


def check_data(cfg: SweepConfig):
    """Load the run's dataset and :func:`check_subsets` it (what every task of a launcher would do
    first): the dataset, or a one-line refusal before any task is submitted."""
    ds = D.load_dataset(cfg.dataset, data_root=cfg.data_root, download=cfg.download, cache_dir=cfg.cache_dir)
    check_subsets(cfg, ds)
    return ds


def subset_notes(cfg: SweepConfig, ds, plans) -> list[str]:
    """What the subsets of a run that passed :func:`check_subsets` do that the fractions do not say,
    one line each: a train subset kept at one image per class, test subsets whose draw lacks a class."""
    notes = []
    n_train, k = len(ds.train_labels), int(ds.n_classes)
    small = [f for f in cfg.fractions if D.subset_size(n_train, f) < k]
    if small:
        f = min(small)
        notes.append(f"fraction{'s' if len(small) > 1 else ''} {', '.join(f'{x:g}' for x in small)} of {ds.name} "
                     f"keep{'' if len(small) > 1 else 's'} fewer train images than its {k} classes (e.g. "
                     f"{D.subset_size(n_train, f)} of {n_train} at {f:g}): those train subsets keep one image "
                     f"per class ({k} images; each row's n_train says so)")
    if scored_on_test(cfg):
        for f, lack in sorted(D.missing_test_classes(ds, plans).items(), reverse=True):
            notes.append(f"at fraction {f:g} the stratified test subsets of seeds {', '.join(map(str, plans))} "
                         f"lack {', '.join(map(str, lack))} of the {k} classes "
                         f"({D.subset_size(len(ds.test_labels), f)} of {len(ds.test_labels)} images)")
    return notes


# --------------------------------------------------------------------- extraction plan
@dataclass
class ExtractionPlan:
    """One extraction order over train+test concatenated (test image j is ``n_train + j``).

    ``segments[k]`` images of ``order`` form segment k, labelled ``labels[k] = (fraction, seed,
    split)``; ``seed`` is None for a segment every seed shares (a fraction whose subsets are the
    same for every seed, e.g. 1.0).  An image may sit in several seeds' segments (the few images
    two seeds' subsets share below 1.0).  Images in ``prior`` were extracted before (a promotion's
    kept features): they are in no segment and cost nothing here."""

    order: np.ndarray
    segments: list[int]
    labels: list[tuple[float, int | None, str]]
    n_train: int
    n_images: int
    prior: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    def __post_init__(self):
        k = len(self.segments)
        seg_ids = np.repeat(np.arange(k), self.segments)
        first = np.full(self.n_images, -1, np.int64)
        # the first segment that extracted each image (reversed writes: the earliest wins)
        first[self.order[::-1]] = seg_ids[::-1]
        first[np.asarray(self.prior, np.int64)] = k  # a segment of its own, free
        self._first, self._seg_ids = first, seg_ids

    def seconds_for(self, segment_seconds: Sequence[float], seed: int, fraction: float, train_idx,
                    test_idx=None) -> float:
        """Extraction seconds of seed ``seed``'s row at ``fraction`` using the train images
        ``train_idx`` (and the test images ``test_idx``).  Below a shared fraction: that seed's own
        segments at fractions <= ``fraction`` in the splits it uses (its nested clock stamps).  At a
        fraction every seed shares (1.0): every image once, each its share (seconds / images) of
        the first segment that extracted it — the same for every seed, as the images are."""
        splits = ("train", "test") if test_idx is not None else ("train",)
        idx = np.asarray(train_idx, np.int64)
        if test_idx is not None:
            idx = np.concatenate([idx, np.asarray(test_idx, np.int64) + self.n_train])
        shared = any(s is None and abs(f - fraction) < 1e-12 for f, s, _ in self.labels)
        own = [] if shared else [k for k, (f, s, sp) in enumerate(self.labels)
                                 if f <= fraction + 1e-12 and s == seed and sp in splits]
        total = 0.0
        covered = np.zeros(self.n_images, bool)
        covered[np.asarray(self.prior, np.int64)] = True
        starts = np.concatenate([[0], np.cumsum(self.segments)]).astype(np.int64)
        for k in own:
            total += float(segment_seconds[k])
            covered[self.order[starts[k]:starts[k + 1]]] = True
        rest = idx[~covered[idx]]
        if len(rest):
            seg = self._first[rest]
            if (seg < 0).any():
                raise ValueError(f"{int((seg < 0).sum())} image(s) of the row are not in the extraction plan")
            counts = np.bincount(seg, minlength=len(self.segments) + 1)
            for k, c in enumerate(counts[:len(self.segments)]):
                if c:
                    total += float(segment_seconds[k]) * (int(c) / self.segments[k])
        return total


def extraction_plan(plans: dict, fractions: Sequence[float], n_train: int, n_images: int,
                    needs_test: bool = True, prior=None) -> ExtractionPlan:
    """The order for ``subset_plan``'s ``{seed: {fraction: (train_idx, test_idx)}}``: fraction by
    fraction (ascending), then seed by seed, train then test (test only with ``needs_test``).
    Each seed's segment at a fraction is its own subset at that fraction less its subset at the
    previous one (its nested difference, batch for batch what an evaluation of that seed alone
    extracts), even where another seed extracted some of those images already; a fraction whose
    subsets are the same for every seed (1.0) is one shared segment of the images not extracted
    yet.  Nothing in ``prior`` is extracted."""
    prior = np.empty(0, np.int64) if prior is None else np.asarray(prior, np.int64)
    seen = np.zeros(n_images, bool)
    seen[prior] = True
    order: list[np.ndarray] = []
    segments: list[int] = []
    labels: list[tuple[float, int | None, str]] = []
    seeds = sorted(plans)
    before = {s: (np.empty(0, np.int64), np.empty(0, np.int64)) for s in seeds}

    def add(idx: np.ndarray, label) -> None:
        if len(idx):
            order.append(idx)
            segments.append(len(idx))
            labels.append(label)
            seen[idx] = True

    for f in sorted(float(x) for x in fractions):
        subsets = {s: (np.asarray(plans[s][f][0], np.int64), np.asarray(plans[s][f][1], np.int64) + n_train)
                   for s in seeds}
        shared = len(seeds) > 1 and all(np.array_equal(subsets[s][i], subsets[seeds[0]][i])
                                        for s in seeds for i in (0, 1))
        for split, i in (("train", 0), ("test", 1)):
            if split == "test" and not needs_test:
                continue
            if shared:
                idx = subsets[seeds[0]][i]
                add(idx[~seen[idx]], (f, None, split))
                continue
            for s in seeds:
                idx = np.setdiff1d(subsets[s][i], before[s][i], assume_unique=True)
                add(idx[~np.isin(idx, prior)] if len(prior) else idx, (f, int(s), split))
        before = subsets
    flat = np.concatenate(order) if order else np.empty(0, np.int64)
    return ExtractionPlan(flat, segments, labels, n_train, n_images, prior)


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
        amp = X.autocast_dtype(dev)
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
class Prior:
    """Features kept from a lower fraction (a successive-halving promotion with ``incremental``
    cost): the images ``index`` (into train+test), their float32 ``features`` and the cumulative
    ``extract_seconds`` of the row they came from."""

    index: np.ndarray
    features: torch.Tensor
    extract_seconds: float


@dataclass
class BackboneResult:
    frame: pl.DataFrame
    status: str  # "ok" if every row is ok, else "failed"
    features: np.ndarray | None = None  # float16 rows of np.unique(plan.order) (keep_features)
    kept: Prior | None = None  # float32 features of every image used, on the CPU (keep=True)


def _timed_fit(spec, args: tuple, n_classes: int, seed: int, device):
    """``(EvalResult | None, seconds, error | None)`` of ``spec.fn`` on one seed's split, measured."""
    res = err = None
    with clock.span(device) as sp:
        try:
            res = as_result(spec.fn(*args, n_classes=n_classes, seed=seed))
            if not math.isfinite(res.score):
                raise FloatingPointError(f"{spec.name} score is {res.score}")
        except Exception as exc:  # this evaluation only
            res, err = None, error_text(exc)
    return res, sp.seconds, err


def _batched_fit(spec, tasks: list[tuple], n_classes: int, seeds: list[int]):
    """``spec.batched`` over seeds > 0 -> EvalResults, or None when it fails (then each seed is
    trained alone instead)."""
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
                      progress: Callable | None = None, prior: Prior | None = None,
                      keep: bool = False) -> BackboneResult:
    """Load, extract once, score every (fraction, evaluator, seed); never raises for a backbone
    problem (see the module docstring).  ``images`` = train and test images concatenated.

    Usable on its own (the live search evaluates one backbone at a time with it): it warms the
    device up on its first call in a process (:func:`warm_up`), fetches pretrained weights into
    the cache before any clock (offline: a failed row naming ``precompute fetch``) and, with
    ``cfg.evict_weights``, deletes the files it downloaded when done.  ``prior``: features kept
    from a lower fraction (``plan`` then holds only the images it lacks); ``keep``: return the
    float32 features of every image used (``BackboneResult.kept``).  Only a bad ``cfg.device``
    raises (VibesError), and BaseExceptions (Ctrl-C, a search's budget) pass through."""
    warm_up(B.resolve_device(cfg.device))
    meta = _meta_of(pool_row)
    specs = {ev: E.EVALUATORS[ev] for ev in cfg.evaluators if ev in E.EVALUATORS}
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
        try:  # load_backbone measures itself in clock spans (what a budget reads)
            bb = B.load_backbone(backbone, weights=cfg.weights, device=cfg.device,
                                 input_size=cfg.input_size, pretrained_file=cfg.pretrained_file)
        except Exception:
            load_s = time.perf_counter() - t0  # the load call until it failed
            raise
        load_s = float(bb.load_seconds)
        faults.point("backbone-load")  # a live search's budget: checked once the model is loaded
        t0 = time.perf_counter()
        try:
            feats, seg_s = X.extract_features(bb, images, plan.order, plan.segments,
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
        if prior is not None and len(prior.index):
            if prior.features.shape[1] != feats.shape[1]:
                raise ValueError(f"kept features have width {prior.features.shape[1]}, the model gives "
                                 f"{feats.shape[1]}")
            with torch.inference_mode():  # feats is an inference tensor (extract_features made it)
                feats[torch.as_tensor(prior.index, device=feats.device)] = prior.features.to(feats.device)
        meta["feature_dim"] = int(feats.shape[1])
        size = (getattr(bb, "data_config", None) or {}).get("input_size")
        if size is not None:
            meta["input_size"] = int(size[-1])
        kept16 = (feats[torch.as_tensor(np.unique(plan.order), device=feats.device)].to(torch.float16).cpu().numpy()
                  if cfg.keep_features else None)
        del used
        rows = _score_all(cfg, backbone, ds, plans, plan, feats, seg_s, load_s, meta, sizes,
                          0.0 if prior is None else float(prior.extract_seconds))
        frame = _frame(rows)
        status = "ok" if (frame.get_column("status") == "ok").all() else "failed"
        kept = None
        if keep:
            index = np.union1d(plan.order, plan.prior)
            kept = Prior(index, feats[torch.as_tensor(index, device=feats.device)].cpu(),
                         float(frame.get_column("extract_seconds")[0]))
        return BackboneResult(frame, status, kept16, kept)
    except Exception as exc:
        return BackboneResult(failed_rows(cfg, backbone, pool_row, error_text(exc), load_s, extract_s,
                                          sizes), "failed")
    finally:
        del bb, feats
        if cfg.evict_weights:
            W.evict(fetched)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _score_all(cfg, backbone, ds, plans, plan, feats, seg_s, load_s, meta, sizes, prior_extract) -> list[dict]:
    """Every (fraction, evaluator, seed) row of one backbone: seed 0 alone and measured; seeds > 0
    alone and measured, or through one ``batched`` call, each charged seed 0's seconds per epoch ×
    its own epochs (:func:`derived_fit_seconds`)."""
    dev = feats.device
    y_tr_all = torch.as_tensor(np.asarray(ds.train_labels), dtype=torch.int64)
    y_te_all = torch.as_tensor(np.asarray(ds.test_labels), dtype=torch.int64)
    batched = set(cfg.batched_evaluators())
    rows = []
    for f in cfg.fractions:
        split, extract_of = {}, {}
        for seed in cfg.seed_list:
            tr, te = (np.asarray(a, np.int64) for a in plans[seed][f])
            split[seed] = (feats[torch.as_tensor(tr, device=dev)], y_tr_all[tr].to(dev),
                           feats[torch.as_tensor(te + plan.n_train, device=dev)], y_te_all[te].to(dev))
            for needs_test in {E.EVALUATORS[ev].needs_test for ev in cfg.evaluators}:
                extract_of[(seed, needs_test)] = prior_extract + plan.seconds_for(
                    seg_s, seed, f, tr, te if needs_test else None)
        for ev in cfg.evaluators:
            spec = E.EVALUATORS[ev]

            def row(seed, res, fit_s, error, ev=ev, f=f, spec=spec, extract_of=extract_of):
                n_tr, n_te = sizes[(ev, f, seed)]
                extract_s = extract_of[(seed, spec.needs_test)]
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
            if together is not None:  # seeds > 0: seed 0's seconds per epoch x their own epochs
                rows += [row(s, r, derived_fit_seconds(fit0, res0.epochs, r.epochs), None)
                         for s, r in zip(rest, together)]
            else:
                for s in rest:
                    rows.append(row(s, *_timed_fit(spec, split[s], ds.n_classes, s, dev)))
        del split
    return rows


# -------------------------------------------------------------------------------- sweep
def run_meta(cfg: SweepConfig, ds) -> dict[str, Any]:
    """The run description every part carries (merged into the oracle metadata)."""
    facts = dict(ds.facts()) if hasattr(ds, "facts") else {}
    device = str(B.resolve_device(cfg.device))
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
        "protocol": sweep_protocol(cfg),
        "truth": cfg.truth_evaluator(),
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


def check_existing_parts(cfg: SweepConfig, names: Sequence[str], folder_option: str = "--parts-dir") -> None:
    """Parts already in ``parts_dir`` must come from the same configuration (weights, protocol),
    else skipping them would silently mix two runs in one oracle.  The refusal names each setting that
    differs and the option that chooses another folder (``folder_option``: ``--out`` for a search)."""
    want = json.loads(json.dumps({"weights": cfg.weights, "protocol": sweep_protocol(cfg)},
                                 default=str))
    for n in names:
        path = P.part_path(cfg.parts_dir, cfg.dataset, n)
        if not path.exists():
            continue
        meta = P.read_part_meta(path)
        diffs = [d for key in ("weights", "protocol") if key in meta
                 for d in setting_differences(key, meta[key], want[key])]
        if diffs:
            raise VibesError(f"{str(path.parent)!r} holds parts of another run ({'; '.join(diffs[:4])}"
                             f"{'; …' if len(diffs) > 4 else ''}); use another {folder_option} or delete the old "
                             f"parts")


def setting_differences(name: str, there, here) -> list[str]:
    """``input_size 224 there, 32 here`` for each leaf of two JSON-like values that differs (dotted
    paths below ``name``; a setting only one side has says ``absent``)."""
    if isinstance(there, dict) and isinstance(here, dict):
        keys = sorted(set(there) | set(here))
        return [d for k in keys for d in setting_differences(f"{name}.{k}" if name not in ("protocol",) else k,
                                                             there.get(k, "absent"), here.get(k, "absent"))]
    if there == here:
        return []
    def show(v) -> str:
        text = "not set" if v is None else v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        return text if len(text) <= 60 else text[:59] + "…"
    return [f"{name} {show(there)} there, {show(here)} here"]


def run_sweep(cfg: SweepConfig, pool: pl.DataFrame, shard: tuple[int, int] | None = None,
              show_progress: bool = True, echo: Callable[[str], None] | None = print,
              ) -> SweepSummary:
    """Evaluate this shard's share of ``pool`` (0-based ``shard=(i, n)``; None = all), writing
    one part per backbone.  Returns the counts; prints a one-line summary via ``echo``."""
    check_evaluators(cfg.evaluators)
    if pool.height == 0:
        raise VibesError("the pool is empty; nothing to precompute")
    mine = P.select_shard(pool, shard)
    rows = {r["backbone"]: r for r in mine.iter_rows(named=True)}
    # every refusal before anything is written: parts of another run, a dataset or fraction that
    # cannot give a score (fewer than two classes, a class without a test image)
    check_existing_parts(cfg, list(rows))
    todo, skipped = todo_backbones(cfg, list(rows))
    ds = check_data(cfg) if todo else None
    P.write_manifest(cfg.parts_dir, cfg.dataset, pool.get_column("backbone").to_list(),
                     {"protocol": sweep_protocol(cfg), "weights": cfg.weights,
                      **({"config": cfg.command_config} if cfg.command_config else {})})
    # leftovers of killed workers: temporary files and the locks of backbones they finished
    P.remove_stale_tmp(P.dataset_dir(cfg.parts_dir, cfg.dataset))
    for name in rows:
        P.lock_for(cfg.parts_dir, cfg.dataset, name).clear_if_stale()
    summary = SweepSummary(skipped=skipped)
    if ds is not None:
        plans = D.subset_plan(ds, list(cfg.fractions), cfg.seed_list)
        if echo is not None:
            for note in subset_notes(cfg, ds, plans):
                echo(f"note: {note}")
        images = np.concatenate([ds.train_images, ds.test_images])
        plan = extraction_plan(plans, cfg.fractions, len(ds.train_labels), len(images), cfg.needs_test())
        meta = run_meta(cfg, ds)
        warm_up(B.resolve_device(cfg.device))  # this worker's one-time costs, before any timed backbone
        _sweep_loop(cfg, todo, rows, ds, plans, plan, images, meta, summary, show_progress)
    if echo is not None:
        echo(summary.line())
    return summary


def _sweep_loop(cfg, todo, rows, ds, plans, plan, images, meta, summary, show_progress):
    from tqdm import tqdm  # lazy: only a sweep with work to do draws bars

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
                                    res.features, np.unique(plan.order), plan.n_train,
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
           "check_evaluators", "error_text", "warm_up", "timing_protocol", "sweep_protocol",
           "check_dataset_name", "Setup", "Prior", "derived_fit_seconds", "BackboneResult", "WEIGHTS",
           "check_truth", "check_subsets", "check_data", "subset_notes", "scored_on_test"]
