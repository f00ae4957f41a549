"""Run the sweep's shards through submitit: locally (``LocalExecutor``) or as ONE Slurm job array.

Task k runs ``run_sweep(cfg, pool, shard=(k, N))`` and writes its own part files.  Slurm gets
ONE job array (``executor.map_array(ShardTask(), configs, pools, shard_indices, shard_counts)``),
each task a Slurm job of :class:`precompute.slurm.SlurmOptions` (the options ``precompute search
--cluster slurm`` takes too: ``--gpus-per-job`` GPUs, ``--time-limit``, ``--slurm-arg`` ...).
The local launcher submits one job per shard, each with
its own GPU of this machine (submitit's ``gpus_per_node=1, visible_gpus=(g,)``, which sets the
task's ``CUDA_VISIBLE_DEVICES``; :func:`local_gpus` lists them: :func:`precompute.gpus.visible_gpus`,
the discovery the search's workers use too), so concurrent shards never share a GPU nor silently fall back to the CPU;
more shards than GPUs is refused (two shards on one GPU would distort each other's seconds).
:class:`ShardTask` is a ``submitit.helpers.Checkpointable``: on a Slurm
timeout or preemption it requeues itself with the same arguments, and because finished parts
are kept (and skipped), the requeued task resumes where it stopped.  Nothing home-made
schedules work.
"""
from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import submitit

from precompute import gpus as G
from precompute.slurm import SlurmOptions
from precompute.sweep import SweepConfig, run_sweep
from shared.errors import VibesError

LAUNCHERS = ("none", "local", "slurm")


class ShardTask(submitit.helpers.Checkpointable):
    """One shard of the sweep, requeued on timeout/preemption (parts written are kept)."""

    def __call__(self, cfg: SweepConfig, pool: list[dict[str, Any]], shard: int,
                 shards: int) -> dict[str, Any]:
        frame = pl.DataFrame(pool, infer_schema_length=None)
        summary = run_sweep(cfg, frame, (shard, shards), show_progress=False)
        return {"shard": shard, "shards": shards, **summary.as_dict()}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # Same callable, same arguments: the rerun skips every backbone whose part exists.
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def make_executor(launcher: str, folder: str | os.PathLike, slurm: SlurmOptions | None = None,
                  timeout_min: int = 24 * 60, array_parallelism: int = 32) -> submitit.Executor:
    folder = Path(folder)
    if launcher == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=timeout_min)
        return ex
    if launcher == "slurm":
        slurm = slurm or SlurmOptions()
        try:
            ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        except RuntimeError as exc:  # no srun / sbatch on this machine
            raise VibesError(f"--launcher slurm needs a Slurm cluster (srun and sbatch on PATH): "
                             f"{exc}") from None
        params = slurm.submitit_parameters(array_parallelism)
        ex.update_parameters(**params)
        return ex
    raise VibesError(f"unknown launcher {launcher!r}; valid: {', '.join(LAUNCHERS)}")


def local_gpus() -> list[str]:
    """This machine's GPUs as ``CUDA_VISIBLE_DEVICES`` entries: :func:`precompute.gpus.visible_gpus`,
    the one discovery ``precompute search --workers`` uses too."""
    return G.visible_gpus()


def check_local_shards(shards: int) -> list[str]:
    """This machine's GPUs, refusing more local shards than GPUs (when it has any)."""
    gpus = local_gpus()
    if gpus and shards > len(gpus):
        raise VibesError(f"--launcher local gives each shard its own GPU, but --shards {shards} is more "
                         f"than this machine's {len(gpus)} GPU(s) ({','.join(gpus)}); use --shards "
                         f"{len(gpus)} or fewer")
    return gpus


def _local_gpu_params(gpu: str | None) -> dict[str, Any]:
    """submitit LocalExecutor parameters that give one task exactly ``gpu`` (None: no GPU)."""
    if gpu is None:
        return {"gpus_per_node": 0, "visible_gpus": (), "setup": []}
    if gpu.isdigit():
        return {"gpus_per_node": 1, "visible_gpus": (int(gpu),), "setup": []}
    # a UUID / MIG name: submitit's visible_gpus takes integers, so set it in the task's shell
    return {"gpus_per_node": 0, "visible_gpus": (), "setup": [f"export CUDA_VISIBLE_DEVICES={shlex.quote(gpu)}"]}


def submit_shards(cfg: SweepConfig, pool: pl.DataFrame, launcher: str, shards: int,
                  slurm: SlurmOptions | None = None, folder: str | os.PathLike | None = None,
                  task: ShardTask | None = None, array_parallelism: int = 32) -> list[submitit.Job]:
    """Submit ``shards`` tasks as one array (``map_array``); returns the jobs.  Task k runs
    ``task(cfg, pool_records, k, shards)`` (default task: :class:`ShardTask`)."""
    if shards < 1:
        raise VibesError(f"--shards must be a positive integer; got {shards}")
    if pool.height == 0:
        raise VibesError("the pool is empty; nothing to submit")
    folder = Path(folder or Path(cfg.parts_dir) / "_submitit")
    gpus = check_local_shards(shards) if launcher == "local" else []
    ex = make_executor(launcher, folder, slurm, array_parallelism=array_parallelism)
    records = pool.to_dicts()
    task = task if task is not None else ShardTask()
    if launcher == "local":  # one job per shard: the parameters (its GPU) differ per job
        jobs = []
        for k in range(shards):
            ex.update_parameters(**_local_gpu_params(gpus[k] if gpus else None))
            jobs.append(ex.submit(task, cfg, records, k, shards))
        return jobs
    return ex.map_array(task, [cfg] * shards, [records] * shards, list(range(shards)),
                        [shards] * shards)


def wait_jobs(jobs: list[submitit.Job], echo: Callable[[str], None] = print, timeout_s: float = 7 * 86400,
              poll_s: float = 10.0, merge_hint: str | None = None) -> list[dict]:
    """Wait for every job, at most ``timeout_s`` (then a one-line VibesError: the jobs go on, their
    parts are kept); echo each shard's summary; raise VibesError if any task failed."""
    deadline = time.monotonic() + float(timeout_s)
    pending, pause = list(jobs), 0.05
    while pending:
        pending = [j for j in pending if not j.done()]
        if pending and time.monotonic() >= deadline:
            raise VibesError(f"--wait-timeout: {len(pending)} of {len(jobs)} task(s) not finished after "
                             f"{timeout_s:g} s (job {pending[0].job_id} still running or queued); they go on and "
                             f"keep their parts: " + (f"when they finish, run: {merge_hint}" if merge_hint
                                                       else "rerun later to resume"))
        if pending:  # look again soon, then every poll_s (Slurm's accounting is asked each time)
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(poll_s, pause * 2)
    results, errors = [], []
    for job in jobs:
        try:
            res = job.result()
        except Exception as exc:
            errors.append(f"job {job.job_id}: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[-300:]}")
            continue
        results.append(res)
        echo(f"shard {res['shard'] + 1}/{res['shards']} (job {job.job_id}): {res['ok']} ok, "
             f"{res['failed']} failed, {res['skipped']} skipped")
    if errors:
        raise VibesError(f"{len(errors)} of {len(jobs)} shard task(s) crashed (parts written so "
                         f"far are kept; rerun to resume): {errors[0]}")
    return results


__all__ = ["LAUNCHERS", "SlurmOptions", "ShardTask", "make_executor", "submit_shards",
           "wait_jobs", "local_gpus", "check_local_shards"]
