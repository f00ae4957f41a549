"""The options ``simulate`` and ``simulate league`` share: one definition, so names, defaults and help
never drift apart (as :mod:`shared.limit_options` does for the deployment limits).  Decorating a
command imports only click: ``--help`` answers without polars."""
from __future__ import annotations

import click

from shared.successive_halving import DEFAULT_ETA, DEFAULT_PROMOTION_COST, PROMOTION_COSTS
from shared.timm_files import DEFAULT_BENCHMARK, ENV_DIR


def _apply(f, decorators):
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def source_options(f):
    """``--timm-results``, ``--timm-benchmark``: where ``timm:<set>`` oracles are read from."""
    return _apply(f, (
        click.option("--timm-results", type=click.Path(), envvar=ENV_DIR,
                     help="Folder with timm's results-*.csv and benchmark-*.csv (or $VIBES_TIMM_RESULTS)."),
        click.option("--timm-benchmark", default=DEFAULT_BENCHMARK,
                     show_default=True, help="Benchmark file (in that folder) giving throughput and GMACs."),
    ))


class _StrategyOption(click.Option):
    """``--strategy``, whose help lists the samplers of :data:`shared.samplers.SAMPLERS`, read when the
    help is shown (importing them takes numpy and polars: a command that runs pays nothing for it)."""

    @property
    def help(self):
        if not self._help_template:
            return self._help_template
        from shared.samplers import SAMPLERS  # lazy: only `--help` needs the names (numpy, polars)

        return self._help_template.replace("{samplers}", ", ".join(SAMPLERS))

    @help.setter
    def help(self, text):
        self._help_template = text


def replay_options(default_strategies: str):
    """``--strategy``, ``--evaluator``, ``--runs``, ``--budgets``, ``--seed``, ``--workers`` and the
    successive-halving settings ``--eta``, ``--sh-chunk``, ``--promotion-cost``."""
    def deco(f):
        return _apply(f, (
            click.option("--strategy", "strategies", multiple=True, cls=_StrategyOption,
                         help=f"Sampler π (repeatable): {{samplers}}; or sh:<sampler> (successive halving), "
                              f"asha:<sampler> (asynchronous) over one of them; default: {default_strategies}."),
            click.option("--evaluator", "evaluators", multiple=True,
                         help="Evaluator ε̃ as <evaluator>[@<fraction>] (repeatable); default: the truth evaluator."),
            click.option("--runs", default=100, show_default=True, type=int, help="Runs per strategy × evaluator."),
            click.option("--budgets", default=None,
                         help="LO:HI:N (N log-spaced budgets, ends included, e.g. 1s:1d:100) or T1,T2,... "
                              "(e.g. 10min,1h30m; plain numbers are seconds); default: cheapest evaluation … "
                              "exhaustive time."),
            click.option("--seed", default=0, show_default=True, type=int,
                         help="Seed of every random draw (orders, seeds of the evaluator rows): same seed, same "
                              "outputs."),
            click.option("--workers", default=None, metavar="K[,K...]",
                         help="Replay each run on K identical workers (e.g. 1,4,8): each K gets its own curves "
                              "and answer; the outputs gain a workers column."),
            click.option("--eta", default=DEFAULT_ETA, show_default=True, type=int,
                         help="sh:<sampler>: keep the top 1/η of each rung (promote ⌈n/η⌉)."),
            click.option("--sh-chunk", default=None, type=int,
                         help="sh:<sampler>: backbones per chunk of the order; default η^(L−1), L = fractions."),
            click.option("--promotion-cost", type=click.Choice(PROMOTION_COSTS), default=DEFAULT_PROMOTION_COST,
                         show_default=True,
                         help="sh:<sampler>: a promotion keeps the lower fraction's features (load + Δextract + "
                              "fit) or pays the row's cold seconds; the live `precompute search` has the same "
                              "default."),
        ))
    return deco


__all__ = ["source_options", "replay_options"]
