"""``make demo`` = ``python -m precompute.demo``: the whole pipeline offline, on CPU, in minutes.

1. precompute on ``digits`` (sklearn's 8×8 digits, shipped with scikit-learn; committed 80/20
   split) with a fixed pool of 13 small, diverse timm architectures (CNNs, mobile nets,
   ViT-style, MLP-style) at input size 32, **random weights** (the demo runs offline, so no
   pretrained weights can be downloaded: scores say nothing about those backbones' quality),
   fractions 1.0, 0.1 and 0.03 (:data:`DEMO_FRACTIONS`: the paper's 1 % keeps 4 of digits' 359 test
   images for 10 classes, which ``precompute run`` refuses), 2 seeds, the default evaluators
   (``mlp``, ``silhouette`` and the proxies ``knn``, ``ridge``, ``logme``, ``hscore``)
   -> ``data/oracles/digits.parquet``;
2. replay the search strategies on that oracle with the simulator -> ``out/demo/`` (BSECs of the
   paper's four evaluators and the four proxies, the evaluators' quality table).

Parts go to ``data/parts/demo``; a second run reuses them (``--fresh`` recomputes).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from shared.errors import VibesError
from shared.protocol import DEFAULT_EVALUATORS

#: 13 small architectures, all in timm.list_models(pretrained=True), all run at 32 px
DEMO_POOL = (
    "resnet10t.c3_in1k",                          # CNN
    "resnet18.a1_in1k",                           # CNN (baseline)
    "regnetx_002.pycls_in1k",                     # CNN, NAS-designed
    "convnext_atto.d2_in1k",                      # modern CNN
    "mobilenetv3_small_100.lamb_in1k",            # mobile
    "lcnet_050.ra2_in1k",                         # mobile
    "ghostnet_100.in1k",                          # mobile
    "edgenext_xx_small.in1k",                     # hybrid CNN/attention
    "mobilevit_xxs.cvnets_in1k",                  # hybrid mobile ViT
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k",  # ViT (ImageNet-21k)
    "deit_tiny_patch16_224.fb_in1k",              # ViT (distillation recipe)
    "levit_128s.fb_dist_in1k",                    # conv-attention hybrid
    "resmlp_12_224.fb_in1k",                      # MLP-mixer style
)
BASELINE = "resnet18.a1_in1k"
#: the paper's 100 % and 10 %, and 3 % for its 1 %: digits' test split (359 images, 10 classes) keeps every
#: class from 2.65 % on (precompute.datasets.check_fractions); at 1 % it keeps 4 images and a sweep refuses it
DEMO_FRACTIONS = (1.0, 0.1, 0.03)
DATASET = "digits"
ORACLE = Path("data/oracles/digits.parquet")
PARTS = Path("data/parts/demo")
OUT = Path("out/demo")


def simulate_command(oracle: Path = ORACLE, out: Path = OUT) -> list[str]:
    """The simulator step: the ``simulate`` console script beside this Python when installed (what the
    README shows), else ``python -m simulate.cli``."""
    script = Path(sys.executable).with_name("simulate")
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "simulate.cli"]
    specs = ["mlp", *(f"mlp@{f:g}" for f in DEMO_FRACTIONS if f < 1.0),
             "silhouette", "knn", "ridge", "logme", "hscore"]
    return [*head, "--oracle", str(oracle), *(a for s in specs for a in ("--evaluator", s)),
            "--baseline", BASELINE, "--out", str(out)]


def shown_command(cmd: list[str]) -> str:
    """``cmd`` as a line to paste into a shell from this folder: no prompt, the program relative
    to it when it lies below it, every argument quoted where the shell needs it."""
    prog = cmd[0]
    if os.path.isabs(prog) and Path(prog).is_relative_to(Path.cwd()):
        rel = os.path.relpath(prog)
        prog = rel if os.sep in rel else f".{os.sep}{rel}"
    return shlex.join([prog, *cmd[1:]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m precompute.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--fresh", action="store_true", help="recompute every part")
    ap.add_argument("--no-simulate", action="store_true", help="stop after the oracle")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    try:
        from precompute.parts import merge  # lazy: `--help` and a bad argument answer without torch
        from precompute.pool import build_pool
        from precompute.sweep import SweepConfig, check_existing_parts, run_sweep

        print(f"VIBES demo: {len(DEMO_POOL)} timm backbones on {DATASET}, CPU, offline.\n"
              f"Weights are RANDOM (offline demo: pretrained weights cannot be downloaded), so "
              f"the scores exercise the pipeline, not the backbones.", flush=True)
        if args.fresh and PARTS.exists():
            shutil.rmtree(PARTS)
        pool = build_pool(list(DEMO_POOL), progress=False)
        bad = pool.filter(pool["error"].is_not_null())
        if bad.height:
            raise VibesError(f"demo backbone {bad['backbone'][0]} cannot be built: {bad['error'][0]}")
        cfg = SweepConfig(dataset=DATASET, fractions=DEMO_FRACTIONS, seeds=2,
                          evaluators=DEFAULT_EVALUATORS, weights="random", device="cpu",
                          input_size=32, parts_dir=str(PARTS))
        try:  # parts of an older demo (another protocol) would be refused: the demo starts over
            check_existing_parts(cfg, list(DEMO_POOL))
        except VibesError:
            print(f"demo: the parts in {PARTS} come from another protocol; recomputing them", flush=True)
            shutil.rmtree(PARTS)
        summary = run_sweep(cfg, pool, show_progress=not args.no_progress)
        report = merge(DATASET, PARTS, ORACLE, "parquet", expected=list(DEMO_POOL))
        print(report.summary())
        pre_s = time.perf_counter() - start
        if summary.seconds:
            print("per-backbone wall seconds (load + extract once + all fits):")
            for name, sec in sorted(summary.seconds.items(), key=lambda kv: -kv[1]):
                print(f"  {sec:7.1f}  {name}")
        print(f"precompute: {pre_s:.0f} s")
        if not args.no_simulate:
            if not _module_exists("simulate.cli"):
                raise VibesError("simulate.cli is not available; cannot run the simulator step")
            cmd = simulate_command()
            print("simulate (the same command, to paste):", flush=True)
            print(shown_command(cmd), flush=True)
            rc = subprocess.call(cmd)
            if rc != 0:
                print(f"error: the simulator exited with status {rc}", file=sys.stderr)
                return rc
    except VibesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: parts written so far are kept; rerun to resume", file=sys.stderr)
        return 130
    total = time.perf_counter() - start
    print(f"\ndone in {total:.0f} s (weights were random).\n"
          f"  oracle:    {ORACLE}\n  parts:     {PARTS}/{DATASET}/\n"
          + ("" if args.no_simulate else
             f"  simulator: {OUT}/ (runs.parquet, bsec.parquet, summary.json, report.html)"))
    return 0


def _module_exists(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
