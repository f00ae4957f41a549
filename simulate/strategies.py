"""Strategies: what a VIBES search evaluates, in which order, and what it would select.

A strategy is named on the command line (``--strategy``) and paired with each evaluator spec
(``--evaluator``).  Two kinds:

* **a sampler** (``random``, ``cycling``, ``imagenet-top1``, ... — :data:`shared.samplers.SAMPLERS`):
  the paper's strategy, one order π × one evaluator ε̃, the incumbent the best ε̃ so far (Eqs. 3–4,
  :func:`simulate.engine.replay_in_order`).
* **successive halving** ``sh:<sampler>`` over the evaluator's fractions, a strategy that reacts to
  what it sees.  The schedule, the incumbent rule and the promotion costs are written once, in
  :mod:`shared.successive_halving` (the live search walks the same :class:`~shared.successive_halving.SHLayout`);
  this module replays it vectorised over runs.  Fidelities f_1 < … < f_L are the fractions the
  oracle has (ok rows) for the evaluator, up to the spec's fraction: ``mlp`` climbs to 1.0,
  ``mlp@0.1`` to 0.1.  What is the simulator's own:

  - *Missing rows*: a backbone with no row at a fraction has ε̃ = −∞ there (like a failed row):
    ranked last, promoted only to fill the quota, never the incumbent; the fixed quota keeps every
    chunk's schedule (n, ⌈n/η⌉, ⌈n/η²⌉, …) the same in every run.
  - *L = 1* (one fraction, e.g. every ``timm:<set>`` oracle, or ``mlp@0.01``): n₀ = 1, each chunk
    is one evaluation, so ``sh:<sampler>`` is exactly ``<sampler>`` with that evaluator (the same
    draws give the same selections; a test holds them equal).
  - *Rows*: one seed's row per (run, backbone, fidelity), drawn so that a backbone keeps its seed
    across fidelities (one uniform u per run and backbone, row ⌊u·n_rows⌋ at every fidelity): the
    features kept from f_{l−1} are that seed's nested subset, which the promotion extends.
  - *Outputs*: the strategy column reads ``sh:<sampler>``, the evaluator column the top
    fidelity's spec (``mlp``); ``n_evaluated`` counts evaluations, promotions included (it can
    exceed the pool).  η, the chunk and the promotion cost are in ``summary.json`` (``sh``).

A budget counts the evaluations whose cumulative cost ≤ t_max (Eq. 4) for every strategy.
:mod:`simulate.reference` has the literal loop of each kind that the tests hold these to.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from shared.evaluator_spec import format_spec
from shared.oracle import Oracle
from shared.samplers import Sampler, sampler_of
from shared.successive_halving import SHConfig, SHLayout, is_asha, is_sh, ladder, promotion_seconds, sh_layout
from simulate.engine import Replay, best_at_highest_level, replay_in_order, replay_sequence
from simulate.evaluator import EvaluatorView, build_view, parse_spec
from simulate.workers import asha_runs, barrier_schedule, list_schedule, replay_ends


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

    def replay(self, order: np.ndarray, drawn, budgets: np.ndarray, workers: int = 1) -> Replay:
        e, c = drawn
        if workers == 1:
            return replay_in_order(order, e, c, budgets)
        return replay_ends(order, e, list_schedule(c, workers), budgets)

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
        self.chunk = config.chunk_size(self.n_levels)
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

    def replay(self, order: np.ndarray, drawn, budgets: np.ndarray, workers: int = 1) -> Replay:
        backbone, level, score, cost = sh_sequence(order, drawn["score"], drawn["first"], drawn["promote"],
                                                   self.layout)
        if workers == 1:
            incumbent, inc_eps = best_at_highest_level(score, level)
            return replay_sequence(backbone, cost, incumbent, inc_eps, budgets)
        group, waits_for = self.layout.barriers()
        ends = barrier_schedule(cost, workers, group, waits_for)
        return replay_ends(backbone, score, ends, budgets, level)

    def total_seconds(self) -> float:
        return self.views[-1].total_seconds()

    def min_seconds(self) -> float:
        return self.views[0].min_seconds()

    def describe(self) -> dict:
        return {"fidelities": [v.fraction for v in self.views], "chunk": self.chunk}


class ASHAPair(SHPair):
    """Asynchronous successive halving over the same fidelities (:func:`simulate.workers.asha_run`):
    the same rows and promotion costs as ``sh:``, but promotions happen as soon as a backbone is in
    the top 1/η of its rung's ended evaluations, so the sequence depends on the workers' timing."""

    def replay(self, order: np.ndarray, drawn, budgets: np.ndarray, workers: int = 1) -> Replay:
        backbone, level, score, ends = asha_runs(order, drawn["score"], drawn["first"], drawn["promote"],
                                                 self.config.eta, workers)
        return replay_ends(backbone, score, ends, budgets, level)

    def describe(self) -> dict:
        return {"fidelities": [v.fraction for v in self.views], "asynchronous": True}


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
    kind = ASHAPair if is_asha(strategy) else SHPair
    return kind(strategy, sampler, [view(format_spec(name, f)) for f in ladder(have, top)],
                config or SHConfig(), pool.height)


# ------------------------------------------------------------------------------ successive halving
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
        if lv == 0:
            promote[lv] = first[lv]
        else:
            promote[lv] = promotion_seconds(first[lv], np.take(v.load.ravel(), flat), extract, prev_extract,
                                            np.take(v.fit.ravel(), flat), promotion_cost,
                                            score[lv - 1] > -np.inf)
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
