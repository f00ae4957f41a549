"""The oracle: schema version 1, reading, validating and writing (Parquet and HDF5).

An oracle is one long table, one row per (backbone, evaluator, fraction, seed), plus file
metadata (a JSON-able dict).  :class:`Oracle` holds both; :func:`read_oracle` and
:meth:`Oracle.write` move them to and from disk losslessly in either format, chosen by the
file suffix (``.parquet``; ``.h5`` / ``.hdf5``).

The true score of a backbone, ε(b), is the mean ``score`` over seeds of its rows with
evaluator = the ``truth`` evaluator named in the metadata, fraction = 1.0 and status = ok.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shared.atomic import atomic_path
from shared.errors import OracleError

SCHEMA_VERSION = 1
META_KEY = "vibes.meta"  # Parquet key-value metadata key / HDF5 attribute name (a JSON string)

#: column -> polars dtype, in the canonical order
COLUMNS: dict[str, pl.DataType] = {
    "dataset": pl.String,
    "backbone": pl.String,
    "evaluator": pl.String,
    "fraction": pl.Float64,
    "seed": pl.Int32,
    "score": pl.Float64,
    "seconds": pl.Float64,
    "load_seconds": pl.Float64,
    "extract_seconds": pl.Float64,
    "fit_seconds": pl.Float64,
    "epochs": pl.Int32,
    "n_train": pl.Int64,
    "n_test": pl.Int64,
    "status": pl.String,
    "error": pl.String,
    "architecture": pl.String,
    "params_m": pl.Float64,
    "gmacs": pl.Float64,
    "input_size": pl.Int32,
    "feature_dim": pl.Int32,
    "pretrain_dataset": pl.String,
    "pretrain_images": pl.Float64,
    "pretrain_method": pl.String,
    "imagenet_top1": pl.Float64,
}
#: per-backbone metadata columns, repeated on every row of a backbone
BACKBONE_META = ("architecture", "params_m", "gmacs", "input_size", "feature_dim",
                 "pretrain_dataset", "pretrain_images", "pretrain_method", "imagenet_top1")
KEY = ["backbone", "evaluator", "fraction", "seed"]
#: columns that may never be null
REQUIRED_NON_NULL = ["dataset", "backbone", "evaluator", "fraction", "seed", "status"]
STATUSES = ("ok", "failed")
_INT_TYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_FLOAT_TYPES = (pl.Float32, pl.Float64) + _INT_TYPES


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=COLUMNS)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Add missing optional columns as nulls and cast every column to its schema type, in
    canonical order.  Raises :class:`OracleError` for a missing required column or a column
    whose values cannot be read as the schema type."""
    missing = [c for c in REQUIRED_NON_NULL + ["score", "seconds"] if c not in frame.columns]
    if missing:
        raise OracleError(f"oracle is missing column(s) {', '.join(missing)}; "
                          f"schema v{SCHEMA_VERSION} needs {', '.join(COLUMNS)}")
    exprs = []
    for name, dtype in COLUMNS.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        have = frame.schema[name]
        ok = (have == dtype
              or (dtype == pl.Float64 and have in _FLOAT_TYPES)
              or (dtype == pl.Int32 and have in _INT_TYPES)
              or (dtype == pl.String and have in (pl.Categorical, pl.Null))
              or have == pl.Null)
        if not ok:
            raise OracleError(f"oracle column {name!r} has type {have}, expected {dtype}")
        exprs.append(pl.col(name).cast(dtype))
    return frame.select(exprs)


@dataclass
class Oracle:
    """An oracle table and its metadata.  ``frame`` always has the schema's columns and types."""

    frame: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    #: true_scores() of (frame, truth): a league reads each oracle's as a prior of every other
    _true_cache: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.frame = conform(self.frame)
        self.meta = dict(self.meta)
        self.meta.setdefault("schema_version", SCHEMA_VERSION)

    # ------------------------------------------------------------------ facts
    @property
    def truth(self) -> str:
        return str(self.meta.get("truth", "mlp"))

    @property
    def dataset(self) -> str:
        ds = self.meta.get("dataset")
        if ds:
            return str(ds)
        vals = self.frame.get_column("dataset").unique().to_list()
        return str(vals[0]) if vals else "?"

    def evaluators(self) -> pl.DataFrame:
        """(evaluator, fraction) pairs present with ok rows, with seeds and backbones counts."""
        return (self.frame.filter(pl.col("status") == "ok")
                .group_by("evaluator", "fraction")
                .agg(pl.col("seed").n_unique().alias("seeds"),
                     pl.col("backbone").n_unique().alias("backbones"),
                     pl.col("seconds").median().alias("median_seconds"))
                .sort("evaluator", "fraction", descending=[False, True]))

    def true_scores(self) -> pl.DataFrame:
        """ε(b): one row per backbone with an ok truth row at fraction 1.0: backbone, true_score,
        plus the per-backbone metadata columns (first row's values)."""
        c = self._true_cache  # (frame, truth, result): the frame itself, so a new frame is never mistaken
        if c is None or c[0] is not self.frame or c[1] != self.truth:
            c = self._true_cache = (self.frame, self.truth, self._true_scores())
        return c[2]

    def _true_scores(self) -> pl.DataFrame:
        meta_cols = BACKBONE_META
        return (self.frame
                .filter((pl.col("evaluator") == self.truth) & (pl.col("fraction") == 1.0)
                        & (pl.col("status") == "ok") & pl.col("score").is_not_null())
                .group_by("backbone", maintain_order=True)
                .agg(pl.col("score").mean().alias("true_score"),
                     *[pl.col(c).first() for c in meta_cols])
                .sort("backbone"))

    def failed_backbones(self) -> pl.DataFrame:
        """Backbones with no ok truth row (excluded from the pool), with a reason."""
        ok = self.true_scores().get_column("backbone")
        return (self.frame.filter(~pl.col("backbone").is_in(ok.implode()))
                .group_by("backbone")
                .agg(pl.col("error").drop_nulls().first().fill_null("no ok truth row").alias("error"))
                .sort("backbone"))

    # ------------------------------------------------------------- validation
    def validate(self) -> Oracle:
        """Check the schema's rules; raise :class:`OracleError` naming the first problem."""
        f = self.frame
        version = self.meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise OracleError(f"oracle schema_version is {version!r}; this VIBES reads version "
                              f"{SCHEMA_VERSION} (re-export the oracle or upgrade VIBES)")
        if f.height == 0:
            raise OracleError("oracle has no rows")
        for col in REQUIRED_NON_NULL:
            n = f.get_column(col).null_count()
            if n:
                raise OracleError(f"oracle column {col!r} has {n} null value(s); it may not be null")
        bad_status = f.filter(~pl.col("status").is_in(list(STATUSES)))
        if bad_status.height:
            raise OracleError(f"oracle has status {bad_status['status'][0]!r}; expected one of "
                              f"{', '.join(STATUSES)}")
        dups = f.group_by(KEY).len().filter(pl.col("len") > 1)
        if dups.height:
            r = dups.row(0, named=True)
            raise OracleError(f"oracle has {dups.height} duplicate key(s) on {', '.join(KEY)}, "
                              f"e.g. {r['backbone']} / {r['evaluator']} / fraction {r['fraction']} "
                              f"/ seed {r['seed']} appears {r['len']} times")
        neg = f.filter((pl.col("seconds") < 0) | (pl.col("load_seconds") < 0)
                       | (pl.col("extract_seconds") < 0) | (pl.col("fit_seconds") < 0))
        if neg.height:
            raise OracleError(f"oracle has {neg.height} row(s) with negative seconds, "
                              f"e.g. backbone {neg['backbone'][0]!r}")
        ok = f.filter(pl.col("status") == "ok")
        nonfinite = ok.filter(~pl.col("seconds").is_finite() | pl.col("seconds").is_null()
                              | ~pl.col("score").is_finite() | pl.col("score").is_null())
        if nonfinite.height:
            raise OracleError(f"oracle has {nonfinite.height} ok row(s) with a missing or non-finite "
                              f"score or seconds, e.g. backbone {nonfinite['backbone'][0]!r}")
        frac = f.filter((pl.col("fraction") <= 0) | (pl.col("fraction") > 1))
        if frac.height:
            raise OracleError(f"oracle has fraction {frac['fraction'][0]}; fractions must be in (0, 1]")
        if self.true_scores().height == 0:
            raise OracleError(f"oracle has no truth rows (evaluator {self.truth!r}, fraction 1.0, "
                              f"status ok); cannot compute true scores")
        return self

    # ---------------------------------------------------------------- writing
    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary file in the same folder, then rename).  Format by suffix.
        The file gets the usual permissions (0666 less the umask, e.g. 0644), readable by others."""
        path = Path(path)
        fmt = format_of(path)
        with atomic_path(path) as tmp:
            (_write_parquet if fmt == "parquet" else _write_hdf5)(self, tmp)
        return path


def format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".h5", ".hdf5"):
        return "hdf5"
    raise OracleError(f"oracle file {str(path)!r} has suffix {suffix or '(none)'!r}; "
                      f"expected .parquet, .h5 or .hdf5")


def read_oracle(path: str | os.PathLike, validate: bool = True) -> Oracle:
    """Read a Parquet or HDF5 oracle; raise :class:`OracleError` with one line on any problem."""
    path = Path(path)
    if not path.exists():
        raise OracleError(f"oracle file {str(path)!r} does not exist")
    if path.is_dir():
        raise OracleError(f"oracle path {str(path)!r} is a folder; expected a .parquet or .h5 file")
    fmt = format_of(path)
    try:
        oracle = _read_parquet(path) if fmt == "parquet" else _read_hdf5(path)
    except OracleError:
        raise
    except Exception as exc:  # corrupt / truncated / not that format
        raise OracleError(f"cannot read oracle {str(path)!r} as {fmt}: "
                          f"{type(exc).__name__}: {exc}") from None
    return oracle.validate() if validate else oracle


# --------------------------------------------------------------------------- Parquet
def _write_parquet(oracle: Oracle, path: Path) -> None:
    import pyarrow.parquet as pq

    table = oracle.frame.to_arrow()
    table = table.replace_schema_metadata({META_KEY: json.dumps(oracle.meta, sort_keys=True)})
    pq.write_table(table, path, compression="zstd")


def _read_parquet(path: Path) -> Oracle:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(META_KEY.encode())
    if raw is None:
        raise OracleError(f"oracle {str(path)!r} has no {META_KEY!r} metadata "
                          f"(schema_version unknown); not a VIBES oracle")
    meta = json.loads(raw)
    table = table.replace_schema_metadata(None)
    return Oracle(pl.from_arrow(table), meta)


# --------------------------------------------------------------------------- HDF5
_H5_GROUP = "oracle"


def _write_hdf5(oracle: Oracle, path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as h5:
        h5.attrs[META_KEY] = json.dumps(oracle.meta, sort_keys=True)
        h5.attrs["schema_version"] = SCHEMA_VERSION
        g = h5.create_group(_H5_GROUP)
        g.attrs["columns"] = json.dumps(list(COLUMNS))
        for name, dtype in COLUMNS.items():
            col = oracle.frame.get_column(name)
            nulls = col.is_null().to_numpy()
            if dtype == pl.String:  # Arrow-style: one UTF-8 buffer + offsets (lossless, NUL-safe)
                encoded = [v.encode("utf-8") for v in col.fill_null("").to_list()]
                offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
                offsets[1:] = np.cumsum([len(v) for v in encoded], dtype=np.int64)
                data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
                ds = g.create_dataset(name, data=data, compression="gzip" if data.size else None)
                g.create_dataset(f"{name}__offsets", data=offsets)
            else:
                np_dtype = {pl.Float64: np.float64, pl.Int64: np.int64}.get(dtype, np.int32)
                fill = np.nan if dtype == pl.Float64 else 0
                data = col.cast(dtype).to_numpy(allow_copy=True)
                data = np.where(nulls, fill, data).astype(np_dtype) if len(data) else data.astype(np_dtype)
                ds = g.create_dataset(name, data=data, compression="gzip" if len(data) else None)
            if nulls.any():  # explicit null mask: NaN and null stay distinct
                g.create_dataset(f"{name}__null", data=nulls, compression="gzip")
            ds.attrs["dtype"] = str(dtype)


def _read_hdf5(path: Path) -> Oracle:
    import h5py

    with h5py.File(path, "r") as h5:
        if META_KEY not in h5.attrs or _H5_GROUP not in h5:
            raise OracleError(f"oracle {str(path)!r} has no {META_KEY!r} attribute or "
                              f"{_H5_GROUP!r} group; not a VIBES oracle")
        meta = json.loads(h5.attrs[META_KEY])
        g = h5[_H5_GROUP]
        cols = {}
        for name in json.loads(g.attrs["columns"]):
            if name not in g:
                continue
            raw = g[name][()]
            nulls = g[f"{name}__null"][()] if f"{name}__null" in g else None
            dtype = COLUMNS.get(name, pl.String)
            if dtype == pl.String:
                buf, off = raw.tobytes(), g[f"{name}__offsets"][()]
                values = [buf[a:b].decode("utf-8") for a, b in zip(off[:-1].tolist(), off[1:].tolist())]
                s = pl.Series(name, values, dtype=pl.String)
            else:
                s = pl.Series(name, raw).cast(dtype)
            if nulls is not None:
                s = pl.select(pl.when(pl.Series(nulls)).then(None).otherwise(s).alias(name)).to_series()
            cols[name] = s
    return Oracle(pl.DataFrame(cols), meta)
