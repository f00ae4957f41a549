"""e. **live search** -- ``precompute.search.run_search`` (strategy cycling, evaluator mlp@0.1, seed 0, a
2-minute budget) on ``synthetic:50000@224`` over a small pool (runnable, <= 25 M parameters):
evaluations done, seconds spent, median ``wall_seconds / seconds`` (``wall_ratio``)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from bench.gpu.common import median
from bench.gpu.context import Context
from shared.durations import format_duration


def part_search(ctx: Context, cap: float, out: dict) -> None:
    """e. A live search with the plan's budget over a small pool, in a temporary folder."""
    import polars as pl

    from precompute.search import SearchConfig, run_search, wall_ratio  # lazy: torch

    plan = ctx.plan
    budget = plan.search_budget_s * min(1.0, cap / plan.caps_s["e"]) if plan.caps_s.get("e") else plan.search_budget_s
    small = ctx.part() if plan.smoke else ctx.runnable()
    small = small.filter(pl.col("params_m") <= plan.search_max_params_m)
    pool = ctx.pool().filter(pl.col("backbone").is_in(small.get_column("backbone").to_list()))
    with tempfile.TemporaryDirectory(prefix="bench-gpu-search-") as tmp:
        cfg = SearchConfig(dataset=plan.dataset, weights="random", device=ctx.device, batch_size=plan.batch_size,
                           input_size=plan.input_size, budget=budget, strategy="cycling", evaluator="mlp@0.1",
                           out=str(Path(tmp) / "search"), seed=0)
        print(f"  {plan.dataset}, cycling, mlp@0.1, budget {format_duration(budget)}, pool {pool.height} "
              f"(runnable, <= {plan.search_max_params_m:g} M parameters)")
        res = run_search(cfg, pool, show_progress=False, echo=lambda s: print(f"    {s}"))
    doc = res.doc
    trace = doc.get("trace") or []
    out.update(dataset=doc["dataset"], strategy=doc["strategy"], evaluator=doc["evaluator"], budget_s=doc["budget_s"],
               spent_s=doc["spent_s"], n_evaluated=doc["n_evaluated"], n_failed=doc["n_failed"],
               n_backbones=doc["n_backbones"], finished=doc["finished"], pool_size=doc["pool_size"],
               wall_ratio=wall_ratio(trace), median_evaluation_seconds=median(e.get("seconds") for e in trace),
               search_wall_seconds=res.wall_seconds, evaluation_wall_seconds=res.evaluation_wall_seconds,
               incumbent=doc.get("incumbent"), stopped=doc.get("stopped"))
    ratio = out["wall_ratio"]
    print(f"  {out['n_evaluated']} evaluations ({out['n_failed']} failed), {out['spent_s']:.1f} s spent of "
          f"{out['budget_s']:.1f} s; median wall/seconds {'-' if ratio is None else f'{ratio:.3f}'}; the call took "
          f"{format_duration(res.wall_seconds)}")
