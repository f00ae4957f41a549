"""The backbone pool: meta-device measurement, caching, filters."""
from __future__ import annotations

import os
import resource
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("timm")
pytestmark = pytest.mark.torch

from tripwires import TRIPPED, precompute_with_tripwires  # noqa: E402

from precompute import pool as pool_mod  # noqa: E402
from precompute.pool import POOL_COLUMNS, build_pool, filter_pool, measure_backbone  # noqa: E402
from shared.errors import UnknownNameError, VibesError  # noqa: E402

NAMES = [
    "resnet50.a1_in1k",
    "test_vit.r160_in1k",
    "vit_base_patch16_384.augreg_in21k_ft_in1k",
    "mobilenetv3_small_050.lamb_in1k",
    "resnet18.a1_in1k",
]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[pl.DataFrame, object]:
    cache = tmp_path_factory.mktemp("pool") / "pool.parquet"
    return build_pool(NAMES, cache=cache, progress=False, shipped=False), cache  # measured here


def test_columns_and_order(pool):
    frame, _ = pool
    assert frame.columns == POOL_COLUMNS
    assert frame["backbone"].to_list() == NAMES
    assert frame["error"].null_count() == frame.height
    assert frame["architecture"].to_list() == [n.split(".")[0] for n in NAMES]
    assert frame["license"].to_list()[0] == "apache-2.0"


def test_matches_timm_published_figures(pool):
    frame, _ = pool
    r50 = frame.row(0, named=True)
    # timm publishes resnet50 at 224: 25.56 M params, 4.11 GMACs
    assert r50["params_m"] == pytest.approx(25.557, rel=1e-3)
    assert r50["gmacs"] == pytest.approx(4.11, rel=0.05)
    assert (r50["input_size"], r50["feature_dim"]) == (224, 2048)
    vit = frame.filter(pl.col("backbone").str.starts_with("vit_base_patch16_384")).row(0, named=True)
    # counted at the pretrained resolution 384 (timm: 86.86 M, 55.5 GMACs), pre-logits width 768
    assert vit["input_size"] == 384 and vit["feature_dim"] == 768
    assert vit["params_m"] == pytest.approx(86.86, rel=1e-3)
    assert vit["gmacs"] == pytest.approx(55.5, rel=0.05)
    tiny = frame.filter(pl.col("backbone") == "test_vit.r160_in1k").row(0, named=True)
    assert tiny["input_size"] == 160 and tiny["gmacs"] < 0.1


def test_pretrain_columns_joined(pool):
    frame, _ = pool
    try:
        import shared.pretrain  # noqa: F401
    except ImportError:
        pytest.skip("shared.pretrain not available: pretrain columns are null")
    assert frame.filter(pl.col("backbone") == "resnet50.a1_in1k")["pretrain_dataset"].item() is not None


def test_cache_is_reused(pool, monkeypatch):
    frame, cache = pool
    assert cache.exists()

    def boom(name):
        raise AssertionError(f"{name} re-measured despite the cache")

    monkeypatch.setattr(pool_mod, "measure_backbone", boom)
    again = build_pool(NAMES[:2], cache=cache, progress=False, shipped=False)
    assert again.equals(frame.head(2))
    with pytest.raises(AssertionError, match="re-measured"):
        build_pool(NAMES[:1], cache=cache, refresh=True, progress=False)


def test_meta_device_allocates_no_weights():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    row = measure_backbone("vit_giant_patch14_dinov2.lvd142m")  # 1.1 B params = 4.5 GB in fp32
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert row["error"] is None and row["params_m"] > 1000
    assert (after - before) < 1_000_000  # < 1 GB more peak memory


def test_unmeasurable_name_recorded_not_raised(monkeypatch):
    import timm

    def broken(*a, **k):
        raise RuntimeError("cannot build")

    monkeypatch.setattr(timm, "create_model", broken)
    row = measure_backbone("resnet18.a1_in1k")
    assert row["error"] == "RuntimeError: cannot build" and row["gmacs"] is None


def test_unknown_name():
    with pytest.raises(UnknownNameError, match="unknown backbone 'resnet9000.x'"):
        build_pool(["resnet9000.x"], cache=None, progress=False)


def test_filters(pool, tmp_path):
    frame, _ = pool
    assert filter_pool(frame, ["resnet*"])["backbone"].to_list() == ["resnet50.a1_in1k", "resnet18.a1_in1k"]
    # a bare architecture name selects all its tags; globs are OR-ed
    assert filter_pool(frame, ["resnet50", "test_?it.*"]).height == 2
    assert filter_pool(frame, max_params=10)["backbone"].to_list() == [
        "test_vit.r160_in1k", "mobilenetv3_small_050.lamb_in1k"]
    small = set(NAMES) - {"vit_base_patch16_384.augreg_in21k_ft_in1k"}
    assert set(filter_pool(frame, max_gmacs=5)["backbone"]) == small
    names = tmp_path / "names.txt"
    names.write_text("# mine\nresnet18.a1_in1k\n\ntest_vit.r160_in1k  # tiny\n")
    assert filter_pool(frame, names_file=str(names), max_params=5)["backbone"].to_list() == ["test_vit.r160_in1k"]
    with pytest.raises(VibesError, match=r"pool is empty after filters \(globs=\['convnext\*'\], ≤ 1 GMACs\)"):
        filter_pool(frame, ["convnext*"], max_gmacs=1)
    names.write_text("resnet18.a1_in1k\nnot_a_model.x\n")
    with pytest.raises(UnknownNameError, match="not_a_model.x"):
        filter_pool(frame, names_file=str(names))
    with pytest.raises(VibesError, match="names file"):
        filter_pool(frame, names_file=str(tmp_path / "missing.txt"))
    with pytest.raises(VibesError, match="--max-params must be a positive number; got -1"):
        filter_pool(frame, max_params=-1)


def test_archs_returning_parameters_and_token_encoders():
    # attention-pool ViTs return a parameter-derived tensor: the model is frozen before counting
    row = measure_backbone("test_vit3.r160_in1k")
    assert row["error"] is None and row["feature_dim"] == 96 and row["gmacs"] > 0
    # MLLM vision towers give token sequences (their projector's tokens), which the extraction
    # mean-pools: the width is the projector's (1024 for this Qwen3 tower, whose trunk is 768 wide)
    enc = measure_backbone("qwen3_vit_88m_enc.qwen3_5_0_8b")
    assert enc["params_m"] > 50 and enc["error"] is None and enc["feature_dim"] == 1024


def test_attention_pool_head_width():
    # the classifier of CLIP ResNets takes (B, tokens, C): the width comes from the pooled output
    row = measure_backbone("resnet50_clip.openai")
    assert row["error"] is None and row["feature_dim"] == 2048


# ---------------------------------------------------------------- the shipped pool table

def test_concurrent_cache_writes_never_share_a_temporary_file(tmp_path):
    """Many writers of one cache file at once (threads here, processes alike): each write goes through
    its own temporary file, so every write succeeds, the result is one whole table, none is left over."""
    import threading

    path = tmp_path / "cache.parquet"
    frames = [pl.DataFrame({"backbone": [f"n{i}"] * 2000, "v": list(range(2000))}) for i in range(4)]
    errors: list[BaseException] = []

    def writer(frame):
        try:
            for _ in range(15):
                pool_mod.write_table(frame, path)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(f,)) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert any(pl.read_parquet(path).equals(f) for f in frames)
    assert [p.name for p in tmp_path.iterdir()] == ["cache.parquet"]
    assert (path.stat().st_mode & 0o777) == 0o644


def test_make_shipped_table_excludes_only_failures():
    measured = pool_mod._frame([{"backbone": n, "architecture": n.split(".")[0]} for n in ["a.x", "b.x", "c.x", "d.x"]])
    check = pl.DataFrame({"backbone": ["a.x", "b.x", "c.x"], "status": ["ok", "failed", "timeout"],
                          "reason": [None, "RuntimeError: boom", "no result within --timeout 120 s"],
                          "constant_features": [True, None, None]})
    table = pool_mod.make_shipped_table(measured, check)
    assert table["excluded"].to_list() == [None, "RuntimeError: boom", None, None]  # a timeout is the CPU's limit
    assert table["check_status"].to_list() == ["ok", "failed", "timeout", None]
    assert table["random_constant"].to_list() == [True, None, None, None]
    kept, dropped = pool_mod.without_excluded(table)
    assert dropped["backbone"].to_list() == ["b.x"] and kept.height == 3


SHIPPED = pool_mod.shipped_path()


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"no pool table shipped for timm {pool_mod.TIMM_VERSION}")
def test_shipped_table_is_used_without_measuring(monkeypatch, tmp_path):
    import timm

    def boom(name):
        raise AssertionError(f"{name} measured although the pool table is shipped")

    monkeypatch.setattr(pool_mod, "measure_backbone", boom)
    frame = build_pool(cache=tmp_path / "none.parquet", progress=False)
    names = timm.list_models(pretrained=True)
    assert pool_mod.pretrained_names() == names  # read from the shipped table: timm's list, in its order
    real = [n for n in names if not n.split(".")[0].startswith("test_")]  # timm's toy test models: not by default
    assert frame["backbone"].to_list() == real and frame.height >= 1750 and frame.columns == POOL_COLUMNS
    assert len(names) - len(real) == 13
    # only what the project measured or compiled: no published accuracy in the shipped file
    shipped = pl.read_parquet(SHIPPED)
    assert set(shipped.columns) == set(pool_mod.MEASURED) | set(pool_mod.CHECKED)
    r50 = frame.filter(pl.col("backbone") == "resnet50.a1_in1k").row(0, named=True)
    assert r50["params_m"] == pytest.approx(25.557, rel=1e-3) and r50["feature_dim"] == 2048  # timm's figures
    assert r50["pretrain_dataset"] is not None  # joined at run time from shared.pretrain
    # the check's findings travel with it: only a failure excludes (a CPU timeout does not)
    checked = frame.filter(pl.col("check_status").is_not_null())
    assert checked.height > 0
    assert (frame["excluded"].is_not_null() == (frame["check_status"] == "failed").fill_null(False)).all()
    # the token towers are pooled now, so they are measured and not excluded
    enc = frame.filter(pl.col("architecture").str.contains("_enc$"))
    assert enc.height == 17 and enc["error"].null_count() == 17 and enc["excluded"].null_count() == 17


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"no pool table shipped for timm {pool_mod.TIMM_VERSION}")
def test_pool_command_on_a_fresh_clone_reads_the_shipped_table(tmp_path):
    """`precompute pool --out X` in a folder with no cache (a fresh clone) reads the shipped table
    and measures nothing (measuring every backbone takes ~20 min): shown by a tripwire on
    measure_backbone and by the rows being the shipped ones, with no wall-clock bound."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "pool.parquet"
    source = precompute_with_tripwires("measure_backbone")
    proc = subprocess.run([sys.executable, "-c", source, "pool", "--out", str(out), "--no-progress",
                           "--include-excluded"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode != TRIPPED and proc.returncode == 0, proc.stderr  # tripped: a backbone was measured
    got = pl.read_parquet(out)
    assert got.height >= 1750
    ship = pool_mod.shipped_table()
    cols = [c for c in pool_mod.MEASURED if c != "measure_seconds"]
    # every row's measured columns are the shipped table's, value for value
    assert got.select(cols).sort("backbone").equals(
        ship.filter(pl.col("backbone").is_in(got["backbone"].implode())).select(cols).sort("backbone"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.parquet"]  # nothing measured, nothing cached


def test_excluded_backbones_leave_the_pool(tmp_path, monkeypatch, capsys):
    """A backbone the check found cannot run leaves the pool of `precompute pool` and of every
    command reading --pool, said on stderr; --include-excluded keeps it with its reason."""
    from precompute.cli import main
    from precompute.pool import resolve_pool

    names = ["resnet18.a1_in1k", "resnet50.a1_in1k"]
    measured = pool_mod._frame([dict(backbone=n, architecture=n.split(".")[0], params_m=1.0, gmacs=1.0,
                                     input_size=224, feature_dim=8) for n in names])
    check = pl.DataFrame({"backbone": names, "status": ["ok", "failed"], "reason": [None, "RuntimeError: boom"],
                          "constant_features": [False, None]})
    ship = tmp_path / "ship"
    ship.mkdir()
    pool_mod.make_shipped_table(measured, check).write_parquet(ship / f"pool-timm-{pool_mod.TIMM_VERSION}.parquet")
    monkeypatch.setattr(pool_mod, "SHIPPED_DIR", ship)
    monkeypatch.chdir(tmp_path)  # no cache here: everything comes from the (stand-in) shipped table
    out = tmp_path / "pool.parquet"
    assert main(["pool", "--out", str(out), "--no-progress"]) == 0
    assert pl.read_parquet(out)["backbone"].to_list() == ["resnet18.a1_in1k"]
    err = capsys.readouterr().err
    assert "1 backbone(s) excluded" in err and "resnet50.a1_in1k" in err
    assert main(["pool", "--out", str(out), "--no-progress", "--include-excluded"]) == 0
    full = pl.read_parquet(out)
    assert full["excluded"].to_list() == [None, "RuntimeError: boom"]
    assert full["check_status"].to_list() == ["ok", "failed"]
    assert resolve_pool([str(out)], progress=False)["backbone"].to_list() == ["resnet18.a1_in1k"]
    assert not (tmp_path / "data").exists()  # nothing was measured
