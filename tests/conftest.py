"""Shared fixtures: small random oracles and the reference copy of timm's published results."""
from __future__ import annotations

import os
from pathlib import Path

# Every process of the suite (pytest-xdist's workers and the commands the tests start) computes on one thread:
# two workers share a 2-core machine, and a second OpenMP/BLAS thread per process mostly spins (measured alone:
# the README's demo chain 170 -> 143 CPU seconds at the same wall time).  Set before numpy and torch load;
# a value already in the environment is kept.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from shared.oracle import Oracle  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMM_RESULTS = Path(os.environ.get("VIBES_TIMM_RESULTS", REPO.parent / "shared" / "timm-results"))
DATASETS = ["ImageNet-1k", "ImageNet-22k", "LAION-2B", "JFT-300M"]
SIZES = {"ImageNet-1k": 1.28e6, "ImageNet-22k": 1.42e7, "LAION-2B": 2.3e9, "JFT-300M": 3e8}


def random_oracle(n_backbones: int = 12, seeds: int = 3, fractions=(1.0, 0.1), rng_seed: int = 0,
                  evaluators=("mlp", "silhouette"), ties: bool = False, unknown_share: float = 0.2,
                  failed: int = 0) -> Oracle:
    """A random but well-formed oracle (scores, seconds, metadata) for engine tests."""
    rng = np.random.default_rng(rng_seed)
    names = [f"arch{i:03d}.tag{i % 3}" for i in range(n_backbones)]
    ds = [None if rng.random() < unknown_share else DATASETS[rng.integers(len(DATASETS))]
          for _ in names]
    gmacs = rng.integers(1, 6, n_backbones).astype(float)  # many ties on purpose
    params = rng.integers(1, 4, n_backbones).astype(float)
    rows = []
    for b, name in enumerate(names):
        for ev in evaluators:
            for f in fractions:
                for s in range(seeds):
                    score = (rng.integers(0, 4) / 4) if ties else rng.random()
                    sec = float(rng.integers(1, 20)) * f if ties else float(rng.random() * 100 * f + 0.5)
                    status = "failed" if b < failed else "ok"
                    rows.append(dict(
                        dataset="toy", backbone=name, evaluator=ev, fraction=f, seed=s,
                        score=None if status == "failed" else score,
                        seconds=None if status == "failed" else sec, status=status,
                        error="RuntimeError: boom" if status == "failed" else None,
                        architecture=name.split(".")[0], params_m=params[b], gmacs=gmacs[b],
                        input_size=224, feature_dim=64, pretrain_dataset=ds[b],
                        pretrain_images=SIZES.get(ds[b]), pretrain_method="supervised"))
    return Oracle(pl.DataFrame(rows), {"truth": "mlp", "dataset": "toy", "weights": "random"})


def pytest_collection_modifyitems(config, items):
    """The longest tests first — the README's chains (the demo's first), then every test marked slow — so that
    pytest-xdist's workers start them at once instead of ending the run on one of them alone; file order
    otherwise (a stable sort)."""
    def rank(item) -> int:
        if item.nodeid.startswith("tests/test_readme.py::test_readme_commands_run["):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the test, restored afterwards: on a small shared CPU, OpenMP
    barriers make 2 threads far slower for the tiny ops of autograd references and MLP heads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def toy_oracle() -> Oracle:
    return random_oracle()


@pytest.fixture
def timm_results() -> Path:
    if not (TIMM_RESULTS / "results-sketch.csv").is_file():
        pytest.skip(f"timm's published results are not at {TIMM_RESULTS} "
                    f"(set VIBES_TIMM_RESULTS or put ../shared/timm-results beside the repo)")
    return TIMM_RESULTS
