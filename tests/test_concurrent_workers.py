"""Two local ``precompute run`` workers at once, as two shards or on the same shard, then
``precompute merge``: a complete oracle, every backbone computed exactly once."""
from __future__ import annotations

import re

import pytest
from test_kill_resume import (
    CHEAP,
    NAMES,
    cli,
    leftovers,
    run_args,
    spawn,
    sweep_home,  # noqa: F401  (fixture)
)

from shared.oracle import KEY, read_oracle

SUMMARY = re.compile(r"sweep done: (\d+) ok, (\d+) failed, (\d+) skipped \(already done\)"
                     r"(?:, (\d+) locked by another worker)?")


def counts(stdout: str) -> dict[str, int]:
    m = SUMMARY.search(stdout)
    assert m, stdout
    return dict(zip(("ok", "failed", "skipped", "locked"), (int(g or 0) for g in m.groups())))


def run_together(home, work, shards: list[str]) -> list[tuple[dict[str, int], str]]:
    """Start one worker per ``--shard`` value at once (Popen all, then wait)."""
    procs = [spawn("precompute.cli", *run_args(home, work, "--shard", s, protocol=CHEAP),
                   cwd=home.cwd) for s in shards]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        out.append((counts(stdout), stdout))
    return out


def merged_oracle(home, work):
    m = cli("precompute.cli", "merge", "--dataset", "digits", "--parts-dir", work / "parts",
            "--out", work / "oracles", cwd=home.cwd)
    assert m.returncode == 0, m.stderr
    assert f"{len(NAMES)} backbones" in m.stdout and "0 failed, 0 missing" in m.stdout, m.stdout
    oracle = read_oracle(work / "oracles" / "digits.parquet")  # validates
    frame = oracle.frame
    assert sorted(frame["backbone"].unique()) == sorted(NAMES)
    assert frame.select(KEY).is_duplicated().sum() == 0
    per = frame.group_by("backbone").len()["len"].to_list()
    assert per == [1] * len(NAMES)  # CHEAP: one (mlp, 1.0, seed 0) row per backbone
    assert (frame["status"] == "ok").all() and oracle.true_scores().height == len(NAMES)
    assert leftovers(work) == []
    return oracle


@pytest.mark.slow
def test_two_shards_at_once_then_merge(sweep_home, tmp_path):
    res = run_together(sweep_home, tmp_path, ["1/2", "2/2"])
    for i, (c, stdout) in enumerate(res, 1):
        assert f"shard {i}/2 done" in stdout and c["failed"] == 0 and c["locked"] == 0
    assert sum(c["ok"] for c, _ in res) == len(NAMES)
    assert all(c["ok"] >= 1 for c, _ in res)  # both shards had work
    merged_oracle(sweep_home, tmp_path)


@pytest.mark.slow
def test_two_workers_on_the_same_shard_never_duplicate_work(sweep_home, tmp_path):
    res = run_together(sweep_home, tmp_path, ["1/1", "1/1"])
    for c, _ in res:  # each backbone: computed here, done by the other, or held by the other
        assert c["ok"] + c["skipped"] + c["locked"] == len(NAMES) and c["failed"] == 0
    assert sum(c["ok"] for c, _ in res) == len(NAMES), res  # never computed twice
    print("\nsame shard:", [c for c, _ in res])
    merged_oracle(sweep_home, tmp_path)
