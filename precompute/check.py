"""``precompute check``: can every backbone of the pool be loaded and give usable features?

For each backbone a persistent worker process builds it with random weights through the sweep's
own code (:func:`precompute.backbone.load_backbone`, :func:`precompute.extract.extract_features`,
which applies :func:`precompute.extract.preprocess`) and extracts features for a few synthetic
images at its native input size (or ``--input-size``).  One row per backbone records

* ``status``: ``ok``; ``failed`` (an exception, a crash of the worker: segfault, out-of-memory
  kill); ``timeout`` (the backbone took longer than ``--timeout``: the worker is killed and a new one
  started); ``skipped`` (this machine's memory guard: the fp32 weights alone would need more than
  ``--max-memory-gb``, so the model is never built, or the worker's memory grew past it while the
  model ran -- a limit of the machine running the check, not a failure of the backbone);
* ``reason``: ``"<ExcType>: <message>"`` for anything not ok;
* ``load_seconds``, ``extract_seconds`` (as the sweep measures them), ``peak_mb`` (memory the
  backbone took above the idle worker: sampled resident memory on CPU, peak allocated on CUDA);
* ``nonfinite`` (NaN/inf features: the sweep rejects them) and ``constant_features`` (every
  feature's standard deviation across the images is below 1e-6: a head trained on them scores
  at chance), with ``feature_std`` (the largest per-feature std across the images).

Rows are written to ``--out`` after every backbone, so an interrupted run resumes where it stopped.
The workers' stdout/stderr go to ``<out>.worker.log`` while they run; the log is removed at the end
unless a backbone of the run was not ok (a crash's last words are there).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from precompute import pool as P
from precompute.pool import known_measurements, make_shipped_table, pool_names, read_pool_file, shipped_path
from shared.errors import VibesError

# torch, timm and the model code are imported in the worker processes (and by the functions they
# run), never in the parent that schedules them: it stays light and survives a worker's crash

STATUSES = ("ok", "failed", "timeout", "skipped")
CONSTANT_STD = 1e-6

#: the check table's columns, in order
CHECK_COLUMNS = {
    "backbone": pl.String,
    "architecture": pl.String,
    "status": pl.String,
    "reason": pl.String,
    "requested_size": pl.Int32,  # --input-size (null: native)
    "input_size": pl.Int32,  # the input size actually used (after the model's constraints)
    "note": pl.String,  # e.g. why the input size was rounded (precompute.backbone.fit_input_size)
    "feature_dim": pl.Int32,
    "params_m": pl.Float64,
    "load_seconds": pl.Float64,
    "extract_seconds": pl.Float64,
    "wall_seconds": pl.Float64,  # the worker's whole time on this backbone, as the parent saw it
    "peak_mb": pl.Float64,
    "nonfinite": pl.Boolean,
    "constant_features": pl.Boolean,
    "feature_std": pl.Float64,
    "device": pl.String,
}



# ------------------------------------------------------------------------------ one backbone
def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _trim_heap() -> None:
    """Give freed heap back to the OS (glibc), so the next backbone's peak starts from a true baseline."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


class _PeakRSS:
    """Samples this process's resident memory in a thread; ``peak`` is the largest value seen."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak = interval, _rss_bytes() or 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_bytes() or 0)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes() or 0)


def _reason(exc: BaseException, limit: int = 400) -> str:
    msg = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def meta_params_m(name: str) -> float:
    """Parameters (M) of ``name`` built on the meta device (no memory, no initialisation)."""
    import timm  # lazy: called in a worker process, or for a name the pool cannot size
    import torch

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
    return sum(p.numel() for p in model.parameters()) / 1e6


def check_one(name: str, device: str = "cpu", input_size: int | None = None, n_images: int = 4,
              params_m: float | None = None, max_memory_gb: float | None = None) -> dict:
    """Check one backbone in this process; never raises (the outcome is the row's status)."""
    import numpy as np
    import torch  # lazy: this runs in a worker process (see the imports above)

    from precompute.backbone import load_backbone  # lazy: a worker process's import, not the parent's
    from precompute.extract import extract_features

    row: dict = {c: None for c in CHECK_COLUMNS}
    row.update(backbone=name, architecture=name.split(".", 1)[0], status="ok", requested_size=input_size,
               device=str(device), params_m=params_m, nonfinite=False)
    try:
        if row["params_m"] is None:
            row["params_m"] = meta_params_m(name)
        if max_memory_gb is not None and row["params_m"] * 4e6 / 1e9 > max_memory_gb:
            row["status"] = "skipped"
            row["reason"] = (f"memory guard: fp32 weights need {row['params_m'] * 4e6 / 1e9:.1f} GB > "
                             f"--max-memory-gb {max_memory_gb:g} (this machine's limit, not built)")
            return row
    except Exception:  # noqa: BLE001, S110 - cannot even be built on meta: the load below says why
        pass
    _trim_heap()
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes() or 0
    sampler = _PeakRSS()
    try:
        with sampler:
            bb = load_backbone(name, weights="random", device=device, input_size=input_size)
            row["load_seconds"] = bb.load_seconds
            row["note"] = getattr(bb, "input_size_note", None)
            h, w = (int(s) for s in bb.data_config["input_size"][-2:])
            row["input_size"] = h
            rng = np.random.default_rng(0)
            images = rng.integers(0, 256, size=(n_images, h, w, 3), dtype=np.uint8)
            try:
                feats, seconds = extract_features(bb, images, np.arange(n_images), [n_images],
                                                  batch_size=n_images)
            except ValueError as exc:
                if "non-finite features" in str(exc):
                    row["nonfinite"] = True
                raise
            row["extract_seconds"] = float(sum(seconds))
            row["feature_dim"] = int(feats.shape[1])
            std = feats.double().std(dim=0, unbiased=False).max() if n_images > 1 else torch.tensor(0.0)
            row["feature_std"] = float(std)
            row["constant_features"] = bool(row["feature_std"] < CONSTANT_STD)
            del bb, feats
    except Exception as exc:  # noqa: BLE001 - recorded as the row's reason
        row["status"], row["reason"] = "failed", _reason(exc)
    finally:
        if cuda:
            row["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
            torch.cuda.empty_cache()
        else:
            row["peak_mb"] = max(0, sampler.peak - base) / 2**20
    import gc

    gc.collect()
    _trim_heap()
    return row


# ------------------------------------------------------------------------------ the worker
def _worker_main(conn, threads: int, log_path: str | None) -> None:
    """Worker process: import torch+timm once, then check the backbones sent one by one."""
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights: never reach for the hub
    import warnings

    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(threads)
    import gc

    import timm  # noqa: F401 - imported once, here, before the first timed backbone

    from precompute import backbone, extract  # noqa: F401 - lazy: the worker loads them once, before any backbone

    gc.freeze()  # the ~400k objects of torch+timm: a full collection after each backbone then takes ms, not s
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        print(f"--- {task['name']}", flush=True)
        conn.send(("done", check_one(**task)))


class WorkerDied(Exception):
    pass


class WorkerTimeout(Exception):
    pass


class WorkerOverMemory(Exception):
    pass


def _proc_rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _last_line(path: str | None) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 4000))
        lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("--- ")]
    return lines[-1][:200] if lines else ""


class Worker:
    """A persistent child process (spawned: its own torch, no state shared with the parent) that
    checks backbones one by one; killed and restarted after a timeout, a crash or the memory guard."""

    def __init__(self, threads: int = 1, log_path: str | None = None, start_timeout: float = 300.0,
                 rss_limit: int | None = None):
        self.threads, self.log_path, self.start_timeout, self.rss_limit = threads, log_path, start_timeout, rss_limit
        self.proc = self.conn = None
        self.baseline = 0

    def start(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, self.threads, self.log_path), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        if not parent.poll(self.start_timeout):
            self.kill()
            raise VibesError(f"the check worker did not start within {self.start_timeout:g} s")
        try:
            parent.recv()
        except EOFError:
            code = self.proc.exitcode
            self.kill()
            raise VibesError(f"the check worker died while starting (exit {code}); "
                             f"see {self.log_path or 'its stderr'}") from None
        self.baseline = _proc_rss(self.proc.pid) or 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.join(10)
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError, BrokenPipeError):
                self.conn.send(None)
        if self.proc is not None:
            self.proc.join(2)  # torch's teardown can take seconds: no need to wait for it
        self.kill()

    def run(self, task: dict, timeout: float) -> dict:
        if self.proc is None:
            self.start()
        self.conn.send(task)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerTimeout(f"no result within --timeout {timeout:g} s")
            try:
                ready = self.conn.poll(min(0.2, left))
            except (EOFError, OSError):
                ready = True
            if ready:
                try:
                    kind, row = self.conn.recv()
                    return row
                except (EOFError, OSError):
                    pass
                self.proc.join(5)
                code = self.proc.exitcode
                self.kill()
                if code is not None and code < 0:
                    sig = signal.Signals(-code).name
                    hint = " (the kernel's out-of-memory killer?)" if sig == "SIGKILL" else ""
                    msg = f"the worker was killed by {sig}{hint}"
                else:
                    msg = f"the worker exited with code {code}"
                last = _last_line(self.log_path)
                raise WorkerDied(msg + (f"; last output: {last}" if last else ""))
            if self.rss_limit is not None:
                rss = _proc_rss(self.proc.pid)
                if rss is not None and rss - self.baseline > self.rss_limit:
                    self.kill()
                    raise WorkerOverMemory(
                        f"memory guard: the worker grew by {(rss - self.baseline) / 1e9:.1f} GB > "
                        f"--max-memory-gb {self.rss_limit / 1e9:g} (this machine's limit; killed)")


# ------------------------------------------------------------------------------ the table
def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=CHECK_COLUMNS, orient="row") if rows else pl.DataFrame(schema=CHECK_COLUMNS)


def read_check(path: str | Path) -> pl.DataFrame:
    """A check table written by ``precompute check --out``."""
    p = Path(path)
    try:
        frame = pl.read_parquet(p)
    except Exception as exc:
        raise VibesError(f"cannot read check table {str(p)!r}: {type(exc).__name__}; expected a "
                         f"Parquet file written by `precompute check --out`") from None
    missing = [c for c in ("backbone", "status", "reason") if c not in frame.columns]
    if missing:
        raise VibesError(f"check table {str(p)!r} lacks columns {missing}; expected one written by "
                         f"`precompute check --out`")
    return frame.select([pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c)
                         for c, t in CHECK_COLUMNS.items()])


def reason_key(col: str = "reason") -> pl.Expr:
    """A reason with its numbers, shapes and quoted names blanked, so alike failures group together."""
    return (pl.col(col).str.replace_all(r"'[^']*'", "'…'").str.replace_all(r"\([0-9, ]+\)", "(…)")
            .str.replace_all(r"[0-9]+(\.[0-9]+)?", "N").str.slice(0, 90))


def summary_lines(table: pl.DataFrame, top: int = 25) -> list[str]:
    """The printed summary: counts by status, by reason, and the rows that are not ok or flagged."""
    lines = [f"check: {table.height} backbones"]
    counts = table.group_by("status").len().sort("len", descending=True)
    lines.append("  by status: " + ", ".join(f"{s} {n}" for s, n in counts.iter_rows()))
    flagged = table.filter(pl.col("constant_features") | pl.col("nonfinite"))
    lines.append(f"  flagged: constant features {int(table['constant_features'].sum() or 0)}, "
                 f"non-finite features {int(table['nonfinite'].sum() or 0)}")
    bad = table.filter(pl.col("status") != "ok")
    if bad.height:
        lines.append("  by reason:")
        keys = (bad.with_columns(reason_key().alias("key")).group_by("status", "key")
                .agg(pl.len().alias("n"), pl.col("architecture").unique().sort().alias("archs"))
                .sort("n", descending=True))
        for status, key, n, archs in keys.head(top).iter_rows():
            shown = ", ".join(archs[:4]) + (f", ... ({len(archs)} archs)" if len(archs) > 4 else "")
            lines.append(f"    {n:5d} {status:8s} {key}  [{shown}]")
        if keys.height > top:
            lines.append(f"    ... {keys.height - top} more reasons")
        lines.append("  not ok:")
        for name, status, reason in bad.select("backbone", "status", "reason").iter_rows():
            lines.append(f"    {status:8s} {name}: {(reason or '')[:140]}")
    if flagged.height:
        lines.append("  flagged (ok, but a head on them scores at chance or fails):")
        for name, std, nonf in flagged.select("backbone", "feature_std", "nonfinite").iter_rows():
            what = "non-finite" if nonf else f"constant (max std {std:.1e})"
            lines.append(f"    {name}: {what}")
    return lines


# ------------------------------------------------------------------------------ the run
@dataclass
class CheckConfig:
    device: str = "cpu"
    input_size: int | None = None
    timeout: float = 300.0
    n_images: int = 4
    threads: int = 1
    max_memory_gb: float | None = 8.0


def _write(frame: pl.DataFrame, path: Path) -> None:
    P.write_table(frame, path)


def run_check(names: Sequence[str], cfg: CheckConfig, out: str | Path | None = None,
              params: dict[str, float] | None = None, redo: Sequence[str] = (),
              echo: Callable[[str], None] | None = None) -> pl.DataFrame:
    """Check ``names`` (skipping those already in ``out`` unless their status is in ``redo``);
    returns the whole table, in the order of ``names`` (rows of ``out`` for other names kept after)."""
    path = Path(out) if out is not None else None
    done = read_check(path) if path is not None and path.exists() else _frame([])
    if done.height:
        size = pl.col("requested_size")
        other = done.filter((size.is_not_null() if cfg.input_size is None
                             else size.is_null() | (size != cfg.input_size))
                            | (pl.col("device") != cfg.device))
        if other.height:
            r = other.row(0, named=True)
            raise VibesError(f"{str(path)!r} holds checks at input size {r['requested_size'] or 'native'} on "
                             f"{r['device']}, not {cfg.input_size or 'native'} on {cfg.device}; use another --out")
    keep = done.filter(~(pl.col("status").is_in(list(redo)) & pl.col("backbone").is_in(list(names))))
    seen = set(keep["backbone"].to_list())
    todo = [n for n in dict.fromkeys(names) if n not in seen]
    rows: list[dict] = []
    log_path = worker_log(path) if path is not None else None
    rss_limit = int(cfg.max_memory_gb * 1e9) if cfg.max_memory_gb is not None else None
    worker = Worker(threads=cfg.threads, log_path=log_path, rss_limit=rss_limit)
    params = params or {}
    try:
        for i, name in enumerate(todo):
            task = dict(name=name, device=cfg.device, input_size=cfg.input_size, n_images=cfg.n_images,
                        params_m=params.get(name), max_memory_gb=cfg.max_memory_gb)
            if worker.proc is None:
                worker.start()  # importing torch+timm is not the backbone's time
            start = time.monotonic()
            try:
                row = worker.run(task, cfg.timeout)
            except (WorkerTimeout, WorkerDied, WorkerOverMemory) as exc:
                status = {WorkerTimeout: "timeout", WorkerDied: "failed", WorkerOverMemory: "skipped"}[type(exc)]
                row = {c: None for c in CHECK_COLUMNS}
                row.update(backbone=name, architecture=name.split(".", 1)[0], status=status, reason=str(exc),
                           requested_size=cfg.input_size, device=cfg.device, params_m=params.get(name))
            row["wall_seconds"] = time.monotonic() - start
            rows.append(row)
            if path is not None:
                _write(pl.concat([keep, _frame(rows)]), path)
            if echo is not None:
                extra = " constant-features" if row.get("constant_features") else ""
                why = f" {row['reason'][:100]}" if row.get("reason") else ""
                echo(f"[{i + 1}/{len(todo)}] {name}: {row['status']} {row['wall_seconds']:.1f}s{extra}{why}")
    finally:
        worker.close()
    if log_path is not None and all(r["status"] == "ok" for r in rows):
        Path(log_path).unlink(missing_ok=True)  # the workers' output matters only for what was not ok
    table = pl.concat([keep, _frame(rows)]).unique("backbone", keep="last")
    order = pl.DataFrame({"backbone": list(dict.fromkeys([*names, *table["backbone"].to_list()]))})
    return order.join(table, on="backbone", how="inner", maintain_order="left")


def worker_log(out: str | Path) -> Path:
    """Where the check workers' stdout/stderr goes while ``precompute check --out OUT`` runs: beside
    OUT, kept after the run only when a backbone of it was not ok (a crash's output is there)."""
    return Path(str(out) + ".worker.log")


def _sample_names(names: Sequence[str], n: int) -> list[str]:
    """One name per architecture (the first listed), for ``n`` architectures evenly spaced in sorted order."""
    first: dict[str, str] = {}
    for name in names:
        first.setdefault(name.split(".", 1)[0], name)
    archs = sorted(first)
    if n >= len(archs):
        return [first[a] for a in archs]
    step = len(archs) / n
    return [first[archs[int(i * step)]] for i in range(n)]


def resolve_names(pools: Sequence[str], include_test_models: bool = False) -> tuple[list[str], dict[str, float]]:
    """``--pool`` values (pool files, names files, globs or names; default every pretrained timm
    name but timm's toy test models, :func:`precompute.pool.pool_names`) -> names, and the params (M)
    known for them without measuring anything new."""
    names = pool_names(pools, include_test_models)
    params = {n: v for n, v in known_measurements().select("backbone", "params_m").drop_nulls().iter_rows()}
    for spec in pools:
        p = Path(spec)
        if p.is_file() and p.suffix.lower() in (".parquet", ".csv"):
            frame = read_pool_file(p)
            if "params_m" in frame.columns:
                params.update({n: v for n, v in frame.select("backbone", "params_m").drop_nulls().iter_rows()})
    return names, params


def status_counts(table: pl.DataFrame) -> dict[str, int]:
    return dict(table.group_by("status").len().iter_rows())


# ------------------------------------------------------------------ the shipped pool table
def _main(argv: Sequence[str] | None = None) -> None:
    """``python -m precompute.check --measured M.parquet --check C.parquet --out OUT.parquet``: write the
    shipped pool table from a full measurement (``build_pool(..., cache=M)``) and a check table."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m precompute.check", description=_main.__doc__)
    ap.add_argument("--measured", required=True, help="cache Parquet of build_pool over every name")
    ap.add_argument("--check", default=None, help="table of `precompute check --out` (native size)")
    ap.add_argument("--out", default=str(shipped_path()))
    args = ap.parse_args(argv)
    measured = pl.read_parquet(args.measured).unique("backbone", keep="last")
    import timm  # lazy: a maintenance script, run by hand

    order = timm.list_models(pretrained=True)
    missing = sorted(set(order) - set(measured["backbone"].to_list()))
    if missing:
        raise SystemExit(f"{len(missing)} pretrained names not measured in {args.measured}, e.g. {missing[:3]}")
    check = read_check(args.check) if args.check else None
    # in timm's order, so that the shipped names are timm.list_models(pretrained=True) as it lists them
    measured = pl.DataFrame({"backbone": order}).join(measured, on="backbone", how="left", maintain_order="left")
    table = make_shipped_table(measured, check)
    _write(table, Path(args.out))
    print(f"{table.height} backbones -> {args.out}; check status: "
          f"{dict(table.group_by('check_status').len().iter_rows())}; "
          f"excluded {table['excluded'].is_not_null().sum()}")


if __name__ == "__main__":
    _main()
