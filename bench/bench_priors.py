"""Do the priors help?  random, cycling, imagenet-top1 and meta on every timm:<set> oracle.

For each ``results-<set>.csv`` in the timm results folder (truth = that set's published top-1),
1,000 runs of each strategy with the default budget grid; ``meta`` is leave-one-oracle-out: its
references are the other sets, without the set's own ``-clean`` twin (the same images).  Prints
a Markdown table of auc_log, the median score at 10 min and at 1 h, and the time to beat the
baseline.  (auc_log counts a budget with no selection in most runs as the pool's worst score, so
a prior whose first pick is an expensive backbone pays for its wait there.)

These sets are all ImageNet-family (ImageNet's classes, mostly its images or renditions of them):
a strong showing of the ImageNet prior here says nothing about other datasets, and on
``timm:imagenet`` itself the imagenet-top1 prior *is* the truth.

Usage: python bench/bench_priors.py [--timm-results DIR] [--runs 1000] [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.durations import format_duration  # noqa: E402
from simulate.simulation import run_simulation  # noqa: E402
from simulate.timm_oracle import timm_oracle  # noqa: E402

STRATEGIES = ["random", "cycling", "imagenet-top1", "meta"]


def twin(a: str, b: str) -> bool:
    return a.removesuffix("-clean") == b.removesuffix("-clean")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timm-results", default=os.environ.get("VIBES_TIMM_RESULTS",
                                                             str(REPO.parent / "shared" / "timm-results")))
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sets = sorted(p.name.removeprefix("results-").removesuffix(".csv")
                  for p in Path(args.timm_results).glob("results-*.csv"))
    oracles = {s: timm_oracle(s, args.timm_results, quiet=True) for s in sets}
    print(f"{args.runs} runs per strategy, seed {args.seed}; truth = each set's published top-1; meta = mean "
          f"normalised rank over the other sets (not the set's -clean twin)\n")
    print("| oracle | pool | best | baseline | strategy | auc_log | score @10 min | score @1h "
          "| time to beat baseline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in sets:
        priors = [(f"timm:{o}", oracles[o]) for o in sets if not twin(o, s)]
        sim = run_simulation(oracles[s], STRATEGIES, None, args.runs, seed=args.seed, priors=priors)
        at10 = run_simulation(oracles[s], STRATEGIES, None, args.runs, np.array([600.0]), seed=args.seed,
                              priors=priors).summary["strategies"]  # the same runs (same seeds), at 10 min
        su = sim.summary
        for i, r in enumerate(su["strategies"]):
            beat = r["time_to_beat_baseline_s"]
            f = lambda x: "—" if x is None else f"{x:.4f}"  # noqa: E731
            head = (f"timm:{s} | {su['pool_size']} | {su['best_possible']['true_score']:.4f} | "
                    f"{f(su['baseline']['true_score'])}" if i == 0 else " | | | ")
            print(f"| {head} | {r['strategy']} | {f(r['auc_log'])} | {f(at10[i]['final_median'])} | "
                  f"{f(r['score_1h'])} | {format_duration(beat) if beat else 'never'} |")
        refs = ", ".join(p["oracle"] for p in su["priors"])
        print(f"|  |  |  |  | (meta references: {refs}) | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
