"""Benchmark of the league: `simulate league --oracle 'openclip:*' --workers 1,4 --runs 1000` (issue 22).

Prints, all measured in this one run:
  * whole-command seconds of the league as a user runs it (new process, league.parquet, league.json
    and league.html written), best of --repeat; target <= 60 s on 2 cores;
  * the baseline: the same replays without the league, i.e. `run_simulation` on each oracle in turn
    with the same strategies, evaluators, K, runs, budget grid and leave-one-out priors (what a user
    scripting `simulate` per dataset would pay in the engine, without process start-up or reports),
    and the league's in-process time against it (the league's own work: benchmark picks,
    p_beat_benchmark from the per-run table, the answer);
  * the answer it prints.

Usage: python bench/bench_league.py [--runs 1000] [--workers 1,4] [--repeat 1] [--openclip-results DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def command_seconds(args, repeat: int) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "simulate.cli", "league", *args, "--out", tmp],
                                  cwd=REPO, capture_output=True, text=True)
            best = min(best, time.perf_counter() - t0)
            if proc.returncode:
                sys.exit(f"bench_league: the command failed: {proc.stderr.strip().splitlines()[-1]}")
            out = proc.stdout
    return best, out


def in_process(runs: int, ks: tuple[int, ...]) -> tuple[float, float]:
    """(league seconds, the plain per-oracle replays' seconds), the same oracles, grid and settings."""
    # lazy: polars and numpy load when the league runs, not for `--help`
    from simulate.league import DEFAULT_STRATEGIES, league_budgets, run_league
    from simulate.openclip_oracle import openclip_oracle, openclip_sets
    from simulate.simulation import run_simulation

    oracles = [(f"openclip:{s}", openclip_oracle(s)) for s in openclip_sets()]
    grid = league_budgets([o for _, o in oracles])
    t0 = time.perf_counter()
    run_league(oracles, None, None, runs, grid, 0, ks)
    league_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, (_, oracle) in enumerate(oracles):
        priors = [o for j, (_, o) in enumerate(oracles) if j != i]
        run_simulation(oracle, list(DEFAULT_STRATEGIES), None, runs, grid, 0, baseline=None, priors=priors,
                       workers=list(ks))
    return league_s, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--openclip-results", default=None)
    a = ap.parse_args()
    if a.openclip_results:
        os.environ["VIBES_OPENCLIP_RESULTS"] = a.openclip_results
    ks = tuple(int(k) for k in a.workers.split(","))
    wall, out = command_seconds(["--oracle", "openclip:*", "--workers", a.workers, "--runs", str(a.runs)], a.repeat)
    league_s, plain_s = in_process(a.runs, ks)
    print(f"simulate league --oracle 'openclip:*' --workers {a.workers} --runs {a.runs}: {wall:.1f} s wall "
          f"(target <= 60 s; {os.cpu_count()} cores)")
    print(f"in process: league {league_s:.1f} s vs the same replays one oracle at a time {plain_s:.1f} s "
          f"(ratio {league_s / plain_s:.2f})")
    print(out.rstrip())


if __name__ == "__main__":
    main()
