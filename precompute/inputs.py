"""A sweep's and a live search's inputs, checked without torch.

``precompute run``, ``estimate`` and ``search`` refuse a bad argument (an unknown evaluator, dataset
or device, a fraction out of (0, 1], a truth no evaluator gives, ...) in one line before torch and
timm are imported: every check here reads only the arguments, the dataset registry and the file
system.  :class:`Setup` (how a backbone is loaded and a dataset read) and :class:`SweepConfig` (a
sweep's protocol) validate themselves when made; :mod:`precompute.sweep` runs them, and re-exports
these names.  The evaluators' names are :func:`evaluator_names`.
"""
from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from precompute import datasets as D
from precompute import parts as P
from shared.errors import VibesError, unknown
from shared.protocol import (
    DEFAULT_EVALUATORS,
    DEFAULT_FRACTIONS,
    DEFAULT_SEEDS,
    EVALUATOR_NAMES,
    HEADS,
    infer_truth,
)

WEIGHTS = ("pretrained", "random")
DEVICE_TEXT = "expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
_DEVICE = re.compile(r"auto|(cpu|mps|cuda)(:\d+)?")


def parse_floats(text: str, what: str, example: str = "1.0,0.1,0.01") -> tuple[float, ...]:
    """``--<what> 1.0,0.1,0.01`` -> the numbers; anything else one line naming the option."""
    try:
        vals = tuple(float(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise VibesError(f"--{what} must be comma-separated numbers, e.g. {example}; got {text!r}") from None
    if not vals:
        raise VibesError(f"--{what} is empty; expected e.g. {example}")
    return vals


def parse_names(text: str, what: str) -> tuple[str, ...]:
    """``--<what> mlp,silhouette`` -> the names."""
    vals = tuple(x.strip() for x in text.split(",") if x.strip())
    if not vals:
        raise VibesError(f"--{what} is empty; expected comma-separated names, e.g. mlp,silhouette")
    return vals


def check_device_name(device: str) -> None:
    """``--device``'s spelling (``auto``, ``cpu``, ``mps``, ``cuda``, ``cuda:N``); whether this
    machine has it is :func:`precompute.backbone.resolve_device`'s question (it needs torch)."""
    if not isinstance(device, str):  # a torch.device made by the library: resolve_device checks it
        return
    if not _DEVICE.fullmatch(device):
        raise VibesError(f"unknown device {device!r}; {DEVICE_TEXT}")


@dataclass
class Setup:
    """How a backbone is loaded and a dataset read: what a sweep and a live search share."""

    dataset: str
    _: KW_ONLY
    weights: str = "pretrained"
    pretrained_file: str | None = None
    device: str = "auto"
    batch_size: int = 256
    input_size: int | None = None
    data_root: str = "data/datasets"
    download: bool = False
    cache_dir: str = "data/cache"

    def __post_init__(self):
        if self.weights not in WEIGHTS:
            raise VibesError(f"weights must be one of {', '.join(WEIGHTS)}; got {self.weights!r}")
        if isinstance(self.batch_size, bool) or int(self.batch_size) < 1:
            raise VibesError(f"batch size must be a positive integer; got {self.batch_size}")
        if self.input_size is not None and int(self.input_size) < 1:
            raise VibesError(f"input size must be a positive integer; got {self.input_size}")
        check_device_name(self.device)

    def setup_fields(self) -> dict[str, Any]:
        """This object's :class:`Setup` fields (to build another config on the same setup)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(Setup)}


@dataclass
class SweepConfig(Setup):
    """Everything a sweep (or one shard of it) needs; plain data, so it pickles to Slurm."""

    _: KW_ONLY
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    seeds: int = DEFAULT_SEEDS
    evaluators: tuple[str, ...] = DEFAULT_EVALUATORS
    parts_dir: str = P.DEFAULT_PARTS_DIR
    keep_features: bool = False
    retry_failed: bool = False
    evict_weights: bool = False  # delete each backbone's freshly downloaded weights after it
    truth: str | None = None  # the evaluator whose fraction-1.0 score is the truth (None: infer_truth)
    command_config: dict | None = None  # `precompute run`'s options as resolved (the manifest's "config"; no effect)

    def __post_init__(self):
        self.fractions = tuple(sorted({float(f) for f in self.fractions}, reverse=True))
        self.evaluators = tuple(dict.fromkeys(self.evaluators))
        if not self.fractions or any(not (0 < f <= 1) for f in self.fractions):
            raise VibesError(f"fractions must be in (0, 1], e.g. 1.0,0.1,0.01; got "
                             f"{list(self.fractions)}")
        if int(self.seeds) < 1:
            raise VibesError(f"seeds must be a positive number of replicates; got {self.seeds}")
        self.seeds = int(self.seeds)
        super().__post_init__()
        if not self.evaluators:
            raise VibesError("at least one evaluator is needed, e.g. mlp,silhouette")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))

    def truth_evaluator(self) -> str:
        """The truth this run's parts record: ``truth`` if named, else :func:`shared.protocol.infer_truth`."""
        return self.truth or infer_truth(self.evaluators)

    def batched_evaluators(self) -> list[str]:
        """The run's evaluators whose seeds > 0 go through one ``batched`` call."""
        from precompute.evaluators import EVALUATORS  # lazy: torch stays out of the argument checks

        if self.seeds < 2:
            return []
        return [e for e in self.evaluators if e in EVALUATORS and EVALUATORS[e].batched is not None]

    def needs_test(self) -> bool:
        """Whether any evaluator of the run scores on the test split (else it is never extracted)."""
        from precompute.evaluators import EVALUATORS  # lazy: torch stays out of the argument checks

        return any(EVALUATORS[e].needs_test for e in self.evaluators if e in EVALUATORS)


def evaluator_names() -> tuple[str, ...]:
    """The evaluators ``precompute`` has: :data:`~shared.protocol.EVALUATOR_NAMES`, which the registry
    :data:`precompute.evaluators.EVALUATORS` is keyed by when it loads; once it is loaded, its own keys
    (a test may swap the registry for fakes)."""
    registry = sys.modules.get("precompute.evaluators")
    return tuple(registry.EVALUATORS) if registry is not None else EVALUATOR_NAMES


def check_evaluators(names: Sequence[str]) -> None:
    """Every name one of :func:`evaluator_names` (else they are listed)."""
    valid = evaluator_names()
    for n in names:
        if n not in valid:
            raise unknown("evaluator", n, valid)


def check_truth(cfg: SweepConfig) -> str:
    """The run's truth, checked before anything runs: it must be one of the run's evaluators, and the
    run must evaluate fraction 1.0 (else the parts hold no truth rows and no oracle can be merged)."""
    truth = cfg.truth_evaluator()
    if cfg.truth is not None:
        if cfg.truth not in evaluator_names():
            raise unknown("evaluator", cfg.truth, evaluator_names())
        if cfg.truth not in cfg.evaluators:
            raise VibesError(f"--truth {cfg.truth} is not among --evaluators {','.join(cfg.evaluators)}; "
                             f"add it there")
    elif truth not in cfg.evaluators:
        raise VibesError(f"--evaluators {','.join(cfg.evaluators)} has no head to be the truth "
                         f"({' or '.join(HEADS)}, at fraction 1.0): add one, or name the truth with --truth NAME")
    if 1.0 not in cfg.fractions:
        raise VibesError(f"the truth ({truth} at fraction 1.0) needs 1.0 in --fractions; got "
                         f"{','.join(repr(f) for f in cfg.fractions)}")
    return truth


def check_dataset_name(name: str) -> str:
    """The canonical dataset name, checked without loading anything: an unknown name lists the
    valid ones; ``folder:PATH`` must be a folder holding sub-folders (one-line DatasetError)."""
    canonical, _spec, extra = D.resolve(name)
    if extra.get("path") is not None:
        D.check_folder(extra["path"])
    return canonical


__all__ = ["WEIGHTS", "Setup", "SweepConfig", "parse_floats", "parse_names", "check_device_name", "evaluator_names",
           "check_evaluators", "check_truth", "check_dataset_name"]
