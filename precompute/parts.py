"""Per-backbone part files, locks, shards and the merge into an oracle.

Layout (``parts_dir`` defaults to ``data/parts``)::

    <parts_dir>/<dataset>/<backbone>.parquet        one part per backbone (oracle rows + run meta)
    <parts_dir>/<dataset>/<backbone>.lock           held while a worker computes that backbone
    <parts_dir>/<dataset>/manifest.json             the full (unsharded) pool of the last run
    <parts_dir>/<dataset>/features/<backbone>.h5    float16 features (``--keep-features``)

Crash safety: every file is written to a temporary name in its folder, then ``os.replace``d,
so a part is either complete or absent.  A part existing (status ok *or* failed) means the
backbone is done; ``retry_failed`` redoes only parts with failed rows.

Shards: ``--shard I/N`` is **1-based** (``1/4`` … ``4/4``).  The share is a greedy
longest-processing-time assignment of the name-sorted pool by expected cost (GMACs, unknown
as the pool median), so shards get near-equal total GMACs and are disjoint and exhaustive.
"""
from __future__ import annotations

import heapq
import json
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from precompute import faults
from shared.atomic import atomic_path as _atomic_path
from shared.errors import VibesError
from shared.oracle import SCHEMA_VERSION, Oracle, conform
from shared.protocol import HEADS

DEFAULT_PARTS_DIR = "data/parts"
DEFAULT_ORACLE_DIR = "data/oracles"
PART_META_KEY = "vibes.part"
FORMATS = {"parquet": ".parquet", "hdf5": ".h5"}


class ShardError(VibesError):
    """A ``--shard`` value is malformed or out of range."""


class MergeError(VibesError):
    """Parts cannot be merged into an oracle (none found, or incompatible runs)."""


# ----------------------------------------------------------------------------- paths
def safe_name(backbone: str) -> str:
    """File-system safe stem for a backbone name (``hf-hub:org/x`` -> ``hf-hub_org__x``)."""
    return backbone.replace("/", "__").replace(":", "_")


def dataset_dir(parts_dir: str | os.PathLike, dataset: str) -> Path:
    return Path(parts_dir) / safe_name(dataset)


def part_path(parts_dir: str | os.PathLike, dataset: str, backbone: str) -> Path:
    return dataset_dir(parts_dir, dataset) / f"{safe_name(backbone)}.parquet"


def features_path(parts_dir: str | os.PathLike, dataset: str, backbone: str) -> Path:
    return dataset_dir(parts_dir, dataset) / "features" / f"{safe_name(backbone)}.h5"


def default_oracle_path(dataset: str, out_dir: str | os.PathLike = DEFAULT_ORACLE_DIR,
                        fmt: str = "parquet") -> Path:
    if fmt not in FORMATS:
        raise VibesError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    return Path(out_dir) / f"{safe_name(dataset)}{FORMATS[fmt]}"


# ------------------------------------------------------------------------ atomic I/O
def atomic_path(path: str | os.PathLike):
    """:func:`shared.atomic.atomic_path` with this process's ``host-pid`` in the temporary name, so a
    rerun can delete what a dead process left (:func:`remove_stale_tmp`)."""
    return _atomic_path(path, _owner())


def write_frame(frame: pl.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` as CSV (a ``.csv`` path) or Parquet (any other), atomically (:func:`atomic_path`):
    the tables a user asks for with ``--out`` (a pool, a latency table, an estimate's sample)."""
    with atomic_path(path) as tmp:
        if Path(path).suffix.lower() == ".csv":
            frame.write_csv(tmp)
        else:
            frame.write_parquet(tmp)
    return Path(path)


def _owner() -> str:
    """``host-pid`` of this process as it appears in temporary file names."""
    return f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"


_TMP_OWNER = re.compile(r"\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


def remove_stale_tmp(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``*.tmp`` files under ``folder`` left by a process of this host that no longer
    exists (killed between writing and renaming); files of live processes or other hosts stay."""
    removed = []
    me = socket.gethostname().replace(".", "_")
    for tmp in Path(folder).rglob(".*.tmp") if Path(folder).is_dir() else ():
        m = _TMP_OWNER.search(tmp.name)
        if m and m["host"] == me and not _pid_alive(int(m["pid"])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def write_part(frame: pl.DataFrame, path: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write one backbone's oracle rows (schema columns) and the run meta, atomically."""
    import pyarrow.parquet as pq

    table = conform(frame).to_arrow()
    table = table.replace_schema_metadata({PART_META_KEY: json.dumps(meta, sort_keys=True,
                                                                     default=str)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
        faults.point("part-write")  # complete temporary file, not yet renamed
    return Path(path)


def read_part(path: str | os.PathLike) -> tuple[pl.DataFrame, dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(PART_META_KEY.encode())
    meta = json.loads(raw) if raw else {}
    return conform(pl.from_arrow(table.replace_schema_metadata(None))), meta


def read_part_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The run meta of a part, from the Parquet footer only (cheap)."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(PART_META_KEY.encode())
    return json.loads(raw) if raw else {}


def part_status(path: str | os.PathLike) -> str | None:
    """``None`` if no part, ``"failed"`` if any row failed, else ``"ok"``."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        frame = pl.read_parquet(path, columns=["status"])
    except Exception:  # unreadable part (should not happen: writes are atomic) -> redo it
        return None
    return "failed" if (frame.get_column("status") != "ok").any() else "ok"


def write_manifest(parts_dir: str | os.PathLike, dataset: str, backbones: list[str],
                   meta: dict[str, Any]) -> Path:
    path = dataset_dir(parts_dir, dataset) / "manifest.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"backbones": sorted(backbones), "meta": meta},
                                  indent=1, sort_keys=True, default=str))
    return path


def read_manifest(parts_dir: str | os.PathLike, dataset: str) -> dict[str, Any] | None:
    path = dataset_dir(parts_dir, dataset) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def save_features(path: str | os.PathLike, features: np.ndarray, index: np.ndarray,
                  n_train: int, attrs: dict[str, Any] | None = None) -> Path:
    """Store float16 features with their image indices: ``index[i]`` is the image of row i in
    train+test concatenated (``< n_train``: train image; else test image ``index - n_train``)."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("features", data=np.asarray(features, dtype=np.float16),
                              compression="gzip")
            h5.create_dataset("index", data=np.asarray(index, dtype=np.int64), compression="gzip")
            h5.attrs["n_train"] = int(n_train)
            for k, v in (attrs or {}).items():
                h5.attrs[k] = json.dumps(v, default=str) if isinstance(v, (dict, list)) else v
    return Path(path)


def load_features(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, int]:
    """``(features float16 (M, D), image index (M,), n_train)`` as written by :func:`save_features`."""
    import h5py

    with h5py.File(path, "r") as h5:
        return h5["features"][()], h5["index"][()], int(h5.attrs["n_train"])


# ---------------------------------------------------------------------------- locks
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: a lock whose heartbeat (the file's mtime) is older than this is stale: its holder is gone (killed,
#: node lost, task requeued by Slurm onto another node) and the lock is taken over
LOCK_STALE_SECONDS = 600.0
#: how often the holder refreshes its heartbeat while it computes
HEARTBEAT_SECONDS = 30.0


@dataclass
class BackboneLock:
    """An ``O_CREAT | O_EXCL`` lock file holding ``host pid token``, with a heartbeat.

    While held, a daemon thread refreshes the file's mtime every ``heartbeat`` seconds.  A lock is
    *stale*, and taken over, when its holder is a dead process of this host, or when its heartbeat
    is older than ``stale_after`` seconds (any host: e.g. a task that Slurm requeued onto another
    node); a fresh lock is respected, whatever its host.

    Takeover is race-free among workers: a taker must first create ``<lock>.takeover`` with
    ``O_EXCL`` (one taker at a time), then re-checks, under that claim, that the lock file is still
    the stale one it saw (same inode, still stale) before removing it; it then competes for the
    lock with ``O_EXCL`` like any worker, so exactly one worker holds it.  A holder that was
    judged stale while alive (frozen longer than ``stale_after``) finds its token gone at its next
    heartbeat or at :meth:`owns`, and must not write its result (the sweep checks :meth:`owns`
    before writing a part)."""

    path: Path
    stale_after: float = LOCK_STALE_SECONDS
    heartbeat: float = HEARTBEAT_SECONDS
    held: bool = False
    lost: bool = False
    token: str = ""
    _stop: threading.Event | None = field(default=None, repr=False)
    _beat: threading.Thread | None = field(default=None, repr=False)

    @property
    def claim(self) -> Path:
        return self.path.with_name(self.path.name + ".takeover")

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        token = f"{socket.gethostname()} {os.getpid()} {uuid.uuid4().hex}"
        for _ in range(3):
            if self._create(token):
                self.token, self.held, self.lost = token, True, False
                self._start_heartbeat()
                return True
            ino = self._stale_inode()
            if ino is None or not self._take_over(ino):
                return False
        return False

    def _create(self, token: str) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return True

    def _stale_inode(self) -> int | None:
        """The lock file's inode if it is stale, else None (fresh, or gone)."""
        try:
            st = os.stat(self.path)
            fields = self.path.read_text().split()
        except OSError:
            return None
        age = time.time() - st.st_mtime
        if age > self.stale_after:
            return st.st_ino  # heartbeat lapsed: whatever host, the holder is gone
        try:
            host, pid = fields[0], int(fields[1])
        except (IndexError, ValueError):
            return None  # being written right now: respect it
        if host == socket.gethostname() and not _pid_alive(pid):
            return st.st_ino
        return None

    def _take_over(self, ino: int) -> bool:
        """Remove the stale lock ``ino`` under the takeover claim; True if the lock may be retried."""
        try:
            fd = os.open(self.claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            # another worker is taking it over (a claim lives for milliseconds); one left by a
            # taker killed in those milliseconds is removed once it is older than stale_after
            try:
                if time.time() - os.stat(self.claim).st_mtime > self.stale_after:
                    self.claim.unlink(missing_ok=True)
            except OSError:
                pass
            return False
        os.close(fd)
        try:
            if self._stale_inode() != ino:  # taken over by someone else already, or refreshed
                return not self.path.exists()
            self.path.unlink(missing_ok=True)
            return True
        finally:
            self.claim.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, args=(self._stop,), daemon=True,
                                      name=f"heartbeat {self.path.name}")
        self._beat.start()

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat):
            if not self.owns():
                self.lost = True
                return
            try:
                os.utime(self.path)
            except OSError:
                self.lost = True
                return

    def owns(self) -> bool:
        """True while the lock file still holds this holder's token."""
        if not self.held:
            return False
        try:
            return self.path.read_text().strip() == self.token
        except OSError:
            return False

    def clear_if_stale(self) -> bool:
        """Remove the lock file if it is stale (see the class docstring); True if removed."""
        if self.held:
            return False
        ino = self._stale_inode()
        return ino is not None and self._take_over(ino) and not self.path.exists()

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            if self._beat is not None and self._beat is not threading.current_thread():
                self._beat.join(timeout=5)
            self._stop = self._beat = None
        if self.held:
            if self.owns():  # never remove a lock another worker took over
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> BackboneLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_for(parts_dir: str | os.PathLike, dataset: str, backbone: str) -> BackboneLock:
    return BackboneLock(dataset_dir(parts_dir, dataset) / f"{safe_name(backbone)}.lock")


# ---------------------------------------------------------------------------- shards
def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` (1-based, 1 ≤ I ≤ N) -> 0-based ``(i, n)``; ``None`` -> ``None``."""
    if text is None or text == "":
        return None
    try:
        i_s, n_s = str(text).split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ShardError(f"--shard must look like I/N with integers, 1-based (e.g. 1/4); "
                         f"got {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise ShardError(f"--shard {text!r} is out of range; expected 1 <= I <= N (1-based, "
                         f"e.g. 1/{max(n, 1)} .. {max(n, 1)}/{max(n, 1)})")
    return i - 1, n


def shard_assignment(pool: pl.DataFrame, n: int) -> pl.DataFrame:
    """``backbone, cost, shard`` (0-based) for every pool row: LPT greedy over the name-sorted
    pool, costliest first (ties by name), each to the shard with the least total so far
    (ties by lowest shard index).  Deterministic."""
    if n < 1:
        raise ShardError(f"number of shards must be >= 1; got {n}")
    gm = pool.get_column("gmacs").cast(pl.Float64) if "gmacs" in pool.columns else \
        pl.Series("gmacs", [None] * pool.height, dtype=pl.Float64)
    median = gm.drop_nulls().drop_nans().median() if gm.drop_nulls().len() else None
    fill = float(median) if median is not None else 1.0
    costs = (pool.select("backbone").with_columns(
        gm.fill_nan(None).fill_null(fill).clip(lower_bound=0.0).alias("cost"))
        .sort(["cost", "backbone"], descending=[True, False]))
    heap = [(0.0, k) for k in range(n)]
    shards = []
    for cost in costs.get_column("cost").to_list():
        total, k = heapq.heappop(heap)
        shards.append(k)
        heapq.heappush(heap, (total + cost, k))
    return costs.with_columns(pl.Series("shard", shards, dtype=pl.Int32)).sort("backbone")


def select_shard(pool: pl.DataFrame, shard: tuple[int, int] | None) -> pl.DataFrame:
    """The rows of ``pool`` (sorted by backbone) that belong to 0-based ``shard = (i, n)``."""
    pool = pool.sort("backbone")
    if shard is None:
        return pool
    i, n = shard
    mine = shard_assignment(pool, n).filter(pl.col("shard") == i).get_column("backbone")
    return pool.filter(pl.col("backbone").is_in(mine.implode()))


# ----------------------------------------------------------------------------- merge
@dataclass
class MergeReport:
    path: Path
    n_backbones: int
    n_rows: int
    missing: list[str]
    failed: pl.DataFrame  # backbone, error
    top1_empty: bool = False  # no backbone has imagenet_top1 (the pool was measured without timm's results)

    def summary(self) -> str:
        line = (f"oracle {self.path}: {self.n_backbones} backbones, {self.n_rows} rows, "
                f"{self.failed.height} failed, {len(self.missing)} missing")
        if self.missing:
            shown = ", ".join(self.missing[:10]) + (" ..." if len(self.missing) > 10 else "")
            line += f" (missing: {shown})"
        if self.top1_empty:
            line += ("\nnote: imagenet_top1 is empty in this oracle (its pool was measured without timm's results), "
                     "so strategy imagenet-top1 cannot run on it as it is: simulate --timm-results DIR fills it "
                     "from timm's results-imagenet.csv, or build the pool with `precompute pool --timm-results DIR`")
        return line


#: what every part of one oracle must share (the truth is how the rows are read, not how they were
#: made: parts naming different truths merge under an explicit ``truth``)
_CONSISTENT = ("dataset", "weights", "protocol")


def merge(dataset: str, parts_dir: str | os.PathLike = DEFAULT_PARTS_DIR,
          out: str | os.PathLike | None = None, fmt: str = "parquet",
          expected: list[str] | None = None, truth: str | None = None) -> MergeReport:
    """Build the oracle for ``dataset`` from all its parts, validate and write it.

    ``out``: a file, or a folder (``<out>/<dataset>.parquet|.h5``); default
    ``data/oracles/<dataset>.<fmt>``.  ``expected``: the pool; default the run's manifest.
    ``truth``: the evaluator whose fraction-1.0 rows are the truth (the metadata's ``truth``);
    default the one the parts record (``precompute run --truth``, or inferred from its evaluators).
    Missing backbones (expected, no part) and failed ones are reported, never hidden."""
    folder = dataset_dir(parts_dir, dataset)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        raise MergeError(f"no part files for dataset {dataset!r} in {str(folder)!r}; "
                         f"run `precompute run --dataset {dataset}` first")
    frames, metas = [], []
    for f in files:
        frame, meta = read_part(f)
        frames.append(frame)
        metas.append(meta)
    base = metas[0]
    for f, m in zip(files, metas):
        for key in _CONSISTENT:
            if key in base and m.get(key) != base.get(key):
                raise MergeError(f"part {f.name} was made with a different {key} than "
                                 f"{files[0].name}; parts of one oracle must share one run "
                                 f"configuration (delete the stale parts or use another "
                                 f"--parts-dir)")
    frame = pl.concat(frames, how="vertical").sort(["backbone", "evaluator", "fraction", "seed"],
                                                     descending=[False, False, True, False])
    if truth is None:
        named = sorted({str(m.get("truth", "mlp")) for m in metas})
        if len(named) > 1:
            raise MergeError(f"the parts of {dataset!r} name different truths ({', '.join(named)}); choose one "
                             f"with --truth NAME")
        truth = named[0]
    at_one = frame.filter(pl.col("fraction") == 1.0)
    if at_one.filter(pl.col("evaluator") == truth).height == 0:  # (failed truth rows: the oracle says so)
        have = sorted(set(at_one.get_column("evaluator").to_list()))
        pick = next((h for h in HEADS if h in have), have[0] if have else None)
        raise MergeError(f"the parts of {dataset!r} have no {truth} row at fraction 1.0 to be the truth"
                         + (f"; they have {', '.join(have)} there: give --truth NAME, e.g. --truth {pick}"
                            if have else " (nor any other evaluator: the run did not evaluate fraction 1.0)"))
    if expected is None:
        manifest = read_manifest(parts_dir, dataset)
        expected = manifest["backbones"] if manifest else None
    have = set(frame.get_column("backbone").unique().to_list())
    missing = sorted(set(expected or ()) - have)
    hosts = sorted({json.dumps(m.get("hardware"), sort_keys=True) for m in metas if m.get("hardware")})
    meta = {k: v for k, v in base.items() if k not in ("hardware", "backbone")}
    meta.update({
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "truth": truth,
        "hardware": [json.loads(h) for h in hosts] if len(hosts) > 1 else
                    (json.loads(hosts[0]) if hosts else None),
        "source": base.get("source", "vibes precompute"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "n_parts": len(files),
        "missing_backbones": missing,
    })
    if out is None:
        path = default_oracle_path(dataset, DEFAULT_ORACLE_DIR, fmt)
    else:
        out = Path(out)
        path = default_oracle_path(dataset, out, fmt) if (out.is_dir() or not out.suffix) else out
    oracle = Oracle(frame, meta).validate()
    oracle.write(path)
    failed = (frame.filter(pl.col("status") != "ok").group_by("backbone")
              .agg(pl.col("error").drop_nulls().first()).sort("backbone"))
    return MergeReport(path=Path(path), n_backbones=len(have), n_rows=frame.height,
                       missing=missing, failed=failed,
                       top1_empty=oracle.frame.get_column("imagenet_top1").null_count() == oracle.frame.height)


__all__ = ["BackboneLock", "MergeReport", "ShardError", "MergeError", "atomic_path", "write_frame", "merge",
           "parse_shard", "part_path", "part_status", "read_part", "write_part",
           "select_shard", "shard_assignment", "save_features", "load_features",
           "features_path", "lock_for", "remove_stale_tmp", "write_manifest", "read_manifest", "read_part_meta"]
