"""One Slurm story for both commands that use a cluster: ``precompute run --launcher slurm`` (the
sweep: one job array through submitit, :mod:`precompute.launch`) and ``precompute search --cluster
slurm`` (the search: one Slurm job per Dask worker through dask-jobqueue, :mod:`precompute.search.workers`).

Both take the same options (:func:`slurm_options`, one definition, as :mod:`shared.limit_options` is
for the deployment limits) into one :class:`SlurmOptions`: ``--partition``, ``--time-limit`` (time per
job, one duration grammar), ``--cpus-per-job``, ``--mem-gb``, ``--gpus-per-job`` and ``--slurm-arg``
(one more ``#SBATCH`` line, e.g. ``--slurm-arg --account=myproj``; repeatable).  Each engine renders
them into its job script: :meth:`SlurmOptions.submitit_parameters` and :meth:`SlurmOptions.jobqueue_cluster`;
a GPU request is ``--gres=gpu:N`` in both.  The old per-command spellings (``--gpus-per-task``,
``--cpus-per-task``, ``--sbatch-arg KEY=VALUE``; ``--gpus-per-worker``, ``--cpus-per-worker``) are
hidden aliases that still work and say, in one line on stderr, what to write instead.

This module imports click only: decorating a command keeps ``--help`` light.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import click

from shared.durations import parse_duration
from shared.errors import VibesError

DEFAULT_TIME_LIMIT = "4h"
#: option -> what it is, in the help of both commands
_HELP = {
    "partition": "Slurm: the partition.",
    "time": "Slurm: time per job (a duration: 4h, 90min, 1d); a search's must cover its --budget.",
    "cpus": "Slurm: CPUs per job.",
    "mem": "Slurm: memory per job, in GB.",
    "gpus": "Slurm: GPUs per job (--gres=gpu:N; 0: none).",
    "extra": "Slurm: one more #SBATCH line, e.g. --slurm-arg --account=myproj (repeatable).",
}
#: the old spellings: (option, the new option, what the old value becomes)
ALIASES = (("--gpus-per-task", "--gpus-per-job", "gpus_per_job"),
           ("--gpus-per-worker", "--gpus-per-job", "gpus_per_job"),
           ("--cpus-per-task", "--cpus-per-job", "cpus_per_job"),
           ("--cpus-per-worker", "--cpus-per-job", "cpus_per_job"),
           ("--sbatch-arg", "--slurm-arg", "slurm_args"))
_FIELDS = ("partition", "time_limit", "cpus_per_job", "mem_gb", "gpus_per_job", "slurm_args")


def sbatch_line(text: str) -> tuple[str, str | bool]:
    """``--account=proj`` (or ``account=proj``, the old ``--sbatch-arg`` spelling) -> ``('account',
    'proj')``; ``--exclusive`` -> ``('exclusive', True)``.  One long option per ``--slurm-arg``."""
    body = str(text).strip()
    key, sep, value = body.lstrip("-").partition("=")
    key = key.strip()
    if not key or " " in key or (body.startswith("-") and not body.startswith("--")) \
            or (not body.startswith("--") and not sep):
        raise VibesError(f"--slurm-arg takes one long #SBATCH option, e.g. --slurm-arg --account=myproj or "
                         f"--slurm-arg --exclusive; got {text!r}")
    return key, (value if sep else True)


def compact(seconds: float) -> str:
    """A duration as the options take it: ``5400`` -> ``1h30m``, ``40`` -> ``40s``."""
    s = round(float(seconds))
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    return "".join(f"{v}{u}" for v, u in parts if v) or f"{float(seconds):g}s"


@dataclass(frozen=True)
class SlurmOptions:
    """Every Slurm job of a sweep's array or a search's workers: ``time_s`` its walltime, ``extra``
    more ``#SBATCH`` options (each ``--key=value`` or ``--flag``)."""

    partition: str | None = None
    time_s: float = 4 * 3600.0
    cpus: int = 8
    mem_gb: float = 32.0
    gpus: int = 1
    extra: tuple[str, ...] = field(default=())
    job_name: str = "vibes"

    def __post_init__(self):
        for name, value, low in (("--cpus-per-job", self.cpus, 1), ("--gpus-per-job", self.gpus, 0)):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise VibesError(f"{name} must be an integer >= {low}; got {value!r}")
        if not self.mem_gb > 0:
            raise VibesError(f"--mem-gb must be > 0; got {self.mem_gb!r}")
        if not self.time_s > 0:
            raise VibesError(f"--time-limit must be > 0; got {self.time_s!r}")
        object.__setattr__(self, "extra", tuple(f"--{k}" + ("" if v is True else f"={v}")
                                                for k, v in map(sbatch_line, self.extra)))

    @property
    def minutes(self) -> int:
        """The walltime in whole minutes (rounded up: Slurm's unit)."""
        return max(1, math.ceil(self.time_s / 60 - 1e-9))

    def walltime(self) -> str:
        """``HH:MM:SS`` (hours may pass 24)."""
        h, m = divmod(self.minutes, 60)
        return f"{h:02d}:{m:02d}:00"

    def extra_dict(self) -> dict[str, str | bool]:
        return dict(sbatch_line(x) for x in self.extra)

    def check_covers(self, budget_s: float) -> None:
        """A search's workers must live through its budget: refuse a shorter walltime in one line."""
        if self.minutes * 60 < budget_s:
            raise VibesError(f"--time-limit {compact(self.minutes * 60)} (each worker's Slurm job) is shorter than "
                             f"--budget {compact(budget_s)}: the workers would end mid-search; give --time-limit "
                             f"{compact(math.ceil(budget_s / 60 - 1e-9) * 60)} or more (and some for the start-up)")

    def submitit_parameters(self, array_parallelism: int) -> dict:
        """The sweep's job array (submitit's ``AutoExecutor(cluster='slurm')`` parameters)."""
        params = dict(name=self.job_name, timeout_min=self.minutes, cpus_per_task=int(self.cpus), mem_gb=self.mem_gb,
                      slurm_array_parallelism=int(array_parallelism))
        if self.gpus:
            params["slurm_gres"] = f"gpu:{int(self.gpus)}"
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.extra:
            params["slurm_additional_parameters"] = self.extra_dict()
        return params

    def jobqueue_cluster(self, worker_args: list[str], scheduler_config):
        """The search's workers: dask-jobqueue's ``SLURMCluster``, one job = one worker with one thread
        (one evaluation at a time) and the job's CPUs for the data loading and torch."""
        from dask_jobqueue import SLURMCluster  # lazy: dask-jobqueue only for a Slurm search

        directives = [*([f"--gres=gpu:{int(self.gpus)}"] if self.gpus else []), *self.extra]
        with scheduler_config():
            return SLURMCluster(queue=self.partition, cores=1, processes=1, job_cpu=int(self.cpus),
                                memory=f"{self.mem_gb:g}GiB", walltime=self.walltime(), job_name=self.job_name,
                                job_extra_directives=directives, worker_extra_args=worker_args)


# ------------------------------------------------------------------------------ options
def _alias(old: str, new: str, target: str, multiple: bool):
    """A hidden old spelling: it still works, and says in one line on stderr what to write instead."""

    def note(ctx, param, value):
        if value is None or value == ():
            return
        click.echo(f"note: {old} is deprecated; write {new}"
                   + (" --KEY=VALUE" if multiple else "") + " (the same in run and search)", err=True)
        ctx.meta.setdefault("vibes_slurm_aliases", {}).setdefault(target, []).append((old, value))

    return click.option(old, hidden=True, expose_value=False, callback=note, multiple=multiple,
                        type=None if multiple else int, default=None)


def slurm_options(f):
    """``--partition``, ``--time-limit``, ``--cpus-per-job``, ``--mem-gb``, ``--gpus-per-job``,
    ``--slurm-arg``: the command receives them as one ``slurm`` argument, a :class:`SlurmOptions`
    (``job_name`` its default; the command may replace it)."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        kwargs["slurm"] = slurm_of(click.get_current_context(silent=True), *(kwargs.pop(k) for k in _FIELDS))
        return f(*args, **kwargs)

    for decorator in reversed((
        click.option("--partition", default=None, help=_HELP["partition"]),
        click.option("--time-limit", default=DEFAULT_TIME_LIMIT, show_default=True, help=_HELP["time"]),
        click.option("--cpus-per-job", type=int, default=8, show_default=True, help=_HELP["cpus"]),
        click.option("--mem-gb", type=float, default=32.0, show_default=True, help=_HELP["mem"]),
        click.option("--gpus-per-job", type=int, default=1, show_default=True, help=_HELP["gpus"]),
        click.option("--slurm-arg", "slurm_args", multiple=True, metavar="--KEY=VALUE", help=_HELP["extra"]),
        *(_alias(old, new, target, target == "slurm_args") for old, new, target in ALIASES),
    )):
        wrapper = decorator(wrapper)
    return wrapper


def slurm_of(ctx, partition, time_limit, cpus_per_job, mem_gb, gpus_per_job, slurm_args) -> SlurmOptions:
    """The options (and any old spelling given, :data:`ALIASES`) -> :class:`SlurmOptions`, checked."""
    values = {"cpus_per_job": cpus_per_job, "gpus_per_job": gpus_per_job, "slurm_args": tuple(slurm_args)}
    for target, given in ((ctx.meta.get("vibes_slurm_aliases") or {}) if ctx is not None else {}).items():
        if target == "slurm_args":
            values[target] += tuple(v for _, vs in given for v in vs)
            continue
        new = target.replace("_", "-")
        # the new spelling on the command line too: given twice (a --config file's value it overrides)
        if ctx.get_parameter_source(target).name not in ("DEFAULT", "DEFAULT_MAP") or len(given) > 1:
            raise VibesError(f"--{new} is given twice ({' and '.join(o for o, _ in given)}); give --{new} once")
        values[target] = given[0][1]
    return SlurmOptions(partition, parse_duration(time_limit, "--time-limit"), values["cpus_per_job"], mem_gb,
                        values["gpus_per_job"], values["slurm_args"])


__all__ = ["SlurmOptions", "slurm_options", "slurm_of", "sbatch_line", "ALIASES", "DEFAULT_TIME_LIMIT"]
