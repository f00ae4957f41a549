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
from collections.abc import Generator, Sequence
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
    """A live walk of the layout: what to evaluate next, as ``(backbone, level)``; :meth:`done`
    takes each evaluation's ε̃ (None or −∞: failed) and moves on.  One level and chunk 1 is the
    order itself."""

    def __init__(self, order: Sequence[str], n_levels: int, config: SHConfig | None = None):
        cfg = config or SHConfig()
        self.layout = sh_layout(len(order), cfg.chunk_size(n_levels), n_levels, cfg.eta)
        self._gen = self._walk(list(order), self.layout)
        self.next: tuple[str, int] | None = next(self._gen, None)

    @staticmethod
    def _walk(order: list[str], layout: SHLayout) -> Generator[tuple[str, int], float, None]:
        position = {b: i for i, b in enumerate(order)}
        for start, n in layout.chunks():
            candidates = order[start:start + n]
            sizes = layout.rungs(n)
            for lv in range(layout.n_levels):
                scores = {}
                for b in candidates:
                    scores[b] = yield b, lv
                if lv + 1 < layout.n_levels:
                    candidates = sorted(candidates, key=lambda b: (-scores[b], position[b]))[:sizes[lv + 1]]

    def done(self, score: float | None) -> None:
        s = -math.inf if score is None or not math.isfinite(float(score)) else float(score)
        try:
            self.next = self._gen.send(s)
        except StopIteration:
            self.next = None


__all__ = ["SH_PREFIX", "ASHA_PREFIX", "PROMOTION_COSTS", "DEFAULT_PROMOTION_COST", "DEFAULT_ETA", "is_sh",
           "is_asha", "base_sampler",
           "SHConfig", "ladder", "SHLayout", "sh_layout", "promotion_seconds", "Schedule"]
