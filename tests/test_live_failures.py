"""Live workers you can trust (issue 23, items 1-2): failures told apart, every GPU used.

* An exception in an evaluation is a failed evaluation — recorded with its error, charged the
  measured seconds it used, its worker free again — and the search goes on, at K = 1 as at K = 2.
* A dead worker loses only its evaluation in flight, run once more on another worker; a task whose
  second worker dies too is lost: not counted, holding no worker on the timeline (K workers remain).
* Every evaluation failed / lost: the error says why, never "raise --budget".
* One GPU discovery for ``precompute run`` and ``precompute search``; worker i of ``--device cuda:N``
  gets GPU N+i (seen as ``cuda:0``); more workers than GPUs is refused in one line.

The timelines are checked against :func:`simulate.reference.workers_loop` (a literal event loop that
shares no code with the search's :class:`shared.workers.Timeline`).  GPU discovery is stubbed through
``CUDA_VISIBLE_DEVICES`` and torch's device count: no test needs a GPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from test_kill_resume import NAMES, cli_env, sweep_home  # noqa: F401  (fixture)
from test_search import config, fake_pool, fakes, search_args, two_threads  # noqa: F401  (fixtures)
from test_sweep import data_cache  # noqa: F401  (fixture)

import precompute.search.workers as workers_mod
import precompute.sweep as sweep_mod
from precompute import clock, faults
from precompute import gpus as G
from precompute import parts as P
from precompute.search import SearchError, run_search, search_order
from precompute.search.loop import worker_gpus
from precompute.search.workers import DaskWorkers, Done, Failed, Lost, Task, local_cluster, run_task
from shared.errors import VibesError
from simulate.engine import NO_SELECTION
from simulate.reference import workers_loop

pytestmark = [pytest.mark.filterwarnings("ignore:fraction .* keeps .* image:UserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]


# --------------------------------------------------------------------------- helpers
def assert_timeline_is_the_reference(doc: dict) -> None:
    """The counted evaluations' charges, in order, on K workers by the reference loop: at every end
    of the trace the same number of evaluations ended and the same incumbent was selected."""
    trace, k = doc["trace"], doc["workers"]
    names = sorted({e["backbone"] for e in trace})
    ids = {n: i for i, n in enumerate(names)}
    backbone = np.array([[ids[e["backbone"]] for e in trace]])
    score = np.array([[-np.inf if e["score"] is None else e["score"] for e in trace]])
    cost = np.array([[e["seconds"] for e in trace]])
    ends = sorted({e["end_s"] for e in trace})
    ref = workers_loop(backbone, None, score, cost, k, ends)
    for j, t in enumerate(ends):
        assert ref.n_evaluated[0, j] == sum(e["end_s"] <= t for e in trace), t
        want = next(e["incumbent"] for e in trace if e["end_s"] == t)
        assert ref.selected[0, j] == (NO_SELECTION if want is None else ids[want]), t


def part_row(doc: dict, entry: dict) -> dict:
    frame = P.read_part(P.part_path(Path(doc["parts_dir"]), "digits", entry["backbone"]))[0]
    return frame.row(0, named=True)


def engine_of(k: int, two_threads):  # noqa: F811
    return None if k == 1 else two_threads


class Scripted:
    """K workers of this process: a task runs when submitted (``run_task``) unless the script says
    its backbone is ``lost`` (its worker died twice) or ``failed`` (Dask gave back an exception)."""

    name = "scripted"

    def __init__(self, k: int, script: dict[str, str]):
        self.k, self.script, self._done = k, script, []

    @property
    def busy(self) -> int:
        return len(self._done)

    def submit(self, task: Task) -> None:
        what = self.script.get(task.backbone)
        if what == "lost":
            self._done.append(Lost(task.index, "its worker died 2 times (KilledWorker: probe)"))
        elif what == "failed":
            self._done.append(Failed(task.index, "CancelledError: probe", 0.25))
        else:
            self._done.append(run_task(task))

    def wait(self):
        return self._done.pop(0)

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------ fault plan
def test_fault_plan_raise_action(monkeypatch):
    assert faults.parse("backbone-load:3:RAISE, mlp-epoch:2:raise") == {
        "backbone-load": (3, faults.RAISE), "mlp-epoch": (2, faults.RAISE)}
    with pytest.raises(ValueError, match="neither a signal"):
        faults.parse("backbone-load:3:EXPLODE")
    monkeypatch.setattr(faults, "_PLAN", {"backbone-load": (3, faults.RAISE)})
    monkeypatch.setattr(faults, "_SEEN", {})
    faults.point("backbone-load")
    faults.point("backbone-load")
    with pytest.raises(faults.InjectedFault, match=r"injected fault at backbone-load \(visit 3\)"):
        faults.point("backbone-load")
    faults.point("backbone-load")  # the 3rd visit only


# ------------------------------------------------------------------ failed evaluations
@pytest.mark.parametrize("k", [1, 2])
def test_an_injected_exception_is_one_failed_evaluation_and_the_search_goes_on(fakes, data_cache, tmp_path,  # noqa: F811
                                                                              two_threads, monkeypatch, k):
    """``backbone-load:3:RAISE``: the 3rd backbone loaded fails; it is recorded (trace, search.json,
    its part) with its error and charged the seconds it measured (its load), and every other
    backbone is evaluated, on both workers after the failure."""
    monkeypatch.setattr(faults, "_PLAN", {"backbone-load": (3, faults.RAISE)})
    monkeypatch.setattr(faults, "_SEEN", {})
    pool = fake_pool(8, 0)
    res = run_search(config(tmp_path, data_cache, workers=k), pool, show_progress=False, echo=None,
                     workers=engine_of(k, two_threads))
    doc = res.doc
    failed = [e for e in doc["trace"] if e["status"] == "failed"]
    assert len(failed) == 1 and doc["n_failed"] == 1, doc["trace"]
    bad = failed[0]
    assert bad["error"] == "InjectedFault: injected fault at backbone-load (visit 3)" and bad["score"] is None
    row = part_row(doc, bad)
    assert row["status"] == "failed" and row["error"] == bad["error"]
    assert bad["seconds"] == row["seconds"] == row["load_seconds"] > 0  # what it measured: the load
    assert doc["finished"] == "pool" and doc["n_evaluated"] == pool.height and doc["not_counted"] == []
    assert doc["incumbent"] is not None
    if k == 2:
        after = {e["worker"] for e in doc["trace"] if e["start_s"] >= bad["end_s"]}
        assert after == {0, 1}  # the failed evaluation's worker is free again
    assert_timeline_is_the_reference(doc)


@pytest.mark.parametrize("k", [1, 2])
def test_an_exception_outside_the_sweep_is_a_failed_evaluation_charged_its_measured_seconds(
        fakes, data_cache, tmp_path, two_threads, monkeypatch, k):  # noqa: F811
    """An exception ``evaluate_backbone`` does not handle (here: after a measured span of 0.05 s) used
    to end a one-worker search and hold a worker forever on two; it is a failed evaluation charged
    those measured seconds, with its error's text on one line."""
    pool = fake_pool(6, 0)
    victim = search_order(pool, "cycling", "mlp@0.1", 0)[1]
    real = sweep_mod.evaluate_backbone

    def flaky(cfg, backbone, *a, **kw):
        if backbone == victim:
            with clock.span():
                time.sleep(0.05)
            raise OSError("disk full\nwhile writing")
        return real(cfg, backbone, *a, **kw)

    monkeypatch.setattr(sweep_mod, "evaluate_backbone", flaky)
    doc = run_search(config(tmp_path, data_cache, workers=k), pool, show_progress=False, echo=None,
                     workers=engine_of(k, two_threads)).doc
    bad = [e for e in doc["trace"] if e["status"] == "failed"]
    assert [e["backbone"] for e in bad] == [victim]
    assert bad[0]["error"] == "OSError: disk full while writing"
    assert 0.05 <= bad[0]["seconds"] == part_row(doc, bad[0])["seconds"] <= bad[0]["wall_seconds"]
    assert doc["finished"] == "pool" and doc["n_evaluated"] == pool.height
    assert_timeline_is_the_reference(doc)


def test_an_exception_dask_gives_back_is_a_failed_evaluation(fakes, data_cache, tmp_path, two_threads):  # noqa: F811
    """Dask's own exception for a task (not a death) is a failed evaluation charged nothing, and when
    every evaluation fails so, the search's error names that exception."""

    def broken(task):
        raise ValueError("no such device on this worker")

    two_threads.run = broken
    try:
        with pytest.raises(SearchError) as err:
            run_search(config(tmp_path, data_cache, workers=2), fake_pool(3, 0), show_progress=False, echo=None,
                       workers=two_threads)
    finally:
        two_threads.run = run_task
    msg = str(err.value)
    assert msg.startswith("every evaluation failed (3), with ValueError: no such device on this worker;"), msg
    assert "budget" not in msg and "\n" not in msg
    doc = json.loads((tmp_path / "search" / "search.json").read_text())  # recorded first
    assert doc["n_failed"] == 3 and all(e["seconds"] == 0.0 for e in doc["trace"])


def test_every_evaluation_failing_names_the_error(fakes, data_cache, tmp_path):  # noqa: F811
    with pytest.raises(SearchError) as err:
        run_search(config(tmp_path, data_cache), fake_pool(0, 3), show_progress=False, echo=None)
    msg = str(err.value)
    assert msg.startswith("every evaluation failed (3), with RuntimeError: cannot build boom_"), msg
    assert "raise --budget" not in msg
    assert json.loads((tmp_path / "search" / "search.json").read_text())["n_failed"] == 3


# ----------------------------------------------------------------------- dead workers
def test_a_lost_evaluation_holds_no_worker_and_a_rerun_evaluates_it(fakes, data_cache, tmp_path):  # noqa: F811
    """K = 2: the 2nd evaluation's workers both die (lost), the 4th comes back as Dask's exception
    (failed, charged 0).  The lost one is not counted and holds no worker: the counted ones are the
    reference loop's timeline of two workers; the rerun evaluates just the lost one."""
    pool = fake_pool(7, 0)
    order = search_order(pool, "cycling", "mlp@0.1", 0)
    engine = Scripted(2, {order[1]: "lost", order[3]: "failed"})
    doc = run_search(config(tmp_path, data_cache, workers=2), pool, show_progress=False, echo=None,
                     workers=engine).doc
    assert [e["backbone"] for e in doc["trace"]] == [b for b in order if b != order[1]]
    assert [(s["backbone"], s["reason"]) for s in doc["not_counted"]] == [(order[1], "lost")]
    assert "KilledWorker" in doc["not_counted"][0]["error"] and doc["finished"] == "budget"
    failed = next(e for e in doc["trace"] if e["backbone"] == order[3])
    assert failed["status"] == "failed" and failed["seconds"] == 0.0 and failed["error"] == "CancelledError: probe"
    assert {e["worker"] for e in doc["trace"][1:]} == {0, 1}
    assert_timeline_is_the_reference(doc)
    assert not P.part_path(Path(doc["parts_dir"]), "digits", order[1]).exists()
    again = run_search(config(tmp_path, data_cache, workers=2), pool, show_progress=False, echo=None,
                       workers=Scripted(2, {}))
    assert again.new_evaluations == 1 and again.doc["finished"] == "pool" and again.doc["not_counted"] == []


def test_every_evaluation_lost_says_so_and_writes_nothing(fakes, data_cache, tmp_path):  # noqa: F811
    pool = fake_pool(3, 0)
    engine = Scripted(2, {b: "lost" for b in pool["backbone"]})
    with pytest.raises(SearchError) as err:
        run_search(config(tmp_path, data_cache, workers=2), pool, show_progress=False, echo=None, workers=engine)
    msg = str(err.value)
    assert msg.startswith("every evaluation was lost (3): its worker died 2 times (KilledWorker"), msg
    assert "raise --budget" not in msg and not (tmp_path / "search").exists()


@dataclass
class ProbeConfig:
    """What a probe task carries for a sweep configuration: only a device."""

    device: str = "cpu"


def probe_task(index: int, folder: Path, what: str | None, seconds: float) -> Task:
    return Task(index, f"probe-{index}", 1.0, ProbeConfig(), {}, seconds, prior=what, keep=str(folder))


@pytest.mark.slow
def test_a_killed_worker_is_retried_once_on_another_worker(tmp_path, monkeypatch):
    """Two real worker processes: a task that SIGKILLs its worker runs once more on another worker
    process and ends (``retries`` = 1); the other worker's task is untouched; a task that kills every
    worker it runs on is lost after exactly two attempts, and both workers are up again after."""
    import worker_probe

    tests_dir = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p))
    engine = DaskWorkers(local_cluster(2, "cpu"), 2, "2 processes", threads=1)
    try:
        engine.run = worker_probe.die_once
        engine.submit(probe_task(0, tmp_path, "die", 0.2))
        engine.submit(probe_task(1, tmp_path, None, 1.0))
        got = {d.index: d for d in (engine.wait(), engine.wait())}
        assert all(isinstance(d, Done) for d in got.values()), got
        died, rerun = (tmp_path / "attempts-0").read_text().split()
        assert died != rerun == str(got[0].stopped["pid"])  # the retry ran in another worker process
        assert got[0].retries == 1 and got[1].retries == 0
        assert (tmp_path / "attempts-1").read_text().split() == [str(got[1].stopped["pid"])]
        engine.run = worker_probe.die_always
        engine.submit(probe_task(2, tmp_path, None, 0.0))
        lost = engine.wait()
        assert isinstance(lost, Lost) and lost.index == 2 and "KilledWorker" in lost.error
        assert len((tmp_path / "attempts-2").read_text().split()) == 2  # tried once more, not again
        engine.client.wait_for_workers(2, timeout=120)  # the nannies restart them: K workers remain
        engine.run = worker_probe.die_once
        engine.submit(probe_task(3, tmp_path, None, 0.0))
        assert isinstance(engine.wait(), Done)
    finally:
        engine.close()


@pytest.mark.slow
def test_cli_two_workers_with_a_raising_evaluation_go_on(sweep_home, tmp_path):  # noqa: F811
    """The real command on two worker processes with ``backbone-load:2:RAISE`` in each: each
    worker's 2nd backbone fails, recorded with its charge, and the search evaluates the whole pool."""
    home = sweep_home
    env = cli_env(**{faults.ENV: "backbone-load:2:RAISE"})
    out = tmp_path / "raise"
    proc = subprocess.run([sys.executable, "-m", "precompute.cli", *map(str, search_args(
        home, out, "--workers", "2", evaluator="mlp"))], cwd=home.cwd, capture_output=True, text=True,
        timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "search.json").read_text())
    assert doc["finished"] == "pool" and doc["n_evaluated"] == len(NAMES) and doc["not_counted"] == []
    failed = [e for e in doc["trace"] if e["status"] == "failed"]
    assert failed and all(e["error"].startswith("InjectedFault: injected fault at backbone-load (visit 2)")
                          and e["seconds"] == part_row(doc, e)["load_seconds"] > 0 for e in failed)
    assert_timeline_is_the_reference(doc)


# ------------------------------------------------------------------------------ GPUs
def test_one_gpu_discovery_for_both_commands(monkeypatch):
    import torch

    from precompute import launch

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert G.visible_gpus() == launch.local_gpus() == ["0", "1", "2"]
    for visible, want in (("3,5", ["3", "5"]), ("GPU-1a,GPU-2b", ["GPU-1a", "GPU-2b"]), ("", []), ("-1", []),
                          ("0,-1,2", ["0"]), (" 1 , 2 ", ["1", "2"])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert G.visible_gpus() == launch.local_gpus() == want, visible
    assert not hasattr(workers_mod, "_gpus")  # the search has no discovery of its own


def test_each_worker_gets_its_own_gpu_from_the_device(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert G.gpus_for("cuda:1", 2) == ["1", "2"]
    assert G.gpus_for("cuda", 4) == G.gpus_for("cuda:0", 4) == ["0", "1", "2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # cuda:1 in this process is physical GPU 5
    assert G.gpus_for("cuda:1", 1) == ["5"]
    with pytest.raises(VibesError, match=r"^--workers 2 on --device cuda:1 gives each worker its own GPU "
                                         r"\(cuda:1 \.\. cuda:2\), but this machine has 2 visible GPU\(s\) "
                                         r"\(3,5\); use --workers 1 or fewer$"):
        G.gpus_for("cuda:1", 2)
    with pytest.raises(VibesError, match="not a CUDA device"):
        G.gpus_for("cpu", 2)


def test_search_refuses_more_workers_than_gpus_before_writing(data_cache, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert worker_gpus(config(tmp_path, data_cache, workers=2, device="cuda:0")) == ["0", "1"]
    assert worker_gpus(config(tmp_path, data_cache, workers=1, device="cuda:1")) is None  # one worker: cuda:1 itself
    assert worker_gpus(config(tmp_path, data_cache, workers=2, device="cpu")) is None
    for device, k in (("cuda", 3), ("cuda:1", 2)):
        with pytest.raises(SearchError, match=rf"^--workers {k} on --device {device} gives each worker its own "
                                              r"GPU .* 2 visible GPU\(s\) \(0,1\); use --workers \d or fewer$"):
            run_search(config(tmp_path, data_cache, workers=k, device=device), fake_pool(3, 0),
                       show_progress=False, echo=None)
        assert not (tmp_path / "search").exists()


class Recorder:
    """Stands in for a cluster class: records what it was made with."""

    made: list = []

    def __init__(self, *args, **kwargs):
        Recorder.made.append((args, kwargs))


def test_local_cluster_one_process_per_gpu_and_dask_cuda_where_installed(monkeypatch):
    import distributed

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    monkeypatch.setattr(distributed, "SpecCluster", Recorder)
    monkeypatch.setattr(workers_mod, "_cuda_cluster_class", lambda: None)
    Recorder.made = []
    local_cluster(2, "cuda:1")
    specs = Recorder.made[0][1]["workers"]
    envs = [specs[f"worker-{i}"]["options"]["env"] for i in range(2)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["1", "2"]
    assert all("OMP_NUM_THREADS" not in e for e in envs)  # one torch thread: CPU workers only
    Recorder.made = []
    local_cluster(2, "cpu")
    cpu_envs = [s["options"]["env"] for s in Recorder.made[0][1]["workers"].values()]
    assert all(e["OMP_NUM_THREADS"] == "1" and e["CUDA_VISIBLE_DEVICES"] == "" for e in cpu_envs)
    # dask-cuda installed: its LocalCUDACluster, over the same GPUs (it gives each worker its own)
    monkeypatch.setattr(workers_mod, "_cuda_cluster_class", lambda: Recorder)
    Recorder.made = []
    local_cluster(2, "cuda:1")
    kw = Recorder.made[0][1]
    assert kw["CUDA_VISIBLE_DEVICES"] == "1,2" and kw["n_workers"] == 2 and kw["resources"] == {"slot": 1}
    assert kw["threads_per_worker"] == 1 and "CUDA_VISIBLE_DEVICES" not in kw["env"]


def test_gpu_workers_run_their_tasks_on_their_own_gpu(monkeypatch):
    """``--device cuda:1 --workers 2``: the workers see GPUs 1 and 2 each as ``cuda:0``; every task
    runs on ``cuda:0`` there (the device it once failed on was cuda:1, which no worker has) with
    torch's own threads; CPU workers' tasks get one thread."""
    made = {}

    class Engine:
        def __init__(self, cluster, k, name, device=None, threads=None, wait_timeout_s=None):
            made.update(k=k, name=name, device=device, threads=threads)

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    monkeypatch.setattr(workers_mod, "local_cluster", lambda k, device, gpus=None: ("cluster", k, device, gpus))
    monkeypatch.setattr(workers_mod, "DaskWorkers", Engine)
    workers_mod.local_workers(2, "cuda:1")
    assert made == {"k": 2, "name": "2 local Dask worker processes on GPUs 1,2", "device": "cuda:0", "threads": None}
    workers_mod.local_workers(2, "cpu")
    assert made["device"] is None and made["threads"] == 1


def test_two_searches_on_one_machine_share_no_port():
    """Dask's scheduler serves HTTP (health, metrics) even without a dashboard, at 8787 by default: with
    that port taken (another search, a notebook's cluster) a search warned "Port 8787 is already in use".
    Taken here, the cluster starts on another port without a warning."""
    import socket
    import warnings

    held = socket.socket()
    try:
        held.bind(("", 8787))  # where another process holds it already, it is just as taken
        held.listen()
    except OSError:
        pass
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            cluster = local_cluster(1, "cpu", processes=False)
        try:
            port = cluster.scheduler.http_server.port
        finally:
            cluster.close()
    finally:
        held.close()
    assert not [w for w in seen if "already in use" in str(w.message)], [str(w.message) for w in seen]
    assert port != 8787, port


def test_dask_workers_give_each_task_the_workers_device_and_threads():
    def report(task):
        return Done(task.index, None, 0.0, stopped={"device": task.scfg.device, "threads": task.threads})

    engine = DaskWorkers(local_cluster(2, "cpu", processes=False), 2, "2 threads", device="cuda:0", threads=None)
    try:
        engine.run = report
        scfg = ProbeConfig("cuda:1")
        engine.submit(Task(0, "a", 1.0, scfg, {}, 1.0))
        engine.submit(Task(1, "b", 1.0, scfg, {}, 1.0, threads=3))
        got = sorted((d.index, d.stopped["device"], d.stopped["threads"]) for d in (engine.wait(), engine.wait()))
    finally:
        engine.close()
    assert got == [(0, "cuda:0", None), (1, "cuda:0", 3)] and scfg.device == "cuda:1"
