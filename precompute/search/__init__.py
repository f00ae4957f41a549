"""Live search (``precompute search``): run one VIBES strategy for real on a dataset under a budget.

The search is the simulator's Eqs. 3-4 done live, on the oracle's own definitions:

* **order** π (:mod:`.schedule`): ``SAMPLERS[strategy].orders(pool, 1, strategy_rng(seed, strategy,
  spec))[0]`` over the pool as the simulator sees it, so both walk the same order for the same seed;
  ``sh:<sampler>`` walks successive halving's one schedule (:mod:`shared.successive_halving`),
  ``asha:<sampler>`` asynchronous successive halving decided on the workers' timeline (:mod:`.asha`);
* **evaluator** ε̃ = the spec ``<evaluator>[@<fraction>]`` (:mod:`shared.evaluator_spec`), each
  evaluation the sweep's own :func:`precompute.sweep.evaluate_backbone` extracting only the images
  and splits its evaluator needs;
* **budget** t_max, a hard deadline: on one worker on the summed charges, each what the oracle
  charges for that evaluation; on K workers (``--workers K``, Dask: :mod:`.workers`) on the search's
  time, each evaluation's charge laid on the timeline of the worker free earliest
  (:class:`shared.workers.Timeline`, the simulator's rule); the evaluation in flight is stopped on
  its *measured* seconds (:mod:`.loop`);
* **incumbent** b̂ = best ε̃ among the counted evaluations, ties to the earlier (Eq. 3; with
  successive halving, at the highest fraction reached).

Inputs are checked once (:mod:`.config`), the loop and resume are in :mod:`.loop`, where the
evaluations run in :mod:`.workers`, what is written and printed in :mod:`.report`.  The command line
is :mod:`precompute.cli.search`.
"""
from __future__ import annotations

from precompute.slurm import SlurmOptions

from .config import (
    DEFAULT_RUNGS,
    SEED,
    SearchConfig,
    SearchError,
    check_final,
    check_fraction,
    parse_budget,
    parse_evaluator,
    parse_fractions,
)
from .schedule import sampler_pool, search_order

#: the names of the loop, the report and the workers, imported on first use (PEP 562 ``__getattr__``):
#: ``precompute search`` checks its arguments through :mod:`.config` before torch, timm and plotly load
_LAZY = {"loop": ("Evaluation", "SearchResult", "Trace", "charge", "run_search", "start_workers", "worker_gpus"),
         "report": ("REPORT_HTML", "SEARCH_JSON", "ranked_trace", "report_html", "summary_lines", "wall_ratio"),
         "workers": ("DaskWorkers", "InProcess", "WorkersTimeout", "local_cluster", "local_workers")}


def __getattr__(name: str):
    """``precompute.search.run_search`` and the other names of :data:`_LAZY`, bound here once loaded."""
    where = next((module for module, names in _LAZY.items() if name in names), None)
    if where is None:  # a submodule's own name too: the import system then loads it
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import loop, report, workers  # lazy: torch, timm and plotly stay out of the argument checks

    value = getattr({"loop": loop, "report": report, "workers": workers}[where], name)
    globals()[name] = value
    return value


__all__ = ["SearchConfig", "SearchError", "SearchResult", "parse_budget", "parse_evaluator", "run_search",
           "sampler_pool", "search_order", "summary_lines", "report_html", "check_fraction", "check_final",
           "parse_fractions", "DEFAULT_RUNGS", "SEED", "Evaluation", "Trace", "charge", "ranked_trace", "start_workers",
           "DaskWorkers", "InProcess", "SlurmOptions", "WorkersTimeout", "local_cluster", "local_workers",
           "worker_gpus",
           "wall_ratio", "SEARCH_JSON", "REPORT_HTML"]
