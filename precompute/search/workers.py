"""Where a live search's evaluations run: in this process (one worker), or on K workers of an existing
distributed engine, Dask distributed — never a home-made queue.

* :class:`InProcess` — one worker, this process: the evaluation runs when it is submitted.
* :class:`DaskWorkers` over a cluster from :func:`local_cluster` (one worker process per GPU of this
  box, each seeing only its own GPU through ``CUDA_VISIBLE_DEVICES``; on a CPU, K processes with
  one torch thread each; ``processes=False`` gives threads of this process, for tests) or
  :func:`slurm_cluster` (dask-jobqueue's ``SLURMCluster``: one Slurm job per worker, one GPU each).
  A worker that dies loses only its evaluation in flight: Dask's nanny starts it again and the
  scheduler reruns the task (``distributed.scheduler.allowed-failures`` times), and a task that
  keeps killing its worker comes back as :class:`Lost`.

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
from precompute import parts as P
from precompute import weights as W

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


@dataclass
class Lost:
    """A task whose worker died (again and again): its evaluation is not counted; a rerun retries it."""

    index: int
    error: str


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
    ``task.cap``.  Kept features go to ``task.keep`` before the rows come back."""
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
        with clock.budget(task.cap):
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
    worker (``resources``: every worker holds one ``slot``, every task takes it)."""

    def __init__(self, cluster, k: int, name: str):
        from distributed import Client  # lazy: dask only when workers are asked for

        self.cluster, self.k, self.name = cluster, k, name
        self.client = Client(cluster)
        self.client.wait_for_workers(k, timeout=600)
        self._futures: dict = {}

    @property
    def busy(self) -> int:
        return len(self._futures)

    def submit(self, task: Task) -> None:
        fut = self.client.submit(run_task, task, pure=False, key=f"evaluation-{task.index}-{task.backbone}",
                                 resources={"slot": 1}, retries=0)
        self._futures[fut] = task.index

    def wait(self):
        from distributed import wait

        done, _ = wait(list(self._futures), return_when="FIRST_COMPLETED")
        fut = next(iter(done))
        index = self._futures.pop(fut)
        try:
            return fut.result()
        except Exception as exc:  # the worker died (KilledWorker) or the task raised
            return Lost(index, f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self.cluster.close()


#: Dask settings of a search's workers (environment variables, so they reach spawned processes): no
#: statistical profiler (it samples every thread's stack every 10 ms), a slower event-loop tick
QUIET_WORKER = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
                "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "5s",
                "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s"}


def local_cluster(k: int, device: str, processes: bool = True):
    """K Dask workers on this machine, one evaluation each at a time: on CUDA one worker process per
    GPU (``CUDA_VISIBLE_DEVICES`` = its GPU: the worker sees it as ``cuda``); on a CPU K processes
    with one torch thread each (or threads of this process with ``processes=False``)."""
    import logging

    import dask
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster, Worker

    # Dask's nannies set MALLOC_TRIM_THRESHOLD_ in their workers; setting it also freezes glibc's
    # mmap threshold at 128 KiB, so every tensor above it is mapped and unmapped anew, page faults
    # and all (measured: evaluations ~30 % slower than in this process); keep glibc's own behaviour
    spawn_env = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
                 if k != "MALLOC_TRIM_THRESHOLD_"}
    dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env})
    if not processes:
        return LocalCluster(n_workers=k, threads_per_worker=1, processes=False, dashboard_address=None,
                            resources={"slot": 1}, silence_logs=logging.ERROR)
    # one evaluation per worker, one torch thread on a CPU; the worker's own housekeeping kept quiet
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore::UserWarning",
           **QUIET_WORKER}
    gpus = _gpus() if str(device).startswith("cuda") else []
    specs = {}
    for i in range(k):
        worker_env = dict(env, CUDA_VISIBLE_DEVICES=gpus[i] if gpus else "")
        specs[f"worker-{i}"] = {"cls": Nanny if processes else Worker,
                                "options": {"nthreads": 1, "env": worker_env, "resources": {"slot": 1},
                                            "memory_limit": 0, "silence_logs": logging.ERROR}}
    return SpecCluster(workers=specs, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
                       silence_logs=logging.ERROR)


def _gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


@dataclass
class SlurmOptions:
    """One Slurm job per worker (dask-jobqueue), each with ``gpus`` GPUs."""

    partition: str | None = None
    time_limit_minutes: int = 240
    cpus: int = 8
    mem_gb: float = 32.0
    gpus: int = 1
    extra: tuple[str, ...] = ()  # more #SBATCH lines, e.g. "--account=myproj"

    def cluster(self):
        from dask_jobqueue import SLURMCluster  # lazy: dask-jobqueue only for a Slurm search

        h, m = divmod(int(self.time_limit_minutes), 60)
        directives = [*([f"--gres=gpu:{self.gpus}"] if self.gpus else []), *self.extra]
        # one worker thread (one evaluation at a time), the job's CPUs for the data loading and torch
        return SLURMCluster(queue=self.partition, cores=1, processes=1, job_cpu=self.cpus,
                            memory=f"{self.mem_gb:g}GB", walltime=f"{h:02d}:{m:02d}:00",
                            job_extra_directives=directives, worker_extra_args=["--resources", "slot=1"])


def slurm_workers(k: int, options: SlurmOptions) -> DaskWorkers:
    cluster = options.cluster()
    cluster.scale(jobs=k)
    return DaskWorkers(cluster, k, f"{k} Slurm job(s)")


__all__ = ["Task", "Done", "Lost", "run_task", "InProcess", "DaskWorkers", "local_cluster", "SlurmOptions",
           "slurm_workers", "save_prior", "load_prior"]
