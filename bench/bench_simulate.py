"""Benchmark of the simulator: 10,000 runs × the 5 paper strategies × 100 budgets on timm:sketch.

Prints, all measured in this one run:
  * engine seconds (sampling orders, drawing evaluator rows, replaying Eqs. 3–4), best of 3;
  * whole-command seconds of `simulate` as a user runs it (new process, outputs and report);
  * the ratio against a literal loop over the same draws: simulate/reference.py's one-pass loop
    (each run's order walked once, the budgets passed in ascending order: O(B + T) per run, the fair
    plain-Python baseline; the tests hold it equal to the per-budget loop).  It replays the first
    --loop-runs runs of every strategy, its selections are checked equal to the engine's, and its
    time per run is multiplied by the runs the engine actually draws for that strategy: one for a
    deterministic strategy (complexity-up/-down on a one-row-per-backbone view: every run is the
    same run, replayed once and broadcast), --runs for the others;
  * K = 8 workers (simulate --workers 8): the engine's seconds for the same runs and draws, against
    the one-pass literal K-worker loop (simulate/reference.py's workers_one_pass: a heap of workers,
    then the evaluations by end), counted the same way; target: within 3x of the one-worker engine;
  * successive halving: engine seconds of `sh:cycling` x `mlp` (fractions 0.01, 0.1, 1.0, η = 3)
    for --runs runs on the demo oracle (--demo-oracle, default data/oracles/digits.parquet; the
    line is skipped when it does not exist: `make demo` makes it);
  * memory: peak resident memory (the child's VmHWM) and wall time of `simulate --runs
    --memory-runs` (default 100,000) x the 5 paper strategies on timm:sketch, outputs written,
    next to the same at --runs: the target is <= 1 GB at 100,000 runs, time linear in runs.

Usage: python bench/bench_simulate.py [--runs 10000] [--loop-runs 10] [--timm-results DIR]
                                      [--demo-oracle PATH] [--memory-runs 100000 (0: skip)]
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

from shared.oracle import read_oracle  # noqa: E402
from shared.samplers import PAPER_SAMPLERS, get_sampler  # noqa: E402
from simulate.evaluator import build_view  # noqa: E402
from simulate.reference import in_backbone_order, replay_one_pass, workers_one_pass  # noqa: E402
from simulate.simulation import _rng, draw_runs, parse_budgets, replay_budgets, run_simulation  # noqa: E402
from simulate.timm_oracle import timm_oracle  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--loop-runs", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timm-results", default=os.environ.get("VIBES_TIMM_RESULTS",
                                                             str(REPO.parent / "shared" / "timm-results")))
    ap.add_argument("--demo-oracle", default=str(REPO / "data" / "oracles" / "digits.parquet"))
    ap.add_argument("--memory-runs", type=int, default=100_000)
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

    # the one-pass literal loop on the first runs of each strategy, same draws as the engine, counted
    # for the runs the engine draws (one for a deterministic strategy)
    loop_s, drawn = 0.0, 0
    sel_engine = np.array(sim.runs.column("backbone").to_pylist(), dtype=object).reshape(
        len(PAPER_SAMPLERS), args.runs, budgets.size)
    names = pool["backbone"].to_list()
    all_budgets = replay_budgets(budgets)
    cols = np.searchsorted(all_budgets, budgets)
    for i, strategy in enumerate(PAPER_SAMPLERS):
        sampler = get_sampler(strategy)
        order, e, c = draw_runs(sampler, view, pool, args.runs, _rng(0, strategy, view.spec))
        n_drawn = order.shape[0]  # 1 for a deterministic strategy: the engine replays one run
        order, e, c = order[: args.loop_runs], e[: args.loop_runs], c[: args.loop_runs]
        eps, tau = in_backbone_order(order, e, c)
        t0 = time.perf_counter()
        slow = replay_one_pass(order, eps, tau, all_budgets)
        loop_s += (time.perf_counter() - t0) / order.shape[0] * n_drawn
        drawn += n_drawn
        got = [[names[j] if j >= 0 else None for j in row] for row in slow.selected[:, cols]]
        k = order.shape[0]
        assert got == sel_engine[i, :k].tolist(), f"{strategy}: loop and engine disagree"
    print(f"one-pass literal loop: {loop_s:.2f} s for the {drawn:,} runs the engine draws "
          f"({args.runs:,} per random strategy, 1 per deterministic one; timed on {args.loop_runs} runs each, "
          f"selections equal to the engine's)")
    print(f"ratio loop / engine: {loop_s / engine_s:.1f}x")
    engine8_s, loop8_s = workers_lines(args, oracle, pool, view, budgets, all_budgets, engine_s)

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
    sh_line(args)
    memory_lines(args, grid_text)
    if args.runs != 10_000:
        print("targets (engine <= 1 s, whole command <= 5 s) are for --runs 10000; not judged")
    else:
        print(f"targets: engine <= 1 s: {'met' if engine_s <= 1 else 'NOT met'}; whole command <= 5 s: "
              f"{'met' if min(walls) <= 5 else 'NOT met'}; --workers 8 within 3x of one worker: "
              f"{'met' if engine8_s <= 3 * engine_s else 'NOT met'} ({engine8_s / engine_s:.2f}x)")
    return 0


def workers_lines(args, oracle, pool, view, budgets, all_budgets, engine_s) -> tuple[float, float]:
    """The K = 8 engine and the one-pass literal K-worker loop on the same draws."""
    engine8 = []
    for _ in range(args.repeat):
        sim8 = run_simulation(oracle, PAPER_SAMPLERS, ["top1"], args.runs, budgets, seed=0, workers=(8,))
        engine8.append(sim8.engine_seconds)
    engine8_s = min(engine8)
    print(f"engine, 8 workers: {engine8_s:.3f} s (best of {args.repeat}: {', '.join(f'{e:.3f}' for e in engine8)}) "
          f"= {engine8_s / engine_s:.2f}x one worker")
    loop8_s, drawn = 0.0, 0
    names = pool["backbone"].to_list()
    sel8 = np.array(sim8.runs.column("backbone").to_pylist(), dtype=object).reshape(
        len(PAPER_SAMPLERS), args.runs, budgets.size)
    cols = np.searchsorted(all_budgets, budgets)
    for i, strategy in enumerate(PAPER_SAMPLERS):
        order, e, c = draw_runs(get_sampler(strategy), view, pool, args.runs, _rng(0, strategy, view.spec))
        n_drawn = order.shape[0]
        order, e, c = order[: args.loop_runs], e[: args.loop_runs], c[: args.loop_runs]
        t0 = time.perf_counter()
        slow = workers_one_pass(order, None, e, c, 8, all_budgets)
        loop8_s += (time.perf_counter() - t0) / order.shape[0] * n_drawn
        drawn += n_drawn
        got = [[names[j] if j >= 0 else None for j in row] for row in slow.selected[:, cols]]
        assert got == sel8[i, :order.shape[0]].tolist(), f"{strategy}: K=8 loop and engine disagree"
    print(f"one-pass literal 8-worker loop: {loop8_s:.2f} s for the {drawn:,} runs the engine draws "
          f"(selections equal) -> ratio loop / engine {loop8_s / engine8_s:.1f}x")
    return engine8_s, loop8_s


def sh_line(args) -> None:
    if not Path(args.demo_oracle).is_file():
        print(f"sh:cycling: skipped, no demo oracle at {args.demo_oracle} (make demo)")
        return
    oracle = read_oracle(args.demo_oracle)
    times = []
    for _ in range(args.repeat):
        sim = run_simulation(oracle, ["sh:cycling"], ["mlp"], args.runs, seed=0, baseline=None)
        times.append(sim.engine_seconds)
    fid = sim.summary["strategies"][0]["fidelities"]
    print(f"sh:cycling x mlp on the demo oracle ({oracle.true_scores().height} backbones, fractions "
          f"{', '.join(f'{f:g}' for f in fid)}, eta 3), {args.runs} runs: engine {min(times):.3f} s "
          f"(best of {args.repeat}: {', '.join(f'{t:.3f}' for t in times)})")


# The child's own high-water mark.  /proc/self/status VmHWM belongs to the process's memory map
# after exec; getrusage's ru_maxrss would also count the parent's resident set at the fork (Linux
# keeps the larger across exec), which is this bench's, not simulate's.
PEAK = """
import resource, sys
from simulate.cli import main
rc = main(sys.argv[1:])
try:
    kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("PEAK_KIB", kib, file=sys.stderr)
sys.exit(rc)
"""


def _child(args) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB, the child's own high-water mark) of `simulate ARGS`."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(p.stderr[-2000:])
    kib = int(p.stderr.rsplit("PEAK_KIB", 1)[1].split()[0])
    return wall, kib / 1024


def memory_lines(args, grid_text) -> None:
    if not args.memory_runs:
        return
    rows = []
    for runs in sorted({args.runs, args.memory_runs}):
        with tempfile.TemporaryDirectory() as tmp:
            wall, peak = _child(["--timm-results", args.timm_results, "--runs", str(runs), "--budgets", grid_text,
                                 "--out", tmp, "--no-report"])
            size = (Path(tmp) / "runs.parquet").stat().st_size
            engine = json.loads((Path(tmp) / "summary.json").read_text())["timing"]["engine_seconds"]
        rows.append((runs, wall, engine, peak, size))
        print(f"memory: `simulate --runs {runs}` x 5 strategies (outputs, no report): peak RSS {peak:.0f} MB, "
              f"wall {wall:.1f} s, engine {engine:.1f} s, runs.parquet {size / 1e6:.1f} MB "
              f"({runs * 5 * 100:,} rows)")
    if len(rows) == 2:
        (r0, w0, e0, _, _), (r1, w1, e1, p1, _) = rows
        print(f"memory target (<= 1 GB at {r1} runs): {'met' if p1 <= 1024 else 'NOT met'} ({p1:.0f} MB); "
              f"time x{w1 / w0:.1f} wall, x{e1 / e0:.1f} engine for x{r1 / r0:.0f} runs")


if __name__ == "__main__":
    sys.exit(main())
