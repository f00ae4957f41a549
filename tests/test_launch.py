"""Launchers: a 2-shard sweep through submitit's LocalExecutor end to end, and the Slurm array
submission up to the submitit call (no cluster here)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import submitit
import test_sweep
from submitit.slurm.slurm import SlurmExecutor
from test_sweep import data_cache, pool_frame  # noqa: F401  (fixture)

from precompute import parts as P
from precompute.cli import main
from precompute.launch import ShardTask, submit_shards, wait_jobs
from precompute.slurm import sbatch_line
from precompute.sweep import SweepConfig
from shared.errors import VibesError
from shared.oracle import read_oracle


class FastShardTask(ShardTask):
    """ShardTask with the fast fakes installed inside the (sub)process that runs it."""

    def __call__(self, cfg, pool, shard, shards):
        import precompute.backbone as bm
        import precompute.evaluators as em

        em.EVALUATORS = test_sweep.FAST
        bm.load_backbone = test_sweep.fake_load_backbone
        return super().__call__(cfg, pool, shard, shards)


@pytest.mark.slow
def test_local_launcher_two_shards_end_to_end(tmp_path, data_cache, monkeypatch):
    # the tasks run in fresh python processes, which import FastShardTask from this folder
    tests_dir = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p))
    cfg = SweepConfig("digits", fractions=(1.0, 0.1), seeds=1, evaluators=("mlp", "silhouette"), weights="random",
                      device="cpu", parts_dir=str(tmp_path / "parts"), cache_dir=data_cache)
    pool = pool_frame(["fake_1.a", "fake_2.b", "fake_3.c"], [3.0, 2.0, 1.0])
    jobs = submit_shards(cfg, pool, "local", 2, folder=tmp_path / "logs",
                         task=FastShardTask())
    assert len(jobs) == 2 and all(isinstance(j, submitit.local.local.LocalJob) for j in jobs)
    lines = []
    results = wait_jobs(jobs, echo=lines.append)
    assert [r["shard"] for r in results] == [0, 1]
    written = [set(r["written"]) for r in results]
    assert written[0].isdisjoint(written[1])
    assert written[0] | written[1] == {"fake_1.a", "fake_2.b", "fake_3.c"}
    assert lines[0].startswith("shard 1/2 (job ")
    report = P.merge("digits", cfg.parts_dir, tmp_path / "oracle.parquet")
    assert report.missing == [] and report.failed.height == 0
    assert read_oracle(report.path).true_scores().height == 3
    assert not list((tmp_path / "parts").rglob("*.tmp"))


@pytest.mark.parametrize("visible, expected", [
    ("3,5", ["3", "5"]),  # physical indices, as this process sees them
    ("GPU-1a2b,GPU-3c4d", ["GPU-1a2b", "GPU-3c4d"]),  # UUIDs (set through the task's shell)
])
def test_local_launcher_gives_each_shard_its_own_gpu(tmp_path, monkeypatch, visible, expected):
    from launch_probe import EnvProbe

    tests_dir = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    cfg = SweepConfig("digits", seeds=1, evaluators=("mlp", "silhouette"), weights="random", device="cpu",
                      parts_dir=str(tmp_path / "parts"))
    jobs = submit_shards(cfg, pool_frame(["fake_1.a", "fake_2.b"]), "local", 2, folder=tmp_path / "logs",
                         task=EnvProbe())
    results = wait_jobs(jobs, echo=lambda _: None)
    assert [(r["shard"], r["cuda"]) for r in results] == list(enumerate(expected))


def test_local_gpus_from_torch_and_too_many_shards(tmp_path, monkeypatch):
    import torch

    from precompute.launch import check_local_shards, local_gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert local_gpus() == ["0", "1"]
    cfg = SweepConfig("digits", seeds=1, evaluators=("mlp", "silhouette"), weights="random", device="cpu",
                      parts_dir=str(tmp_path / "parts"))
    with pytest.raises(VibesError, match=r"--shards 3 is more than this machine's 2 GPU\(s\) \(0,1\)"):
        submit_shards(cfg, pool_frame(["fake_1.a"]), "local", 3, folder=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()  # refused before anything was submitted
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert local_gpus() == [] and check_local_shards(4) == []  # CPU only: shards share the CPU
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert local_gpus() == []


def test_run_local_with_more_shards_than_gpus_fails_before_the_pool(capsys, tmp_path, monkeypatch):
    import precompute.pool as pool_mod

    def no_pool(*a, **k):
        raise AssertionError("the pool was built before the arguments were checked")

    monkeypatch.setattr(pool_mod, "resolve_pool", no_pool)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    code = main(["run", "--dataset", "digits", "--weights", "random", "--device", "cpu", "--launcher", "local",
                 "--shards", "3", "--parts-dir", str(tmp_path / "parts")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --launcher local gives each shard its own GPU, but --shards 3")


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """A fake ``srun`` on PATH and a capture of what the Slurm executor would submit."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    captured = {}

    class FakeJob:
        def __init__(self, k):
            self.job_id = f"4242_{k}"

    def process(self, submissions):
        captured["executor"] = self
        captured["submissions"] = submissions
        return [FakeJob(k) for k in range(len(submissions))]

    monkeypatch.setattr(SlurmExecutor, "_internal_process_submissions", process)
    return captured


def test_slurm_submits_one_array_with_resources(capsys, tmp_path, fake_slurm):
    pool = tmp_path / "pool.parquet"
    pool_frame(["fake_1.a", "fake_2.b", "fake_3.c"], [3.0, 2.0, 1.0]).write_parquet(pool)
    code = main(["run", "--dataset", "digits", "--pool", str(pool), "--weights", "random",
                 "--parts-dir", str(tmp_path / "parts"), "--launcher", "slurm", "--shards", "3",
                 "--partition", "gpu", "--gpus-per-job", "1", "--time-limit", "90min",
                 "--array-parallelism", "2", "--cpus-per-job", "6", "--mem-gb", "24",
                 "--slurm-arg", "--account=proj", "--slurm-arg", "--qos=high", "--no-wait",
                 "--seeds", "2", "--fractions", "1.0,0.1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "submitted 3 slurm task(s): job ids 4242_0, 4242_1, 4242_2" in out
    assert "precompute merge --dataset digits" in out
    subs = fake_slurm["submissions"]
    assert len(subs) == 3  # one array of 3 tasks
    for k, sub in enumerate(subs):
        assert isinstance(sub.function, ShardTask)
        cfg, records, shard, shards = sub.args
        assert (shard, shards) == (k, 3)
        assert cfg.dataset == "digits" and cfg.seeds == 2 and cfg.fractions == (1.0, 0.1)
        assert cfg.weights == "random" and cfg.parts_dir == str(tmp_path / "parts")
        assert sorted(r["backbone"] for r in records) == ["fake_1.a", "fake_2.b", "fake_3.c"]
    ex = fake_slurm["executor"]
    p = ex.parameters
    assert p["partition"] == "gpu" and p["gres"] == "gpu:1" and p["time"] == 90
    assert p["cpus_per_task"] == 6 and p["mem"] == "24GB" and p["array_parallelism"] == 2
    assert p["additional_parameters"] == {"account": "proj", "qos": "high"}
    ex.parameters["map_count"] = len(subs)
    sbatch = ex._make_submission_file_text("python -u -m submitit.core._submit X", "uid")
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --time=90",
                 "#SBATCH --gres=gpu:1", "#SBATCH --account=proj", "#SBATCH --qos=high",
                 "#SBATCH --cpus-per-task=6", "#SBATCH --signal=USR2@90"):
        assert line in sbatch, line


def test_checkpoint_requeues_same_task_and_arguments():
    task = ShardTask()
    cfg = SweepConfig("digits")
    delayed = task.checkpoint(cfg, [{"backbone": "a.b"}], 1, 4)
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert delayed.function is task and delayed.args == (cfg, [{"backbone": "a.b"}], 1, 4)
    assert isinstance(task, submitit.helpers.Checkpointable)


def test_slurm_without_cluster_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun anywhere
    pool = tmp_path / "pool.parquet"
    pool_frame(["fake_1.a"]).write_parquet(pool)
    code = main(["run", "--dataset", "digits", "--pool", str(pool), "--launcher", "slurm",
                 "--parts-dir", str(tmp_path / "parts")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --launcher slurm needs a Slurm cluster")
    assert len(err.strip().splitlines()) == 1


def test_slurm_arg_parsing():
    assert sbatch_line("--account=a") == ("account", "a")
    assert sbatch_line("--constraint=a100&80gb") == ("constraint", "a100&80gb")
    assert sbatch_line("account=a") == ("account", "a")  # the old --sbatch-arg spelling
    assert sbatch_line("--exclusive") == ("exclusive", True)
    for bad in ("novalue", "-A proj", "--account proj"):
        with pytest.raises(VibesError, match="--slurm-arg takes one long #SBATCH option"):
            sbatch_line(bad)


def test_wait_reports_crashed_tasks():
    class Bad:
        job_id = "7"

        def done(self):
            return True

        def result(self):
            raise RuntimeError("node died")

    with pytest.raises(VibesError, match="1 of 1 shard task.*node died"):
        wait_jobs([Bad()])
