"""The timm:<set> oracle from timm's published results (skips where the folder is absent)."""
from __future__ import annotations

import urllib.request

import polars as pl
import pytest

from shared.errors import VibesError
from simulate import timm_oracle as tm


def test_sketch_import_follows_the_formulas(timm_results, capsys, monkeypatch):
    monkeypatch.setattr(tm, "_SAID", set())  # the left-out note is said once per process
    oracle = tm.timm_oracle("sketch", timm_results)
    f = oracle.frame
    results = pl.read_csv(timm_results / "results-sketch.csv", infer_schema_length=None)
    bench = pl.read_csv(timm_results / tm.DEFAULT_BENCHMARK, infer_schema_length=None)
    unique_models = results["model"].n_unique()
    dropped = oracle.meta["models_without_benchmark"]
    toys = oracle.meta["toy_test_models_left_out"]
    assert f.height == unique_models - dropped - toys > 1000
    assert "left out" in capsys.readouterr().err
    assert oracle.truth == "top1" and set(f["evaluator"]) == {"top1"} and set(f["seed"]) == {0}
    # one model by hand: convnext_base.fb_in22k_ft_in1k
    name = "convnext_base.fb_in22k_ft_in1k"
    r = results.filter(pl.col("model") == name).sort("img_size").row(0, named=True)
    b = bench.filter(pl.col("model") == "convnext_base").row(0, named=True)
    row = f.filter(pl.col("backbone") == name).row(0, named=True)
    scale = (r["img_size"] / b["infer_img_size"]) ** 2
    assert row["score"] == pytest.approx(r["top1"] / 100)
    assert row["seconds"] == pytest.approx(50_889 / b["infer_samples_per_sec"] * scale)
    assert row["gmacs"] == pytest.approx(b["infer_gmacs"] * scale)
    assert row["params_m"] == pytest.approx(float(str(r["param_count"]).replace(",", "")))
    assert row["pretrain_dataset"] == "ImageNet-22k"
    # models listed at two sizes keep one row, at the smaller (default) size
    twice = results.group_by("model").len().filter(pl.col("len") > 1)["model"]
    assert twice.len() > 0 and oracle.meta["rows_at_test_input_size_dropped"] == results.height - unique_models
    kept = f.filter(pl.col("backbone").is_in(twice.implode()))
    smallest = results.group_by("model").agg(pl.col("img_size").min())
    joined = kept.join(smallest, left_on="backbone", right_on="model")
    assert (joined["input_size"] == joined["img_size"]).all()
    # pretraining data known for most of the pool
    assert f["pretrain_dataset"].null_count() / f.height < 0.05


def test_toy_test_models_are_left_out_with_one_note_per_process(timm_results, capsys, monkeypatch):
    """timm's unit-test architectures (test_vit, test_byobnet, ...) are not backbones anyone deploys:
    out of every timm:<set> oracle, counted, said once however many timm oracles a run loads."""
    monkeypatch.setattr(tm, "_SAID", set())
    results = pl.read_csv(timm_results / "results-sketch.csv", infer_schema_length=None)
    toy_names = {m for m in results["model"].to_list() if m.split(".")[0].startswith("test_")}
    assert len(toy_names) == 13 and "test_byobnet.r160_in1k" in toy_names  # what timm's file holds
    sketch = tm.timm_oracle("sketch", timm_results)
    assert not set(sketch.frame["backbone"].to_list()) & toy_names
    assert sketch.meta["toy_test_models_left_out"] == 13
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "timm's 13 toy test_* models" in err[0] and "said once per run" in err[0]
    assert f"{sketch.meta['models_without_benchmark']} of 1266 models with no row" in err[0]
    tm.timm_oracle("imagenet", timm_results)  # a second timm oracle in the same process: silent
    assert capsys.readouterr().err == ""
    # the cheapest-first order no longer opens with a toy: its first pick is a real backbone
    cheapest = sketch.true_scores().join(sketch.frame.select("backbone", "gmacs"), on="backbone").sort("gmacs")
    assert not cheapest["backbone"][0].startswith("test_")


@pytest.mark.parametrize("set_name, n", [("imagenet", 50_000), ("imagenet-r-clean", 30_000),
                                         ("imagenetv2-matched-frequency", 10_000)])
def test_other_sets(timm_results, set_name, n):
    oracle = tm.timm_oracle(set_name, timm_results, quiet=True)
    assert oracle.meta["n_test"] == n and oracle.dataset == f"timm:{set_name}"


def test_other_benchmark_file(timm_results):
    a = tm.timm_oracle("imagenet", timm_results, quiet=True)
    b = tm.timm_oracle("imagenet", timm_results, benchmark="benchmark-infer-amp-nchw-pt240-cu124-rtx3090.csv",
                       quiet=True)
    j = a.frame.join(b.frame, on="backbone")
    assert (j["seconds_right"] > j["seconds"]).mean() > 0.9  # a 3090 is slower than a 4090


def test_errors_name_the_options(tmp_path, monkeypatch):
    with pytest.raises(VibesError, match="unknown timm result set 'imagenet-x'; valid:"):
        tm.timm_oracle("imagenet-x", tmp_path)
    with pytest.raises(VibesError, match="does not exist"):
        tm.timm_oracle("sketch", tmp_path / "nope")
    with pytest.raises(VibesError, match="'results-sketch.csv' is not in"):
        tm.timm_oracle("sketch", tmp_path)
    # no folder given and offline: the download fails with a message naming the options
    monkeypatch.delenv(tm.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(VibesError, match="--timm-results DIR.*--timm-benchmark FILE"):
        tm.timm_oracle("sketch")
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_download_goes_to_the_cache_once(tmp_path, monkeypatch, timm_results):
    monkeypatch.delenv(tm.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []

    class Resp:
        def __init__(self, data):
            self.data = data

        def read(self):
            return self.data

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake(url, timeout):
        calls.append(url)
        assert tm.TIMM_COMMIT in url
        return Resp((timm_results / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    tm.timm_oracle("sketch", quiet=True)
    tm.timm_oracle("sketch", quiet=True)
    # results + benchmark + results-imagenet (the imagenet_top1 column), downloaded once each
    assert sorted(u.rsplit("/", 1)[1] for u in calls) == sorted(
        ["results-sketch.csv", tm.DEFAULT_BENCHMARK, "results-imagenet.csv"])
    assert (tm.cache_dir() / "results-sketch.csv").is_file()


def test_imagenet_top1_column_is_the_published_top1_at_the_default_size(timm_results):
    from shared.timm_results import imagenet_top1

    published = pl.read_csv(timm_results / "results-imagenet.csv", infer_schema_length=None)
    table = imagenet_top1(timm_results)
    assert table.columns == ["backbone", "imagenet_top1"] and table["backbone"].is_unique().all()
    # a model listed at two sizes: its top-1 at the smaller (default) size, by hand
    twice = published.group_by("model").len().filter(pl.col("len") > 1)["model"][0]
    rows = published.filter(pl.col("model") == twice).sort("img_size")
    assert rows.height == 2 and rows["top1"][0] != rows["top1"][1]
    assert table.filter(pl.col("backbone") == twice)["imagenet_top1"][0] == pytest.approx(rows["top1"][0])
    # the sketch oracle carries it: ImageNet top-1, not sketch top-1
    sketch = tm.timm_oracle("sketch", timm_results, quiet=True).true_scores()
    name = "convnext_base.fb_in22k_ft_in1k"
    want = published.filter(pl.col("model") == name).sort("img_size")["top1"][0]
    got = sketch.filter(pl.col("backbone") == name)
    assert got["imagenet_top1"][0] == pytest.approx(want) and got["true_score"][0] * 100 != pytest.approx(want)
    assert sketch["imagenet_top1"].null_count() / sketch.height < 0.05
    # on timm:imagenet the prior is the truth itself (x 100)
    inet = tm.timm_oracle("imagenet", timm_results, quiet=True).true_scores()
    assert (inet["imagenet_top1"] - inet["true_score"] * 100).abs().max() < 1e-9


def test_imagenet_top1_missing_file_leaves_the_column_null_with_a_note(timm_results, tmp_path, capsys):
    for name in ("results-sketch.csv", tm.DEFAULT_BENCHMARK):
        (tmp_path / name).write_bytes((timm_results / name).read_bytes())
    oracle = tm.timm_oracle("sketch", tmp_path)
    assert oracle.frame["imagenet_top1"].null_count() == oracle.frame.height
    assert "imagenet_top1 unavailable" in capsys.readouterr().err
    assert "unavailable" in oracle.meta["imagenet_top1"]


def test_fill_imagenet_top1_keeps_the_frames_rows_and_order():
    """A hand-made case: the frame's rows (a backbone twice, one the table lacks) in the frame's order,
    an old top-1 column replaced, the table's own order (sorted by name) ignored."""
    from shared.timm_results import fill_imagenet_top1

    frame = pl.DataFrame({"backbone": ["z.b", "a.a", "m.x", "z.b"], "seed": [0, 0, 0, 1],
                          "imagenet_top1": [1.0, 2.0, 3.0, 1.0]})
    top1 = pl.DataFrame({"backbone": ["a.a", "z.b"], "imagenet_top1": [80.5, 70.25]})
    out = fill_imagenet_top1(frame, top1)
    assert out.columns == ["backbone", "seed", "imagenet_top1"]
    assert out.rows() == [("z.b", 0, 70.25), ("a.a", 0, 80.5), ("m.x", 0, None), ("z.b", 1, 70.25)]
