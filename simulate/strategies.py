"""Strategies: what a VIBES search evaluates, in which order, and what it would select.

A strategy is named on the command line (``--strategy``) and paired with each evaluator spec
(``--evaluator``).  Two kinds:

* **a sampler** (``random``, ``cycling``, ``imagenet-top1``, ... — :data:`shared.samplers.SAMPLERS`):
  the paper's strategy, one order π × one evaluator ε̃, the incumbent the best ε̃ so far (Eqs. 3–4,
  :func:`simulate.engine.replay_in_order`).
* **successive halving** ``sh:<sampler>`` over the evaluator's fractions, a strategy that reacts to
  what it sees.  Fidelities f_1 < … < f_L are the fractions the oracle has (ok rows) for the
  evaluator, up to the spec's fraction: ``mlp`` climbs to 1.0 (the issue's f_L = 1), ``mlp@0.1``
  to 0.1.  The run walks the sampler's order in consecutive chunks of n₀ = η^(L−1) backbones
  (``--sh-chunk`` overrides).  In a chunk of n backbones: evaluate every one at f_1, in order;
  promote the top ⌈n/η⌉ by ε̃ at that rung to the next fidelity (ties: the earlier in the sampler's
  order), evaluated in rank order; repeat up to f_L; then the next chunk.  The incumbent after each
  evaluation is the backbone with the best ε̃ at f_L so far or, before any f_L evaluation, the best
  at the highest fidelity evaluated so far (ties: the earlier evaluated); formally the
  lexicographic maximum of (fidelity, ε̃) over the evaluations with a finite ε̃.

  Decisions the issue leaves open:

  - *A failed row* (or a backbone with no row at that fraction) has ε̃ = −∞: it ranks below every
    finite score and is promoted only when fewer than ⌈n/η⌉ of its rung have a finite score; the
    quota is always filled.  A failure at a small fraction is often the fraction's fault (a 1 %
    subset with fewer images than classes), not the backbone's, and a fixed quota keeps every
    chunk's schedule (n, ⌈n/η⌉, ⌈n/η²⌉, …) the same in every run.  A −∞ evaluation is never the
    incumbent.
  - *The last, partial chunk* (pool size not a multiple of n₀) follows the same rule with its n;
    ⌈·⌉ keeps at least one backbone to f_L.
  - *L = 1* (one fraction, e.g. every ``timm:<set>`` oracle, or ``mlp@0.01``): n₀ = 1, each chunk
    is one evaluation, so ``sh:<sampler>`` is exactly ``<sampler>`` with that evaluator (the same
    draws give the same selections; a test holds them equal).
  - *Rows*: one seed's row per (run, backbone, fidelity), drawn so that a backbone keeps its seed
    across fidelities (one uniform u per run and backbone, row ⌊u·n_rows⌋ at every fidelity): the
    features kept from f_{l−1} are that seed's nested subset, which the promotion extends.
  - *Cost of a promotion* to f_l: ``incremental`` (default) = ``load_seconds(f_l) +
    max(0, extract_seconds(f_l) − extract_seconds(f_{l−1})) + fit_seconds(f_l)`` (the oracle's
    nested clock stamps make ``extract_seconds`` cumulative over fractions; the backbone is
    loaded again, the features of f_{l−1} are kept); the row's cold ``seconds`` where any of
    these is unknown.  ``cold``: the row's ``seconds``.  First-rung evaluations cost ``seconds``.
  - *Outputs*: the strategy column reads ``sh:<sampler>``, the evaluator column the top
    fidelity's spec (``mlp``); ``n_evaluated`` counts evaluations, promotions included (it can
    exceed the pool).  η, the chunk and the promotion cost are in ``summary.json`` (``sh``).

A budget counts the evaluations whose cumulative cost ≤ t_max (Eq. 4) for every strategy.
:mod:`simulate.reference` has the literal loop of each kind that the tests hold these to.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from shared.errors import VibesError, unknown
from shared.oracle import Oracle
from shared.samplers import SAMPLERS, Sampler, get_sampler
from simulate.engine import Replay, best_at_highest_level, replay_in_order, replay_sequence
from simulate.evaluator import EvaluatorView, build_view, format_spec, parse_spec

SH_PREFIX = "sh:"
PROMOTION_COSTS = ("incremental", "cold")


@dataclass(frozen=True)
class SHConfig:
    """Successive-halving settings (``--eta``, ``--sh-chunk``, ``--promotion-cost``)."""

    eta: int = 3
    chunk: int | None = None
    promotion_cost: str = "incremental"

    def __post_init__(self):
        if not isinstance(self.eta, int) or self.eta < 2:
            raise VibesError(f"--eta must be an integer >= 2, got {self.eta!r}")
        if self.chunk is not None and (not isinstance(self.chunk, int) or self.chunk < 1):
            raise VibesError(f"--sh-chunk must be an integer >= 1, got {self.chunk!r}")
        if self.promotion_cost not in PROMOTION_COSTS:
            raise unknown("promotion cost", self.promotion_cost, PROMOTION_COSTS)

    def as_dict(self) -> dict:
        return {"eta": self.eta, "chunk": self.chunk, "promotion_cost": self.promotion_cost}


def strategy_names() -> list[str]:
    """Every valid --strategy: the samplers and ``sh:<sampler>`` for each."""
    return list(SAMPLERS) + [SH_PREFIX + s for s in SAMPLERS]


def sampler_of(name: str) -> Sampler:
    """The sampler a strategy walks (``sh:cycling`` -> cycling); a one-line error if unknown."""
    base = name.removeprefix(SH_PREFIX)
    if base not in SAMPLERS:
        raise unknown("strategy", name, strategy_names())
    return get_sampler(base)


def is_sh(name: str) -> bool:
    return name.startswith(SH_PREFIX)


# ------------------------------------------------------------------------------ pairs
class OrderPair:
    """The paper's strategy: one sampler's order × one evaluator view, best ε̃ so far."""

    def __init__(self, strategy: str, sampler: Sampler, view: EvaluatorView):
        self.strategy, self.sampler, self.view = strategy, sampler, view
        self.views = [view]
        self.spec = view.spec

    @property
    def deterministic(self) -> bool:
        """Every run is the same run (replayed once, broadcast)."""
        return self.sampler.deterministic and self.view.single

    @property
    def draws_rows(self) -> bool:
        return not self.view.single

    def draw(self, order: np.ndarray, rng: np.random.Generator):
        return self.view.draw_in_order(order, rng)

    def replay(self, order: np.ndarray, drawn, budgets: np.ndarray) -> Replay:
        e, c = drawn
        return replay_in_order(order, e, c, budgets)

    def total_seconds(self) -> float:
        return self.view.total_seconds()

    def min_seconds(self) -> float:
        return self.view.min_seconds()

    def describe(self) -> dict:
        return {}


class SHPair:
    """Successive halving over the fidelities ``views`` (ascending fractions of one evaluator)."""

    def __init__(self, strategy: str, sampler: Sampler, views: list[EvaluatorView], config: SHConfig,
                 n_backbones: int):
        self.strategy, self.sampler, self.views, self.config = strategy, sampler, views, config
        self.spec = views[-1].spec
        self.n_levels = len(views)
        self.chunk = config.chunk or config.eta ** (self.n_levels - 1)
        self.layout = sh_layout(n_backbones, self.chunk, self.n_levels, config.eta)

    @property
    def deterministic(self) -> bool:
        return self.sampler.deterministic and all(v.single for v in self.views)

    @property
    def draws_rows(self) -> bool:
        return not all(v.single for v in self.views)

    def draw(self, order: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per level, in evaluation-order layout (L, R, B): score, cold cost, promotion cost."""
        u = rng.random(order.shape) if self.draws_rows else None
        return sh_rows(self.views, order, u, self.config.promotion_cost)

    def replay(self, order: np.ndarray, drawn, budgets: np.ndarray) -> Replay:
        backbone, level, score, cost = sh_sequence(order, drawn["score"], drawn["first"], drawn["promote"],
                                                   self.layout)
        incumbent, inc_eps = best_at_highest_level(score, level)
        return replay_sequence(backbone, cost, incumbent, inc_eps, budgets)

    def total_seconds(self) -> float:
        return self.views[-1].total_seconds()

    def min_seconds(self) -> float:
        return self.views[0].min_seconds()

    def describe(self) -> dict:
        return {"fidelities": [v.fraction for v in self.views], "chunk": self.chunk}


def make_pair(strategy: str, oracle: Oracle, pool: pl.DataFrame, spec: str,
              config: SHConfig | None = None, views: dict | None = None):
    """The replayable pair of ``strategy`` (a sampler or ``sh:<sampler>``) and evaluator ``spec``.
    ``views``: a cache spec -> EvaluatorView shared between pairs."""
    sampler = sampler_of(strategy)
    views = {} if views is None else views

    def view(s):
        if s not in views:
            views[s] = build_view(oracle, pool, s)
        return views[s]

    if not is_sh(strategy):
        return OrderPair(strategy, sampler, view(spec))
    name, top = parse_spec(spec, oracle)
    have = oracle.evaluators().filter(pl.col("evaluator") == name).get_column("fraction").to_list()
    ladder = sorted(f for f in set(have) if f <= top + 1e-12)
    return SHPair(strategy, sampler, [view(format_spec(name, f)) for f in ladder],
                  config or SHConfig(), pool.height)


# ------------------------------------------------------------------------------ successive halving
@dataclass(frozen=True)
class SHLayout:
    """The schedule of one run, the same in every run: chunks of the order and rung sizes."""

    n_backbones: int
    chunk: int
    n_levels: int
    eta: int
    n_full: int  # full chunks
    rest: int  # size of the last, partial chunk (0: none)

    def rungs(self, n: int) -> list[int]:
        """Evaluations per rung of a chunk of n backbones: n, ⌈n/η⌉, ⌈n/η²⌉ (iterated), …"""
        out = [n]
        for _ in range(self.n_levels - 1):
            out.append(-(-out[-1] // self.eta))
        return out

    def levels(self) -> np.ndarray:
        """(N,) the fidelity level of every evaluation of a run, in evaluation order."""
        one = lambda n: np.repeat(np.arange(self.n_levels), self.rungs(n)) if n else np.zeros(0, int)
        return np.concatenate([np.tile(one(self.chunk), self.n_full), one(self.rest)]).astype(np.int8)


def sh_layout(n_backbones: int, chunk: int, n_levels: int, eta: int) -> SHLayout:
    return SHLayout(n_backbones, chunk, n_levels, eta, n_backbones // chunk, n_backbones % chunk)


def sh_rows(views: list[EvaluatorView], order: np.ndarray, u: np.ndarray | None,
            promotion_cost: str) -> dict[str, np.ndarray]:
    """Each level's ε̃, first-rung cost (cold seconds) and promotion cost, (L, R, B) in the
    order's layout, for the rows chosen by ``u`` (row ⌊u·n_rows⌋ of each backbone; row 0 when
    ``u`` is None)."""
    n_levels = len(views)
    shape = (n_levels,) + order.shape
    score, first, promote = np.empty(shape), np.empty(shape), np.empty(shape)
    prev_extract = None
    for lv, v in enumerate(views):
        s_max = v.score.shape[1]
        n = v.n_rows[order]
        row = np.zeros(order.shape, np.int64) if u is None else np.minimum((u * n).astype(np.int64), n - 1)
        flat = order.astype(np.int64) * s_max + row
        score[lv] = np.take(v.score.ravel(), flat)
        first[lv] = np.take(v.seconds.ravel(), flat)
        extract = np.take(v.extract.ravel(), flat)
        if lv == 0 or promotion_cost == "cold":
            promote[lv] = first[lv]
        else:
            inc = np.take(v.load.ravel(), flat) + np.maximum(0.0, extract - prev_extract) + np.take(v.fit.ravel(), flat)
            promote[lv] = np.where(np.isnan(inc), first[lv], inc)
        prev_extract = extract
    return {"score": score, "first": first, "promote": promote}


def sh_sequence(order: np.ndarray, score: np.ndarray, first: np.ndarray, promote: np.ndarray,
                layout: SHLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The evaluations of every run in order: backbone (R, N), level (N,), ε̃ (R, N), cost (R, N).
    Vectorised over runs and over the chunks of equal size."""
    r, b = order.shape
    parts = []
    if layout.n_full:
        parts.append(_sh_chunks(order, score, first, promote, 0, layout.n_full, layout.chunk, layout))
    if layout.rest:
        parts.append(_sh_chunks(order, score, first, promote, layout.n_full * layout.chunk, 1, layout.rest,
                                layout))
    if not parts:
        z = np.zeros((r, 0))
        return z.astype(np.int32), np.zeros(0, np.int8), z, z
    backbone, ev_score, cost = (np.concatenate(x, axis=1) for x in zip(*parts))
    return backbone, layout.levels(), ev_score, cost


def _sh_chunks(order, score, first, promote, start, n_chunks, n, layout):
    """``n_chunks`` consecutive chunks of ``n`` backbones from order position ``start``."""
    r = order.shape[0]
    base = start + (np.arange(n_chunks) * n)[None, :, None]  # (1, G, 1) first position of each chunk
    cand = np.broadcast_to(np.arange(n)[None, None, :], (r, n_chunks, n))  # local positions, in order
    sizes = layout.rungs(n)
    out_pos, out_score, out_cost = [], [], []

    def gather(a, pos):  # a: (R, B) in order layout; pos: (R, G, k) positions
        return np.take_along_axis(a, pos.reshape(r, -1), axis=1).reshape(pos.shape)

    for lv in range(layout.n_levels):
        pos = base + cand
        out_pos.append(pos)
        out_score.append(gather(score[lv], pos))
        out_cost.append(gather(first[lv] if lv == 0 else promote[lv], pos))
        if lv + 1 < layout.n_levels:
            srt = np.sort(cand, axis=-1)  # ascending order position: stable ties = earlier in the order
            keys = gather(score[lv], base + srt)
            rank = np.argsort(-keys, axis=-1, kind="stable")[..., :sizes[lv + 1]]  # -inf ranks last
            cand = np.take_along_axis(srt, rank, axis=-1)
    pos = np.concatenate(out_pos, axis=-1).reshape(r, -1)  # chunk-major: chunk g's rungs together
    return (np.take_along_axis(order, pos, axis=1).astype(np.int32),
            np.concatenate(out_score, axis=-1).reshape(r, -1),
            np.concatenate(out_cost, axis=-1).reshape(r, -1))
