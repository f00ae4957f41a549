"""Successive halving against the paper's strategies on an oracle with several fractions.

Every paper strategy and ``sh:random``, ``sh:cycling`` × ``mlp`` at every fraction of the oracle
(the paper's ``mlp@0.01``, ``mlp@0.1``, ``mlp``; the demo's oracle has 0.03 for 0.01, which digits'
test split cannot give; for ``sh:`` the spec is the top rung: ``mlp`` climbs 0.03 → 0.1 → 1,
``mlp@0.1`` climbs 0.03 → 0.1, ``mlp@0.03`` is one rung, i.e. the plain sampler), under both
promotion costs, 1,000 runs.
Prints a Markdown table: auc_log, the median true score at a few budgets, the time to beat the
baseline and the final median.

Usage: python bench/bench_sh.py [--oracle data/oracles/digits.parquet] [--runs 1000] [--eta 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.durations import format_duration  # noqa: E402
from shared.oracle import read_oracle  # noqa: E402
from shared.samplers import PAPER_SAMPLERS  # noqa: E402
from shared.successive_halving import SHConfig  # noqa: E402
from simulate.simulation import run_simulation  # noqa: E402

AT = (30.0, 60.0, 120.0, 300.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--oracle", default=str(REPO / "data" / "oracles" / "digits.parquet"))
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--baseline", default="resnet18.a1_in1k")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    oracle = read_oracle(args.oracle)
    strategies = list(PAPER_SAMPLERS) + ["sh:random", "sh:cycling"]
    fractions = sorted(oracle.frame.filter(pl.col("evaluator") == "mlp")["fraction"].unique().to_list())
    evaluators = [f"mlp@{f:g}" if f < 1.0 else "mlp" for f in fractions]
    probe = run_simulation(oracle, ["complexity-up"], evaluators, 1, baseline=None)
    lo, hi = probe.budgets[0], probe.budgets[-1]
    budgets = np.unique(np.concatenate([np.geomspace(lo, hi, 100), [a for a in AT if lo <= a <= hi]]))
    print(f"{oracle.dataset} ({oracle.meta.get('weights', 'pretrained')} weights): pool {probe.summary['pool_size']}, "
          f"best {probe.summary['best_possible']['true_score']:.4f}; {args.runs} runs, eta {args.eta}, budgets "
          f"{format_duration(lo)} … {format_duration(hi)}\n")
    at = [a for a in AT if lo <= a <= hi]
    print("| promotion cost | strategy | evaluator | auc_log | " + " | ".join(f"@{format_duration(a)}" for a in at)
          + " | beat baseline | final |")
    print("|---" * (6 + len(at)) + "|")
    for cost in ("incremental", "cold"):
        sim = run_simulation(oracle, strategies, evaluators, args.runs, budgets, args.seed, args.baseline,
                             sh=SHConfig(args.eta, None, cost))
        f = lambda x: "—" if x is None else f"{x:.4f}"  # noqa: E731
        for r in sim.summary["strategies"]:
            if cost == "cold" and not r["strategy"].startswith("sh:"):
                continue  # the paper's strategies pay no promotion: the same as above
            curve = sim.bsec.filter((pl.col("strategy") == r["strategy"]) & (pl.col("evaluator") == r["evaluator"]))
            meds = [curve.filter(pl.col("budget_s") == a)["median"][0] for a in at]
            beat = r["time_to_beat_baseline_s"]
            print(f"| {cost if r['strategy'].startswith('sh:') else '—'} | {r['strategy']} | {r['evaluator']} | "
                  f"{f(r['auc_log'])} | " + " | ".join(f(m) for m in meds)
                  + f" | {format_duration(beat) if beat else 'never'} | {f(r['final_median'])} |")
    print(f"\nbaseline {args.baseline}: {f(sim.summary['baseline']['true_score'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
