"""The JSON ``bench/bench_gpu.py --json`` writes (default ``out/bench-gpu.json``), as dataclasses: each
field's ``metadata["doc"]`` says what it holds.  Seconds are wall-clock, device-synchronised.  The file
is rewritten after every part (``complete`` false while running or when interrupted).

:func:`problems` checks a written document against :class:`BenchGpuDoc`: every key present, each of the
type its field names, no key the schema lacks.  A part that is not ``ok`` (not in ``--parts``, failed,
not run yet) may lack its own keys and those of the objects inside it, never have others.  JSON numbers:
a ``float`` field takes an integer too; a non-finite float is written as null (``common.jsonable``).
Nothing here runs at benchmark time; it imports the project's classes whose fields the JSON carries.
"""
from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields, is_dataclass, make_dataclass
from typing import Any, Literal, Union

from bench.gpu.check import CHECK_MIN_LEFT_S
from bench.gpu.common import described as _d
from bench.gpu.plan import Plan
from precompute.check import STATUSES as CHECK_STATUSES
from precompute.estimate import Projection
from shared.protocol import PROXIES

# ------------------------------------------------------------------------------------ the plan
#: the Plan fields the JSON carries at its top, not in ``plan``
TOP_PLAN_FIELDS = ("smoke", "budget_s", "setup_s")
PlanDoc = make_dataclass("PlanDoc", [(f.name, typing.get_type_hints(Plan)[f.name], _d(f.metadata["doc"]))
                                     for f in fields(Plan) if f.name not in TOP_PLAN_FIELDS])
PlanDoc.__doc__ = "``plan``: :class:`bench.gpu.plan.Plan` less " + ", ".join(TOP_PLAN_FIELDS) + "."


# ---------------------------------------------------------------------------- every part's keys
@dataclass
class PartBase:
    """What every part has; a part's own keys follow (all of them when it is ``ok``)."""

    title: str = _d("what the part measures")
    ok: bool = _d("the part ran to its end")
    error: str | None = _d('"<ExcType>: <message>" of the exception that ended it')
    traceback: str | None = _d("that exception's traceback (its last 3,000 characters)")
    skipped: str | None = _d('why it did not run ("not in --parts")')
    wall_seconds: float | None = _d("the part's wall time (s; null: not run)")
    cap_seconds: float | None = _d("its cap as it started: planned, scaled by what was left (s; null: not run)")


# -------------------------------------------------------------------------------------- part a
@dataclass
class PoolCounts:
    pool: int = _d("backbones in the pool")
    runnable: int = _d("of them runnable (precompute.estimate.runnable_pool)")
    part: int = _d("of those, the part sampled (smoke: the tiny ones)")
    left_out: dict[str, int] = _d("{reason: backbones runnable_pool left out}")
    memory_guard_params_m: float = _d("the machine's memory guard (M parameters): larger ones are not drawn")


@dataclass
class SweepRow:
    backbone: str = _d("timm name")
    eff_gmacs: float | None = _d("effective GMACs at the input size used")
    gmacs: float | None = _d("GMACs at the native input size")
    params_m: float | None = _d("M parameters")
    stratum: int | None = _d("its GMACs stratum")
    stratum_size: int | None = _d("backbones of the runnable pool in that stratum")
    status: Literal["ok", "failed", "stopped", "skipped"] = _d(
        "stopped: at the cap on its measured seconds; skipped: not started, its predicted time exceeded what was left")
    seconds: float | None = _d("measured seconds (stopped: up to the stop)")
    load_seconds: float | None = _d("its load seconds (backbone_timing)")
    extract_seconds: float | None = _d("its largest measured extraction (s)")
    fit_seconds: float | None = _d("the rest of its wall time: the heads and proxies (s)")
    cpu_seconds: float | None = _d("this process's CPU seconds")
    rows: int | None = _d("score rows it gave")
    error: str | None = _d("why it is not ok")
    predicted_seconds: float | None = _d("predicted from the backbones measured before it (s; null: < 2 GMACs)")


_PROJECTION_EXTRA = {"total_hours": (float, _d("total_seconds in hours on this device")),
                     "low_hours": (float | None, _d("low_seconds in hours")),
                     "high_hours": (float | None, _d("high_seconds in hours")),
                     "unit": (str, _d('"hours on <device>"'))}
ProjectionDoc = make_dataclass(
    "ProjectionDoc",
    [(f.name, typing.get_type_hints(Projection)[f.name], _d(f"precompute.estimate.Projection.{f.name}"))
     for f in fields(Projection) if f.name != "predicted"]
    + [(name, tp, spec) for name, (tp, spec) in _PROJECTION_EXTRA.items()])
ProjectionDoc.__doc__ = "``Projection.as_dict()`` (its fields less ``predicted``, with hours) and the unit."


@dataclass
class SweepPart(PartBase):
    """a. the sample through the sweep's own measure_sample, and the whole-pool projection."""

    dataset: str = _d("the dataset's name")
    n_train: int = _d("train images")
    n_test: int = _d("test images")
    input_size: int | None = _d("px (null: each backbone's native)")
    fractions: list[float] = _d("the sweep's fractions")
    seeds: int = _d("the sweep's seeds")
    evaluators: list[str] = _d("the sweep's evaluators")
    weights: str = _d('"random": nothing is downloaded')
    dataset_seconds: float | None = _d("generating or loading the dataset (s, untimed)")
    images_extracted_per_backbone: int = _d("images the sweep extracts per backbone")
    pool: PoolCounts = _d("the pool the sample is drawn from")
    sample_size: int = _d("backbones sampled (one per stratum)")
    measured: int = _d("backbones started")
    n_ok: int = _d("backbones measured ok")
    backbones: list[SweepRow] = _d("the sample, in stratum order (GMACs)")
    median_backbone_seconds: float | None = _d("median seconds over the ok backbones")
    median_load_seconds: float | None = _d("median over the ok backbones (s)")
    median_extract_seconds: float | None = _d("median over the ok backbones (s)")
    median_fit_seconds: float | None = _d("median over the ok backbones (s)")
    projection: ProjectionDoc | None = _d("the whole runnable pool's sweep on this device (null: no projection)")
    projection_error: str | None = _d("why there is no projection")
    projection_note: str = _d("how the projection was made")


# -------------------------------------------------------------------------------------- part b
@dataclass
class ExtractRow:
    backbone: str = _d("timm name")
    images: int = _d("images extracted and forwarded")
    batch_size: int = _d("the batch size")
    input_size: int = _d("px")
    extract_seconds: float = _d("extract_features, best of the repeats (s)")
    forward_seconds: float = _d("the forward-only loop, best of the repeats (s)")
    extract_images_per_s: float = _d("images / extract_seconds")
    forward_images_per_s: float = _d("images / forward_seconds")
    ratio: float = _d("forward_seconds / extract_seconds")


@dataclass
class ExtractFailed:
    backbone: str = _d("timm name")
    error: str = _d('"<ExcType>: <message>"')


@dataclass
class ExtractSkipped:
    backbone: str = _d("timm name")
    skipped: str = _d("why it was not measured (the cap)")


@dataclass
class ExtractPart(PartBase):
    """b. extraction throughput against a plain forward of the same batches."""

    repeat: int = _d("repeats per backbone (best of)")
    batch_size: int = _d("the batch size")
    source: str = _d("which backbones: part a's ok ones, else its sample")
    backbones: list[ExtractRow | ExtractFailed | ExtractSkipped] = _d("the lowest, middle and highest GMACs")
    images: int | None = _d("images per backbone, the largest")
    extract_vs_forward: float | None = _d("median of the ratios forward s / extract s")


# -------------------------------------------------------------------------------------- part c
@dataclass
class ProtocolSeconds:
    sequential: float = _d("at the protocol's epochs (s)")
    sweep: float = _d("at the protocol's epochs (s)")
    batched: float = _d("at the protocol's epochs (s)")


@dataclass
class HeadsCalibration:
    epochs: int = _d("the untimed run's epochs")
    seconds: float = _d("its three runs together (s)")


@dataclass
class HeadsPart(PartBase):
    """c. precompute.heads.time_sequential_vs_batched's keys, and the figures at the protocol's epochs."""

    head: str = _d("the head")
    device: str = _d("torch device")
    n_train: int = _d("train rows")
    dim: int = _d("feature width: the sample's median")
    n_classes: int = _d("classes")
    seeds: int = _d("heads: one per seed")
    epochs: int = _d("epochs of the timed run")
    threads: int = _d("torch intra-op threads")
    sequential_seconds: float = _d("each seed alone, one after the other (s)")
    sequential_cpu_seconds: float = _d("this process's CPU seconds of that")
    sequential_scores: list[float] = _d("test accuracy per seed")
    sweep_seconds: float = _d("the sweep's pattern: seed 0 alone, the rest batched (s)")
    sweep_cpu_seconds: float = _d("CPU seconds of that")
    sweep_scores: list[float] = _d("test accuracy per seed")
    batched_seconds: float = _d("all seeds in one batched call (s)")
    batched_cpu_seconds: float = _d("CPU seconds of that")
    batched_scores: list[float] = _d("test accuracy per seed")
    speedup: float = _d("sequential / sweep")
    speedup_all_batched: float = _d("sequential / batched")
    agree: bool = _d("all three gave the same scores")
    protocol_epochs: int = _d("the protocol's epochs (shared.protocol.MLP_PROTOCOL)")
    scaled: bool = _d("epochs < protocol_epochs: protocol_seconds are scaled")
    protocol_seconds: ProtocolSeconds = _d("the three at the protocol's epochs")
    calibration: HeadsCalibration = _d("the untimed run that sized the epochs")


# -------------------------------------------------------------------------------------- part d
@dataclass
class ProxyCalibration:
    rows: list[int] = _d("train rows of the untimed calls")
    seconds: list[float] = _d("their seconds")
    exponent: float = _d("the power law's exponent, clamped to [1, 2]")
    predicted_seconds: float = _d("the full size's seconds extrapolated")


@dataclass
class ProxyTimed:
    calibration: ProxyCalibration = _d("the untimed calls")
    skipped: None = _d("null: it was timed")
    seconds: float = _d("the best timed call (s)")
    all_seconds: list[float] = _d("every timed call (s)")
    cpu_seconds: float = _d("CPU seconds of the best")
    score: float | None = _d("its score (null: not finite)")


@dataclass
class ProxyNotTimed:
    calibration: ProxyCalibration = _d("the untimed calls")
    skipped: str = _d("why no timed call fitted what was left of the cap")


@dataclass
class ProxyCapReached:
    skipped: str = _d("the cap was reached before its first call")


ProxyRow = ProxyTimed | ProxyNotTimed | ProxyCapReached
ProxyRows = make_dataclass("ProxyRows", [(name, ProxyRow, _d(f"the {name} proxy")) for name in PROXIES])
ProxyRows.__doc__ = "{proxy: its row}, one per proxy of shared.protocol.PROXIES."


@dataclass
class ProxiesPart(PartBase):
    """d. the proxies at 50,000 x 2,048 (smoke: 500 x 64)."""

    rows: int = _d("rows: train + test")
    dim: int = _d("feature width")
    n_train: int = _d("train rows")
    n_test: int = _d("test rows")
    classes: int = _d("classes")
    repeat: int = _d("timed calls per proxy, at most")
    proxies: ProxyRows = _d("per proxy")


# -------------------------------------------------------------------------------------- part e
@dataclass
class Incumbent:
    backbone: str = _d("the search's best backbone")
    score: float = _d("its score")


@dataclass
class SearchPart(PartBase):
    """e. a live search: run_search's figures."""

    dataset: str = _d("the search's dataset")
    strategy: str = _d("cycling")
    evaluator: str = _d("mlp@0.1")
    budget_s: float = _d("its budget (s)")
    spent_s: float = _d("summed charges (s)")
    n_evaluated: int = _d("evaluations done")
    n_failed: int = _d("of them failed")
    n_backbones: int = _d("distinct backbones evaluated")
    finished: str = _d('"budget" (the next evaluation did not fit) or "pool" (all evaluated)')
    pool_size: int = _d("backbones in its pool")
    wall_ratio: float | None = _d("median wall_seconds / seconds over the evaluations")
    median_evaluation_seconds: float | None = _d("median charged seconds of an evaluation")
    search_wall_seconds: float = _d("the run_search call (s)")
    evaluation_wall_seconds: float = _d("inside evaluations (s)")
    incumbent: Incumbent | None = _d("the best so far (null: none)")
    stopped: dict[str, Any] | None = _d("run_search's first evaluation that does not count (null: none)")


# -------------------------------------------------------------------------------------- part f
@dataclass
class CheckRow:
    backbone: str = _d("timm name")
    status: Literal[CHECK_STATUSES] = _d("precompute check's status")
    reason: str | None = _d('"<ExcType>: <message>" for anything not ok')
    params_m: float | None = _d("M parameters")
    input_size: int | None = _d("the input size used (px)")
    feature_dim: int | None = _d("feature width")
    load_seconds: float | None = _d("s")
    extract_seconds: float | None = _d("s")
    wall_seconds: float | None = _d("the worker's whole time on it (s)")
    peak_mb: float | None = _d("memory it took above the idle worker (MiB)")
    constant_features: bool | None = _d("every feature's std below precompute.check.CONSTANT_STD")
    timeout_s: float | None = _d("the timeout it ran under (s)")
    cap_limited: bool = _d("that timeout was what was left of the cap")


@dataclass
class CheckPart(PartBase):
    """f. precompute check of the backbones the CPU could not check."""

    candidates: list[str] = _d("names tried, in order")
    timeout_in_pool: int = _d("backbones of the pool whose check_status is timeout")
    per_backbone_timeout_s: float = _d("--check-timeout (s)")
    input_size: int | None = _d("px (null: native)")
    threads: int = _d("the worker's torch threads")
    checked: int = _d("backbones checked")
    status_counts: dict[str, int] = _d("{status: backbones}")
    rows: list[CheckRow] = _d("one per backbone checked, in order")
    not_checked: int = _d("candidates left unchecked")
    cap_limited_timeouts: int = _d(f"timeouts that say nothing of the backbone (absent when there is no candidate; "
                                  f"none starts with < {CHECK_MIN_LEFT_S:g} s left)", metadata={"absent": True})


# ------------------------------------------------------------------------------------ the top
@dataclass
class Parts:
    a: SweepPart = _d("sweep sample and whole-pool projection")
    b: ExtractPart = _d("extraction vs a plain forward")
    c: HeadsPart = _d("heads: the sweep's pattern vs sequential")
    d: ProxiesPart = _d("proxies at 50,000 x 2,048")
    e: SearchPart = _d("a live search")
    f: CheckPart = _d("precompute check of the CPU's timeouts")


@dataclass
class TargetCheck:
    target: str = _d("what is asked")
    value: float | None = _d("what was measured (null: not measured)")
    limit: float = _d("the bound")
    met: bool | None = _d("null: not measured is not a verdict")


@dataclass
class Targets:
    judged: bool = _d("on CUDA at full size only")
    why: str | None = _d("why not judged")
    device_name: str = _d("the device that ran")
    checks: list[TargetCheck] = _d("one per target (none when not judged)")


@dataclass
class BenchGpuDoc:
    """The whole document."""

    bench: Literal["bench-gpu"] = _d("what wrote it")
    version: Literal[1] = _d("this schema's version")
    smoke: bool = _d("--smoke: toy sizes on the CPU")
    complete: bool = _d("false while running or when interrupted")
    device: str = _d('torch device, e.g. "cuda"')
    device_name: str = _d("the device's name")
    gpu: bool = _d("CUDA used")
    note: str | None = _d("why there is no GPU figure")
    torch: str = _d("torch's version")
    cuda: str | None = _d("torch.version.cuda: the CUDA torch was built with")
    cudnn: int | None = _d("cuDNN's version")
    timm: str = _d("timm's version")
    python: str = _d("Python's version")
    gpu_memory_gb: float | None = _d("the GPU's memory (GiB)")
    host: str = _d("the machine's name")
    cpu_count: int | None = _d("CPUs")
    threads: int = _d("torch intra-op threads")
    budget_s: float = _d("--budget (s)")
    setup_s: float = _d("the setup allowance (s)")
    parts_selected: list[str] = _d("letters of --parts")
    plan: PlanDoc = _d("sizes and planned caps")
    started: str = _d("ISO time")
    setup_seconds: float | None = _d("imports to the first part (s)")
    wall_seconds: float | None = _d("the whole run (s; null while running)")
    within_budget: bool | None = _d("wall_seconds <= budget_s (null while running)")
    parts: Parts = _d("{letter: part}")
    targets: Targets | None = _d("the issue's targets (null while running)")


# ---------------------------------------------------------------------------------- the check
def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _scalar(value, tp, where: str) -> list[str]:
    if tp is Any:
        return []
    if tp is type(None) or tp is None:
        ok = value is None
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    name = "null" if tp in (None, type(None)) else getattr(tp, "__name__", str(tp))
    return [] if ok else [f"{where}: expected {name}, got {_kind(value)} {value!r:.60}"]


def _object(value, cls, where: str, lenient: bool) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object ({cls.__name__}), got {_kind(value)}"]
    hints = typing.get_type_hints(cls)
    lenient = lenient or (issubclass(cls, PartBase) and value.get("ok") is not True)
    base = set(typing.get_type_hints(PartBase)) if issubclass(cls, PartBase) else set()
    out = [f"{where}: lacks {f.name!r}" for f in fields(cls) if f.name not in value
           and not f.metadata.get("absent") and (not lenient or f.name in base)]
    out += [f"{where}: {k!r} is not in the schema ({cls.__name__})" for k in value if k not in hints]
    for k, v in value.items():
        if k in hints:
            out += problems(v, hints[k], f"{where}.{k}", lenient)
    return out


def problems(value, tp=BenchGpuDoc, where: str = "$", lenient: bool = False) -> list[str]:
    """What in ``value`` (parsed JSON) does not fit ``tp``: one line each, ``[]`` when it fits."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        tries = [problems(value, t, where, lenient) for t in args]
        return [] if any(not t for t in tries) else min(tries, key=len)
    if origin is Literal:
        ok = any(value == a and type(value) is type(a) for a in args)
        return [] if ok else [f"{where}: expected one of {list(args)}, got {value!r:.60}"]
    if origin in (list, tuple):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {_kind(value)}"]
        if origin is tuple and len(args) != len(value):
            return [f"{where}: expected {len(args)} items, got {len(value)}"]
        items = args if origin is tuple else [args[0]] * len(value)
        return [p for i, (v, t) in enumerate(zip(value, items)) for p in problems(v, t, f"{where}[{i}]", lenient)]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {_kind(value)}"]
        return [p for k, v in value.items() for p in problems(v, args[1], f"{where}.{k}", lenient)]
    if is_dataclass(tp):
        return _object(value, tp, where, lenient)
    return _scalar(value, tp, where)
