"""What a live search evaluates, and when: the sampler's order π, exactly the run the simulator
draws for the same (strategy, evaluator spec, seed), walked by successive halving's one schedule
(:class:`shared.successive_halving.Schedule`; a sampler is its one-level case)."""
from __future__ import annotations

import polars as pl

from shared.oracle import BACKBONE_META, COLUMNS
from shared.samplers import sampler_of, strategy_rng
from shared.successive_halving import Schedule, SHConfig

from .config import SearchError


def sampler_pool(pool: pl.DataFrame) -> pl.DataFrame:
    """The pool as the simulator sees it: one row per backbone, sorted by name, with the oracle's
    per-backbone metadata columns (``shared.oracle.BACKBONE_META``, oracle dtypes; absent = null)."""
    if "backbone" not in pool.columns:
        raise SearchError("the pool has no 'backbone' column; expected a table from `precompute pool`")
    try:
        cols = [pl.col(c).cast(COLUMNS[c]) if c in pool.columns else pl.lit(None, dtype=COLUMNS[c]).alias(c)
                for c in BACKBONE_META]
        return (pool.unique("backbone", keep="first", maintain_order=True)
                .select(pl.col("backbone").cast(pl.String), *cols).sort("backbone"))
    except pl.exceptions.PolarsError as exc:
        raise SearchError(f"the pool's metadata cannot be read as the oracle's types: "
                          f"{' '.join(str(exc).split())[:200]}") from None


def search_order(pool: pl.DataFrame, strategy: str, spec: str, seed: int) -> list[str]:
    """The backbones of ``sampler_pool(pool)`` in the order the strategy evaluates them: the run
    the simulator draws for (strategy, spec, seed)."""
    sampler = sampler_of(strategy)
    spool = sampler_pool(pool)
    missing = [c for c in sampler.requires
               if c not in spool.columns or spool.get_column(c).null_count() == spool.height]
    if missing:
        raise SearchError(f"strategy {strategy!r} orders by {', '.join(missing)}, which the pool does "
                          f"not have for any backbone; choose another strategy (e.g. random)")
    order = sampler.orders(spool, 1, strategy_rng(int(seed), strategy, spec))[0]
    names = spool.get_column("backbone").to_list()
    return [names[i] for i in order.tolist()]


def schedule(order: list[str], n_levels: int, sh: SHConfig | None) -> Schedule:
    """The walk: successive halving's schedule over ``order`` (one level: the order itself)."""
    return Schedule(order, n_levels, sh)


__all__ = ["sampler_pool", "search_order", "schedule"]
