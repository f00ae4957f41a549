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
* ``imagenet-top1`` (beyond the paper, a free prior): descending published ImageNet-1k top-1
  (the ``imagenet_top1`` metadata column), ties by name; unknown top-1 last, by name.
* ``meta`` (beyond the paper, a meta-learned prior): ascending ``meta_rank``, the mean
  normalised rank of the backbone over reference oracles (:func:`meta_rank`), ties by name;
  a backbone absent from every reference last, by name.

Randomness and chunks
---------------------
A sampler's randomness is a fixed sequence of *draws*, each one independent row
permutation of ``range(w)`` for every run (``rng.permuted`` along axis 1), the widths ``w``
depending on the pool only.  ``Sampler.orders`` makes them in one go; ``Sampler.order_chunks``
yields the very same orders in chunks of runs with memory bounded by the chunk (numpy draws
row permutations run after run, so a draw split over consecutive chunks is the same numbers;
when a sampler makes several draws, each over all runs, a first pass records the generator's
state at every (draw, chunk) boundary and a second makes the chunks from those states).
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from shared.errors import UnknownNameError, VibesError, unknown
from shared.successive_halving import ASHA_PREFIX, SH_PREFIX, base_sampler

UNKNOWN_DATASET = "unknown"
#: draw(w) -> (n_runs, w) independent row permutations of range(w): a sampler's only randomness
Draw = Callable[[int], np.ndarray]
META_RANK = "meta_rank"  # pool column the meta sampler reads (see meta_rank())


@dataclass(frozen=True)
class Sampler:
    name: str
    requires: tuple[str, ...]  # pool columns the sampler reads
    deterministic: bool  # same order for every run
    description: str
    _fn: Callable[[pl.DataFrame, int, Draw], np.ndarray]
    any_of: bool = False  # True: one known column of ``requires`` is enough (keys in that order)

    def check(self, pool: pl.DataFrame) -> None:
        """Raise a one-line error when the pool lacks the columns this sampler reads."""
        missing = [c for c in self.requires if c not in pool.columns]
        if missing:
            raise VibesError(f"sampler {self.name!r} needs column(s) {', '.join(missing)}, "
                             f"which the oracle does not have")
        all_null = self.empty_columns(pool)
        if pool.height and all_null and (not self.any_of or len(all_null) == len(self.requires)):
            raise VibesError(f"sampler {self.name!r} needs column(s) {', '.join(all_null)}, "
                             f"which are empty (all null) in the oracle" + FILL_HINTS.get(self.name, ""))

    def empty_columns(self, pool: pl.DataFrame) -> list[str]:
        return [c for c in self.requires if c in pool.columns and pool.get_column(c).null_count() == pool.height]

    def fallback_note(self, pool: pl.DataFrame) -> str | None:
        """What the sampler orders by when a key it prefers is empty (``complexity-up orders by
        params_m: gmacs is empty in the oracle``); None when every key is known."""
        empty = self.empty_columns(pool) if self.any_of and pool.height else []
        if not empty:
            return None
        rest = [c for c in self.requires if c not in empty]
        return f"{self.name} orders by {', then '.join(rest)}: {', '.join(empty)} is empty in the oracle"

    def orders(self, pool: pl.DataFrame, n_runs: int, rng: np.random.Generator) -> np.ndarray:
        """``(n_runs, len(pool))`` int32 permutations of ``range(len(pool))``."""
        self.check(pool)
        if n_runs < 1:
            raise VibesError(f"n_runs must be >= 1, got {n_runs}")
        out = self._fn(pool, n_runs, _rng_draw(rng, n_runs))
        assert out.shape == (n_runs, pool.height)
        return out

    def draw_widths(self, pool: pl.DataFrame) -> list[int]:
        """The widths of the row permutations this sampler draws on ``pool``, in order."""
        widths: list[int] = []

        def record(w):
            widths.append(int(w))
            return np.arange(w, dtype=_index_dtype(w))[None, :]

        self._fn(pool, 1, record)
        return widths

    def order_chunks(self, pool: pl.DataFrame, n_runs: int, rng: np.random.Generator, chunk_runs: int,
                     keep_rng: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, orders)`` for consecutive chunks of at most ``chunk_runs`` runs whose rows are,
        row for row, ``orders(pool, n_runs, rng)``; peak memory is one chunk's, not all runs'.

        With ``keep_rng`` the generator is, before the first chunk is yielded, where ``orders``
        would leave it, so the caller may draw from it between chunks (one seed's row per run and
        backbone) exactly as it would after one ``orders`` call.  That takes a first pass over the
        draws (recording the generator state at every draw x chunk boundary) when they span
        several chunks and either the sampler makes several draws or the caller keeps the
        generator; otherwise the draws are made once, chunk after chunk."""
        self.check(pool)
        if n_runs < 1 or chunk_runs < 1:
            raise VibesError(f"n_runs and chunk_runs must be >= 1, got {n_runs}, {chunk_runs}")
        starts = list(range(0, n_runs, chunk_runs))
        sizes = [min(chunk_runs, n_runs - a) for a in starts]
        widths = [w for w in self.draw_widths(pool) if w > 1]  # width <= 1 draws nothing
        if len(starts) == 1 or not widths or (len(widths) == 1 and not keep_rng):
            for a, n in zip(starts, sizes):
                yield a, self._checked(pool, n, _rng_draw(rng, n))
            return
        states = [[None] * len(starts) for _ in widths]
        for k, w in enumerate(widths):  # pass 1: the stream in orders()'s order, results dropped
            for c, n in enumerate(sizes):
                states[k][c] = rng.bit_generator.state
                rng.permuted(_tile(np.arange(w), n), axis=1)
        kind = type(rng.bit_generator)
        for c, (a, n) in enumerate(zip(starts, sizes)):  # pass 2: each chunk from its states
            calls = iter(range(len(widths)))

            def draw(w, c=c, n=n, calls=calls):
                if w <= 1:
                    return _tile(np.arange(w), n)
                k = next(calls)
                assert widths[k] == w
                gen = np.random.Generator(kind())
                gen.bit_generator.state = states[k][c]
                return gen.permuted(_tile(np.arange(w), n), axis=1)

            yield a, self._checked(pool, n, draw)

    def _checked(self, pool, n, draw):
        out = self._fn(pool, n, draw)
        assert out.shape == (n, pool.height)
        return out


SAMPLERS: dict[str, Sampler] = {}
#: the five strategies of the paper, in its order
PAPER_SAMPLERS = ("random", "complexity-up", "complexity-down", "dataset-size-down", "cycling")
#: priors beyond the paper: deterministic orders from free or meta-learned knowledge
PRIOR_SAMPLERS = ("imagenet-top1", "meta")
#: how a user fills a sampler's empty key column, said with the refusal
FILL_HINTS = {"imagenet-top1": "; give simulate --timm-results DIR (timm's results-imagenet.csv; joined by backbone "
                               "name) or build the pool with `precompute pool --timm-results DIR`"}


def register(name: str, requires: tuple[str, ...] = (), deterministic: bool = False, any_of: bool = False):
    def deco(fn):
        SAMPLERS[name] = Sampler(name, requires, deterministic,
                                 (fn.__doc__ or "").strip().splitlines()[0], fn, any_of)
        return fn
    return deco


def strategy_rng(seed: int, strategy: str, evaluator: str) -> np.random.Generator:
    """The generator of one strategy x evaluator spec under a user seed: ``(seed, crc32(strategy),
    crc32(evaluator spec))``.  The simulator draws a pair's runs from it and a live search its one
    run, so both see the same order for the same seed; adding other pairs changes nothing."""
    return np.random.default_rng([int(seed), zlib.crc32(strategy.encode()), zlib.crc32(evaluator.encode())])


def strategy_names() -> list[str]:
    """Every valid ``--strategy``: the samplers, ``sh:<sampler>`` and ``asha:<sampler>`` for each."""
    return list(SAMPLERS) + [SH_PREFIX + s for s in SAMPLERS] + [ASHA_PREFIX + s for s in SAMPLERS]


def sampler_of(strategy: str) -> Sampler:
    """The sampler a strategy walks (``sh:cycling`` -> cycling); a one-line error listing the
    valid strategies if unknown."""
    base = base_sampler(strategy)
    if base not in SAMPLERS:
        raise UnknownNameError(f"unknown strategy {strategy!r}; valid: {', '.join(SAMPLERS)}, or "
                               f"{SH_PREFIX}<sampler> / {ASHA_PREFIX}<sampler> with one of them (e.g. "
                               f"{SH_PREFIX}random, {ASHA_PREFIX}cycling)")
    return SAMPLERS[base]


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


def _rng_draw(rng: np.random.Generator, n_runs: int) -> Draw:
    return lambda w: rng.permuted(_tile(np.arange(w), n_runs), axis=1)


def _shuffle_blocks(base: np.ndarray, block_sizes: np.ndarray, n_runs: int, draw: Draw) -> np.ndarray:
    """Rows = ``base`` with each consecutive block independently shuffled per run."""
    out = _tile(base, n_runs)
    start = 0
    for size in block_sizes.tolist():  # one numpy call per block, not per run
        if size > 1:
            out[:, start:start + size] = out[0, start:start + size][draw(size)]
        start += size
    return out


def _ranked(pool: pl.DataFrame, key: str, descending: bool) -> np.ndarray:
    """Pool rows by ``key`` (unknown last), ties by name, as int32 indices (deterministic)."""
    ranked = (pool.with_row_index("_i")
              .sort([key, "backbone"], descending=[descending, False], nulls_last=True))
    return ranked.get_column("_i").to_numpy().astype(np.int32)


def _complexity_key(pool: pl.DataFrame, descending: bool = False) -> np.ndarray:
    """(gmacs, params_m, backbone) ascending or descending, unknown gmacs / params last either way."""
    ranked = (pool.with_row_index("_i")
              .sort(["gmacs", "params_m", "backbone"], descending=descending, nulls_last=True))
    return ranked.get_column("_i").to_numpy().astype(np.int32)


# ------------------------------------------------------------------------- samplers
@register("random")
def _random(pool, n_runs, draw):
    """Uniformly random order, drawn anew for each run."""
    return draw(pool.height).astype(np.int32)


@register("complexity-up", requires=("gmacs", "params_m"), deterministic=True, any_of=True)
def _complexity_up(pool, n_runs, draw):
    """Increasing complexity: ascending GMACs, ties by params, then name (small backbones first); by
    params where the oracle has no GMACs."""
    return _tile(_complexity_key(pool), n_runs).astype(np.int32)


@register("complexity-down", requires=("gmacs", "params_m"), deterministic=True, any_of=True)
def _complexity_down(pool, n_runs, draw):
    """Decreasing complexity: descending GMACs, ties by params, then name; unknown GMACs last; by
    params where the oracle has no GMACs."""
    return _tile(_complexity_key(pool, descending=True), n_runs).astype(np.int32)


@register("dataset-size-down", requires=("pretrain_images",))
def _dataset_size_down(pool, n_runs, draw):
    """Decreasing pretraining-dataset size; random inside a dataset; unknown last."""
    ranked = (pool.with_row_index("_i")
              .sort("pretrain_images", descending=True, nulls_last=True))
    sizes = ranked.get_column("pretrain_images")
    # consecutive runs of equal size (nulls form one block) are shuffled per run
    block_id = (sizes.fill_null(-1.0).diff().fill_null(0) != 0).cum_sum()
    block_sizes = block_id.value_counts(sort=False).sort(block_id.name).get_column("count")
    return _shuffle_blocks(ranked.get_column("_i").to_numpy(), block_sizes.to_numpy(), n_runs,
                           draw).astype(np.int32)


@register("cycling", requires=("pretrain_dataset",))
def _cycling(pool, n_runs, draw):
    """Round-robin over pretraining datasets, random order inside each and of the datasets per run."""
    ds = pool.get_column("pretrain_dataset").fill_null(UNKNOWN_DATASET)
    grouped = (pool.with_row_index("_i").with_columns(ds.alias("_ds"))
               .sort("_ds", "_i"))
    names, counts = np.unique(grouped.get_column("_ds").to_numpy(), return_counts=True)
    n_ds = names.size
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # members[r, offsets[d] + w] = w-th backbone of dataset d in run r
    members = _shuffle_blocks(grouped.get_column("_i").to_numpy(), counts, n_runs, draw)
    # dataset order per run: rank[r, d] = position of dataset d in run r
    ds_perm = draw(n_ds) if n_ds > 1 else _tile(np.arange(n_ds), n_runs)  # (R, D): order of datasets
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


@register("imagenet-top1", requires=("imagenet_top1",), deterministic=True)
def _imagenet_top1(pool, n_runs, draw):
    """Published ImageNet-1k top-1, descending, ties by name; unknown top-1 last (a free prior)."""
    return _tile(_ranked(pool, "imagenet_top1", descending=True), n_runs).astype(np.int32)


@register("meta", requires=(META_RANK,), deterministic=True)
def _meta(pool, n_runs, draw):
    """Mean normalised rank over reference oracles (--prior-oracle), ascending; absent last."""
    return _tile(_ranked(pool, META_RANK, descending=False), n_runs).astype(np.int32)


def meta_rank(backbones: list[str], references: list[pl.DataFrame]) -> pl.DataFrame:
    """The ``meta`` prior: for each backbone, the mean over the reference oracles that have it of
    its normalised rank there, ``(rank - 1) / (n - 1)`` with rank 1 = the best true score of that
    reference's n backbones (ties share their average rank; a reference of one backbone gives 0),
    so 0 = best everywhere, 1 = worst everywhere.  ``references``: one frame per reference oracle
    with columns ``backbone, true_score``.  A backbone absent from every reference gets null.
    Returns ``backbone, meta_rank, meta_n`` (how many references have it) in ``backbones`` order."""
    if not references:
        raise VibesError("the meta prior needs at least one reference oracle (--prior-oracle)")
    ranks = []
    for j, ref in enumerate(references):
        missing = [c for c in ("backbone", "true_score") if c not in ref.columns]
        if missing:
            raise VibesError(f"reference {j} lacks column(s) {', '.join(missing)}")
        n = ref.height
        ranks.append(ref.select(
            "backbone",
            ((pl.col("true_score").rank("average", descending=True) - 1) / max(n - 1, 1))
            .cast(pl.Float64).alias("_r")))
    allranks = pl.concat(ranks).group_by("backbone").agg(pl.col("_r").mean().alias(META_RANK),
                                                          pl.len().cast(pl.Int32).alias("meta_n"))
    return (pl.DataFrame({"backbone": backbones}, schema={"backbone": pl.String})
            .join(allranks, on="backbone", how="left", maintain_order="left")
            .with_columns(pl.col("meta_n").fill_null(0)))
