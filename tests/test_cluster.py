"""Cluster fixes (issue 7, item 8): stale-lock takeover with a heartbeat, race-free among real
processes; files readable by colleagues (the umask is honoured, no 0600 temporary files)."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_sweep import config, data_cache, fast, pool_frame  # noqa: F401  (fixtures)

import precompute.sweep as sweep_mod
from precompute import parts as P
from shared.oracle import Oracle
from tests.conftest import random_oracle

HOUR = 3600.0


def foreign_lock(path: Path, age: float, host: str = "node-17.cluster") -> Path:
    """A lock left by a task on another host, its heartbeat ``age`` seconds old."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{host} 4242 0badc0ffee\n")
    t = time.time() - age
    os.utime(path, (t, t))
    return path


# ------------------------------------------------------------------------------- locks
def test_foreign_lock_with_old_heartbeat_is_taken_over_fresh_one_respected(tmp_path):
    old = foreign_lock(tmp_path / "a.lock", age=HOUR)
    lock = P.BackboneLock(old)
    assert lock.acquire() and lock.owns()
    assert old.read_text().split()[:2] == [socket.gethostname(), str(os.getpid())]
    lock.release()
    assert not old.exists()
    fresh = foreign_lock(tmp_path / "b.lock", age=10.0)  # heartbeat 10 s ago: a live holder
    assert not P.BackboneLock(fresh).acquire()
    assert fresh.read_text().startswith("node-17.cluster 4242")  # untouched
    # just past the threshold it is stale
    assert P.BackboneLock(fresh, stale_after=5.0).acquire()


def test_heartbeat_keeps_a_long_computation_locked(tmp_path):
    """No wall-clock bound: the lock file is aged by hand to what an hour without a heartbeat would
    leave, and the heartbeat is seen to refresh it; once the holder freezes, the same ageing makes
    it stale.  (The wait for a heartbeat only guards against a hang.)"""
    path = tmp_path / "x.lock"
    holder = P.BackboneLock(path, stale_after=60.0, heartbeat=0.05)
    assert holder.acquire()
    old = time.time_ns() - int(HOUR * 1e9)
    os.utime(path, ns=(old, old))  # an hour since the last refresh: stale, were nobody beating
    deadline = time.monotonic() + 120
    while path.stat().st_mtime_ns == old:
        assert time.monotonic() < deadline, "no heartbeat refreshed the lock in 120 s"
        time.sleep(0.01)
    assert not P.BackboneLock(path, stale_after=60.0).acquire()  # refreshed: a live holder's
    holder._stop.set()  # the holder freezes (no heartbeat), e.g. its node is lost
    holder._beat.join(timeout=120)
    assert not holder._beat.is_alive()
    os.utime(path, (time.time() - HOUR,) * 2)  # an hour later
    taker = P.BackboneLock(path, stale_after=60.0)
    assert taker.acquire()
    assert not holder.owns()  # the old holder can tell, and must not write its result
    holder.release()  # never removes the taker's lock
    assert path.exists() and taker.owns()
    taker.release()
    assert not path.exists()


RACER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from precompute.parts import BackboneLock
    folder, rounds = Path(sys.argv[1]), int(sys.argv[2])
    (folder / f"ready.{sys.argv[3]}").touch()
    while not (folder / "go").exists():
        time.sleep(0.001)
    t0 = float((folder / "go").read_text())
    held, got = [], []
    for r in range(rounds):
        while time.time() < t0 + 0.5 * r:
            pass
        lock = BackboneLock(folder / f"r{r}.lock", stale_after=60.0)
        ok = lock.acquire()
        got.append(ok)
        if ok:
            held.append(lock)  # keep holding it: nobody else may get it in this round
    print(json.dumps(got))
""")


@pytest.mark.slow
def test_two_workers_never_both_take_over_a_stale_lock(tmp_path):
    """8 processes race for each of 6 stale foreign locks at the same instant: exactly one wins."""
    n_procs, rounds = 8, 6
    for r in range(rounds):
        foreign_lock(tmp_path / f"r{r}.lock", age=HOUR)
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), str(rounds), str(k)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(n_procs)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("ready.*"))) < n_procs:
        assert time.time() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.05)
    # written whole, then renamed: a racer that sees "go" must never read it half-written (it read '' once)
    (tmp_path / "go.tmp").write_text(str(time.time() + 0.3))
    os.replace(tmp_path / "go.tmp", tmp_path / "go")
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    winners = [sum(res[r] for res in results) for r in range(rounds)]
    assert winners == [1] * rounds, results
    for r in range(rounds):  # the winner's fresh lock replaced the stale one
        assert not (tmp_path / f"r{r}.lock").read_text().startswith("node-17")
    assert not list(tmp_path.glob("*.takeover"))


def test_sweep_takes_over_a_requeued_tasks_lock(tmp_path, data_cache, fast):
    cfg = config(tmp_path, data_cache, seeds=1, fractions=(1.0,))
    folder = P.dataset_dir(cfg.parts_dir, "digits")
    foreign_lock(folder / "fake_r.a.lock", age=HOUR)  # requeued elsewhere long ago
    foreign_lock(folder / "fake_r.b.lock", age=5.0)  # computing elsewhere right now
    s = sweep_mod.run_sweep(cfg, pool_frame(["fake_r.a", "fake_r.b"]), show_progress=False, echo=None)
    assert s.written == ["fake_r.a"] and s.locked == 1
    assert not (folder / "fake_r.a.lock").exists() and (folder / "fake_r.b.lock").exists()


def test_a_worker_that_lost_its_lock_does_not_write(tmp_path, data_cache, fast, monkeypatch):
    real = sweep_mod.evaluate_backbone

    def taken_over_meanwhile(cfg, name, *a, **k):
        res = real(cfg, name, *a, **k)
        P.lock_for(cfg.parts_dir, cfg.dataset, name).path.write_text("node-9 77 othertoken\n")
        return res

    monkeypatch.setattr(sweep_mod, "evaluate_backbone", taken_over_meanwhile)
    cfg = config(tmp_path, data_cache, seeds=1, fractions=(1.0,))
    s = sweep_mod.run_sweep(cfg, pool_frame(["fake_l.a"]), show_progress=False, echo=None)
    assert s.locked == 1 and s.written == [] and not P.part_path(cfg.parts_dir, "digits", "fake_l.a").exists()
    assert P.lock_for(cfg.parts_dir, "digits", "fake_l.a").path.read_text() == "node-9 77 othertoken\n"


# ------------------------------------------------------------------------- permissions
@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def _dataset_cache(path: Path) -> Path:
    from precompute.datasets import ImageSet, _save_cache

    img = np.zeros((2, 4, 4, 3), np.uint8)
    _save_cache(path, ImageSet("toy", img, np.array([0, 1]), img, np.array([0, 1]), ["a", "b"]))
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    oracle = random_oracle()
    written = [
        P.write_part(oracle.frame.head(3), tmp_path / "parts" / "a.parquet", {"x": 1}),
        P.write_manifest(tmp_path / "parts", "toy", ["a"], {}),
        P.save_features(tmp_path / "f.h5", np.zeros((2, 3), np.float16), np.arange(2), 1),
        Oracle(oracle.frame, oracle.meta).write(tmp_path / "o.parquet"),
        Oracle(oracle.frame, oracle.meta).write(tmp_path / "o.h5"),
        _dataset_cache(tmp_path / "cache" / "toy.npz"),
    ]
    for path in written:
        assert mode(Path(path)) == expected, (path, oct(mode(Path(path))))
    assert not list(tmp_path.rglob("*.tmp"))
    assert pl.read_parquet(tmp_path / "o.parquet").height == oracle.frame.height


def test_merged_oracle_and_parts_of_a_sweep_are_0644(tmp_path, data_cache, fast, umask):
    cfg = config(tmp_path, data_cache, seeds=1, fractions=(1.0,))
    sweep_mod.run_sweep(cfg, pool_frame(["fake_m.a"]), show_progress=False, echo=None)
    report = P.merge("digits", cfg.parts_dir, tmp_path / "oracles")
    for path in (P.part_path(cfg.parts_dir, "digits", "fake_m.a"), report.path):
        assert mode(path) == 0o644, (path, oct(mode(path)))
