"""Samplers π: orders in which a VIBES strategy evaluates the pool (paper, Section 4.2).

A sampler turns the pool (one row per backbone, sorted by name, with metadata columns) into
an ``(n_runs, n_backbones)`` array of permutations: row r is the evaluation order of run r.
Everything is vectorised over runs (no Python loop per run or per backbone), so 10,000 runs of
a 1,500-backbone pool take well under a second.  Live search reuses the same functions with
``n_runs=1``, hence the module lives in ``shared/`` and imports neither torch nor timm.

Registry (timm style: one place per fact)::

    SAMPLERS["cycling"].orders(pool, n_runs=100, rng=np.random.default_rng(0))

Conventions
-----------
* ``complexity-up``: ascending by (gmacs, params_m, backbone); ``complexity-down``:
  descending by (gmacs, params_m, backbone).  In both, unknown values come last at each level:
  backbones whose gmacs is unknown are evaluated after every known one (ordered among
  themselves by params_m, then name, in the sampler's direction).
* ``dataset-size-down``: descending number of pretraining images; random order inside one
  pretraining dataset (and inside equal sizes); unknown pretraining data last, random inside.
* ``cycling``: round-robin over pretraining datasets (unknown counts as one dataset named
  ``unknown``); per run, a random order of the datasets and a random order inside each.  Round
  w takes the w-th backbone of every dataset that still has one, in the run's dataset order.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from shared.errors import VibesError, unknown

UNKNOWN_DATASET = "unknown"


@dataclass(frozen=True)
class Sampler:
    name: str
    requires: tuple[str, ...]  # pool columns the sampler reads
    deterministic: bool  # same order for every run
    description: str
    _fn: Callable[[pl.DataFrame, int, np.random.Generator], np.ndarray]

    def check(self, pool: pl.DataFrame) -> None:
        """Raise a one-line error when the pool lacks the columns this sampler reads."""
        missing = [c for c in self.requires if c not in pool.columns]
        if missing:
            raise VibesError(f"sampler {self.name!r} needs column(s) {', '.join(missing)}, "
                             f"which the oracle does not have")
        all_null = [c for c in self.requires if pool.get_column(c).null_count() == pool.height]
        if pool.height and all_null:
            raise VibesError(f"sampler {self.name!r} needs column(s) {', '.join(all_null)}, "
                             f"which are empty (all null) in the oracle")

    def orders(self, pool: pl.DataFrame, n_runs: int, rng: np.random.Generator) -> np.ndarray:
        """``(n_runs, len(pool))`` int32 permutations of ``range(len(pool))``."""
        self.check(pool)
        if n_runs < 1:
            raise VibesError(f"n_runs must be >= 1, got {n_runs}")
        out = self._fn(pool, n_runs, rng)
        assert out.shape == (n_runs, pool.height)
        return out


SAMPLERS: dict[str, Sampler] = {}
#: the five strategies of the paper, in its order
PAPER_SAMPLERS = ("random", "complexity-up", "complexity-down", "dataset-size-down", "cycling")


def register(name: str, requires: tuple[str, ...] = (), deterministic: bool = False):
    def deco(fn):
        SAMPLERS[name] = Sampler(name, requires, deterministic,
                                 (fn.__doc__ or "").strip().splitlines()[0], fn)
        return fn
    return deco


def strategy_rng(seed: int, strategy: str, evaluator: str) -> np.random.Generator:
    """The generator of one strategy x evaluator spec under a user seed: ``(seed, crc32(strategy),
    crc32(evaluator spec))``.  The simulator draws a pair's runs from it and a live search its one
    run, so both see the same order for the same seed; adding other pairs changes nothing."""
    return np.random.default_rng([int(seed), zlib.crc32(strategy.encode()), zlib.crc32(evaluator.encode())])


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS:
        raise unknown("strategy", name, SAMPLERS)
    return SAMPLERS[name]


# ------------------------------------------------------------------------- helpers
def _index_dtype(n: int):
    """int16 while it can hold every index: random permutations of small ints are ~25% faster."""
    return np.int16 if n < 2**15 else np.int32


def _tile(perm: np.ndarray, n_runs: int) -> np.ndarray:
    return np.broadcast_to(perm.astype(_index_dtype(perm.size)), (n_runs, perm.size)).copy()


def _shuffle_blocks(base: np.ndarray, block_sizes: np.ndarray, n_runs: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Rows = ``base`` with each consecutive block independently shuffled per run."""
    out = _tile(base, n_runs)
    start = 0
    for size in block_sizes.tolist():  # one numpy call per block, not per run
        if size > 1:
            out[:, start:start + size] = rng.permuted(out[:, start:start + size], axis=1)
        start += size
    return out


def _complexity_key(pool: pl.DataFrame, descending: bool = False) -> np.ndarray:
    """(gmacs, params_m, backbone) ascending or descending, unknown gmacs / params last either way."""
    ranked = (pool.with_row_index("_i")
              .sort(["gmacs", "params_m", "backbone"], descending=descending, nulls_last=True))
    return ranked.get_column("_i").to_numpy().astype(np.int32)


# ------------------------------------------------------------------------- samplers
@register("random")
def _random(pool, n_runs, rng):
    """Uniformly random order, drawn anew for each run."""
    return rng.permuted(_tile(np.arange(pool.height), n_runs), axis=1).astype(np.int32)


@register("complexity-up", requires=("gmacs", "params_m"), deterministic=True)
def _complexity_up(pool, n_runs, rng):
    """Increasing complexity: ascending GMACs, ties by params, then name (small backbones first)."""
    return _tile(_complexity_key(pool), n_runs).astype(np.int32)


@register("complexity-down", requires=("gmacs", "params_m"), deterministic=True)
def _complexity_down(pool, n_runs, rng):
    """Decreasing complexity: descending GMACs, ties by params, then name; unknown GMACs last."""
    return _tile(_complexity_key(pool, descending=True), n_runs).astype(np.int32)


@register("dataset-size-down", requires=("pretrain_images",))
def _dataset_size_down(pool, n_runs, rng):
    """Decreasing pretraining-dataset size; random inside a dataset; unknown last."""
    ranked = (pool.with_row_index("_i")
              .sort("pretrain_images", descending=True, nulls_last=True))
    sizes = ranked.get_column("pretrain_images")
    # consecutive runs of equal size (nulls form one block) are shuffled per run
    block_id = (sizes.fill_null(-1.0).diff().fill_null(0) != 0).cum_sum()
    block_sizes = block_id.value_counts(sort=False).sort(block_id.name).get_column("count")
    return _shuffle_blocks(ranked.get_column("_i").to_numpy(), block_sizes.to_numpy(), n_runs,
                           rng).astype(np.int32)


@register("cycling", requires=("pretrain_dataset",))
def _cycling(pool, n_runs, rng):
    """Round-robin over pretraining datasets, random order inside each and of the datasets per run."""
    ds = pool.get_column("pretrain_dataset").fill_null(UNKNOWN_DATASET)
    grouped = (pool.with_row_index("_i").with_columns(ds.alias("_ds"))
               .sort("_ds", "_i"))
    names, counts = np.unique(grouped.get_column("_ds").to_numpy(), return_counts=True)
    n_ds = names.size
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # members[r, offsets[d] + w] = w-th backbone of dataset d in run r
    members = _shuffle_blocks(grouped.get_column("_i").to_numpy(), counts, n_runs, rng)
    # dataset order per run: rank[r, d] = position of dataset d in run r
    ds_perm = rng.permuted(_tile(np.arange(n_ds), n_runs), axis=1)  # (R, D): order of datasets
    rank = np.empty_like(ds_perm)
    np.put_along_axis(rank, ds_perm, np.arange(n_ds, dtype=np.int32)[None, :].repeat(n_runs, 0), 1)
    # Slots are laid out round by round; round w holds the datasets with count > w.  The
    # active set only changes at the distinct counts, so each distinct active set is ordered
    # once per run (an (R, |A|) argsort of small ints), and rounds reuse that ordering.
    levels = np.unique(counts)  # ascending distinct sizes
    block_cols, slot_col, slot_round = [], [], []
    col0, prev = 0, 0
    for level in levels.tolist():
        active = np.flatnonzero(counts >= level)  # datasets with > w members for w in [prev, level)
        order_in_run = active[np.argsort(rank[:, active], axis=1, kind="stable")]  # (R, |A|)
        block_cols.append(order_in_run)
        for w in range(prev, level):
            slot_col.append(np.arange(col0, col0 + active.size))
            slot_round.append(np.full(active.size, w))
        col0 += active.size
        prev = level
    idx = np.int32 if n_runs * pool.height < 2**31 else np.int64
    by_run = offsets.astype(idx)[np.concatenate(block_cols, axis=1)]  # (R, sum |A|): first member column
    slot_col = np.concatenate(slot_col)
    slot_round = np.concatenate(slot_round)
    # member column of each slot = offset of the slot's dataset in this run + the slot's round
    cols = np.take(by_run, slot_col, axis=1)
    cols += slot_round.astype(idx)[None, :]
    cols += (np.arange(n_runs, dtype=idx) * pool.height)[:, None]
    return np.take(members, cols).astype(np.int32, copy=False)
