"""Where a live search's evaluations run: in this process (one worker), or on K workers of an existing
distributed engine, Dask distributed — never a home-made queue.

* :class:`InProcess` — one worker, this process: the evaluation runs when it is submitted.
* :class:`DaskWorkers` over a cluster from :func:`local_cluster` (one worker process per GPU of this
  box, each seeing only its own GPU, as ``cuda:0``: dask-cuda's ``LocalCUDACluster`` where it is
  installed (the ``[gpu]`` extra), else one Dask nanny per GPU with its ``CUDA_VISIBLE_DEVICES``; the
  GPUs are :func:`precompute.gpus.gpus_for` the ``--device``; on a CPU, K processes with one torch
  thread each; ``processes=False`` gives threads of this process, for tests) or
  :func:`slurm_workers` (dask-jobqueue's ``SLURMCluster``: one Slurm job per worker, of the
  :class:`precompute.slurm.SlurmOptions` the sweep's job array takes too).

No wait is without a timeout (``--wait-timeout``): for the workers to start, and for the next
evaluation to come back (the longest cap in flight plus it); either ends in a one-line
:class:`WorkersTimeout`.

Failures are told apart.  An exception inside an evaluation is a *failed evaluation*: the sweep
records a failed row for a backbone problem, and :func:`run_task` turns any other exception into
the same failed row (the error's last line, charged the measured seconds it used); an exception
Dask itself raises for a task comes back as :class:`Failed` (charged 0: nothing was measured).
Either way its worker is free again.  A worker that *dies* (its process killed, its Slurm job ended)
loses only its evaluation in flight: Dask's nanny starts the worker again and the scheduler runs the
task once more (:data:`RETRIES`, ``distributed.scheduler.allowed-failures``) on the next free
worker; a task whose second worker dies too comes back as :class:`Lost`.

Every evaluation is a :class:`Task` run by :func:`run_task` on a worker: the sweep's own
:func:`precompute.sweep.evaluate_backbone` inside :func:`precompute.clock.budget` of the seconds its
measured work may take (``cap``), the dataset decoded once per worker process, kept features read
from and written to the search's folder (shared by the workers: a cluster's file system).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from precompute import clock, sweep
from precompute import datasets as D
from precompute import gpus as G
from precompute import parts as P
from precompute import weights as W
from precompute.slurm import SlurmOptions
from shared.errors import VibesError

#: a task whose worker dies is run once more (on the next free worker); a second death loses it
RETRIES = 1
#: the longest a wait on the workers lasts beyond what the budget explains (``--wait-timeout``)
DEFAULT_WAIT_S = 15 * 60.0


class WorkersTimeout(VibesError):
    """A wait on the workers ran past ``--wait-timeout`` (they did not start, or nothing came back)."""

#: the dataset a worker process decoded, by (name, data_root, cache_dir, download): decoded once
_DATA: dict[tuple, tuple] = {}


@dataclass
class Task:
    """One evaluation: ``backbone`` at ``fraction`` with the one-fraction, one-seed configuration
    ``scfg``; ``cap`` the measured seconds it may take; ``prior`` the kept features of the rung
    below (an incremental promotion) and ``keep`` where to write its own (None: not kept)."""

    index: int
    backbone: str
    fraction: float
    scfg: Any  # sweep.SweepConfig
    pool_row: dict
    cap: float
    prior: str | None = None
    prior_fraction: float | None = None
    prior_extract: float | None = None
    keep: str | None = None
    threads: int | None = None
    seed: int = 0


@dataclass
class Done:
    """A task's outcome: its rows, or where the budget stopped it."""

    index: int
    frame: pl.DataFrame | None
    wall: float
    stopped: dict | None = None
    worker: str = field(default_factory=lambda: f"pid {os.getpid()}")
    retries: int = 0  # times its worker died under it before this run (set by DaskWorkers)


@dataclass
class Failed:
    """A task Dask gave back as an exception (not a death): a failed evaluation, nothing measured."""

    index: int
    error: str
    wall: float = 0.0


@dataclass
class Lost:
    """A task whose worker died, and the worker it was retried on too: not counted (it holds no
    worker on the timeline); a rerun evaluates it again."""

    index: int
    error: str


def failed_frame(scfg, fraction: float, backbone: str, pool_row: dict, error: str,
                 measured: float = 0.0) -> pl.DataFrame:
    """The failed row of one evaluation (the sweep's :func:`~precompute.sweep.failed_rows`), charged
    ``measured`` seconds (nothing is measured apart from the load, so they are its load seconds)."""
    return sweep.failed_rows(replace(scfg, fractions=(fraction,)), backbone, pool_row, error, load_seconds=measured)


def _dataset(scfg) -> tuple:
    key = (scfg.dataset, scfg.data_root, scfg.cache_dir, scfg.download)
    if key not in _DATA:
        ds = D.load_dataset(scfg.dataset, data_root=scfg.data_root, download=scfg.download, cache_dir=scfg.cache_dir)
        _DATA[key] = (ds, np.concatenate([ds.train_images, ds.test_images]), {})
    return _DATA[key]


def save_prior(path: str, prior: sweep.Prior) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with P.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, index=prior.index, features=prior.features.numpy(),
                     extract_seconds=np.float64(prior.extract_seconds))


def load_prior(path: str, extract_seconds: float | None = None) -> sweep.Prior | None:
    import torch

    try:
        with np.load(path) as z:
            return sweep.Prior(z["index"].astype(np.int64), torch.from_numpy(z["features"].copy()),
                               float(z["extract_seconds"] if extract_seconds is None else extract_seconds))
    except (OSError, ValueError, KeyError):
        return None


def run_task(task: Task) -> Done:
    """Run one evaluation (in this process, or on a Dask worker): what the sweep does for one
    backbone, at one fraction and seed, stopped by the clock once its measured seconds pass
    ``task.cap``.  Kept features go to ``task.keep`` before the rows come back.  Any exception is a
    failed evaluation (its failed row, charged the measured seconds it used); only BaseExceptions
    (a Ctrl-C) pass."""
    t0 = time.monotonic()
    meters: list = []
    try:
        return _run_task(task, meters)
    except Exception as exc:  # noqa: BLE001 - a failed evaluation, never the search's end
        measured = meters[-1].spent() if meters else 0.0
        return Done(task.index, failed_frame(task.scfg, task.fraction, task.backbone, task.pool_row,
                                             sweep.error_text(exc), measured), time.monotonic() - t0)


def _run_task(task: Task, meters: list) -> Done:
    import torch

    if task.threads:
        torch.set_num_threads(task.threads)
    scfg = task.scfg
    ds, images, plans = _dataset(scfg)
    if task.fraction not in plans:
        plans[task.fraction] = D.subset_plan(ds, [task.fraction], [task.seed])
    sweep.warm_up(sweep.B.resolve_device(scfg.device))  # once per process, never charged
    if scfg.weights == "pretrained" and scfg.pretrained_file is None:
        try:
            W.ensure_weights(task.backbone)  # a download is never charged
        except Exception:  # noqa: BLE001 - recorded by evaluate_backbone as a failed row
            pass
    prior = None
    if task.prior is not None:
        prior = load_prior(task.prior, task.prior_extract)
        if prior is None:  # lost (deleted, or a kill between the part and the file): extract again, untimed
            prior = _rebuild(task, ds, images, plans)
    cfg = replace(scfg, fractions=(task.fraction,))
    plan = sweep.extraction_plan(plans[task.fraction], (task.fraction,), len(ds.train_labels), len(images),
                                 cfg.needs_test(), None if prior is None else prior.index)
    t0 = time.monotonic()
    try:
        with clock.budget(task.cap) as meter:
            meters.append(meter)
            res = sweep.evaluate_backbone(cfg, task.backbone, task.pool_row, ds, plans[task.fraction], plan, images,
                                          prior=prior, keep=task.keep is not None)
    except clock.OverBudget as stop:
        return Done(task.index, None, time.monotonic() - t0,
                    {"point": stop.where, "measured_s": stop.spent, "cap_s": task.cap, "latency_s": stop.latency})
    wall = time.monotonic() - t0
    if task.keep is not None and res.kept is not None and res.status == "ok":
        save_prior(task.keep, res.kept)  # before the rows come back: a part at f implies its kept features
    return Done(task.index, res.frame, wall)


def _rebuild(task: Task, ds, images, plans) -> sweep.Prior | None:
    """The kept features of the rung below, extracted again outside any budget (their recorded
    ``extract_seconds`` stay what the row says)."""
    f = task.prior_fraction
    if f not in plans:
        plans[f] = D.subset_plan(ds, [f], [task.seed])
    cfg = replace(task.scfg, fractions=(f,))
    plan = sweep.extraction_plan(plans[f], (f,), len(ds.train_labels), len(images), cfg.needs_test())
    res = sweep.evaluate_backbone(cfg, task.backbone, task.pool_row, ds, plans[f], plan, images, keep=True)
    if res.kept is None:
        return None
    save_prior(task.prior, res.kept)
    return sweep.Prior(res.kept.index, res.kept.features, float(task.prior_extract))


# -------------------------------------------------------------------------------- engines
class InProcess:
    """One worker: this process runs each evaluation when it is submitted."""

    k = 1
    name = "this process"

    def __init__(self):
        self._done: list = []

    @property
    def busy(self) -> int:
        return len(self._done)

    def submit(self, task: Task) -> None:
        self._done.append(run_task(task))

    def wait(self):
        return self._done.pop(0)

    def close(self) -> None:
        pass


class DaskWorkers:
    """K workers of a Dask cluster: each task is a Dask task (``client.submit``), one at a time per
    worker (``resources``: every worker holds one ``slot``, every task takes it).  ``device``: the
    device every task runs on there (``cuda:0`` for workers that each see their own GPU: the search's
    ``--device`` names the box's GPUs, not a worker's); ``threads``: torch threads of a task that
    sets none (1 on CPU workers)."""

    def __init__(self, cluster, k: int, name: str, device: str | None = None, threads: int | None = None,
                 wait_timeout_s: float = DEFAULT_WAIT_S):
        from distributed import Client  # lazy: dask only when workers are asked for

        self.cluster, self.k, self.name = cluster, k, name
        self.device, self.threads = device, threads
        self.wait_timeout_s = float(wait_timeout_s)
        self.run = run_task  # what a worker runs for a task
        self._futures: dict = {}
        try:
            self.client = Client(cluster)
            self.client.wait_for_workers(k, timeout=self.wait_timeout_s)
        except (TimeoutError, OSError) as exc:
            self.close()
            started = len(getattr(self.cluster, "workers", {}) or {})
            raise WorkersTimeout(f"--wait-timeout: {k} worker(s) asked for ({name}), {started} started within "
                                 f"{self.wait_timeout_s:g} s ({type(exc).__name__}); nothing was evaluated: on Slurm "
                                 f"the jobs may still be queued (squeue): raise --wait-timeout or ask for fewer "
                                 f"--workers") from None

    @property
    def busy(self) -> int:
        return len(self._futures)

    def submit(self, task: Task) -> None:
        if self.device is not None:
            task = replace(task, scfg=replace(task.scfg, device=self.device))
        if task.threads is None and self.threads is not None:
            task = replace(task, threads=self.threads)
        fut = self.client.submit(self.run, task, pure=False, key=f"evaluation-{task.index}-{task.backbone}",
                                 resources={"slot": 1}, retries=0)
        self._futures[fut] = (task.index, time.monotonic(), float(task.cap))

    def wait(self) -> Done | Failed | Lost:
        """The next task to end: its :class:`Done`; :class:`Lost` when its worker died twice
        (``KilledWorker``); :class:`Failed` for any other exception Dask gives back.  At most the
        longest cap in flight plus ``wait_timeout_s`` (then :class:`WorkersTimeout`, one line)."""
        from distributed import wait
        from distributed.scheduler import KilledWorker

        timeout = max(cap for _, _, cap in self._futures.values()) + self.wait_timeout_s
        try:
            done, _ = wait(list(self._futures), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            raise WorkersTimeout(f"--wait-timeout: none of the {len(self._futures)} evaluation(s) in flight came "
                                 f"back within {timeout:g} s (their budget and --wait-timeout "
                                 f"{self.wait_timeout_s:g} s): are the workers alive? Parts written so far are kept; "
                                 f"rerun to resume") from None
        fut = next(iter(done))
        index, t0, _ = self._futures[fut]
        try:
            got = fut.result()
            got.retries = self._deaths(fut.key)
            return got
        except KilledWorker as exc:
            return Lost(index, f"its worker died {RETRIES + 1} times ({sweep.error_text(exc, 300)})")
        except Exception as exc:  # noqa: BLE001 - the task's own failure: a failed evaluation
            return Failed(index, sweep.error_text(exc), time.monotonic() - t0)
        finally:
            del self._futures[fut]
            fut.release()

    def _deaths(self, key) -> int:
        """How many workers died while running task ``key`` (the scheduler's count; 0 if unknown)."""
        try:
            return int(self.client.run_on_scheduler(_suspicious, key))
        except Exception:  # noqa: BLE001 - bookkeeping only
            return 0

    def close(self) -> None:
        try:
            if getattr(self, "client", None) is not None:
                self.client.close()
        finally:
            self.cluster.close()


def _suspicious(key, dask_scheduler=None) -> int:
    ts = dask_scheduler.tasks.get(key)
    return 0 if ts is None else int(ts.suspicious)


#: Dask settings of a search's workers (environment variables, so they reach spawned processes): no
#: statistical profiler (it samples every thread's stack every 10 ms), a slower event-loop tick
QUIET_WORKER = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
                "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "5s",
                "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s"}


_QUIET_ENV = {"PYTHONWARNINGS": "ignore::UserWarning", **QUIET_WORKER}


def _scheduler_config():
    """The scheduler of a search's cluster (made in this process): a task whose worker dies is run
    :data:`RETRIES` more time(s), then given back as ``KilledWorker``."""
    import dask

    return dask.config.set({"distributed.scheduler.allowed-failures": RETRIES})


def worker_env(gpu: str | None) -> dict[str, str]:
    """The environment of one worker process: its own GPU (``gpu``; None: a CPU worker, which also
    gets one OpenMP thread), Dask's housekeeping kept quiet."""
    if gpu is None:
        return {**_QUIET_ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return {**_QUIET_ENV, "CUDA_VISIBLE_DEVICES": gpu}


#: no dashboard (where bokeh is installed), and the scheduler's own HTTP server (health and metrics routes, which
#: Dask starts even without a dashboard) on a free port: at Dask's default, 8787, a second search on the same
#: machine warned "Port 8787 is already in use"
_SCHEDULER = {"dashboard": False, "dashboard_address": ":0"}


def local_cluster(k: int, device: str, processes: bool = True, gpus: list[str] | None = None):
    """K Dask workers on this machine, one evaluation each at a time: on CUDA one worker process per
    GPU (``gpus``, default :func:`precompute.gpus.gpus_for` the device: each worker sees its GPU as
    ``cuda:0``), by dask-cuda's ``LocalCUDACluster`` where installed; on a CPU K processes with one
    torch thread each (or threads of this process with ``processes=False``)."""
    import logging

    import dask
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    # Dask's nannies set MALLOC_TRIM_THRESHOLD_ in their workers; setting it also freezes glibc's
    # mmap threshold at 128 KiB, so every tensor above it is mapped and unmapped anew, page faults
    # and all (measured: evaluations ~30 % slower than in this process); keep glibc's own behaviour
    spawn_env = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
                 if k != "MALLOC_TRIM_THRESHOLD_"}
    dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env})
    quiet = logging.ERROR
    with _scheduler_config():
        if not processes:
            return LocalCluster(n_workers=k, threads_per_worker=1, processes=False, resources={"slot": 1},
                                silence_logs=quiet, scheduler_kwargs=dict(_SCHEDULER))
        if str(device).startswith("cuda"):
            gpus = list(gpus) if gpus is not None else G.gpus_for(str(device), k)
            cuda_cluster = _cuda_cluster_class()
            if cuda_cluster is not None:
                return cuda_cluster(CUDA_VISIBLE_DEVICES=",".join(gpus), n_workers=k, threads_per_worker=1,
                                    memory_limit=0, resources={"slot": 1}, silence_logs=quiet,
                                    env=dict(_QUIET_ENV), scheduler_kwargs=dict(_SCHEDULER))
        else:
            gpus = [None] * k
        specs = {f"worker-{i}": {"cls": Nanny, "options": {"nthreads": 1, "env": worker_env(gpus[i]),
                                                           "resources": {"slot": 1}, "memory_limit": 0,
                                                           "silence_logs": quiet}}
                 for i in range(k)}
        return SpecCluster(workers=specs, scheduler={"cls": Scheduler, "options": dict(_SCHEDULER)},
                           silence_logs=quiet)


def _cuda_cluster_class():
    """dask-cuda's ``LocalCUDACluster`` (the ``[gpu]`` extra), or None when it is not installed."""
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError:
        return None
    return LocalCUDACluster


def local_workers(k: int, device: str, gpus: list[str] | None = None,
                  wait_timeout_s: float = DEFAULT_WAIT_S) -> DaskWorkers:
    """:func:`local_cluster`'s K workers as the search's engine: on CUDA each task runs on its worker's
    own GPU (``cuda:0`` there); on a CPU with one torch thread."""
    device = str(device)
    cuda = device.startswith("cuda")
    if cuda:
        gpus = list(gpus) if gpus is not None else G.gpus_for(device, k)
    where = f"GPUs {','.join(gpus)}" if cuda else "the CPU"
    return DaskWorkers(local_cluster(k, device, gpus=gpus), k, f"{k} local Dask worker processes on {where}",
                       device="cuda:0" if cuda else None, threads=None if cuda else 1, wait_timeout_s=wait_timeout_s)


def slurm_workers(k: int, options: SlurmOptions, device: str = "auto",
                  wait_timeout_s: float = DEFAULT_WAIT_S) -> DaskWorkers:
    """K Slurm jobs of ``options`` (:class:`precompute.slurm.SlurmOptions`, the sweep's too), one worker
    each: a CUDA task runs on its job's own GPU (``cuda:0`` there), with the job's CPUs as torch threads."""
    cluster = options.jobqueue_cluster(["--resources", "slot=1"], _scheduler_config)
    cluster.scale(jobs=k)
    return DaskWorkers(cluster, k, f"{k} Slurm job(s)", device="cuda:0" if str(device).startswith("cuda") else None,
                       threads=int(options.cpus), wait_timeout_s=wait_timeout_s)


__all__ = ["Task", "Done", "Failed", "Lost", "RETRIES", "run_task", "failed_frame", "InProcess", "DaskWorkers",
           "local_cluster", "local_workers", "worker_env", "slurm_workers", "save_prior", "load_prior",
           "WorkersTimeout"]
