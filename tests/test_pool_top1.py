"""The pool's imagenet_top1 column: timm's published top-1 at the default size, joined at run time."""
from __future__ import annotations

import csv
import urllib.request

import polars as pl
import pytest

pytest.importorskip("timm")
pytestmark = pytest.mark.torch

from precompute import pool as pool_mod  # noqa: E402
from precompute.pool import build_pool, with_imagenet_top1  # noqa: E402


def _published(results_dir, name):
    """(img_size, top1) rows of ``name`` in results-imagenet.csv, read with the csv module."""
    with open(results_dir / "results-imagenet.csv", newline="") as fh:
        return sorted((int(r["img_size"]), float(r["top1"])) for r in csv.DictReader(fh) if r["model"] == name)


def test_pool_takes_the_published_top1_at_the_default_smaller_size(timm_results, monkeypatch):
    monkeypatch.setattr(pool_mod, "_TOP1_NOTE", [])
    names = ["resnet50.a1_in1k", "resnet18.a1_in1k", "vit_base_patch16_384.augreg_in21k_ft_in1k"]
    pool = build_pool(names, progress=False, timm_results=timm_results)
    assert pool["backbone"].to_list() == names  # the given order, not the results table's (sorted by name)
    got = dict(zip(pool["backbone"], pool["imagenet_top1"]))
    for name in names:
        rows = _published(timm_results, name)
        assert rows, name
        assert got[name] == pytest.approx(rows[0][1])  # the smallest listed img_size
    assert len(_published(timm_results, "resnet50.a1_in1k")) == 2  # listed at 224 and at 288: 224 kept


def test_offline_without_a_copy_is_null_with_one_note_and_no_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pool_mod, "_TOP1_NOTE", [])
    monkeypatch.delenv("VIBES_TIMM_RESULTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*a, **k):
        raise AssertionError("a download was attempted while offline")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    frame = pl.DataFrame({"backbone": ["resnet50.a1_in1k", "x.y"]})
    out = with_imagenet_top1(frame)
    assert out["imagenet_top1"].null_count() == 2
    assert capsys.readouterr().err == ""  # silent here: a sweep or a search does not need it
    assert len(pool_mod._TOP1_NOTE) == 1 and "HF_HUB_OFFLINE" in pool_mod._TOP1_NOTE[0]


def test_precompute_pool_says_why_the_column_is_empty(tmp_path, monkeypatch, capsys):
    from precompute.cli import main

    monkeypatch.delenv("VIBES_TIMM_RESULTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["pool", "--glob", "resnet18.a1_in1k", "--out", str(tmp_path / "p.parquet"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "note: no published ImageNet top-1" in err
    assert pl.read_parquet(tmp_path / "p.parquet")["imagenet_top1"].null_count() == 1
