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

Inputs are checked once (:mod:`.config`), the loop is in :mod:`.loop`, what it counted and how a rerun
reads it back (trace, parts, ``search.json``) in :mod:`.record`, its progress bar in :mod:`.progress`, where
the evaluations run in :mod:`.workers`, what is written and printed in :mod:`.report`.  The command line
is :mod:`precompute.cli.search`.
"""
from __future__ import annotations

from .config import SearchConfig, SearchError, parse_budget
from .schedule import sampler_pool, search_order

#: what the command line, the benchmarks and the tests call, the loop's and the report's names imported on first
#: use (PEP 562 ``__getattr__``): ``precompute search`` checks its arguments through :mod:`.config` before torch,
#: timm and plotly load.  Anything else is imported from its own module (:mod:`.workers`, :mod:`.report` …).
_LAZY = {"loop": ("SearchResult", "run_search"), "report": ("summary_lines", "wall_ratio"),
         "workers": ("WorkersTimeout",)}


def __getattr__(name: str):
    """``precompute.search.run_search`` and the other names of :data:`_LAZY`, bound here once loaded."""
    where = next((module for module, names in _LAZY.items() if name in names), None)
    if where is None:  # a submodule's own name too: the import system then loads it
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import loop, report, workers  # lazy: torch, timm and plotly stay out of the argument checks

    value = getattr({"loop": loop, "report": report, "workers": workers}[where], name)
    globals()[name] = value
    return value


__all__ = ["SearchConfig", "SearchError", "SearchResult", "WorkersTimeout", "parse_budget", "run_search",
           "sampler_pool", "search_order", "summary_lines", "wall_ratio"]
