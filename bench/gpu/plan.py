"""The parts, the sizes of a run and its time caps.

The budget (``--budget``, default ``8min``; the project's duration grammar, ``shared.durations``):
``setup = min(60 s, 10 %)`` is left for imports, the pool, generating the dataset (7.5 GB of uint8 at
50,000 x 224 px) and the device warm-up; of the rest R, part e gets its search budget
``min(2 min, 0.28 R)`` + 35 s (the search generates its dataset again), b 5 %, c 8 %, d 5 %, f 10 %,
and a what is left (at least 25 %; all shrink alike when that floor overfills R, and without part a
the others share R in their proportions).  How each part keeps to its cap:
  a. the sample has 16 strata when its cap holds 16 x 30 s, else 12; the backbones are measured in a
     spread order (the middle stratum, the lowest, the highest, then van der Corput), a backbone whose
     time predicted from those measured so far (the same log-log fit) exceeds what is left is not
     started (``status`` ``skipped``, with ``predicted_seconds``), and the one in flight is stopped at
     the cap on its measured seconds (``precompute.clock.budget``, as a live search stops;
     ``stopped``).  The median and the projection use what ran.  At 8 min part a has about 156 s:
     with backbones near the 30 s target that is about 5 of the 12 (12 x 30 s and a 2-minute search
     alone fill 8 minutes); ``--budget 15min`` gives part a about 7.5 min.
  b. fewer images per backbone (from part a's measured images/s), and backbones not started past the cap;
  c. the heads' epochs: one untimed 2-epoch run calibrates seconds per epoch, the timed run has the
     protocol's 200 epochs when they fit, else as many as fit (``epochs``; ``protocol_seconds`` scales
     to 200, flagged ``scaled``);
  d. timed calls stop when the next would pass the cap; a proxy whose full-size time, extrapolated
     from the 1,000- and 5,000-row calls (power law, exponent clamped to [1, 2]), exceeds what is left
     is not timed (``skipped``);
  e. the search budget itself;
  f. each backbone's timeout is ``min(--check-timeout, what is left)``; none starts with < 5 s left.
Each part's cap is scaled by ``min(1, left / planned caps of the parts still to run)`` when it starts
(never below a quarter), so a part that overran squeezes the ones after it (:func:`part_cap`).

``--smoke``: dataset ``synthetic:600@32``, input size 32, 3 backbones of <= 5 M parameters and <= 0.01
effective GMACs, images for b 250, proxies at 500 x 64, search budget 5 s over that small part of the
pool, check over its 2 smallest backbones (input size 32, timeout 30 s).
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.gpu.common import described
from shared.protocol import MLP_PROTOCOL

PARTS = {"a": "sweep sample: per-backbone seconds (load/extract/fit) and the whole-pool projection",
         "b": "extraction throughput vs a plain forward of the same batches",
         "c": "heads: the sweep's pattern (seed 0 + batched rest) vs sequential",
         "d": "proxies (knn, ridge, logme, hscore) at 50,000 x 2,048 (smoke: 500 x 64)",
         "e": "live search (cycling, mlp@0.1, 2 min; smoke: 5 s)",
         "f": "precompute check of the backbones the CPU could not check"}
RUN_ORDER = ("a", "b", "c", "d", "f", "e")  # a and b share the dataset; it is freed before e
PROTOCOL_EPOCHS = MLP_PROTOCOL["epochs"]
FULL_DATASET = "synthetic:50000@224"
TARGET_MEDIAN_S = 30.0  # the median per-backbone sweep cost the issue asks for (also part a's sample size rule)
SHARES = {"b": 0.05, "c": 0.08, "d": 0.05, "f": 0.10}  # of the budget after setup; a gets the rest
SEARCH_SHARE = 0.28
A_FLOOR = 0.25
MIN_SCALE = 0.25


@dataclass
class Plan:
    """Sizes and time caps of one run (the module docstring says how they are chosen).  The JSON's
    ``plan`` is this less ``smoke``, ``budget_s`` and ``setup_s``, which the JSON carries at its top."""

    smoke: bool = described("toy sizes on the CPU: the same code paths, no GPU figure")
    budget_s: float = described("the whole run's time (s)")
    setup_s: float = described("the allowance for imports, the pool, the dataset and the warm-up (s)")
    dataset: str = described("parts a, b, c and e's dataset")
    input_size: int | None = described("parts a, b, e and f's input size (px; null: each backbone's native)")
    sample: int = described("strata of part a's sample")
    max_params_m: float | None = described("the pool part a samples: at most this many M parameters (smoke only)")
    max_gmacs: float | None = described("the pool part a samples: at most this many effective GMACs (smoke only)")
    batch_size: int = described("the extraction batch size")
    ratio_images: int = described("part b's images per backbone, at most")
    ratio_repeat: int = described("part b's repeats (best of)")
    proxy_rows: int = described("part d's rows (train + test)")
    proxy_dim: int = described("part d's feature width")
    proxy_repeat: int = described("part d's timed calls per proxy, at most")
    heads_epochs: int = described("part c's epochs, at most (the protocol's)")
    search_budget_s: float = described("part e's search budget (s)")
    search_max_params_m: float = described("part e's pool: at most this many M parameters")
    check_timeout_s: float = described("part f's per-backbone timeout (s)")
    check_max: int | None = described("part f checks at most this many backbones (null: as many as the cap holds)")
    caps_s: dict[str, float] = described("{part letter: its planned cap (s)}")


def _caps(rest: float, smoke: bool, selected: list[str]) -> tuple[dict[str, float], float]:
    """The selected parts' caps out of ``rest`` seconds, and the search budget."""
    caps: dict[str, float] = {}
    search = min(5.0 if smoke else 120.0, SEARCH_SHARE * rest)
    for p in selected:
        if p == "e":
            caps[p] = search + (10.0 if smoke else 35.0)
        elif p in SHARES:
            caps[p] = SHARES[p] * rest
    if "a" in selected:
        caps["a"] = max(A_FLOOR * rest, rest - sum(caps.values()))
    else:  # no part a to take the rest: b, c, d and f share it in their proportions (e keeps its budget)
        others = [p for p in caps if p != "e"]
        free = rest - caps.get("e", 0.0)
        total = sum(caps[p] for p in others)
        if others and free > total:
            caps.update({p: caps[p] * free / total for p in others})
    total = sum(caps.values())
    if total > rest:  # a small budget: part a's floor pushed the sum over, everything shrinks alike
        caps = {p: c * rest / total for p, c in caps.items()}
        search *= rest / total
    return caps, search


def make_plan(budget_s: float, smoke: bool, selected: list[str], check_timeout_s: float | None = None,
              dataset: str | None = None, input_size: int | None = None) -> Plan:
    setup = min(60.0, 0.1 * budget_s)
    caps, search = _caps(budget_s - setup, smoke, selected)
    if smoke:
        return Plan(smoke=True, budget_s=budget_s, setup_s=setup, dataset=dataset or "synthetic:600@32",
                    input_size=input_size or 32, sample=3, max_params_m=5.0, max_gmacs=0.01, batch_size=256,
                    ratio_images=250, ratio_repeat=2, proxy_rows=500, proxy_dim=64, proxy_repeat=2,
                    heads_epochs=PROTOCOL_EPOCHS, search_budget_s=search, search_max_params_m=5.0,
                    check_timeout_s=check_timeout_s or 30.0, check_max=2, caps_s=caps)
    return Plan(smoke=False, budget_s=budget_s, setup_s=setup, dataset=dataset or FULL_DATASET, input_size=input_size,
                sample=16 if caps.get("a", 0.0) >= 16 * TARGET_MEDIAN_S else 12, max_params_m=None, max_gmacs=None,
                batch_size=256, ratio_images=8192, ratio_repeat=2, proxy_rows=50_000, proxy_dim=2048,
                proxy_repeat=3, heads_epochs=PROTOCOL_EPOCHS, search_budget_s=search, search_max_params_m=25.0,
                check_timeout_s=check_timeout_s or 60.0, check_max=None, caps_s=caps)


def part_cap(plan: Plan, todo: list[str], left: float) -> float:
    """The cap of ``todo[0]`` as it starts with ``left`` seconds of the budget for ``todo`` (the parts
    still to run): its planned cap scaled by ``min(1, left / their planned caps)``, never below MIN_SCALE."""
    remaining = sum(plan.caps_s[q] for q in todo)
    scale = max(MIN_SCALE, min(1.0, left / remaining)) if remaining > 0 else 1.0
    return plan.caps_s[todo[0]] * scale


def parse_parts(text: str) -> list[str]:
    letters = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    bad = [p for p in letters if p not in PARTS]
    if bad or not letters:
        raise SystemExit(f"error: --parts takes letters of {','.join(PARTS)} separated by commas; got {text!r}")
    return [p for p in PARTS if p in letters]
