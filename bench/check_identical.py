"""The paper's strategies give the same bytes as a reference version of the simulator.

Runs `simulate` (a new process, as a user would) with this tree and with a reference tree on a
few oracles, seeds and run counts, and compares ``runs.parquet`` and ``bsec.parquet`` byte for
byte and ``summary.json`` key by key (every key the reference writes must be equal; ``timing``
is wall-clock and skipped; keys only this tree writes, e.g. ``recommendation``, are listed).

The reference must be named: a git revision (``--git REV``, e.g. the commit before a change,
extracted with ``git archive``: nothing in the repository changes) or a folder holding another
checkout (``--ref DIR``).  There is no default: comparing HEAD with a clean HEAD checkout would
compare a tree with itself and say nothing.  ``REV`` is resolved to a commit and printed.

Usage: python bench/check_identical.py (--git REV | --ref DIR) [--demo-oracle PATH] [--quick]
"""
from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def configs(tmp: Path, demo: str | None, quick: bool) -> list[tuple[str, list[str]]]:
    from tests.conftest import random_oracle

    toy = tmp / "toy.parquet"
    random_oracle(n_backbones=14, seeds=3, rng_seed=7, ties=True, failed=2).write(toy)
    out = [
        ("timm:sketch, 5 paper strategies, 300 runs", ["--oracle", "timm:sketch", "--runs", "300"]),
        ("timm:imagenet, 3 strategies, 2,500 runs, seed 3",
         ["--oracle", "timm:imagenet", "--runs", "2500", "--seed", "3", "--strategy", "random",
          "--strategy", "cycling", "--strategy", "complexity-down", "--budgets", "10:100000:40"]),
        ("toy (3 seeds, ties, 2 failed), 5 strategies x 3 evaluators, 2,500 runs",
         ["--oracle", str(toy), "--runs", "2500", "--seed", "11", "--evaluator", "mlp", "--evaluator",
          "mlp@0.1", "--evaluator", "silhouette", "--baseline", "arch003.tag0"]),
    ]
    if not quick:  # orders over two draw chunks: the two-pass drawing
        out.append(("timm:sketch, cycling + dataset-size-down + random, 20,000 runs",
                    ["--oracle", "timm:sketch", "--runs", "20000", "--strategy", "cycling", "--strategy",
                     "dataset-size-down", "--strategy", "random", "--seed", "2"]))
    if demo:  # the head at the oracle's every fraction (the demo's are 1, 0.1 and 0.03; older ones 0.01)
        import polars as pl

        from shared.oracle import read_oracle  # lazy: polars, only for a demo oracle

        frame = read_oracle(demo).frame
        fractions = sorted(frame.filter(pl.col("evaluator") == "mlp")["fraction"].unique().to_list(), reverse=True)
        heads = [a for f in fractions for a in ("--evaluator", f"mlp@{f:g}" if f < 1.0 else "mlp")]
        out.append((f"demo oracle, 5 strategies x {len(fractions) + 1} evaluators, 1,500 runs",
                    ["--oracle", demo, "--runs", "1500", *heads, "--evaluator", "silhouette",
                     "--baseline", "resnet18.a1_in1k"]))
    return out


def run(tree: Path, args: list[str], out: Path, timm_results: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(tree), VIBES_TIMM_RESULTS=timm_results)
    p = subprocess.run([sys.executable, "-m", "simulate.cli", *args, "--out", str(out), "--no-report"],
                       cwd=tree, env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"simulate failed in {tree}:\n{p.stderr[-3000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ref_arg = ap.add_mutually_exclusive_group(required=True)
    ref_arg.add_argument("--git", default=None, help="reference revision (git archive), e.g. HEAD~3 or a hash")
    ref_arg.add_argument("--ref", default=None, help="reference tree (a folder)")
    ap.add_argument("--demo-oracle", default=None, help="also compare on this oracle (e.g. the demo's)")
    ap.add_argument("--quick", action="store_true", help="skip the 20,000-run case")
    ap.add_argument("--timm-results", default=os.environ.get("VIBES_TIMM_RESULTS",
                                                             str(REPO.parent / "shared" / "timm-results")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.ref:
            ref = Path(args.ref).resolve()
        else:
            ref = tmp / "ref"
            ref.mkdir()
            got = subprocess.run(["git", "rev-parse", "--verify", f"{args.git}^{{commit}}"], cwd=REPO,
                                 capture_output=True, text=True)
            if got.returncode:
                raise SystemExit(f"--git {args.git!r} is not a commit of this repository")
            commit = got.stdout.strip()
            archive = subprocess.run(["git", "archive", commit, "shared", "simulate"], cwd=REPO,
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(ref)], input=archive, check=True)
            dirty = subprocess.run(["git", "status", "--porcelain", "shared", "simulate"], cwd=REPO,
                                   capture_output=True, text=True).stdout.strip()
            head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
            if commit == head and not dirty:
                print("note: the reference is this tree's own commit and the tree is clean: it compares a tree "
                      "with itself")
        print(f"reference: {args.ref or f'git {args.git} = {commit}'}; this tree: {REPO}")
        failures = 0
        for i, (label, cli_args) in enumerate(configs(tmp, args.demo_oracle, args.quick)):
            a, b = tmp / f"ref{i}", tmp / f"new{i}"
            run(ref, cli_args, a, args.timm_results)
            run(REPO, cli_args, b, args.timm_results)
            same = {name: filecmp.cmp(a / name, b / name, shallow=False) for name in ("runs.parquet", "bsec.parquet")}
            sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
            sa.pop("timing", None), sb.pop("timing", None)
            differ = [k for k in sa if sa[k] != sb.get(k)]
            added = [k for k in sb if k not in sa]
            ok = all(same.values()) and not differ
            failures += not ok
            print(f"{'same' if ok else 'DIFFERENT'}: {label}: runs.parquet {'=' if same['runs.parquet'] else '!='}, "
                  f"bsec.parquet {'=' if same['bsec.parquet'] else '!='}, summary.json "
                  f"{'= on every reference key' if not differ else 'differs on ' + ', '.join(differ)}"
                  f"{'; new keys: ' + ', '.join(added) if added else ''} "
                  f"({(b / 'runs.parquet').stat().st_size / 1e6:.2f} MB)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
