"""f. **check** -- ``precompute.check.run_check`` over the backbones whose shipped ``check_status`` is
``timeout`` (the CPU could not check them), one architecture each first, smallest first, then the rest:
per-backbone timeout 60 s (``--check-timeout``), each ``min(that, what is left of the cap)``, none
started with < 5 s left; as many as the part's cap holds."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.gpu.context import Context
from shared.durations import format_duration

CHECK_MIN_LEFT_S = 5.0
#: the check table's columns a row of part f keeps
KEEP = ("backbone", "status", "reason", "params_m", "input_size", "feature_dim", "load_seconds",
        "extract_seconds", "wall_seconds", "peak_mb", "constant_features")


class CapReached(Exception):
    """What is left of the cap holds no further backbone (raised from run_check's echo)."""


def order_for_check(frame) -> list[str]:
    """One backbone per architecture first (smallest first), then the rest (smallest first)."""
    rows = sorted(frame.iter_rows(named=True), key=lambda r: (r.get("params_m") or float("inf"), r["backbone"]))
    first, rest, seen = [], [], set()
    for r in rows:
        arch = r.get("architecture") or r["backbone"].split(".", 1)[0]
        (rest if arch in seen else first).append(r["backbone"])
        seen.add(arch)
    return first + rest


def _run(names: list[str], cfg, params: dict, cap: float, full_timeout: float) -> tuple[object, list[float]]:
    """``run_check`` over ``names``, each backbone's timeout what is left of the cap (at most
    ``full_timeout``): (the check table or None, the timeouts used, in order)."""
    from precompute.check import read_check, run_check  # lazy: polars

    t0 = time.perf_counter()
    used: list[float] = []

    def set_timeout() -> None:
        left = cap - (time.perf_counter() - t0)
        if left < CHECK_MIN_LEFT_S:
            raise CapReached
        cfg.timeout = min(full_timeout, left)  # run_check reads it for every backbone
        used.append(cfg.timeout)

    def echo(line: str) -> None:
        print(f"    {line}")
        if len(used) < len(names):
            set_timeout()

    with tempfile.TemporaryDirectory(prefix="bench-gpu-check-") as tmp:
        path = Path(tmp) / "check.parquet"
        try:
            set_timeout()
            run_check(names, cfg, out=path, params=params, echo=echo)
        except CapReached:
            print(f"  the part's cap ({format_duration(cap)}) holds no further backbone")
        table = read_check(path) if path.exists() else None
    return table, used


def _rows(names: list[str], table, used: list[float], full_timeout: float) -> list[dict]:
    """Part f's rows, in the order checked: the kept columns, the timeout each ran under, cap_limited."""
    rows = [] if table is None else table.to_dicts()
    by_name = {r["backbone"]: r for r in rows}
    out_rows = []
    for i, name in enumerate(names[: len(rows)]):
        r = {k: by_name.get(name, {}).get(k) for k in KEEP}
        r["timeout_s"] = used[i] if i < len(used) else None
        r["cap_limited"] = r["timeout_s"] is not None and r["timeout_s"] < full_timeout
        out_rows.append(r)
    return out_rows


def part_check(ctx: Context, cap: float, out: dict) -> None:
    """f. ``run_check`` over the pool's timeout backbones (smoke: the 2 smallest tiny ones) within the cap."""
    import polars as pl

    from precompute.check import CheckConfig, status_counts  # lazy: polars
    from precompute.estimate import memory_guard_gb  # lazy: torch

    plan = ctx.plan
    pool = ctx.pool()
    timeouts = pool.filter(pl.col("check_status") == "timeout") if "check_status" in pool.columns else pool.head(0)
    # the timeout backbones are giants: a CPU smoke run checks tiny ones on the same path
    names = order_for_check(ctx.part())[: plan.check_max] if plan.smoke else order_for_check(timeouts)
    params = dict(pool.select("backbone", "params_m").drop_nulls().iter_rows())
    threads = 1 if not ctx.cuda else max(1, min(8, os.cpu_count() or 1))
    cfg = CheckConfig(device=ctx.device, input_size=plan.input_size, timeout=plan.check_timeout_s, threads=threads,
                      max_memory_gb=memory_guard_gb(ctx.device))
    out.update(candidates=names, timeout_in_pool=timeouts.height, per_backbone_timeout_s=plan.check_timeout_s,
               input_size=plan.input_size, threads=threads)
    if not names:
        out.update(checked=0, status_counts={}, rows=[], not_checked=0)
        print("  no backbone to check")
        return
    table, used = _run(names, cfg, params, cap, plan.check_timeout_s)
    out_rows = _rows(names, table, used, plan.check_timeout_s)
    counts = {} if table is None else status_counts(table)
    out.update(checked=len(out_rows), status_counts=counts, rows=out_rows, not_checked=len(names) - len(out_rows),
               cap_limited_timeouts=sum(r["cap_limited"] and r["status"] == "timeout" for r in out_rows))
    print(f"  checked {len(out_rows)} of {len(names)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"
          + ("" if plan.smoke else f"; {timeouts.height} backbones of the pool are marked timeout"))
    if not out_rows:
        raise RuntimeError("no backbone was checked within the part's cap")
