"""Benchmark of the simulator: 10,000 runs × the 5 paper strategies × 100 budgets on timm:sketch.

Prints, all measured in this one run:
  * engine seconds (sampling orders, drawing evaluator rows, replaying Eqs. 3–4), best of 3;
  * whole-command seconds of `simulate` as a user runs it (new process, outputs and report);
  * the ratio against simulate/reference.py's plain loop over the same draws.  The loop is far
    too slow for 10,000 runs, so it replays the first --loop-runs runs of every strategy, its
    selections are checked equal to the engine's, and its time is scaled per run.

Usage: python bench/bench_simulate.py [--runs 10000] [--loop-runs 10] [--timm-results DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.samplers import PAPER_SAMPLERS, get_sampler  # noqa: E402
from simulate.evaluator import build_view  # noqa: E402
from simulate.reference import in_backbone_order, replay_loop  # noqa: E402
from simulate.simulation import _rng, draw_runs, parse_budgets, replay_budgets, run_simulation  # noqa: E402
from simulate.timm_oracle import timm_oracle  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--loop-runs", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timm-results", default=os.environ.get("VIBES_TIMM_RESULTS",
                                                             str(REPO.parent / "shared" / "timm-results")))
    args = ap.parse_args()
    oracle = timm_oracle("sketch", args.timm_results, quiet=True)
    pool = oracle.true_scores()
    view = build_view(oracle, pool, "top1")
    budgets = parse_budgets(f"{view.min_seconds()!r}:{view.total_seconds()!r}:100")
    grid_text = f"{float(budgets[0])!r}:{float(budgets[-1])!r}:{budgets.size}"
    print(f"timm:sketch pool {pool.height} backbones, {args.runs} runs x {len(PAPER_SAMPLERS)} strategies "
          f"x {budgets.size} budgets, {os.cpu_count()} CPUs")

    engine = []
    for _ in range(args.repeat):
        sim = run_simulation(oracle, PAPER_SAMPLERS, ["top1"], args.runs, budgets, seed=0)
        engine.append(sim.engine_seconds)
    engine_s = min(engine)
    print(f"engine: {engine_s:.3f} s (best of {args.repeat}: {', '.join(f'{e:.3f}' for e in engine)})")

    # the plain loop on the first runs of each strategy, same draws as the engine
    loop_per_run = 0.0
    sel_engine = np.array(sim.runs.column("backbone").to_pylist(), dtype=object).reshape(
        len(PAPER_SAMPLERS), args.runs, budgets.size)
    names = pool["backbone"].to_list()
    all_budgets = replay_budgets(budgets)
    cols = np.searchsorted(all_budgets, budgets)
    for i, strategy in enumerate(PAPER_SAMPLERS):
        order, e, c = draw_runs(get_sampler(strategy), view, pool, args.runs, _rng(0, strategy, view.spec))
        order, e, c = order[: args.loop_runs], e[: args.loop_runs], c[: args.loop_runs]
        eps, tau = in_backbone_order(order, e, c)
        t0 = time.perf_counter()
        slow = replay_loop(order, eps, tau, all_budgets)
        loop_per_run += (time.perf_counter() - t0) / order.shape[0]
        got = [[names[j] if j >= 0 else None for j in row] for row in slow.selected[:, cols]]
        k = order.shape[0]
        assert got == sel_engine[i, :k].tolist(), f"{strategy}: loop and engine disagree"
    loop_s = loop_per_run * args.runs
    print(f"plain loop: {loop_per_run * 1000:.1f} ms per run of all 5 strategies "
          f"(timed on {args.loop_runs} runs each, selections equal to the engine's) "
          f"-> {loop_s:.0f} s for {args.runs} runs")
    print(f"ratio loop / engine: {loop_s / engine_s:.0f}x")

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "simulate.cli", "--timm-results", args.timm_results, "--runs",
               str(args.runs), "--budgets", grid_text, "--out", tmp]
        walls = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            walls.append(time.perf_counter() - t0)
            if p.returncode:
                print(p.stderr)
                return 1
        summary = json.loads((Path(tmp) / "summary.json").read_text())
        size = (Path(tmp) / "runs.parquet").stat().st_size
    print(f"whole command (`simulate --runs {args.runs}`, new process, 4 outputs): {min(walls):.2f} s "
          f"(best of {args.repeat}: {', '.join(f'{w:.2f}' for w in walls)}); its engine "
          f"{summary['timing']['engine_seconds']:.3f} s; runs.parquet {size / 1e6:.1f} MB")
    if args.runs != 10_000:
        print("targets (engine <= 1 s, whole command <= 5 s, ratio >= 50x) are for --runs 10000; not judged")
    else:
        print(f"targets: engine <= 1 s: {'met' if engine_s <= 1 else 'NOT met'}; whole command <= 5 s: "
              f"{'met' if min(walls) <= 5 else 'NOT met'}; ratio >= 50x: "
              f"{'met' if loop_s / engine_s >= 50 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
