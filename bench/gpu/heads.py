"""c. **heads** -- ``precompute.heads.time_sequential_vs_batched`` on the device at the dataset's train
size and the sample's median feature width: 3 seeds one after the other against the sweep's own pattern
(seed 0 alone + seeds 1-2 in one batched call) and all three batched.  The epochs: one untimed 2-epoch
run calibrates seconds per epoch; the timed run has the protocol's 200 when they fit, else as many as fit."""
from __future__ import annotations

import time

import numpy as np

from bench.gpu.context import Context
from bench.gpu.plan import PROTOCOL_EPOCHS
from precompute import datasets as D
from shared.durations import format_duration
from shared.protocol import DEFAULT_SEEDS

CALIBRATION_EPOCHS = 2


def dataset_sizes(ctx: Context) -> tuple[int, int, int]:
    """(n_train, n_test, n_classes) of the plan's dataset, without generating it when it is not here."""

    if ctx.has_dataset or not ctx.plan.dataset.startswith(D.SYNTHETIC_PREFIX):
        ds = ctx.dataset()
        return len(ds.train_labels), len(ds.test_labels), int(ds.n_classes)
    n, _ = D.parse_synthetic(ctx.plan.dataset)
    labels = np.arange(n, dtype=np.int64) % D.SYNTHETIC_CLASSES  # the split's sizes depend on the counts only
    tr, te = D.stratified_split(labels, D.SYNTHETIC_TEST_FRACTION, seed=0)
    return len(tr), len(te), D.SYNTHETIC_CLASSES


def part_heads(ctx: Context, cap: float, out: dict) -> None:
    """c. ``time_sequential_vs_batched`` at the dataset's train size, the epochs that fit the cap."""
    from precompute.heads import time_sequential_vs_batched  # lazy: torch

    n_train, n_test, n_classes = dataset_sizes(ctx)
    dims = [int(x) for x in ctx.sample().get_column("feature_dim").drop_nulls().to_list()]
    dim = int(np.median(dims)) if dims else 768
    kw = dict(n_train=n_train, dim=dim, n_classes=n_classes, seeds=DEFAULT_SEEDS, n_test=n_test, device=ctx.device)
    t0 = time.perf_counter()
    cal = time_sequential_vs_batched(epochs=CALIBRATION_EPOCHS, **kw)  # untimed: calibrates (and warms up)
    cal_s = cal["sequential_seconds"] + cal["sweep_seconds"] + cal["batched_seconds"]
    left = cap - (time.perf_counter() - t0)
    per_epoch = cal_s / CALIBRATION_EPOCHS
    fit = int(0.9 * left / per_epoch) if per_epoch > 0 else ctx.plan.heads_epochs
    epochs = min(ctx.plan.heads_epochs, max(CALIBRATION_EPOCHS, fit))
    r = time_sequential_vs_batched(epochs=epochs, **kw)
    scale = PROTOCOL_EPOCHS / epochs
    out.update(r)
    out.update(protocol_epochs=PROTOCOL_EPOCHS, scaled=epochs != PROTOCOL_EPOCHS,
               protocol_seconds={k: r[f"{k}_seconds"] * scale for k in ("sequential", "sweep", "batched")},
               calibration={"epochs": CALIBRATION_EPOCHS, "seconds": cal_s})
    note = "" if epochs == PROTOCOL_EPOCHS else f" (scaled from {epochs} epochs to {PROTOCOL_EPOCHS})"
    ps = out["protocol_seconds"]
    print(f"  {DEFAULT_SEEDS} seeds, n_train {n_train}, dim {dim}, {epochs} epochs: sequential "
          f"{format_duration(r['sequential_seconds'])}, the sweep's pattern {format_duration(r['sweep_seconds'])} "
          f"-> {r['speedup']:.2f}x, all batched {format_duration(r['batched_seconds'])} -> "
          f"{r['speedup_all_batched']:.2f}x; at {PROTOCOL_EPOCHS} epochs: {ps['sequential']:.1f} / "
          f"{ps['sweep']:.1f} / {ps['batched']:.1f} s{note}")
