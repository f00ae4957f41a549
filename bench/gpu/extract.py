"""b. **extract vs forward** -- ``extract_features`` over the sweep's own image order (train images;
host->device copy and preprocessing included) against a forward-only loop over tensors already on the
device (same model, batch, autocast, channels-last): ``bench_precompute.extract_vs_forward``, best of 2,
for the lowest, middle and highest GMACs backbones part a measured (else of its sample)."""
from __future__ import annotations

import time

from bench.bench_precompute import extract_vs_forward
from bench.gpu.common import error_text, median
from bench.gpu.context import Context
from shared.durations import format_duration


def _picks(ctx: Context) -> tuple[list[dict], str]:
    """The lowest, middle and highest GMACs backbones part a measured (else of its sample), and which."""
    if ctx.measured:
        pool_rows = sorted(ctx.measured, key=lambda r: r["eff_gmacs"])
        source = "part a's ok backbones"
    else:
        pool_rows = [dict(r) for r in ctx.sample().sort("eff_gmacs").iter_rows(named=True)]
        source = "part a's sample (part a gave no ok backbone)"
    k = min(3, len(pool_rows))
    picks = [pool_rows[i] for i in sorted({round(j * (len(pool_rows) - 1) / max(1, k - 1)) for j in range(k)})] \
        if k else []
    return picks, source


def _images(ctx: Context, row: dict, n_order: int, left: float, share: float) -> tuple[int, str | None]:
    """How many images fit this backbone's share of the cap (from part a's images/s), or why none."""
    plan, bs, repeat = ctx.plan, ctx.plan.batch_size, ctx.plan.ratio_repeat
    n = min(plan.ratio_images, n_order)
    why = "the part's cap was reached" if left <= 0 else None
    if why is None and row.get("extract_seconds") and ctx.extracted_images:
        rate = ctx.extracted_images / row["extract_seconds"]  # part a's images/s for this backbone
        passes = 1 + 2 * repeat  # the warm forward, then extract + forward per repeat
        fit = int(rate * max(0.0, share - (row.get("load_seconds") or 0.0)) / passes)
        n = min(n, fit if fit < bs else fit // bs * bs)  # whole batches when there is more than one
        if n < min(bs, n_order, plan.ratio_images):
            why = (f"one batch predicted {format_duration(passes * bs / rate)} > "
                   f"{format_duration(share)}, this backbone's share of the part's cap")
    return n, why


def part_extract(ctx: Context, cap: float, out: dict) -> None:
    """b. ``extract_vs_forward`` on the lowest, middle and highest GMACs backbones part a measured."""
    ds = ctx.dataset()
    cfg = ctx.sweep_config()
    n_train = len(ds.train_labels)
    full = ctx.extraction_plan(cfg).order
    order = full[full < n_train]  # the sweep's own order over the train images (no concatenation needed)
    picks, source = _picks(ctx)
    out.update(repeat=ctx.plan.ratio_repeat, batch_size=ctx.plan.batch_size, source=source, backbones=[])
    t0 = time.perf_counter()
    for i, row in enumerate(picks):
        left = cap - (time.perf_counter() - t0)
        n, why = _images(ctx, row, len(order), left, left / (len(picks) - i))
        if why is not None:
            out["backbones"].append({"backbone": row["backbone"], "skipped": why})
            print(f"  {row['backbone']}: not measured ({why})")
            continue
        try:
            r = extract_vs_forward(row["backbone"], cfg, ds.train_images, order[:n], ctx.plan.ratio_repeat)
        except Exception as exc:  # noqa: BLE001 - one backbone's failure is recorded, the others still run
            out["backbones"].append({"backbone": row["backbone"], "error": error_text(exc)})
            print(f"  {row['backbone']}: FAILED {error_text(exc)}")
            continue
        out["backbones"].append(r)
        print(f"  {row['backbone']} ({r['images']} images at {r['input_size']} px): extract "
              f"{r['extract_images_per_s']:.0f} vs forward {r['forward_images_per_s']:.0f} images/s "
              f"-> {r['ratio']:.2f}")
    ratios = [r["ratio"] for r in out["backbones"] if "ratio" in r]
    out["images"] = max((r["images"] for r in out["backbones"] if "images" in r), default=None)
    out["extract_vs_forward"] = median(ratios)
    if not ratios:
        why = "; ".join(f"{r['backbone']}: {r.get('error') or r.get('skipped')}" for r in out["backbones"])
        raise RuntimeError(f"no backbone was timed: {why or 'none to pick'}")
