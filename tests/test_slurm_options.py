"""One cluster story (issue 23, item 3): ``precompute run --launcher slurm`` (submitit's job array)
and ``precompute search --cluster slurm`` (dask-jobqueue's workers) take the same Slurm options into
one :class:`precompute.slurm.SlurmOptions`, and both job scripts carry them; a search's walltime must
cover its budget; no wait on a cluster is without a timeout.  No Slurm here: the scripts are rendered,
nothing is submitted."""
from __future__ import annotations

import re
import threading

import pytest
from test_launch import fake_slurm  # noqa: F401  (fixture)
from test_search import fake_pool
from test_sweep import data_cache, pool_frame  # noqa: F401  (fixture)

import precompute.cli.search as search_cli
import precompute.search.loop as loop_mod
from precompute.cli import main
from precompute.launch import wait_jobs
from precompute.search import WorkersTimeout
from precompute.search.workers import DaskWorkers, Task, _scheduler_config, local_cluster
from precompute.slurm import SlurmOptions
from shared.errors import VibesError

SLURM = ["--partition", "gpu", "--time-limit", "90min", "--cpus-per-job", "6", "--mem-gb", "24",
         "--gpus-per-job", "2", "--slurm-arg", "--account=proj", "--slurm-arg", "--qos=high"]
#: each engine's spelling of a directive -> one name
SPELLING = {"p": "partition", "partition": "partition", "t": "time", "time": "time", "cpus-per-task": "cpus",
            "mem": "mem", "gres": "gres", "account": "account", "qos": "qos"}


def directives(script: str) -> dict[str, str]:
    """``#SBATCH`` lines as {name: value}, each engine's spelling read the same: the time in minutes,
    the memory in GiB (Slurm's G)."""
    out = {}
    for key, value in re.findall(r"^#SBATCH -{1,2}([\w-]+)[= ]?(.*)$", script, re.M):
        if key in SPELLING:
            out[SPELLING[key]] = value.strip()
    if ":" in out.get("time", ""):
        h, m, s = map(int, out["time"].split(":"))
        out["time"] = str(h * 60 + m + (s > 0))
    out["mem"] = re.sub(r"G(B)?$", "", out["mem"])
    return out


def sweep_script(tmp_path, fake_slurm, capsys, *options) -> str:  # noqa: F811
    pool = tmp_path / "pool.parquet"
    pool_frame(["fake_1.a", "fake_2.b"]).write_parquet(pool)
    code = main(["run", "--dataset", "digits", "--pool", str(pool), "--weights", "random", "--parts-dir",
                 str(tmp_path / "parts"), "--launcher", "slurm", "--shards", "2", "--no-wait", *options])
    assert code == 0, capsys.readouterr().err
    ex = fake_slurm["executor"]
    ex.parameters["map_count"] = 2
    return ex._make_submission_file_text("python -u -m submitit.core._submit X", "uid")


def search_options(tmp_path, data_cache, monkeypatch, *options) -> SlurmOptions:  # noqa: F811
    """What ``precompute search --cluster slurm`` hands dask-jobqueue (caught before any job starts)."""
    got = {}

    def caught(k, options, device, wait_timeout_s):
        got.update(k=k, options=options, wait=wait_timeout_s)
        raise VibesError("caught before submitting")

    monkeypatch.setattr(loop_mod, "slurm_workers", caught)
    monkeypatch.setattr(search_cli.pool_mod, "resolve_pool", lambda *a, **k: fake_pool(3, 0))
    code = main(["search", "--dataset", "digits", "--weights", "random", "--budget", "1h", "--strategy", "cycling",
                 "--evaluator", "mlp@0.1", "--device", "cpu", "--cache-dir", data_cache, "--no-progress",
                 "--out", str(tmp_path / "search"), "--cluster", "slurm", "--workers", "3", *options])
    assert code == 2 and got["k"] == 3
    return got["options"]


def test_both_job_scripts_carry_the_same_options(tmp_path, data_cache, fake_slurm, capsys, monkeypatch):  # noqa: F811
    sweep = directives(sweep_script(tmp_path, fake_slurm, capsys, *SLURM))
    opts = search_options(tmp_path, data_cache, monkeypatch, *SLURM)
    cluster = opts.jobqueue_cluster(["--resources", "slot=1"], _scheduler_config)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    search = directives(script)
    want = {"partition": "gpu", "time": "90", "cpus": "6", "mem": "24", "gres": "gpu:2", "account": "proj",
            "qos": "high"}
    assert sweep == want, sweep
    assert search == want, search
    assert "--nthreads 1" in script and "--resources slot=1" in script  # one evaluation at a time per worker
    assert opts == SlurmOptions("gpu", 5400.0, 6, 24.0, 2, ("--account=proj", "--qos=high"), "vibes-search")


def test_old_spellings_still_work_and_say_what_to_write(tmp_path, fake_slurm, capsys):  # noqa: F811
    old = ["--partition", "gpu", "--time-limit", "90min", "--cpus-per-task", "6", "--mem-gb", "24",
           "--gpus-per-task", "2", "--sbatch-arg", "account=proj", "--sbatch-arg", "qos=high"]
    script = sweep_script(tmp_path, fake_slurm, capsys, *old)
    assert directives(script)["gres"] == "gpu:2" and directives(script)["account"] == "proj"
    err = capsys.readouterr().err
    for note in ("note: --cpus-per-task is deprecated; write --cpus-per-job",
                 "note: --gpus-per-task is deprecated; write --gpus-per-job",
                 "note: --sbatch-arg is deprecated; write --slurm-arg --KEY=VALUE"):
        assert note in err, err
    code = main(["run", "--dataset", "digits", "--launcher", "slurm", "--gpus-per-job", "1", "--gpus-per-task", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--gpus-per-job is given twice (--gpus-per-task)" in err
    assert "--gpus-per-task" not in main_help("run") and "--gpus-per-worker" not in main_help("search")


def main_help(command: str) -> str:
    from click.testing import CliRunner

    from precompute.cli import cli

    return CliRunner().invoke(cli, [command, "--help"]).output


def test_both_commands_list_the_same_slurm_options():
    for command in ("run", "search"):
        text = main_help(command)
        for option in ("--partition", "--time-limit", "--cpus-per-job", "--mem-gb", "--gpus-per-job", "--slurm-arg",
                       "--wait-timeout"):
            assert option in text, (command, option)


def test_a_walltime_shorter_than_the_budget_is_refused_in_one_line(tmp_path, capsys):
    code = main(["search", "--dataset", "digits", "--budget", "5h", "--strategy", "cycling", "--evaluator",
                 "mlp@0.1", "--cluster", "slurm", "--time-limit", "4h", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: --time-limit 4h (each worker's Slurm job) is shorter than --budget 5h")
    assert "give --time-limit 5h or more" in err and not (tmp_path / "s").exists()
    SlurmOptions(time_s=5 * 3600).check_covers(5 * 3600)  # as long as the budget: taken


def test_workers_that_do_not_start_time_out_in_one_line():
    cluster = local_cluster(0, "cpu", processes=False)  # no worker will ever come
    with pytest.raises(WorkersTimeout, match=r"--wait-timeout: 2 worker\(s\) asked for \(none\), 0 started within "
                                             r"0.5 s"):
        DaskWorkers(cluster, 2, "none", wait_timeout_s=0.5)


_RELEASE = threading.Event()


def hung(task):
    """An evaluation that never comes back (until the test releases it)."""
    _RELEASE.wait(30)


def test_an_evaluation_that_never_comes_back_times_out_in_one_line():
    _RELEASE.clear()
    workers = DaskWorkers(local_cluster(1, "cpu", processes=False), 1, "1 thread", wait_timeout_s=0.3)
    workers.run = hung
    try:
        workers.submit(Task(0, "fake_00.t0", 0.1, None, {}, cap=0.2))
        with pytest.raises(WorkersTimeout, match=r"none of the 1 evaluation\(s\) in flight came back within 0.5 s"):
            workers.wait()
    finally:
        _RELEASE.set()
        workers.close()


def test_the_sweeps_wait_times_out_in_one_line():
    class Queued:
        job_id = "9_0"

        def done(self):
            return False

    with pytest.raises(VibesError, match=r"--wait-timeout: 1 of 1 task\(s\) not finished after 0.2 s \(job 9_0 "
                                         r"still running or queued\); they go on and keep their parts: when they "
                                         r"finish, run: precompute merge"):
        wait_jobs([Queued()], timeout_s=0.2, poll_s=0.05, merge_hint="precompute merge --dataset digits")
