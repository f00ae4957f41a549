"""Strategy x workers: what K workers buy, on an oracle (issue 15's table).

For every strategy (the five paper samplers, ``sh:cycling`` and ``asha:cycling``) and K in
``--workers`` (default 1, 4, 8), ``--runs`` runs (default 1,000) of ``simulate --workers``: the
median true score of the selection at 10 min and at 1 h of wall-clock search time, and the time
to beat the baseline.  On a one-fraction oracle (every ``timm:<set>``) successive halving has one
rung, so ``sh:`` and ``asha:`` are their sampler; on a multi-fidelity oracle (``--oracle`` a
precompute oracle with fractions, e.g. the demo's) they differ, and the table says where ASHA beats
the synchronous rungs and the samplers.

Usage: python bench/bench_workers.py [--oracle timm:sketch | PATH] [--timm-results DIR] [--runs 1000]
                                     [--workers 1,4,8] [--evaluator top1] [--baseline NAME]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from shared.durations import format_duration  # noqa: E402
from shared.oracle import read_oracle  # noqa: E402
from shared.samplers import PAPER_SAMPLERS  # noqa: E402
from simulate.simulation import DEFAULT_BASELINE, parse_budgets, run_simulation  # noqa: E402
from simulate.timm_oracle import timm_oracle  # noqa: E402

STRATEGIES = (*PAPER_SAMPLERS, "sh:cycling", "asha:cycling")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--oracle", default="timm:sketch")
    ap.add_argument("--timm-results", default=os.environ.get("VIBES_TIMM_RESULTS",
                                                             str(REPO.parent / "shared" / "timm-results")))
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--workers", default="1,4,8")
    ap.add_argument("--evaluator", default=None, help="default: the oracle's truth")
    ap.add_argument("--baseline", default=DEFAULT_BASELINE)
    ap.add_argument("--at", default="600,3600", help="budgets of the table, seconds")
    args = ap.parse_args()
    oracle = (timm_oracle(args.oracle.removeprefix("timm:"), args.timm_results, quiet=True)
              if args.oracle.startswith("timm:") else read_oracle(args.oracle))
    ks = tuple(int(k) for k in args.workers.split(","))
    at = [float(x) for x in args.at.split(",")]
    budgets = np.unique(np.concatenate([parse_budgets("1:1e6:100"), at]))  # the table's budgets exactly
    sim = run_simulation(oracle, list(STRATEGIES), [args.evaluator or oracle.truth], args.runs, budgets, seed=0,
                         baseline=args.baseline, workers=ks)
    pool = sim.summary["pool_size"]
    base = sim.summary["baseline"]["true_score"]
    best = sim.summary["best_possible"]["true_score"]
    print(f"{args.oracle}: pool {pool}, {args.runs} runs, best possible {best:.4f}, "
          f"baseline {args.baseline} {base if base is None else f'{base:.4f}'}; engine {sim.engine_seconds:.2f} s\n")
    stats = {}
    for s in sim.bsec.iter_rows(named=True):
        stats.setdefault((s["strategy"], s["workers"]), []).append(s)
    heads = " | ".join(f"score @{format_duration(t)}" for t in at)
    print(f"| strategy | K | {heads} | time to beat baseline |")
    print("|---|---|" + "---|" * len(at) + "---|")
    for strategy in STRATEGIES:
        for k in ks:
            row = next(r for r in sim.summary["strategies"] if r["strategy"] == strategy and r["workers"] == k)
            vals = [_median_at(sim, strategy, k, t) for t in at]
            beat = row["time_to_beat_baseline_s"]
            print(f"| {strategy} | {k} | " + " | ".join("—" if v is None else f"{v:.4f}" for v in vals)
                  + f" | {format_duration(beat) if beat else 'never'} |")
    return 0


def _median_at(sim, strategy: str, k: int, t: float) -> float | None:
    """The median true score of the selection at budget ``t`` (a budget of the grid), over all runs."""
    b = sim.bsec.filter((pl.col("strategy") == strategy) & (pl.col("workers") == k) & (pl.col("budget_s") == t))
    return None if b.height == 0 or b["median"][0] is None else float(b["median"][0])


if __name__ == "__main__":
    sys.exit(main())
