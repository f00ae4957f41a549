"""d. **proxies** -- knn, ridge, logme and hscore at 50,000 x 2,048 synthetic features (10 classes,
80/20 split: ``bench_evaluators.synthetic``), as float32 tensors on the device; best of up to 3 timed
calls (device-synchronised), after untimed calls on 1,000 and 5,000 rows from which the full size's
time is extrapolated (power law, exponent clamped to [1, 2])."""
from __future__ import annotations

import math
import time

from bench.gpu.context import Context
from shared.durations import format_duration
from shared.protocol import PROXIES

CLASSES = 10


def _proxy_args(split, spec, m: int | None) -> tuple:
    """The evaluator's arguments: the split (its first ``m`` train rows and ``m // 4`` test rows)."""
    tr_x, tr_y, te_x, te_y = split
    if m is not None:
        k = max(1, m // 4)
        tr_x, tr_y, te_x, te_y = tr_x[:m], tr_y[:m], te_x[:k], te_y[:k]
    return (tr_x, tr_y, te_x, te_y) if spec.needs_test else (tr_x, tr_y, None, None)


def _calibrate(spec, split, cal_rows: list[int], dev) -> dict:
    """Untimed calls at ``cal_rows`` (the first calls), and the full size's time extrapolated from them."""
    from bench.bench_evaluators import time_call  # lazy: torch

    cal = [time_call(spec.fn, _proxy_args(split, spec, m), CLASSES, dev)[0] for m in cal_rows]
    k = 1.0
    if len(cal_rows) == 2 and cal[0] > 0 and cal[1] > 0:
        k = min(2.0, max(1.0, math.log(cal[1] / cal[0]) / math.log(cal_rows[1] / cal_rows[0])))
    predicted = cal[-1] * (len(split[0]) / cal_rows[-1]) ** k
    return {"rows": cal_rows, "seconds": cal, "exponent": k, "predicted_seconds": predicted}


def _time_proxy(name: str, split, cal_rows: list[int], dev, cap: float, t0: float, plan) -> dict:
    """One proxy's row: calibration, then the timed calls that fit what is left of the cap."""
    from bench.bench_evaluators import time_call  # lazy: torch
    from precompute.evaluators import EVALUATORS as SPECS  # lazy: torch

    spec = SPECS[name]
    calibration = _calibrate(spec, split, cal_rows, dev)
    predicted = calibration["predicted_seconds"]
    row = {"calibration": calibration, "skipped": None}
    runs = []
    for _ in range(plan.proxy_repeat):
        left = cap - (time.perf_counter() - t0)
        if (min(r[0] for r in runs) if runs else predicted) > left:
            break
        runs.append(time_call(spec.fn, _proxy_args(split, spec, None), CLASSES, dev))
    if not runs:
        row["skipped"] = (f"predicted {format_duration(predicted)} > {format_duration(max(0.0, left))} left "
                          "of the part's cap")
        print(f"  {name:<7} not timed: {row['skipped']}")
    else:
        best = min(runs)
        row.update(seconds=best[0], all_seconds=[r[0] for r in runs], cpu_seconds=best[1], score=best[2])
        print(f"  {name:<7} {best[0]:8.3f} s best of {len(runs)} at {plan.proxy_rows:,} x {plan.proxy_dim:,} "
              f"(score {best[2]:.4f})")
    return row


def part_proxies(ctx: Context, cap: float, out: dict) -> None:
    """d. The four proxies at full size, best of the timed calls that fit the cap."""
    import torch

    from bench.bench_evaluators import synthetic  # lazy: torch

    plan = ctx.plan
    dev = torch.device(ctx.device)
    n, d = plan.proxy_rows, plan.proxy_dim
    split = synthetic(n, d, CLASSES, sep=0.05, test_share=0.2, seed=n * 7919 + d, device=dev)
    out.update(rows=n, dim=d, n_train=len(split[0]), n_test=len(split[2]), classes=CLASSES,
               repeat=plan.proxy_repeat, proxies={})
    cal_rows = sorted({min(len(split[0]), max(100, n // 50)), min(len(split[0]), max(200, n // 10))})
    t0 = time.perf_counter()
    for name in PROXIES:
        if cap - (time.perf_counter() - t0) <= 0:
            out["proxies"][name] = {"skipped": "the part's cap was reached"}
            print(f"  {name:<7} not timed: the part's cap was reached")
            continue
        out["proxies"][name] = _time_proxy(name, split, cal_rows, dev, cap, t0, plan)
    del split
    if ctx.cuda:
        torch.cuda.empty_cache()
    missing = [p for p, r in out["proxies"].items() if r.get("seconds") is None]
    if len(missing) == len(PROXIES):
        raise RuntimeError("no proxy could be timed within the part's cap")
