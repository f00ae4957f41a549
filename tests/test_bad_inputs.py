"""Bad inputs to both command lines, as a user meets them: one table of cases, each run as a
subprocess of the real CLI.

A failing case must exit 2 with ONE ``error: ...`` line last on stderr and no traceback; files
already written (a valid oracle and its parts, the simulator's input oracle) keep their bytes.
Some inputs are not errors by design (decided in precompute/datasets.py): unreadable images are
skipped and counted, odd image modes are converted.  Ctrl-C exits 130 keeping finished parts.

``VIBES_WRITE_BAD_INPUT_TABLE=path`` writes the Markdown table of what the user sees.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fixtures_datasets as fx
import polars as pl
import pytest
from test_kill_resume import (
    CHEAP,
    NAMES,
    cli,
    run_args,
    sweep_home,  # noqa: F401  (fixture)
)

from precompute.cli import INTERRUPTED
from precompute.cli import main as precompute_main
from shared.oracle import META_KEY, read_oracle
from tests.conftest import random_oracle

TABLE_ENV = "VIBES_WRITE_BAD_INPUT_TABLE"
ROWS: list[dict[str, str]] = []


# ------------------------------------------------------------------------------ set-ups
def write_bad_oracle(mutate: Callable[[pl.DataFrame], pl.DataFrame], **meta) -> Callable:
    """A set-up writing ``bad.parquet``: the toy oracle's rows mutated, its metadata updated,
    written with pyarrow directly (``Oracle.write`` would refuse it)."""
    def setup(work: Path) -> None:
        import pyarrow.parquet as pq

        good = random_oracle()
        table = mutate(good.frame).to_arrow().replace_schema_metadata(
            {META_KEY: json.dumps({**good.meta, "schema_version": 1, **meta})})
        pq.write_table(table, work / "bad.parquet")
    return setup


def corrupt_tree(work: Path) -> None:
    root = fx.write_class_tree(work / "imgs", {"a": 5, "b": 5, "c": 5})
    fx.write_corrupt(root / "a" / "zz_corrupt.png")
    fx.write_truncated_jpeg(root / "b" / "zz_truncated.jpg")


def odd_tree(work: Path) -> None:
    root = work / "imgs"
    for i in range(4):
        fx.write_grayscale(root / "gray" / f"{i}.png", value=40 + 50 * i, size=10 + i)
        fx.write_rgba(root / "rgba" / f"{i}.png", color=(10 * i, 20, 200 - 10 * i))
        fx.write_16bit(root / "sixteen" / f"{i}.png", value=5000 + 15000 * i)
        fx.write_tiny(root / "tiny" / f"{i}.png", color=(60 * i, 10, 10))
        fx.write_palette(root / "palette" / f"{i}.png", size=8 + i)


def empty_class_tree(work: Path) -> None:
    fx.write_class_tree(work / "imgs", {"a": 3, "b": 3})
    (work / "imgs" / "c").mkdir()


def train_test_mismatch(work: Path) -> None:
    fx.write_class_tree(work / "imgs" / "train", {"a": 3, "b": 3})
    fx.write_class_tree(work / "imgs" / "test", {"a": 2, "c": 2})


@dataclass(frozen=True)
class InWork:
    """An argument naming a path in the case folder: ``label`` in the table."""

    label: str
    rel: str
    prefix: str = ""

    def __call__(self, work: Path) -> str:
        return f"{self.prefix}{work / self.rel}"


folder = InWork("folder:<tree>", "imgs", "folder:")


# ------------------------------------------------------------------------------ checks
def folder_oracle(work: Path):
    (path,) = [p for p in (work / "oracles").glob("*.parquet") if p.name != "digits.parquet"]
    return read_oracle(path)


def check_skipped(work: Path, proc) -> None:
    assert "warning: " in proc.stderr and "skipped 2 unreadable image(s)" in proc.stderr
    meta = folder_oracle(work).meta
    assert meta["dataset_facts"]["n_skipped"] == 2
    assert sorted(Path(f).name for f, _ in meta["skipped_images"]) == ["zz_corrupt.png",
                                                                       "zz_truncated.jpg"]
    assert meta["n_train"] + meta["n_test"] == 15


def check_odd(work: Path, proc) -> None:
    oracle = folder_oracle(work)
    assert oracle.meta["dataset_facts"]["n_skipped"] == 0 and "skipped" not in proc.stderr
    assert oracle.meta["n_train"] + oracle.meta["n_test"] == 20 and oracle.meta["n_classes"] == 5
    assert (oracle.frame["status"] == "ok").all()


def check_interrupted(work: Path, proc) -> None:
    parts = work / "parts" / "digits"
    # NAMES[0]'s part was there before; NAMES[1]'s was finished by this run; NAMES[2] was cut
    assert sorted(p.stem for p in parts.glob("*.parquet")) == sorted(NAMES[:2])
    assert pl.read_parquet(parts / f"{NAMES[1]}.parquet")["status"].to_list() == ["ok"]
    assert not list(work.rglob("*.tmp")) and not list(work.rglob("*.lock"))


# ------------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """``prog`` is ``precompute run`` (digits, one backbone, the cheap protocol, the valid parts
    as --parts-dir), ``precompute pool`` or ``simulate`` (``--oracle ORACLE --out``); ``extra``
    is appended (click keeps the last value of a repeated option)."""

    id: str
    prog: str
    extra: tuple = ()
    expect: str = ""  # in the last stderr line (or for a success, in stdout/stderr)
    code: int = 2
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, object], None] | None = None
    names: tuple = NAMES[:1]
    oracle: str = "toy.parquet"  # simulate's input, in the case folder
    fault: str | None = None

    def argv(self, home, work: Path) -> tuple[str, list[str]]:
        extra = [e(work) if isinstance(e, InWork) else e for e in self.extra]
        if self.prog == "precompute run":
            return "precompute.cli", run_args(home, work, *extra, names=self.names,
                                              protocol=CHEAP)
        if self.prog == "precompute pool":
            return "precompute.cli", ["pool", *extra]
        return "simulate.cli", ["--oracle", work / self.oracle, "--out", work / "simout", *extra]

    def shown(self) -> str:
        extra = " ".join(e.label if isinstance(e, InWork) else str(e) for e in self.extra)
        pool = "NAME" if self.names == NAMES[:1] else " --pool ".join(self.names)
        base = {"precompute run": f"precompute run --dataset digits --pool {pool} … ",
                "precompute pool": "precompute pool ",
                "simulate": f"simulate --oracle {self.oracle} "}[self.prog]
        return (base + extra).strip()


CASES = [
    Case("unknown dataset", "precompute run", ("--dataset", "nope"),
         "unknown dataset 'nope'; valid: cifar10, digits"),
    Case("unknown evaluator (precompute)", "precompute run", ("--evaluators", "mlp,knnn"),
         "unknown evaluator 'knnn'; valid: hscore, knn, logme, mlp, mlp-sklearn, ridge, silhouette"),
    Case("unknown backbone", "precompute run", (), "unknown backbone 'resnet18.no_such_tag'; "
         "valid: resnet18.", names=("resnet18.no_such_tag",)),
    Case("missing data root, no download", "precompute run",
         ("--dataset", "cifar10", "--data-root", InWork("<empty dir>", "no_data")),
         "cifar10 not found (or incomplete) at"),
    Case("corrupt + truncated images", "precompute run", ("--dataset", folder),
         "skipped 2 unreadable image(s)", code=0, setup=corrupt_tree, check=check_skipped),
    Case("grayscale/RGBA/16-bit/tiny/palette images", "precompute run", ("--dataset", folder),
         "0 failed, 0 missing", code=0, setup=odd_tree, check=check_odd),
    Case("class with no image", "precompute run", ("--dataset", folder),
         "class 'c' in", setup=empty_class_tree),
    Case("train/test with different classes", "precompute run", ("--dataset", folder),
         "have different classes: only in train: b; only in test: c", setup=train_test_mismatch),
    Case("empty pool after filters", "precompute pool",
         ("--glob", NAMES[0], "--max-params", "0.0001", "--no-progress"),
         "pool is empty after filters"),
    Case("bad --shard (out of range)", "precompute run", ("--shard", "3/2"),
         "--shard '3/2' is out of range"),
    Case("bad --shard (not I/N)", "precompute run", ("--shard", "two"),
         "--shard must look like I/N"),
    Case("Ctrl-C (SIGINT) mid-run", "precompute run", (), INTERRUPTED, code=130,
         names=NAMES, fault="mlp-epoch:300:INT", check=check_interrupted),
    Case("unknown strategy", "simulate", ("--strategy", "fastest"),
         "unknown strategy 'fastest'; valid:"),
    Case("unknown evaluator (simulate)", "simulate", ("--evaluator", "knn"),
         "unknown evaluator 'knn'; valid: mlp, silhouette"),
    Case("wrong schema_version", "simulate", (), "oracle schema_version is 99; this VIBES reads "
         "version 1", oracle="bad.parquet", setup=write_bad_oracle(lambda f: f, schema_version=99)),
    Case("duplicate rows", "simulate", (), "duplicate key", oracle="bad.parquet",
         setup=write_bad_oracle(lambda f: pl.concat([f, f.head(1)]))),
    Case("missing truth rows", "simulate", (), "no truth rows", oracle="bad.parquet",
         setup=write_bad_oracle(lambda f: f.filter(pl.col("evaluator") != "mlp"))),
    Case("negative times", "simulate", (), "negative seconds", oracle="bad.parquet",
         setup=write_bad_oracle(lambda f: f.with_columns(pl.lit(-1.0).alias("seconds")))),
    Case("budget below the cheapest evaluation", "simulate", ("--budgets", "0.001:0.01:3"),
         "below the cheapest evaluation"),
    Case("sampler key column missing", "simulate", ("--strategy", "cycling"),
         "sampler 'cycling' needs column(s) pretrain_dataset", oracle="bad.parquet",
         setup=write_bad_oracle(lambda f: f.drop("pretrain_dataset"))),
]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def valid_state(sweep_home, tmp_path_factory) -> Path:
    """A finished digits run (parts + oracle) and the simulator's valid input oracle."""
    base = tmp_path_factory.mktemp("valid_state")
    code = precompute_main([str(a) for a in run_args(sweep_home, base, names=NAMES[:1],
                                                     protocol=CHEAP)])
    assert code == 0
    assert read_oracle(base / "oracles" / "digits.parquet").frame.height == 1
    random_oracle().write(base / "toy.parquet")
    return base


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def write_table():
    yield
    path = os.environ.get(TABLE_ENV)
    if not path or not ROWS:
        return
    lines = ["| case | command | what the user sees | exit | files intact |",
             "|---|---|---|---|---|"]
    for r in ROWS:
        cells = [r[k].replace("|", "\\|") for k in ("case", "command", "sees", "exit", "intact")]
        lines.append("| " + " | ".join(cells[:1] + [f"`{cells[1]}`"] + cells[2:]) + " |")
    Path(path).write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------- test
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, sweep_home, valid_state, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(valid_state, work)
    if case.setup:
        case.setup(work)
    before = digests(work)
    module, argv = case.argv(sweep_home, work)
    proc = cli(module, *argv, cwd=sweep_home.cwd if module == "precompute.cli" else work,
               fault=case.fault)

    assert proc.returncode == case.code, (proc.returncode, proc.stdout[-1000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    err_lines = proc.stderr.strip().splitlines()
    if case.code == 0:
        sees = next((line for line in err_lines if line.startswith("warning:")),
                    proc.stdout.strip().splitlines()[-1])
        assert case.expect in proc.stdout + proc.stderr, (proc.stdout, proc.stderr)
        assert not any(line.startswith("error:") for line in err_lines)
    else:
        sees = err_lines[-1]
        assert case.expect in sees, proc.stderr
        if case.code == 2:
            assert sees.startswith("error: "), proc.stderr
        assert not (work / "simout").exists()  # nothing half-written
    after = digests(work)
    if case.code != 2:  # a run that went ahead rewrites its manifest (the pool it was given)
        before = {k: v for k, v in before.items() if not k.endswith("manifest.json")}
    lost = {k for k, v in before.items() if after.get(k) != v}
    assert not lost, f"changed or removed by a failing command: {sorted(lost)}"
    if case.check:
        case.check(work, proc)
    ROWS.append({"case": case.id, "command": case.shown(), "sees": sees.replace(str(work), "<w>"),
                 "exit": str(proc.returncode), "intact": "yes"})
