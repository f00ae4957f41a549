"""Deployment limits: "the best backbone under 25 M parameters", "under 5 ms per image on my GPU",
"one that fits in 4 GB".  One definition for ``simulate``, ``precompute search`` and ``precompute pool``.

A backbone outside the limits is never evaluated: it leaves the pool before any order is drawn,
so the best possible is the best within the limits.  A backbone whose value is unknown for a
limited quantity leaves too (a limit cannot be promised on an unknown), and the outputs count it.

* ``max_params_m`` — parameters, millions (the pool's / oracle's ``params_m``);
* ``max_gmacs`` — GMACs per image at the evaluated input size (``gmacs``);
* ``max_latency_ms`` — per-image inference latency on ``latency_device``, read from a latency
  table (:func:`latency_table`): a file ``precompute latency --out`` measured on the user's device
  (``backbone, latency_ms[, memory_mb]``), or one of timm's published inference benchmarks,
  named by its device (``rtx4090`` is ``benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv``):
  latency = 1000 / ``infer_samples_per_sec`` at the benchmark's batch size and input size (the
  time per image a throughput-bound deployment pays), matched by architecture;
* ``max_memory_mb`` — inference memory: the table's measured ``memory_mb`` where there is one,
  else the fp32 weights, ``params_m × 4`` MB (a lower bound: activations come on top).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from shared.errors import VibesError
from shared.timm_results import ENV_DIR, locate, read_csv

TIMM_BENCHMARK = "benchmark-infer-amp-nchw-pt240-cu124-{device}.csv"
#: the devices of timm's published inference benchmarks at the pinned commit (TIMM_BENCHMARK's files)
TIMM_DEVICES = ("rtx3090", "rtx4090")
TABLE_COLUMNS = "backbone, latency_ms[, memory_mb]"
#: Limits field -> (the pool's column it limits, its unit)
KINDS = {"max_params_m": ("params_m", "M params"), "max_gmacs": ("gmacs", "GMACs"),
         "max_latency_ms": ("latency_ms", "ms/image"), "max_memory_mb": ("memory_mb", "MB")}
#: Limits field -> its command-line option (the same in simulate, precompute search and pool)
OPTION = {"max_params_m": "--max-params", "max_gmacs": "--max-gmacs", "max_latency_ms": "--max-latency-ms",
          "max_memory_mb": "--max-memory-mb"}


@dataclass(frozen=True)
class Limits:
    max_params_m: float | None = None
    max_gmacs: float | None = None
    max_latency_ms: float | None = None
    max_memory_mb: float | None = None
    latency_device: str | None = None  # a latency table: a file, or a timm benchmark device name

    def __post_init__(self):
        for name in KINDS:
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise VibesError(f"{OPTION[name]} must be a positive number; got {v!r}")
        if self.max_latency_ms is not None and not self.latency_device:
            raise VibesError("--max-latency-ms needs --latency-device: a table `precompute latency --out` wrote, "
                             "or a device of timm's published benchmarks, e.g. rtx4090")

    @property
    def active(self) -> bool:
        return any(getattr(self, k) is not None for k in KINDS)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def describe(self) -> str:
        """``≤ 25 M params, ≤ 5 ms/image (rtx4090)``."""
        parts = []
        for name, (_, unit) in KINDS.items():
            v = getattr(self, name)
            if v is not None:
                where = f" ({self.latency_device})" if name == "max_latency_ms" else ""
                parts.append(f"≤ {v:g} {unit}{where}")
        return ", ".join(parts) or "none"

    def record(self, pool_before: int, pool_within: int) -> dict:
        """What ``summary.json`` and ``search.json`` say of the limits: their values, ``described``,
        ``pool_before`` and ``pool_within`` (each caller adds its ``left_out``)."""
        return {**self.as_dict(), "described": self.describe(), "pool_before": int(pool_before),
                "pool_within": int(pool_within)}


def latency_table(device: str, timm_results: str | os.PathLike | None = None) -> pl.DataFrame:
    """``backbone`` or ``architecture``, ``latency_ms``, ``memory_mb`` (null where unknown) from a
    file (Parquet/CSV with ``backbone, latency_ms[, memory_mb]``) or timm's benchmark of ``device``
    (:func:`timm_devices`, matched case-insensitively)."""
    path = Path(device)
    if path.suffix.lower() in (".csv", ".parquet") or path.is_file():
        return _table_file(path, device)
    name = device.strip().lower()
    devices = timm_devices(timm_results)
    if name not in devices:
        raise VibesError(f"--latency-device {device!r} is neither a latency table file nor a device of timm's "
                         f"published benchmarks ({', '.join(devices)}); for another device (this CPU, your GPU) "
                         f"measure a table there, `precompute latency --pool ... --device cpu|cuda --out lat.csv`, "
                         f"and give --latency-device lat.csv")
    bench = read_csv(locate(TIMM_BENCHMARK.format(device=name), timm_results), ["model", "infer_samples_per_sec"])
    return bench.select(pl.col("model").cast(pl.String).alias("architecture"),
                        (1000.0 / pl.col("infer_samples_per_sec").cast(pl.Float64)).alias("latency_ms"),
                        pl.lit(None, pl.Float64).alias("memory_mb")).unique("architecture", keep="first")


def timm_devices(timm_results: str | os.PathLike | None = None) -> list[str]:
    """The devices ``--latency-device`` takes by name: :data:`TIMM_DEVICES`, and any other whose
    benchmark file (:data:`TIMM_BENCHMARK`) is in the timm results folder (or ``$VIBES_TIMM_RESULTS``)."""
    found = set(TIMM_DEVICES)
    folder = timm_results or os.environ.get(ENV_DIR)
    if folder and Path(folder).is_dir():
        head, tail = TIMM_BENCHMARK.split("{device}")
        found |= {p.name[len(head):-len(tail)].lower() for p in Path(folder).glob(TIMM_BENCHMARK.format(device="*"))}
    return sorted(found)


def _table_file(path: Path, device: str) -> pl.DataFrame:
    """A latency table file ``precompute latency --out`` wrote (CSV or Parquet), or a one-line error."""
    if not path.is_file():
        raise VibesError(f"latency table {device!r} not found; expected a file `precompute latency --out` wrote")
    if path.stat().st_size == 0:
        raise VibesError(f"latency table {device!r} is empty; expected a header {TABLE_COLUMNS} and a row per "
                         f"backbone, as `precompute latency --out` writes")
    try:
        frame = pl.read_parquet(path) if path.suffix.lower() == ".parquet" else pl.read_csv(path)
    except pl.exceptions.NoDataError:
        raise VibesError(f"latency table {device!r} holds no data; expected a header {TABLE_COLUMNS} and a row "
                         f"per backbone") from None
    except Exception as exc:
        raise VibesError(f"cannot read latency table {device!r}: {type(exc).__name__}: {exc}") from None
    missing = [c for c in ("backbone", "latency_ms") if c not in frame.columns]
    if missing:
        raise VibesError(f"latency table {device!r} lacks column(s) {', '.join(missing)}; expected {TABLE_COLUMNS}")
    if frame.height == 0:
        raise VibesError(f"latency table {device!r} has a header but no row: no backbone's latency to limit")
    mem = pl.col("memory_mb").cast(pl.Float64) if "memory_mb" in frame.columns else pl.lit(None, pl.Float64)
    return frame.select(pl.col("backbone").cast(pl.String), pl.col("latency_ms").cast(pl.Float64),
                        mem.alias("memory_mb")).unique("backbone", keep="first")


def with_deployment(pool: pl.DataFrame, table: pl.DataFrame | None) -> pl.DataFrame:
    """``pool`` with ``latency_ms`` (from ``table``, by backbone, else by architecture) and
    ``memory_mb`` (the table's, else fp32 weights: params_m × 4)."""
    out = pool.drop("latency_ms", "memory_mb", strict=False)
    if table is None:
        out = out.with_columns(pl.lit(None, pl.Float64).alias("latency_ms"),
                               pl.lit(None, pl.Float64).alias("memory_mb"))
    elif "backbone" in table.columns:
        out = out.join(table, on="backbone", how="left", maintain_order="left")
    else:
        arch = (pl.col("architecture") if "architecture" in out.columns
                else pl.col("backbone").str.split(".").list.first())
        out = (out.with_columns(arch.alias("_arch"))
               .join(table.rename({"architecture": "_arch"}), on="_arch", how="left", maintain_order="left")
               .drop("_arch"))
    weights = pl.col("params_m").cast(pl.Float64) * 4.0 if "params_m" in out.columns else pl.lit(None, pl.Float64)
    return out.with_columns(pl.coalesce(pl.col("memory_mb"), weights).alias("memory_mb"))


def mark(pool: pl.DataFrame, limits: Limits | None, table: pl.DataFrame | None = None,
         what: str = "pool") -> pl.DataFrame:
    """``pool`` with ``limit_reason``: null within ``limits``, else why not (``params_m 25.6 > 25``;
    ``latency_ms unknown``); with ``latency_ms`` and ``memory_mb`` when such a limit is set."""
    if limits is None or not limits.active:
        return pool.with_columns(pl.lit(None, pl.String).alias("limit_reason"))
    frame = with_deployment(pool, table) if (limits.max_latency_ms or limits.max_memory_mb) else pool
    reasons = []
    for name, (col, _unit) in KINDS.items():
        v = getattr(limits, name)
        if v is None:
            continue
        if col not in frame.columns:
            raise VibesError(f"{OPTION[name]}: the {what} has no {col} column")
        x = pl.col(col).cast(pl.Float64)
        reasons.append(pl.when(x.is_null()).then(pl.lit(f"{col} unknown"))
                       .when(x > v).then(pl.format(f"{col} {{}} > {v:g}", x.round(3))))
    reason = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    return frame.with_columns(pl.when(reason == "").then(None).otherwise(reason).alias("limit_reason"))


def apply(pool: pl.DataFrame, limits: Limits | None, table: pl.DataFrame | None = None,
          what: str = "pool") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the backbones within ``limits``, the others with a ``limit_reason``).  ``table``: the
    latency table (:func:`latency_table`) when a latency or memory limit is set.  A limit that no
    backbone meets is a one-line error."""
    marked = mark(pool, limits, table, what)
    if limits is None or not limits.active:
        return pool, marked.clear()
    kept = marked.filter(pl.col("limit_reason").is_null()).drop("limit_reason")
    dropped = marked.filter(pl.col("limit_reason").is_not_null())
    if kept.height == 0:
        raise VibesError(f"no backbone of the {what} ({pool.height}) meets the limits {limits.describe()}; "
                         f"e.g. {dropped['backbone'][0]}: {dropped['limit_reason'][0]}" if dropped.height else
                         f"the {what} is empty")
    return kept, dropped


def summarise(dropped: pl.DataFrame) -> str:
    """``3 over params_m, 1 unknown latency_ms``: why backbones left, counted."""
    if dropped.height == 0:
        return "none"
    first = pl.col("limit_reason").str.split("; ").list.first()
    kind = first.str.split(" ").list.first() + pl.when(first.str.ends_with("unknown")).then(pl.lit(" unknown")) \
        .otherwise(pl.lit(" over the limit"))
    counts = dropped.select(kind.alias("k")).group_by("k").len().sort("len", "k", descending=[True, False])
    return ", ".join(f"{n} {k}" for k, n in counts.iter_rows())


__all__ = ["Limits", "summarise", "KINDS", "OPTION", "TIMM_BENCHMARK", "TIMM_DEVICES", "timm_devices",
                  "latency_table", "with_deployment", "mark", "apply"]
