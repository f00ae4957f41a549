"""Benchmark of the evaluators' cost: the four proxies (knn, ridge, logme, hscore), silhouette and
the mlp head, on synthetic features, on the device it finds (cuda if available, else cpu).

Features: 10 classes (``--classes``), labels uniform at random; each class has a Gaussian mean
(N(0, sep^2 I), ``--sep`` 0.05) plus unit Gaussian noise, every feature then scaled by a factor
drawn from [0.5, 2] (so standardising matters); split at random 80 / 20 into train / test
(``--test-share``).  What an evaluator is given is what the sweep gives it: float32 tensors on the
device, the train split (and the test split when it needs one).

Timing, per size and evaluator: one untimed warm-up on a 1,000-row slice (first-call costs: CUDA
context, lazy library loads), then ``--repeat`` timed calls (the mlp head: ``--mlp-repeat``), CUDA
synchronised before and after each; prints the best and the median wall-clock seconds, the process
CPU seconds of the best call, the score, and each evaluator's ratio mlp seconds / its seconds
(how many times cheaper than the head), checked against the targets: on CPU at 5,000 x 768 every
proxy <= 1 s and >= 20x cheaper than mlp; on a GPU at 50,000 x 2,048 every proxy <= 2 s (the
target is for an H100-class GPU; the check is printed for any GPU and says which one ran).

The machine's load average is printed before and after: on a shared machine the wall-clock
figures are upper bounds; the CPU seconds are less sensitive to other processes.

Everything is measured in this run; nothing is extrapolated.  ``--skip-large mlp,silhouette``
leaves the named evaluators out at every size but the first (the mlp head at 50,000 x 2,048 takes
many minutes on a CPU, silhouette's O(n^2 d) distances too): their rows then say "skipped" and
that size has no mlp ratio.

The mlp head trains on one intra-op thread whatever ``--threads`` says (precompute.evaluators:
its ops are too small to share); the proxies and silhouette use torch's threads.

Usage: python bench/bench_evaluators.py [--sizes 5000x768,50000x2048] [--repeat 3] [--mlp-repeat 1]
                                        [--skip-large mlp,silhouette] [--json PATH] [--device cpu]
                                        [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from precompute.evaluators import EVALUATORS  # noqa: E402
from precompute.scores import as_result  # noqa: E402
from shared.protocol import PROXIES  # noqa: E402

ORDER = (*PROXIES, "silhouette", "mlp")
CPU_TARGET = {"size": (5000, 768), "max_seconds": 1.0, "min_ratio": 20.0}
GPU_TARGET = {"size": (50000, 2048), "max_seconds": 2.0}


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        try:
            n, d = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise SystemExit(f"error: --sizes wants ROWSxDIM[,ROWSxDIM...], got {part!r}") from None
        if n < 10 or d < 1:
            raise SystemExit(f"error: a size needs >= 10 rows and >= 1 dimension, got {part!r}")
        sizes.append((n, d))
    return sizes


def synthetic(n: int, d: int, n_classes: int, sep: float, test_share: float, seed: int, device):
    """Gaussian class means plus noise, per-feature scales in [0.5, 2], random train/test split."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    means = torch.randn(n_classes, d, generator=g) * sep
    x = torch.randn(n, d, generator=g).add_(means[y])
    x.mul_(torch.rand(d, generator=g).mul_(1.5).add_(0.5))
    perm = torch.randperm(n, generator=g)
    n_test = max(1, round(n * test_share))
    te, tr = perm[:n_test], perm[n_test:]
    return tuple(a.to(device) for a in (x[tr], y[tr], x[te], y[te]))


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, args, n_classes, device):
    sync(device)
    cpu0, t0 = time.process_time(), time.perf_counter()
    score = as_result(fn(*args, n_classes=n_classes, seed=0)).score
    sync(device)
    return time.perf_counter() - t0, time.process_time() - cpu0, score


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="5000x768,50000x2048", help="ROWSxDIM list, rows before the split")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per proxy and silhouette")
    ap.add_argument("--mlp-repeat", type=int, default=1, help="timed calls of the mlp head")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--sep", type=float, default=0.05, help="std of the class means (noise std 1)")
    ap.add_argument("--test-share", type=float, default=0.2)
    ap.add_argument("--evaluators", default=",".join(ORDER))
    ap.add_argument("--skip-large", default="", help="evaluators timed at the first size only, e.g. mlp")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    for e in [*_names(args.evaluators), *_names(args.skip_large)]:
        if e not in EVALUATORS:
            raise SystemExit(f"error: unknown evaluator {e!r}; valid: {', '.join(sorted(EVALUATORS))}")
    if args.repeat < 1 or args.mlp_repeat < 1:
        raise SystemExit("error: --repeat and --mlp-repeat must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise SystemExit("error: --threads must be >= 1")
    return args


def _names(text: str) -> list[str]:
    return [e for e in text.split(",") if e]


def _time_size(si: int, n: int, d: int, args: argparse.Namespace, device) -> list[dict]:
    """Every evaluator of ``--evaluators`` on one synthetic size: best, median and CPU seconds, score."""
    # the data of a size does not depend on the other sizes asked for
    split = synthetic(n, d, args.classes, args.sep, args.test_share, seed=n * 7919 + d, device=device)
    n_tr, n_te = len(split[0]), len(split[2])
    warm = tuple(a[:1000] for a in split)
    print(f"\n{n:,} x {d:,} ({n_tr:,} train / {n_te:,} test)")
    rows = []
    for name in _names(args.evaluators):
        row = {"size": f"{n}x{d}", "rows": n, "dim": d, "n_train": n_tr, "n_test": n_te, "evaluator": name}
        rows.append(row)
        if si > 0 and name in _names(args.skip_large):
            row["skipped"] = True
            print(f"  {name:<11} skipped (--skip-large)")
            continue
        spec = EVALUATORS[name]
        call = split if spec.needs_test else (split[0], split[1], None, None)
        wcall = warm if spec.needs_test else (warm[0], warm[1], None, None)
        time_call(spec.fn, wcall, args.classes, device)  # warm-up, untimed
        reps = args.mlp_repeat if name == "mlp" else args.repeat
        runs = [time_call(spec.fn, call, args.classes, device) for _ in range(reps)]
        best = min(runs)
        row.update(seconds=best[0], median_seconds=statistics.median(r[0] for r in runs),
                   cpu_seconds=best[1], all_seconds=[r[0] for r in runs], score=best[2], repeat=reps)
        print(f"  {name:<11} {best[0]:9.3f} s best of {reps} (median {row['median_seconds']:.3f}, "
              f"cpu {best[1]:.3f} s)  score {best[2]:.4f}")
    del split, warm
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def _ratio_table(by: dict, names: list[str], sizes: list[tuple[int, int]]) -> None:
    """Seconds per evaluator and size, with mlp's seconds over each (recorded in its row as ``mlp_ratio``)."""
    print("\nseconds per evaluator (best of the repeats); ratio = mlp seconds / evaluator seconds")
    print(f"{'evaluator':<11}" + "".join(f"{f'{n}x{d}':>26}" for n, d in sizes))
    for name in names:
        cells = []
        for n, d in sizes:
            r = by[(f"{n}x{d}", name)]
            mlp = by.get((f"{n}x{d}", "mlp"))
            if r.get("skipped"):
                cells.append(f"{'skipped':>26}")
                continue
            ratio = None
            if mlp and not mlp.get("skipped") and name != "mlp":
                ratio = mlp["seconds"] / r["seconds"]
                r["mlp_ratio"] = ratio
            cells.append(f"{r['seconds']:>14.3f} s" + (f"  ({ratio:6.1f}x)" if ratio else " " * 10))
        print(f"{name:<11}" + "".join(cells))


def _checks(by: dict, names: list[str], device, dev_name: str) -> list[dict]:
    """The targets that apply to this device: CPU at 5,000 x 768, GPU at 50,000 x 2,048."""
    checks = []
    cpu_size = f"{CPU_TARGET['size'][0]}x{CPU_TARGET['size'][1]}"
    gpu_size = f"{GPU_TARGET['size'][0]}x{GPU_TARGET['size'][1]}"
    for name in (p for p in PROXIES if p in names):
        r = by.get((cpu_size, name))
        if device.type == "cpu" and r and not r.get("skipped"):
            ok_s = r["seconds"] <= CPU_TARGET["max_seconds"]
            ratio = r.get("mlp_ratio")
            ok_r = ratio is not None and ratio >= CPU_TARGET["min_ratio"]
            checks.append({"evaluator": name, "target": f"cpu {cpu_size}: <= 1 s and >= 20x cheaper than mlp",
                           "seconds": r["seconds"], "ratio": ratio, "met": bool(ok_s and ok_r)})
        r = by.get((gpu_size, name))
        if device.type == "cuda" and r and not r.get("skipped"):
            checks.append({"evaluator": name, "target": f"{dev_name} {gpu_size}: <= 2 s (H100-class target)",
                           "seconds": r["seconds"], "ratio": r.get("mlp_ratio"),
                           "met": r["seconds"] <= GPU_TARGET["max_seconds"]})
    return checks


def main() -> int:
    args = _arguments()
    sizes = parse_sizes(args.sizes)
    names = _names(args.evaluators)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    load0 = os.getloadavg()
    print(f"device {device} ({dev_name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {load0[0]:.1f}")
    print(f"features: {args.classes} classes, class means N(0, {args.sep}^2 I) + N(0, I), "
          f"{1 - args.test_share:.0%}/{args.test_share:.0%} train/test")
    results = [row for si, (n, d) in enumerate(sizes) for row in _time_size(si, n, d, args, device)]
    by = {(r["size"], r["evaluator"]): r for r in results}
    _ratio_table(by, names, sizes)
    checks = _checks(by, names, device, dev_name)
    print()
    if not checks:
        print("targets: no target applies to this device and these sizes")
    for c in checks:
        ratio = "n/a" if c["ratio"] is None else f"{c['ratio']:.1f}x"
        print(f"target {c['target']}: {c['evaluator']} {c['seconds']:.3f} s, {ratio} -> "
              f"{'met' if c['met'] else 'NOT met'}")
    if device.type == "cpu":
        print("no GPU here: the GPU target (<= 2 s per proxy at 50,000 x 2,048) was not measured")
    load1 = os.getloadavg()
    print(f"load average {load0[0]:.1f} before, {load1[0]:.1f} after ({os.cpu_count()} CPUs)")
    if args.json:
        out = {"device": str(device), "device_name": dev_name, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_average": [load0[0], load1[0]],
               "config": {k: v for k, v in vars(args).items() if k != "json"}, "results": results,
               "targets": checks}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
