"""Every GPU claim of the project measured in one command (issue #18), on the device it finds.

Six parts, each through the project's own code path, random weights (nothing is downloaded); each is a
module of ``bench/gpu/`` whose docstring says what it measures and how:

  a. **sweep** (``gpu/sweep.py``) -- a GMACs-stratified sample of the runnable pool through the sweep's
     own ``measure_sample`` on ``synthetic:50000@224``: per backbone seconds (load / extract / fit),
     their median, and the whole-pool sweep projected from them as ``precompute estimate`` does.
  b. **extract vs forward** (``gpu/extract.py``) -- ``extract_features`` against a forward-only loop
     over tensors already on the device, for the lowest, middle and highest GMACs backbones of part a.
  c. **heads** (``gpu/heads.py``) -- ``time_sequential_vs_batched``: 3 seeds one after the other
     against the sweep's own pattern (seed 0 alone + seeds 1-2 batched) and all three batched.
  d. **proxies** (``gpu/proxies.py``) -- knn, ridge, logme and hscore at 50,000 x 2,048 on the device.
  e. **live search** (``gpu/search.py``) -- ``run_search`` (cycling, mlp@0.1, a 2-minute budget).
  f. **check** (``gpu/check.py``) -- ``run_check`` over the backbones the CPU could not check.

The budget (``--budget``, default ``8min``) is shared out as ``gpu/plan.py`` says: a setup allowance,
then a cap per part, each kept to its cap in its own way; a part that overran squeezes the ones after
it.  Execution order: a, b, c, d, f, e (the dataset of a and b is freed before e).

``--smoke``: the same code paths on the CPU at toy sizes, to keep this script working (tests).  Its
budget defaults to 10 min so that a loaded machine never trims the toy sizes (the run takes well under
a minute on 2 cores).  Not GPU figures.

Without CUDA the full run measures the CPU (1 torch thread unless ``--threads``, as
bench_precompute), says so, and judges no target.  On CUDA (and not ``--smoke``) the issue's targets
are judged (``gpu/targets.py``): median sweep cost per backbone <= 30 s on synthetic:50000@224;
extraction >= 0.8 of a plain forward; each proxy <= 2 s at 50,000 x 2,048 (the targets are for an
H100-class GPU: the JSON names the one that ran).  Each part is guarded: an exception is recorded in
its ``error`` and the others still run; the JSON is rewritten after every part.  Exit status 1 when a
part failed.

JSON (``--json``, default ``out/bench-gpu.json``): every field, its type and what it holds are in
``gpu/schema.py`` (dataclasses; the smoke test checks a written file against them).

``--dataset`` and ``--input-size`` time another size (parts a, b, c, e; f takes the input size); the
median target is then not judged.

Usage: python bench/bench_gpu.py [--budget 8min] [--parts a,b,c,d,e,f] [--smoke] [--json PATH]
       [--dataset synthetic:50000@224] [--input-size N] [--device auto] [--threads N]
       [--check-timeout 60s] [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
import warnings
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gpu.check import part_check  # noqa: E402
from bench.gpu.common import error_text, settle, write  # noqa: E402
from bench.gpu.context import Context  # noqa: E402
from bench.gpu.extract import part_extract  # noqa: E402
from bench.gpu.heads import part_heads  # noqa: E402
from bench.gpu.plan import FULL_DATASET, PARTS, RUN_ORDER, Plan, make_plan, parse_parts, part_cap  # noqa: E402
from bench.gpu.proxies import part_proxies  # noqa: E402
from bench.gpu.search import part_search  # noqa: E402
from bench.gpu.sweep import part_sweep  # noqa: E402
from bench.gpu.targets import judge, print_summary  # noqa: E402
from precompute.datasets import resolve  # noqa: E402
from shared.durations import format_duration, parse_duration  # noqa: E402
from shared.errors import VibesError  # noqa: E402

RUNNERS = {"a": part_sweep, "b": part_extract, "c": part_heads, "d": part_proxies, "e": part_search,
           "f": part_check}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", default=None, help="the whole run's time (default 8min; --smoke 10min)")
    ap.add_argument("--parts", default=",".join(PARTS), help="the parts to run, e.g. a,b,d (default: all)")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on the CPU: the same code paths, no GPU figure")
    ap.add_argument("--json", default="out/bench-gpu.json", help="write the figures here ('' for none)")
    ap.add_argument("--dataset", default=None, help=f"parts a, b, c, e (default {FULL_DATASET}; smoke "
                    "synthetic:600@32); the median target is judged at the default only")
    ap.add_argument("--input-size", type=int, default=None, help="parts a, b, e, f (default: native; smoke 32)")
    ap.add_argument("--device", default=None, help="default: auto (CUDA if available, else CPU); --smoke: cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: 1 on CPU)")
    ap.add_argument("--check-timeout", default=None, help="part f's per-backbone timeout (default 60s; smoke 30s)")
    ap.add_argument("--seed", type=int, default=0, help="the sample's draw")
    return ap.parse_args(argv)


def _checked(args: argparse.Namespace) -> tuple[float, float | None, list[str]]:
    """The budget, part f's timeout and the parts, or SystemExit with what is wrong."""
    try:
        budget_s = parse_duration(args.budget or ("10min" if args.smoke else "8min"), "--budget")
        check_timeout = parse_duration(args.check_timeout, "--check-timeout") if args.check_timeout else None
    except VibesError as exc:
        raise SystemExit(f"error: {exc}") from None
    selected = parse_parts(args.parts)
    if args.threads is not None and args.threads < 1:
        raise SystemExit("error: --threads must be >= 1")
    if args.input_size is not None and args.input_size < 8:
        raise SystemExit(f"error: --input-size must be an integer >= 8; got {args.input_size}")
    return budget_s, check_timeout, selected


def _device(args: argparse.Namespace):
    """The torch device (its threads set), or SystemExit; the dataset named is checked too."""
    import torch

    from precompute.backbone import resolve_device  # lazy: torch and timm stay out of `--help`

    try:
        dev = resolve_device(args.device or ("cpu" if args.smoke else "auto"))
    except VibesError as exc:
        raise SystemExit(f"error: {exc}") from None
    threads = args.threads or (1 if dev.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    if args.dataset is not None:

        try:
            resolve(args.dataset)
        except VibesError as exc:
            raise SystemExit(f"error: {exc}") from None
    return dev


def _document(args, plan: Plan, dev, selected: list[str], started: str) -> dict:
    """The JSON's first state: versions, the device, the plan, every part not yet run."""
    import timm
    import torch

    from precompute.estimate import device_info  # lazy: torch

    dev_str, dev_name = device_info(str(dev))
    gpu = dev.type == "cuda"
    note = None
    if not gpu:
        note = ("smoke run: toy sizes on the CPU (the same code paths); no GPU figure" if args.smoke else
                "no GPU here: these are CPU figures at the GPU sizes; no GPU target is judged. "
                "Run `make bench-gpu` on a CUDA machine for the GPU figures")
    return {
        "bench": "bench-gpu", "version": 1, "smoke": args.smoke, "complete": False, "device": dev_str,
        "device_name": dev_name, "gpu": gpu, "note": note, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "timm": timm.__version__, "python": platform.python_version(),
        "gpu_memory_gb": torch.cuda.get_device_properties(dev).total_memory / 2**30 if gpu else None,
        "host": platform.node(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "budget_s": plan.budget_s, "setup_s": plan.setup_s, "parts_selected": selected,
        "plan": {k: v for k, v in asdict(plan).items() if k not in ("smoke", "budget_s", "setup_s")},
        "started": started, "setup_seconds": None, "wall_seconds": None, "within_budget": None,
        "parts": {p: {"title": t, "ok": False, "error": None, "traceback": None,
                      "skipped": None if p in selected else "not in --parts", "wall_seconds": None,
                      "cap_seconds": None} for p, t in PARTS.items()},
        "targets": None,
    }


def _run_part(p: str, ctx: Context, cap: float, part: dict) -> None:
    """One part, guarded: its failure is recorded in ``part`` and the others still run."""
    part["cap_seconds"] = cap
    print(f"\n[{p}] {PARTS[p]} (cap {format_duration(cap)})")
    t0 = time.perf_counter()
    try:
        RUNNERS[p](ctx, cap, part)
        part["ok"] = True
    except Exception as exc:  # noqa: BLE001 - a part's failure is recorded; the others still run
        part["error"] = error_text(exc)
        part["traceback"] = traceback.format_exc()[-3000:]
        print(f"  FAILED: {part['error']}")
    finally:
        settle(ctx.device)
        part["wall_seconds"] = time.perf_counter() - t0


def _run_parts(doc: dict, ctx: Context, deadline: float, json_path: Path | None) -> None:
    """The selected parts in RUN_ORDER, each under its cap scaled by what is left; the JSON after each."""
    todo = [p for p in RUN_ORDER if p in doc["parts_selected"]]
    try:
        for i, p in enumerate(todo):
            if p == "e":
                ctx.drop_dataset()  # the search generates its own; two copies of 7.5 GB are not needed
            try:
                _run_part(p, ctx, part_cap(ctx.plan, todo[i:], deadline - time.perf_counter()), doc["parts"][p])
            finally:
                write(doc, json_path)
        doc["complete"] = True
    except KeyboardInterrupt:
        print("\ninterrupted: the figures so far are written")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    wall0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    budget_s, check_timeout, selected = _checked(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights: never reach for the hub
    warnings.filterwarnings("ignore", message=r"fraction .* keeps")  # 1 % of a small split: expected
    dev = _device(args)
    plan = make_plan(budget_s, args.smoke, selected, check_timeout, args.dataset, args.input_size)
    doc = _document(args, plan, dev, selected, started)
    json_path = Path(args.json) if args.json else None
    print(f"bench-gpu on {doc['device']} ({doc['device_name']}), torch {doc['torch']} (CUDA {doc['cuda']}), timm "
          f"{doc['timm']}, {doc['cpu_count']} CPUs, {doc['threads']} threads; budget "
          f"{format_duration(budget_s)}; parts {','.join(selected)}" + (" [smoke]" if args.smoke else ""))
    if doc["note"]:
        print(f"NOTE: {doc['note']}")
    ctx = Context(plan, doc["device"], args.seed)
    doc["setup_seconds"] = time.perf_counter() - wall0
    write(doc, json_path)
    _run_parts(doc, ctx, wall0 + budget_s, json_path)
    wall = time.perf_counter() - wall0
    doc.update(wall_seconds=wall, within_budget=wall <= budget_s)
    doc["targets"] = judge(doc)
    write(doc, json_path)
    print_summary(doc, json_path)
    failed = [p for p in selected if not doc["parts"][p]["ok"]]
    return 130 if not doc["complete"] else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
