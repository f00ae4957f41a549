"""A live search's inputs, checked once: ``SearchConfig`` validates every cheap input when it is
made (before a pool is built, a dataset read or anything written), for the CLI and the library
alike, without importing torch: ``precompute search`` answers a bad argument in a moment."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from precompute import datasets as D
from precompute.inputs import Setup, SweepConfig, evaluator_names
from precompute.slurm import SlurmOptions
from shared.durations import parse_duration
from shared.errors import VibesError, unknown
from shared.evaluator_spec import format_spec, split_spec
from shared.limits import Limits
from shared.protocol import DEFAULT_FRACTIONS
from shared.samplers import sampler_of
from shared.successive_halving import (
    DEFAULT_ETA,
    DEFAULT_PROMOTION_COST,
    SHConfig,
    is_asha,
    is_sh,
    ladder,
)

DEFAULT_WAIT_TIMEOUT = "15m"  # for the workers to start, and for an evaluation past what its budget allows
SEED = 0  # subset and head seed of every evaluation: the sweep's seed 0
#: successive halving's fidelities below the evaluator's fraction (the sweep's fractions, ascending)
DEFAULT_RUNGS: tuple[float, ...] = tuple(sorted(DEFAULT_FRACTIONS))


class SearchError(VibesError):
    """A search cannot start or cannot give an answer (bad budget, strategy, evaluator, pool)."""


def parse_budget(text: str | float) -> float:
    """``--budget``: the one duration grammar (:mod:`shared.durations`) -> seconds (> 0)."""
    return _duration(text, "--budget")


def _duration(text: str | float, option: str) -> float:
    return _refused(parse_duration, text, option)


def _refused(check, *args):
    """``check(*args)``, its VibesError a SearchError (one line)."""
    try:
        return check(*args)
    except VibesError as exc:
        raise SearchError(str(exc)) from None


def parse_evaluator(spec: str) -> tuple[str, float, str]:
    """``'mlp@0.1'`` -> ``('mlp', 0.1, 'mlp@0.1')``: name, fraction and the canonical spec string
    the simulator uses, checked against the precompute evaluators."""
    name, fraction = split_spec(spec, option="--evaluator")
    if name not in evaluator_names():
        raise unknown("evaluator", name, evaluator_names())
    return name, fraction, format_spec(name, fraction)


def check_final(name: str) -> None:
    """``--final`` takes a bare evaluator name: it runs at fraction 1.0."""
    if "@" in str(name):
        raise SearchError(f"--final {name!r}: give an evaluator name (it runs at fraction 1.0), e.g. mlp")
    if name not in evaluator_names():
        raise unknown("evaluator", name, evaluator_names())


def check_fraction(ds, fraction: float, spec: str, needs_test: bool) -> None:
    """The dataset must give the fraction.  Its train subset ``floor(f*N + 0.5)`` holds at least one image
    per class (else it is not that fraction but the per-class minimum: a sweep takes that, a search refuses
    it), and for an evaluator that scores on the test split the sweep's own rule holds
    (:func:`precompute.datasets.check_fractions`, for seed :data:`SEED`'s draw)."""
    where = "for --evaluator, and --sh-fractions with successive halving"
    n_train, k = len(ds.train_labels), int(ds.n_classes)
    keep_train = D.subset_size(n_train, fraction)
    if keep_train < k:
        smallest = D.smallest_fraction(k, n_train)
        if needs_test:
            smallest = max(smallest, D.covering_fraction(ds.test_labels, [SEED]))
        raise SearchError(f"{spec}: fraction {fraction:g} of {ds.name} keeps {keep_train} of {n_train} train "
                          f"images for {k} classes; the smallest fraction this dataset gives is {smallest:g} "
                          f"({where})")
    D.check_fractions(ds, [fraction], [SEED], [spec] if needs_test else [], option=None, hint=where)


@dataclass
class SearchConfig(Setup):
    """One live search: the strategy (a sampler, ``sh:<sampler>`` or ``asha:<sampler>``), the evaluator
    spec, the budget, where its parts go; the loading setup is the sweep's own (:class:`~precompute.sweep.Setup`)."""

    _: KW_ONLY
    budget: str | float
    strategy: str
    evaluator: str
    out: str = "out/search"
    seed: int = 0
    final: str | None = None
    eta: int = DEFAULT_ETA  # successive halving (sh:<sampler>) only, as simulate --eta / --sh-chunk
    sh_chunk: int | None = None
    sh_fractions: tuple[float, ...] = DEFAULT_RUNGS
    promotion_cost: str = DEFAULT_PROMOTION_COST
    workers: int = 1  # K: evaluations run on K workers (precompute.search.workers), laid on one timeline
    threads: int | None = None  # torch threads per worker (default: torch's for one worker, 1 per CPU worker of K)
    cluster: str = "local"  # "local": this machine (one worker process per GPU); "slurm": one job per worker
    slurm: SlurmOptions | None = None  # with cluster="slurm" (None: the defaults); its walltime covers the budget
    wait_timeout: str | float = DEFAULT_WAIT_TIMEOUT  # the longest a wait on the workers may last (see wait_timeout_s)
    limits: Limits | None = None  # deployment limits: backbones outside leave the pool, never evaluated
    command_config: dict | None = None  # the command's options as resolved (search.json's "config"; no effect)
    # derived and checked in __post_init__
    budget_s: float = field(init=False)
    wait_timeout_s: float = field(init=False)
    name: str = field(init=False)  # the evaluator
    fraction: float = field(init=False)
    spec: str = field(init=False)
    ladder: tuple[float, ...] = field(init=False)  # fractions evaluated, ascending
    sh: SHConfig | None = field(init=False)

    def __post_init__(self):
        self.budget_s = parse_budget(self.budget)
        if isinstance(self.workers, bool) or int(self.workers) != self.workers or self.workers < 1:
            raise SearchError(f"--workers must be a positive integer, e.g. 2; got {self.workers!r}")
        if self.threads is not None and (int(self.threads) != self.threads or self.threads < 1):
            raise SearchError(f"--threads must be a positive integer; got {self.threads!r}")
        if self.cluster not in ("local", "slurm"):
            raise SearchError(f"--cluster must be local or slurm; got {self.cluster!r}")
        self.wait_timeout_s = _duration(self.wait_timeout, "--wait-timeout")
        if self.cluster == "slurm":
            self.slurm = self.slurm if self.slurm is not None else SlurmOptions()
            _refused(self.slurm.check_covers, self.budget_s)
        if is_asha(self.strategy) and self.sh_chunk is not None:
            raise SearchError(f"--sh-chunk is for sh:<sampler>; {self.strategy} promotes over the whole order, "
                              f"in no chunks")
        self.name, self.fraction, self.spec = parse_evaluator(self.evaluator)
        sampler_of(self.strategy)  # an unknown strategy lists the valid ones
        self.sh = SHConfig(self.eta, self.sh_chunk, self.promotion_cost) if is_sh(self.strategy) else None
        self.ladder = ladder(self.sh_fractions, self.fraction) if self.sh else (self.fraction,)
        if self.final is not None:
            check_final(self.final)
        super().__post_init__()

    @property
    def chunk(self) -> int:
        return self.sh.chunk_size(len(self.ladder)) if self.sh else 1

    @property
    def asha(self) -> bool:
        return is_asha(self.strategy)

    def sh_doc(self) -> dict | None:
        """What search.json records of successive halving (None for a sampler; ``asha:`` has no chunk)."""
        if self.sh is None:
            return None
        if self.asha:
            return {"eta": self.sh.eta, "chunk": None, "promotion_cost": self.sh.promotion_cost,
                    "asynchronous": True}
        return {"eta": self.sh.eta, "chunk": self.chunk, "promotion_cost": self.sh.promotion_cost}

    def sweep_config(self, evaluator: str, fractions: Sequence[float], parts_dir: Path | str) -> SweepConfig:
        """The sweep configuration one evaluation runs with (one seed, one evaluator)."""
        return SweepConfig(**self.setup_fields(), fractions=tuple(fractions), seeds=1, evaluators=(evaluator,),
                           parts_dir=str(parts_dir))


__all__ = ["SEED", "DEFAULT_RUNGS", "SearchError", "SearchConfig", "parse_budget",
           "parse_evaluator", "check_final", "check_fraction"]
