"""Costs for your hardware (#16): how well do a few backbones timed on a device predict the rest?

timm's published inference throughput tables (``benchmark-infer-*.csv`` in the timm results
folder) give each architecture's seconds on two GPUs.  For a pair of them, the ``timm:<set>``
oracle built with one table is the oracle (its seconds are the "oracle device's"), the same
oracle built with the other table holds the target device's true seconds.  Per draw, ``--sample``
backbones are drawn at random (``numpy.random.default_rng(seed)``), their target seconds given to
:func:`simulate.costs.fit_costs` as the timed sample, and every backbone **outside** the sample
is predicted; the error of a draw is the median over those of ``|log(predicted / actual)|``.
Printed per pair and sample size (a Markdown table), the median over ``--draws`` draws (and the
25-75 % range) of that error for:

* ``constant ratio`` — the baseline: target = median(target / oracle over the sample) x oracle;
* ``chosen`` — what ``simulate --costs-from`` uses: the log-linear rung with the lowest
  leave-one-out error, or the constant ratio when no rung beats it in leave-one-out;
* ``chosen, no clip`` — the same without clipping fitted log ratios to the sample's range;

plus how often a fit was chosen, how often the choice did worse than the constant ratio outside
the sample, the rung chosen most often, and the median leave-one-out error
of the chosen model (the figure ``simulate`` prints, from the sample alone) to set against the
error outside the sample.

Only the two tables in the reference folder (RTX 3090 and RTX 4090, timm 1.x, AMP, PyTorch 2.4)
are used by default, both directions.  The files are third-party: nothing derived from them is
written here.  Both devices are GPUs of neighbouring generations running the same software: a
CPU-to-GPU or datacentre-to-consumer pair would stress the fit more.

Usage: python bench/bench_costs.py [--timm-results DIR] [--set imagenet] [--samples 30,12]
       [--draws 100] [--seed 0] [--pair A.csv:B.csv ...]
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simulate.costs import fit_costs  # noqa: E402
from simulate.timm_oracle import timm_oracle  # noqa: E402


def device_of(table: str) -> str:
    return table.removeprefix("benchmark-infer-").removesuffix(".csv").rsplit("-", 1)[-1]


def oos_error(predicted: pl.DataFrame, truth: dict[str, float], inside: set[str], column: str) -> float:
    """Median |log(predicted / actual)| over the backbones outside the sample."""
    out = predicted.filter(~pl.col("backbone").is_in(list(inside)))
    pred = out.get_column(column).to_numpy()
    actual = np.array([truth[b] for b in out.get_column("backbone").to_list()])
    return float(np.median(np.abs(np.log(pred / actual))))


def run_pair(oracle, target: pl.DataFrame, n: int, draws: int, seed: int) -> dict:
    truth = dict(zip(target.get_column("backbone").to_list(), target.get_column("seconds").to_list()))
    names = sorted(set(truth) & set(oracle.frame.get_column("backbone").to_list()))
    rng = np.random.default_rng(seed)
    res = collections.defaultdict(list)
    for _ in range(draws):
        inside = set(rng.choice(names, n, replace=False).tolist())
        sample = target.filter(pl.col("backbone").is_in(list(inside))).select("backbone", "seconds")
        for clip in (True, False):
            fit = fit_costs(oracle, sample, clip=clip)
            p = fit.predicted.filter(pl.col("backbone").is_in(names))
            const = p.select("backbone", (pl.col("seconds_oracle") * fit.ratio).alias("c"))
            tag = "" if clip else "_noclip"
            res["chosen" + tag].append(oos_error(p, truth, inside, "seconds_predicted"))
            if clip:
                res["constant"].append(oos_error(const, truth, inside, "c"))
                res["loo"].append(fit.loo_error)
                res["loo_constant"].append(fit.loo_error_constant)
                res["model"].append("+".join(fit.features) if fit.features else "constant")
    return {"n_pool": len(names), **res}


def q(v) -> str:
    a = np.asarray(v, float)
    return f"{np.median(a):.3f} ({np.quantile(a, 0.25):.3f}-{np.quantile(a, 0.75):.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timm-results", default=os.environ.get("VIBES_TIMM_RESULTS",
                                                             str(REPO.parent / "shared" / "timm-results")))
    ap.add_argument("--set", default="imagenet", help="results-<set>.csv: which models (default imagenet)")
    ap.add_argument("--samples", default="30,12", help="sample sizes (default 30,12)")
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pair", action="append", default=None, metavar="ORACLE.csv:TARGET.csv",
                    help="benchmark tables (oracle device : target device); default every ordered pair in the folder")
    args = ap.parse_args()
    tables = sorted(p.name for p in Path(args.timm_results).glob("benchmark-infer-*.csv"))
    pairs = ([tuple(s.split(":", 1)) for s in args.pair] if args.pair else
             [(a, b) for a in tables for b in tables if a != b])
    if not pairs:
        print(f"no pair of benchmark-infer-*.csv tables in {args.timm_results}", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.samples.split(",")]
    t0 = time.perf_counter()
    print(f"timm:{args.set} oracles; {args.draws} random samples per row (seed {args.seed}); error = median over "
          f"the backbones outside the sample of |log(predicted / actual)|, median (25-75 %) over the draws\n")
    print("| oracle -> target | pool | sample | constant ratio | chosen (LOO) | chosen, no clip | fit chosen "
          "| chosen worse than constant | rung chosen most | LOO error of chosen (in sample) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for a, b in pairs:
        oracle = timm_oracle(args.set, args.timm_results, a, quiet=True)
        target = timm_oracle(args.set, args.timm_results, b, quiet=True).frame.select("backbone", "seconds")
        for n in sizes:
            r = run_pair(oracle, target, n, args.draws, args.seed)
            models = collections.Counter(r["model"])
            top, k = models.most_common(1)[0]
            fit_share = 1 - models.get("constant", 0) / len(r["model"])
            worse = float(np.mean(np.array(r["chosen"]) > np.array(r["constant"])))
            print(f"| {device_of(a)} -> {device_of(b)} | {r['n_pool']} | {n} | {q(r['constant'])} | {q(r['chosen'])} "
                  f"| {q(r['chosen_noclip'])} | {fit_share:.0%} | {worse:.0%} | {top} ({k}) | {q(r['loo'])} |")
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
