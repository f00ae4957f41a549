"""The bad inputs a practitioner types in a first hour (#24), each run as a subprocess of the real
command line: prints a Markdown table of the input, its exit code, its seconds and the last line
of stderr.  Every one must exit 2 with exactly one line on stderr, ``error: ...``; a row that does
not is marked ``NO`` (and the script exits 1).

    .venv/bin/python bench/bad_inputs.py [--timm-results ../shared/timm-results]

Offline (``HF_HUB_OFFLINE=1``, no download); the files the inputs name (an empty CSV, an oracle of
another schema, a latency table without rows, ...) are written to a temporary folder, shown as
``<tmp>``.  Not a test: the tests check these refusals one by one (tests/test_bad_inputs.py,
tests/test_precompute_cli.py, tests/test_search.py); this is the one table of what the user sees.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DIGITS = "data/oracles/digits.parquet"  # `make demo`'s oracle; a toy one is written when it is missing
SEARCH = ("precompute search --dataset digits --weights random --strategy cycling --evaluator mlp@0.1 "
          "--budget 1h --device cpu --pool resnet18.a1_in1k")
RUN = "precompute run --dataset digits --weights random --device cpu --pool resnet18.a1_in1k"


def write_files(tmp: Path, timm: str) -> dict[str, str]:
    """The files the bad inputs name; returns the words they replace in the inputs."""
    (tmp / "empty.csv").write_text("")
    (tmp / "header-only.csv").write_text("backbone,latency_ms\n")
    (tmp / "results.csv").write_text("backbone,dataset,top1\nresnet18.a1_in1k,cifar10,0.9\n")
    pl.DataFrame({"model": ["a", "b"], "acc": [0.1, 0.2]}).write_parquet(tmp / "other-schema.parquet")
    (tmp / "not-parquet.parquet").write_text("this is not a parquet file\n")
    (tmp / "images").mkdir(exist_ok=True)
    (tmp / "notes.txt").write_text("not a pool\n")
    return {"<tmp>": str(tmp), "<timm>": timm}


SIM = f"simulate --oracle {DIGITS}"
#: the bad inputs: simulate (and its compare, import, league), precompute run, search, estimate, pool,
#: latency, check, merge and fetch
CASES = [
    # simulate
    f"{SIM} --budgets 10x",
    f"{SIM} --budgets 0",
    f"{SIM} --budgets -5m",
    f"{SIM} --strategy fastest",
    f"{SIM} --evaluator knnn",
    f"{SIM} --runs 0",
    f"{SIM} --workers 0",
    f"{SIM} --recommend-at soon",
    f"{SIM} --max-params -1",
    f"{SIM} --max-latency-ms 1 --latency-device cpu",
    f"{SIM} --max-latency-ms 1 --latency-device RTX4090",
    f"{SIM} --max-latency-ms 1 --latency-device <tmp>/empty.csv",
    f"{SIM} --max-latency-ms 1 --latency-device <tmp>/header-only.csv",
    f"{SIM} --truth nope",
    f"{SIM} --baseline nope.x",
    f"{SIM} --costs-from <tmp>/nope.csv",
    "simulate --oracle <tmp>/nope.parquet",
    "simulate --oracle <tmp>/other-schema.parquet",
    "simulate --oracle <tmp>/not-parquet.parquet",
    "simulate --oracle timm:nope --timm-results <timm>",
    "simulate --oracle timm:sketch --timm-results <tmp>/images",
    "simulate compare <tmp>/nope-a <tmp>/nope-b",
    # simulate import, league
    "simulate import <tmp>/empty.csv --out <tmp>/imported",
    "simulate import <tmp>/nope.csv --out <tmp>/imported",
    "simulate import <tmp>/results.csv --out <tmp>/imported --dataset-col dataset --score-col nope",
    "simulate league --oracle <tmp>/nope-*.parquet --out <tmp>/league",
    f"simulate league --oracle {DIGITS} --workers 0 --out <tmp>/league",
    # precompute run
    f"{RUN} --dataset nope",
    f"{RUN} --evaluators mlp,knnn",
    f"{RUN} --fractions 1.5",
    f"{RUN} --truth knn --evaluators mlp",
    f"{RUN} --device tpu",
    f"{RUN} --shard 3/2",
    f"{RUN} --dataset folder:<tmp>/nope",
    f"{RUN} --pretrained-file <tmp>/nope.pth",
    f"{RUN} --pool 'zzz_nothing*'",
    "precompute run --dataset digits --weights random --device cpu --fractions 1.0,0.01",  # the whole pool
    # precompute search
    f"{SEARCH} --budget 0",
    f"{SEARCH} --budget 10x",
    f"{SEARCH} --strategy fastest",
    f"{SEARCH} --evaluator knnn@0.1",
    f"{SEARCH} --evaluator mlp@2",
    f"{SEARCH} --workers 3 --device cuda",
    f"{SEARCH} --strategy asha:cycling --sh-chunk 3",
    f"{SEARCH} --final mlp@0.1",
    # precompute estimate, pool, latency, check, merge, fetch
    "precompute estimate --dataset nope",
    "precompute estimate --dataset digits --within soon",
    "precompute estimate --dataset digits --sample 1",
    "precompute pool --max-params 0",
    "precompute pool --out <tmp>/pool.txt",
    "precompute pool --max-latency-ms 1 --latency-device rtx5090 --timm-results <timm>",
    "precompute latency --out <tmp>/lat.txt",
    "precompute latency --out <tmp>/lat.csv --device tpu",
    "precompute check --timeout soon",
    "precompute merge --dataset digits --parts-dir <tmp>/no-parts",
    "precompute fetch --jobs 0",
]


def run(case: str, words: dict[str, str]) -> dict:
    argv = shlex.split(case)
    argv = [_fill(a, words) for a in argv]
    module = {"simulate": "simulate.cli", "precompute": "precompute.cli"}[argv[0]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("VIBES_TIMM_RESULTS", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=600)
    seconds = time.perf_counter() - t0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else "(nothing on stderr)"
    for word, value in words.items():
        last = last.replace(value, word)
    ok = proc.returncode == 2 and len(lines) == 1 and last.startswith("error: ")
    return {"input": case, "exit": proc.returncode, "seconds": seconds, "lines": len(lines), "last": last,
            "ok": ok}


def _fill(arg: str, words: dict[str, str]) -> str:
    for word, value in words.items():
        arg = arg.replace(word, value)
    return arg


def table(rows: list[dict]) -> str:
    out = ["| # | input | exit | s | stderr lines | the one line | ok |", "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        cells = [str(i), f"`{r['input']}`", str(r["exit"]), f"{r['seconds']:.1f}", str(r["lines"]),
                 r["last"].replace("|", "\\|"), "yes" if r["ok"] else "**NO**"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timm-results", default=str(ROOT.parent / "shared" / "timm-results"),
                        help="timm's results folder, for the timm:<set> inputs (offline)")
    args = parser.parse_args(argv)
    if not (ROOT / DIGITS).is_file():
        raise SystemExit(f"{DIGITS} not found: run `make demo` first (the simulate inputs use it)")
    with tempfile.TemporaryDirectory(prefix="vibes-bad-") as tmp:
        words = write_files(Path(tmp), args.timm_results)
        rows = [run(case, words) for case in CASES]
    print(table(rows))
    bad = [r for r in rows if not r["ok"]]
    print(f"\n{len(rows)} bad inputs, {len(rows) - len(bad)} answered in one line with exit 2"
          + (f"; NOT: {', '.join(str(rows.index(r) + 1) for r in bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
