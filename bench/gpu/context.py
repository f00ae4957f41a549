"""What the parts share, made on first use: the pool, its runnable part, part a's sample, the dataset,
part a's measured rows."""
from __future__ import annotations

import gc
import time

from bench.gpu.plan import Plan
from precompute.datasets import load_dataset, subset_plan
from shared.protocol import DEFAULT_EVALUATORS, DEFAULT_FRACTIONS, DEFAULT_SEEDS


class Context:
    """The pool, the sample and the dataset of one run (each built when a part first asks)."""

    def __init__(self, plan: Plan, device: str, seed: int):
        self.plan, self.device, self.seed = plan, device, seed
        self._pool = self._runnable = self._part = self._sample = self._ds = None
        self.left_out: dict[str, int] = {}
        self.guard_params_m: float | None = None
        self.dataset_seconds: float | None = None
        self.measured: list[dict] | None = None  # part a's ok rows
        self.extracted_images: int | None = None  # images part a extracts per backbone

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def has_dataset(self) -> bool:
        return self._ds is not None

    def pool(self):
        if self._pool is None:
            from precompute.pool import build_pool  # lazy: polars loads when a part runs

            self._pool = build_pool(progress=False)
        return self._pool

    def runnable(self):
        if self._runnable is None:
            from precompute.estimate import runnable_pool  # lazy: torch and polars load when a part runs

            self._runnable, self.left_out = runnable_pool(self.pool(), self.plan.input_size)
        return self._runnable

    def part(self):
        """The runnable pool part a samples: all of it, or (smoke) the tiny backbones."""
        if self._part is None:
            import polars as pl

            out = self.runnable()
            if self.plan.max_params_m is not None:
                out = out.filter(pl.col("params_m") <= self.plan.max_params_m)
            if self.plan.max_gmacs is not None:
                out = out.filter(pl.col("eff_gmacs") <= self.plan.max_gmacs)
            if self.plan.smoke and "check_status" in out.columns:
                out = out.filter(pl.col("check_status") == "ok")
            self._part = out
        return self._part

    def sample(self):
        if self._sample is None:
            from precompute.estimate import memory_guard_gb, stratified_sample  # lazy: torch, polars

            self.guard_params_m = memory_guard_gb(self.device) * 1e9 / 4 / 1e6
            self._sample = stratified_sample(self.part(), self.plan.sample, self.seed, max_params_m=self.guard_params_m)
        return self._sample

    def dataset(self):
        if self._ds is None:

            t0 = time.perf_counter()
            self._ds = load_dataset(self.plan.dataset)
            self.dataset_seconds = time.perf_counter() - t0
        return self._ds

    def drop_dataset(self) -> None:
        self._ds = None
        gc.collect()

    def sweep_config(self):
        from precompute.sweep import SweepConfig  # lazy: torch

        return SweepConfig(dataset=self.dataset().name, fractions=DEFAULT_FRACTIONS, seeds=DEFAULT_SEEDS,
                           evaluators=DEFAULT_EVALUATORS, weights="random", device=self.device,
                           batch_size=self.plan.batch_size, input_size=self.plan.input_size)

    def extraction_plan(self, cfg):
        from precompute.sweep import extraction_plan  # lazy: torch

        ds = self.dataset()
        plans = subset_plan(ds, list(cfg.fractions), cfg.seed_list)
        n_train = len(ds.train_labels)
        return extraction_plan(plans, cfg.fractions, n_train, n_train + len(ds.test_labels), cfg.needs_test())
