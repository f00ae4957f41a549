"""Successive halving ``sh:<sampler>``: the one schedule the simulator replays and a live search walks.

Fidelities f_1 < … < f_L are fractions of one evaluator, up to the spec's (:func:`ladder`).  A run
walks the sampler's order in consecutive chunks of n₀ = η^(L−1) backbones (``chunk`` overrides);
in a chunk of n backbones every one is evaluated at f_1 in order, then the top ⌈n/η⌉ by ε̃ (ties:
the earlier in the sampler's order; a failed evaluation is −∞, ranked last but still promoted
when the quota needs it) at f_2 in rank order, and so on up to f_L; then the next chunk.  The
last, partial chunk follows the same rule with its n.  The incumbent is the best ε̃ at the
highest fidelity reached (the lexicographic maximum of (level, ε̃), ties to the earlier).

:class:`SHLayout` is the schedule's shape (chunks, rung sizes, the level of every evaluation),
the same in every run; the simulator vectorises over it (:mod:`simulate.strategies`) and the
live search walks it with :class:`Schedule`.  ``simulate.reference.successive_halving_loop`` is
an independent transcription the tests hold both to.

A promotion to f_l costs (:func:`promotion_seconds`):

* ``incremental`` (the default of both phases) — the features of f_{l−1} are kept, the backbone is
  loaded again and only the images f_l adds are extracted: ``load + max(0, extract(f_l) −
  extract(f_{l−1})) + fit``, with the oracle's nested (cumulative) ``extract_seconds``; the cold
  ``seconds`` where any of these is unknown, or where the f_{l−1} evaluation failed (no features
  to keep: a failed backbone is promoted only to fill the quota);
* ``cold`` — a fresh evaluation: the row's ``seconds``.

A first-rung evaluation always costs its cold ``seconds``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.errors import VibesError, unknown

SH_PREFIX = "sh:"
#: asynchronous successive halving (ASHA): the same rungs, promotions as soon as a backbone is in the
#: top 1/eta of its rung's ended evaluations (simulate.workers); on one worker it still differs from sh
ASHA_PREFIX = "asha:"
PROMOTION_COSTS = ("incremental", "cold")
DEFAULT_PROMOTION_COST = "incremental"
DEFAULT_ETA = 3


def is_sh(strategy: str) -> bool:
    """Successive halving, synchronous (``sh:``) or asynchronous (``asha:``): rungs over fractions."""
    return str(strategy).startswith((SH_PREFIX, ASHA_PREFIX))


def is_asha(strategy: str) -> bool:
    return str(strategy).startswith(ASHA_PREFIX)


def base_sampler(strategy: str) -> str:
    """``sh:cycling`` / ``asha:cycling`` -> ``cycling``; a sampler name is itself."""
    return str(strategy).removeprefix(SH_PREFIX).removeprefix(ASHA_PREFIX)


@dataclass(frozen=True)
class SHConfig:
    """Successive-halving settings (``--eta``, ``--sh-chunk``, ``--promotion-cost``), checked."""

    eta: int = DEFAULT_ETA
    chunk: int | None = None
    promotion_cost: str = DEFAULT_PROMOTION_COST

    def __post_init__(self):
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise VibesError(f"--eta must be an integer >= 2, got {self.eta!r}")
        if self.chunk is not None and (isinstance(self.chunk, bool) or not isinstance(self.chunk, int)
                                       or self.chunk < 1):
            raise VibesError(f"--sh-chunk must be an integer >= 1, got {self.chunk!r}")
        if self.promotion_cost not in PROMOTION_COSTS:
            raise unknown("promotion cost", self.promotion_cost, PROMOTION_COSTS)

    def chunk_size(self, n_levels: int) -> int:
        """Backbones per chunk: ``chunk``, or η^(L−1)."""
        return self.chunk or self.eta ** (n_levels - 1)

    def as_dict(self) -> dict:
        return {"eta": self.eta, "chunk": self.chunk, "promotion_cost": self.promotion_cost}


def ladder(fractions: Sequence[float], top: float) -> tuple[float, ...]:
    """The fidelities of ``sh:`` up to the spec's fraction ``top``: the given fractions below it,
    then ``top`` itself, ascending (the simulator passes the oracle's fractions of the evaluator,
    a live search ``--sh-fractions``)."""
    bad = [f for f in fractions if not 0 < float(f) <= 1]
    if bad:
        raise VibesError(f"successive-halving fractions must lie in (0, 1], e.g. 0.01,0.1,1.0; got {bad[0]!r}")
    return tuple(sorted({float(f) for f in fractions if float(f) < float(top) - 1e-12} | {float(top)}))


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

    def chunks(self) -> list[tuple[int, int]]:
        """``(start position, size)`` of every chunk of the order."""
        out = [(g * self.chunk, self.chunk) for g in range(self.n_full)]
        return out + ([(self.n_full * self.chunk, self.rest)] if self.rest else [])

    def levels(self) -> np.ndarray:
        """(N,) the fidelity level of every evaluation of a run, in evaluation order."""
        one = lambda n: np.repeat(np.arange(self.n_levels), self.rungs(n)) if n else np.zeros(0, int)
        return np.concatenate([np.tile(one(self.chunk), self.n_full), one(self.rest)]).astype(np.int8)

    def barriers(self) -> tuple[np.ndarray, np.ndarray]:
        """Per evaluation of a run: its group (one per chunk and rung) and the group it waits for
        (the same chunk's rung below: its promotions need those scores; -1 at the first rung)."""
        group, waits = [], []
        g = 0
        for _, n in self.chunks():
            for lv, size in enumerate(self.rungs(n)):
                group += [g + lv] * size
                waits += [g + lv - 1 if lv else -1] * size
            g += self.n_levels
        return np.asarray(group, np.int64), np.asarray(waits, np.int64)

    def n_evaluations(self) -> int:
        return sum(sum(self.rungs(n)) for _, n in self.chunks())


def sh_layout(n_backbones: int, chunk: int, n_levels: int, eta: int) -> SHLayout:
    return SHLayout(n_backbones, chunk, n_levels, eta, n_backbones // chunk, n_backbones % chunk)


def promotion_seconds(cold, load, extract, extract_before, fit, rule: str = DEFAULT_PROMOTION_COST,
                      before_ok=True):
    """What a promotion pays (scalars or arrays): ``rule='cold'`` the cold ``seconds``;
    ``'incremental'`` ``load + max(0, extract − extract_before) + fit``, the cold seconds where any
    term is NaN (unknown) or where the lower evaluation failed (``before_ok`` false)."""
    if rule not in PROMOTION_COSTS:
        raise unknown("promotion cost", rule, PROMOTION_COSTS)
    cold = np.asarray(cold, dtype=np.float64)
    if rule == "cold":
        return cold if cold.ndim else float(cold)
    inc = (np.asarray(load, np.float64) + np.maximum(0.0, np.asarray(extract, np.float64)
                                                     - np.asarray(extract_before, np.float64))
           + np.asarray(fit, np.float64))
    out = np.where(np.isnan(inc) | ~np.asarray(before_ok, dtype=bool), cold, inc)
    return out if out.ndim else float(out)


class Schedule:
    """A live walk of the layout, for one worker or many: :meth:`take` gives the next evaluation
    ``(index, backbone, level)`` as soon as its identity is known (a rung's promotions are known
    once every score of the rung below in the chunk is in; a sampler's order always is), None while
    it waits for scores; :meth:`done` takes any evaluation's ε̃ (None or −∞: failed), in any order.
    ``index`` is the evaluation's position in the run's sequence (the simulator's layout order).
    One level: the order itself."""

    def __init__(self, order: Sequence[str], n_levels: int, config: SHConfig | None = None):
        cfg = config or SHConfig()
        self.layout = sh_layout(len(order), cfg.chunk_size(n_levels), n_levels, cfg.eta)
        self._order = list(order)
        self._position = {b: i for i, b in enumerate(self._order)}
        self._chunks = self.layout.chunks()
        self._chunk = 0
        self._level = 0
        self._rung: list[str] = []  # the backbones of the current rung, in evaluation order
        self._taken = 0  # how many of the rung were taken
        self._first = 0  # sequence index of the rung's first evaluation
        self._scores: dict[int, float] = {}  # sequence index -> ε̃ of the current rung
        self._next_index = 0
        self.completed: list[list[str]] = []  # the backbones of every chunk whose rungs are all done
        self._open_chunk()

    def _open_chunk(self) -> None:
        if self._chunk < len(self._chunks):
            start, n = self._chunks[self._chunk]
            self._rung, self._level, self._taken = self._order[start:start + n], 0, 0
            self._first, self._scores = self._next_index, {}

    @property
    def finished(self) -> bool:
        return self._chunk >= len(self._chunks)

    def take(self) -> tuple[int, str, int] | None:
        """The next evaluation, or None: finished, or waiting for scores of the current rung."""
        self._advance()
        if self.finished or self._taken >= len(self._rung):
            return None
        b = self._rung[self._taken]
        self._taken += 1
        i = self._next_index
        self._next_index += 1
        return i, b, self._level

    def done(self, index: int, score: float | None) -> None:
        """Evaluation ``index``'s ε̃ (None, NaN or −∞: failed)."""
        s = -math.inf if score is None or not math.isfinite(float(score)) else float(score)
        if self._first <= index < self._first + len(self._rung):
            self._scores[index] = s

    def _advance(self) -> None:
        """Close every rung whose evaluations are all taken: the top rung of a chunk at once (the
        next chunk needs none of its scores), a lower one once its scores are all in: promote the
        top ⌈n/η⌉ (ties: earlier in the order) to the next rung."""
        while not self.finished and self._taken == len(self._rung):
            top = self._level + 1 == self.layout.n_levels
            if not top and len(self._scores) < len(self._rung):
                return  # the promotions need every score of this rung
            rung = self._rung
            if not top:
                scores = [self._scores[self._first + j] for j in range(len(rung))]
                keep = -(-len(rung) // self.layout.eta)  # ⌈n/η⌉, the layout's next rung size
                ranked = sorted(range(len(rung)), key=lambda j: (-scores[j], self._position[rung[j]]))[:keep]
                self._rung = [rung[j] for j in ranked]
                self._level += 1
                self._taken, self._first, self._scores = 0, self._next_index, {}
            else:
                start, n = self._chunks[self._chunk]
                self.completed.append(self._order[start:start + n])
                self._chunk += 1
                self._open_chunk()


__all__ = ["SH_PREFIX", "ASHA_PREFIX", "PROMOTION_COSTS", "DEFAULT_PROMOTION_COST", "DEFAULT_ETA", "is_sh",
           "is_asha", "base_sampler",
           "SHConfig", "ladder", "SHLayout", "sh_layout", "promotion_seconds", "Schedule"]
