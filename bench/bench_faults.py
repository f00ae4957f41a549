"""What a fault point costs where no fault is planned: ``precompute.faults.point`` sits after every
extracted batch and every epoch of a head, so its cost lands on every evaluation a sweep or a search
makes.  (The tests check that, with no budget, it reads no clock; this measures it.)

Timed with ``timeit`` (the best of ``--repeat`` rounds of ``--number`` calls each), in this process:

* baseline -- a Python function that returns at once, called with the point's name;
* ``point`` with no plan and no budget (a sweep);
* ``point`` with no plan and a budget (a live search's evaluation: the clock is read once per call).

Prints nanoseconds per call and each against the baseline measured in the same run.

Usage: python bench/bench_faults.py [--number 1000000] [--repeat 7]
"""
from __future__ import annotations

import argparse
import os
import sys
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from precompute import clock, faults  # noqa: E402


def _noop(name: str) -> None:
    return None


def per_call_ns(fn, number: int, repeat: int) -> float:
    """The best of ``repeat`` rounds of ``number`` calls of ``fn("mlp-epoch")``, in ns per call."""
    best = min(timeit.repeat(lambda: fn("mlp-epoch"), number=number, repeat=repeat))
    return best / number * 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--number", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    if os.environ.get(faults.ENV):
        print(f"bench_faults: unset {faults.ENV} first (a planned fault would fire here)", file=sys.stderr)
        return 2
    rows = [("baseline: a function that returns at once", per_call_ns(_noop, args.number, args.repeat)),
            ("faults.point, no plan, no budget (a sweep)", per_call_ns(faults.point, args.number, args.repeat))]
    with clock.budget(1e12):
        rows.append(("faults.point, no plan, a budget (a search)",
                     per_call_ns(faults.point, args.number, args.repeat)))
    base = rows[0][1]
    print(f"| call ({args.number:,} calls, best of {args.repeat}) | ns per call | × baseline |")
    print("|---|---|---|")
    for what, ns in rows:
        print(f"| {what} | {ns:.1f} | {ns / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
