"""The issue's targets, judged on CUDA at full size only (they are for an H100-class GPU: the JSON names
the one that ran): median sweep cost per backbone <= 30 s on synthetic:50000@224 at native input sizes;
extraction >= 0.8 of a plain forward; each proxy <= 2 s at 50,000 x 2,048.  And the run's summary."""
from __future__ import annotations

from bench.gpu.plan import FULL_DATASET, PARTS, TARGET_MEDIAN_S
from shared.durations import format_duration
from shared.protocol import PROXIES

TARGET_RATIO = 0.8
TARGET_PROXY_S = 2.0


def judge(doc: dict) -> dict:
    """The issue's targets, judged on CUDA at full size only."""
    parts = doc["parts"]
    if doc["smoke"] or not doc["gpu"]:
        why = ("smoke: toy sizes on the CPU, not GPU figures" if doc["smoke"] else
               f"no GPU here ({doc['device']}): the targets are for an H100/H200; run `make bench-gpu` on a "
               "CUDA machine")
        return {"judged": False, "why": why, "device_name": doc["device_name"], "checks": []}
    checks = []

    def add(target, value, limit, le=True):
        met = None if value is None else (value <= limit if le else value >= limit)
        checks.append({"target": target, "value": value, "limit": limit, "met": met})

    a, b, d = parts.get("a", {}), parts.get("b", {}), parts.get("d", {})
    at_target = doc["plan"]["dataset"] == FULL_DATASET and doc["plan"]["input_size"] is None
    add(f"median per-backbone sweep cost <= {TARGET_MEDIAN_S:g} s on {FULL_DATASET} (native input sizes)",
        a.get("median_backbone_seconds") if at_target else None, TARGET_MEDIAN_S)
    add(f"extraction >= {TARGET_RATIO:g} of a plain forward", b.get("extract_vs_forward"), TARGET_RATIO, le=False)
    for name in PROXIES:
        proxy = (d.get("proxies") or {}).get(name) or {}
        add(f"{name} <= {TARGET_PROXY_S:g} s at 50,000 x 2,048", proxy.get("seconds"), TARGET_PROXY_S)
    return {"judged": True, "why": None, "device_name": doc["device_name"], "checks": checks}


def print_summary(doc: dict, json_path) -> None:
    """Each part's state and time, the targets (or why they are not judged), the wall time."""
    print("\nsummary")
    for p in PARTS:
        part = doc["parts"][p]
        state = (f"skipped ({part['skipped']})" if part["skipped"] else "ok" if part["ok"]
                 else f"FAILED: {part['error']}")
        took = f" in {format_duration(part['wall_seconds'])}" if part["wall_seconds"] is not None else ""
        print(f"  [{p}] {PARTS[p]}: {state}{took}")
    t = doc["targets"]
    if t["judged"]:
        for c in t["checks"]:
            val = "-" if c["value"] is None else f"{c['value']:.3g}"
            verdict = "not measured" if c["met"] is None else "met" if c["met"] else "NOT met"
            print(f"  target {c['target']}: {val} -> {verdict}")
    else:
        print(f"  targets not judged: {t['why']}")
    wall, budget_s = doc["wall_seconds"], doc["budget_s"]
    print(f"  wall time {format_duration(wall)} of a {format_duration(budget_s)} budget"
          + ("" if wall <= budget_s else " (over: see each part's cap_seconds and wall_seconds)"))
    if json_path is not None:
        print(f"  wrote {json_path}")
