"""A real ``precompute run`` on digits, SIGKILLed again and again, resumes to the very oracle an
uninterrupted run gives.

Kill points are deterministic (``VIBES_FAULT``, :mod:`precompute.faults`): during extraction, during
head training, between a part's temporary file and its rename; plus kills from outside at
seeded random times.  The subprocess helpers and the ``sweep_home`` fixture here are shared by
test_concurrent_workers.py and test_bad_inputs.py.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from precompute import faults
from shared.oracle import KEY, read_oracle

#: three tiny timm architectures (random weights, input 32): a full sweep takes seconds on a CPU
NAMES = ("test_convnext.r160_in1k", "test_efficientnet_ln.r160_in1k", "test_vit.r160_in1k")
SAFE = [n.replace("/", "__").replace(":", "_") for n in NAMES]  # == parts.safe_name


@dataclass(frozen=True)
class SweepHome:
    """A working folder whose ``data/cache`` already holds the pool measurements of NAMES (so
    ``--pool NAME`` costs nothing) and a decoded digits cache."""

    cwd: Path
    cache: Path


@pytest.fixture(scope="session")
def sweep_home(tmp_path_factory) -> SweepHome:
    from precompute.datasets import load_dataset
    from precompute.pool import DEFAULT_CACHE, build_pool

    home = tmp_path_factory.mktemp("sweep_home")
    build_pool(list(NAMES), cache=home / DEFAULT_CACHE, progress=False)
    load_dataset("digits", cache_dir=home / "cache")
    return SweepHome(home, home / "cache")


def cli_env(**extra: str) -> dict[str, str]:
    """The caller's environment without a fault plan, plus ``extra``.  One OpenMP thread per
    process: on a small shared machine, spinning OpenMP barriers make a 2-thread extraction 10-30x
    slower as soon as another process wants a core (and the tests run two workers at once)."""
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    env.update({"OMP_NUM_THREADS": "1", **extra})
    return env


def cli(module: str, *args, cwd, fault: str | None = None, timeout: float = 300,
        ) -> subprocess.CompletedProcess:
    """Run ``python -m <module> ARGS`` (the real console entry point) to the end."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=cli_env(**({faults.ENV: fault} if fault else {})))


def spawn(module: str, *args, cwd, fault: str | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(**({faults.ENV: fault} if fault else {})))


#: the kill test's protocol: the paper's evaluators, three nested fractions (0.03 for the paper's 0.01, which
#: digits' test split cannot give), two seeds
PROTOCOL = ("--seeds", "2", "--fractions", "1.0,0.1,0.03", "--evaluators", "mlp,silhouette")
#: the cheapest protocol that still gives a valid oracle (truth rows at fraction 1.0)
CHEAP = ("--seeds", "1", "--fractions", "1.0", "--evaluators", "mlp")


def run_args(home: SweepHome, work: Path, *extra, names=NAMES, protocol=PROTOCOL) -> list[str]:
    """``precompute run`` on digits over ``names`` (random weights, input 32, CPU)."""
    pools = [a for n in names for a in ("--pool", n)]
    return ["run", "--dataset", "digits", *pools, "--weights", "random", "--input-size", "32",
            *protocol, "--device", "cpu", "--batch-size", "64", "--no-progress",
            "--cache-dir", home.cache, "--parts-dir", work / "parts", "--out", work / "oracles",
            *extra]


def parts_folder(work: Path) -> Path:
    return work / "parts" / "digits"


def leftovers(work: Path) -> list[str]:
    """Temporary files and lock files anywhere under ``work``."""
    return sorted(str(p.relative_to(work)) for pat in ("*.tmp", "*.lock") for p in work.rglob(pat))


def done_parts(work: Path) -> list[str]:
    return sorted(p.stem for p in parts_folder(work).glob("*.parquet"))


def keyed_scores(path: Path) -> pl.DataFrame:
    """The oracle's rows on (backbone, evaluator, fraction, seed) with score and status, sorted."""
    return read_oracle(path).frame.select(*KEY, "score", "status").sort(KEY)


# ---------------------------------------------------------------------------------- the test
@pytest.mark.slow
def test_sigkill_anywhere_then_resume_gives_the_uninterrupted_oracle(sweep_home, tmp_path):
    home = sweep_home
    t_start = time.perf_counter()
    names = NAMES[:2]  # two backbones keep the test near 1.5 minutes on 2 busy cores
    whole = cli("precompute.cli", *run_args(home, tmp_path / "whole", names=names), cwd=home.cwd)
    assert whole.returncode == 0, whole.stderr
    t_whole = time.perf_counter() - t_start

    work = tmp_path / "killed"
    args = run_args(home, work, names=names)
    rng = random.Random(20261123)
    # (what, fault plan or None for an outside kill at a random time)
    schedule = [("extract-batch", "extract-batch:5"),   # 5th batch of the first backbone
                ("random", None),
                ("mlp-epoch", "mlp-epoch:300"),         # mid-way through the 2nd head trained
                ("part-write", "part-write:1"),         # first part: .tmp written, not renamed
                ("part-write", "part-write:2"),         # one part renamed, the next one not
                ("random", None)]
    log = []
    for what, fault in schedule:
        before = done_parts(work) if parts_folder(work).exists() else []
        proc = spawn("precompute.cli", *args, cwd=home.cwd, fault=fault)
        if fault is None:  # at a random time once the run holds a backbone (past start-up)
            while proc.poll() is None and not list(parts_folder(work).glob("*.lock")):
                time.sleep(0.05)
            delay = rng.uniform(0.0, 2.5)
            time.sleep(delay)
            assert proc.poll() is None, f"the run ended before the random kill ({delay:.1f} s)"
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, (what, proc.returncode, err[-2000:])
        after = done_parts(work) if parts_folder(work).exists() else []
        assert set(before) <= set(after)  # finished parts survive a kill
        tmp = [p.name for p in work.rglob("*.tmp")]
        locks = [p.name for p in work.rglob("*.lock")]
        if what == "part-write":
            # killed with the part's complete temporary file not yet renamed, holding its lock
            assert [t for t in tmp if ".parquet." in t], tmp
            assert len(after) == len(before) + (fault == "part-write:2"), (before, after)
            assert len(locks) == 1, locks
        if what in ("extract-batch", "mlp-epoch"):
            assert after == before and len(locks) == 1, (after, before, locks)
        log.append((what, fault or f"lock + {delay:.1f} s", len(after), tmp, locks))

    resumed = cli("precompute.cli", *args, cwd=home.cwd)
    assert resumed.returncode == 0, resumed.stderr
    assert leftovers(work) == [], leftovers(work)
    assert done_parts(work) == sorted(SAFE[:2])

    a, b = keyed_scores(tmp_path / "whole" / "oracles" / "digits.parquet"), \
        keyed_scores(work / "oracles" / "digits.parquet")
    assert a.height == len(names) * 2 * 3 * 2 and (a["status"] == "ok").all()
    assert a.equals(b), pl.concat([a, b]).unique(keep="none")  # bit-identical scores
    seconds = read_oracle(work / "oracles" / "digits.parquet").frame["seconds"]
    assert seconds.null_count() == 0 and (seconds > 0).all()
    print(f"\nkill test: uninterrupted run {t_whole:.1f} s; {len(log)} kills, "
          f"{len(log) + 1} resumed runs, total {time.perf_counter() - t_start:.1f} s")
    for what, how, n_done, tmp, locks in log:
        print(f"  {what:<14} {how:<22} parts done {n_done}, tmp {len(tmp)}, locks {len(locks)}")
    print(f"  oracle rows equal on {KEY} + score: {a.height} rows")


def test_fault_plan_parsing_and_counting(monkeypatch):
    assert faults.parse(None) == {} and faults.parse("") == {}
    assert faults.parse("part-write:2, mlp-epoch:40:INT") == {
        "part-write": (2, signal.SIGKILL), "mlp-epoch": (40, signal.SIGINT)}
    for bad in ("nowhere:1", "part-write", "part-write:0", "part-write:x", "a:1:2:3"):
        with pytest.raises(ValueError, match="POINT:N"):
            faults.parse(bad)
    sent = []
    monkeypatch.setattr(faults, "_PLAN", {"extract-batch": (3, signal.SIGUSR1)})
    monkeypatch.setattr(faults, "_SEEN", {})
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    for _ in range(5):
        faults.point("extract-batch")
        faults.point("part-write")  # not planned: nothing
    assert sent == [(os.getpid(), signal.SIGUSR1)]  # the 3rd visit only
