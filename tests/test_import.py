"""simulate import: hand-written long and wide tables -> oracles equal to a hand computation; every bad
input refused in one line with exit status 2 and nothing written."""
from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

from shared.oracle import read_oracle
from simulate.cli import main
from simulate.importer import slugify
from tests.conftest import REPO

# A long table: two evaluators (linear in percent, knn a fraction), a duplicate row (vit / Pets /
# linear, twice), a blank score (mymodel / Pets / linear), a dataset with one backbone (Aircraft),
# an unnamed pandas index column, names exact / with a timm/ prefix / mapped by --names / unknown.
LONG = """\
,backbone,dataset,probe,acc,seconds
0,timm/resnet50.a1_in1k,Pets,linear,90.0,100
1,timm/resnet50.a1_in1k,Pets,knn,0.70,10
2,vit_small_patch16_224.augreg_in21k_ft_in1k,Pets,linear,93.0,200
3,vit_small_patch16_224.augreg_in21k_ft_in1k,Pets,linear,94.0,220
4,vit_small_patch16_224.augreg_in21k_ft_in1k,Pets,knn,0.75,20
5,mymodel,Pets,linear,,50
6,mymodel,Pets,knn,0.5,5
7,timm/resnet50.a1_in1k,Cars,linear,80.0,100
8,vit_small_patch16_224.augreg_in21k_ft_in1k,Cars,linear,85.5,150
9,mymodel,Cars,linear,60.0,40
10,mymodel,Cars,knn,0.4,4
11,solo,Aircraft,linear,50,10
"""
LONG_ARGS = ["--dataset-col", "dataset", "--score-col", "acc", "--evaluator-col", "probe", "--seconds-col", "seconds"]

# A wide table: one score column per dataset, a blank cell (b.y on DTD), a column to exclude, the
# table's own params / GFLOPs / pretraining dataset, costs by a declared GFLOPs model.
WIDE = """\
model,params,gflops,pretrain,Flowers 102,DTD,year
a.x,10,2.0,LAION-400M,0.9,0.5,2020
b.y,20,4.0,WebLI,0.8,,2021
c.z,5,1.0,Mystery set,0.7,0.6,2022
"""
WIDE_ARGS = ["--backbone-col", "model", "--datasets", "all", "--exclude", "year", "--params-col", "params",
             "--gflops-col", "gflops", "--pretrain-col", "pretrain", "--cost-model", "gflops:gflops",
             "--images", "1000", "--rate", "100"]


def run(*args) -> int:
    return main(["import", *map(str, args)])


def rows(oracle) -> dict:
    """(backbone, evaluator) -> (score, seconds)."""
    f = oracle.frame.sort("backbone", "evaluator")
    return {(r["backbone"], r["evaluator"]): (r["score"], r["seconds"]) for r in f.iter_rows(named=True)}


@pytest.fixture
def long_csv(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(LONG)
    return path


@pytest.fixture
def wide_csv(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(WIDE)
    return path


def test_long_table(long_csv, tmp_path, capsys):
    names = tmp_path / "names.csv"
    names.write_text("table,timm\nmymodel,convnext_tiny.fb_in1k\n")
    out = tmp_path / "oracles"
    assert run(long_csv, "--out", out, *LONG_ARGS, "--names", names) == 0
    cap = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["cars.parquet", "pets.parquet"]  # Aircraft: one backbone
    assert "metadata: 3 of 4 backbones matched the timm pool (1 by alias, 1 by --names)" in cap.out
    assert "Pets -> " in cap.out and "pets.parquet" in cap.out
    assert "1 duplicate row(s) of 1 (backbone, dataset, evaluator) key(s) averaged" in cap.err
    assert "Aircraft: 1 backbone(s) with a linear score; skipped" in cap.err
    assert "Pets: 1 backbone(s) have no linear result (blank cell)" in cap.err
    pets = read_oracle(out / "pets.parquet")
    assert pets.truth == "linear" and pets.meta["costs"] == "measured" and "cost_model" not in pets.meta
    assert pets.dataset == "Pets" and "imported by simulate import" in pets.meta["source"]
    got = rows(pets)
    want = {("timm/resnet50.a1_in1k", "linear"): (0.90, 100.0), ("timm/resnet50.a1_in1k", "knn"): (0.70, 10.0),
            ("vit_small_patch16_224.augreg_in21k_ft_in1k", "linear"): (0.935, 210.0),
            ("vit_small_patch16_224.augreg_in21k_ft_in1k", "knn"): (0.75, 20.0),
            ("mymodel", "knn"): (0.5, 5.0)}
    assert got.keys() == want.keys()
    for key, (score, seconds) in want.items():
        assert got[key] == (pytest.approx(score), pytest.approx(seconds)), key
    assert pets.true_scores().get_column("backbone").to_list() == [
        "timm/resnet50.a1_in1k", "vit_small_patch16_224.augreg_in21k_ft_in1k"]
    assert pets.failed_backbones().get_column("backbone").to_list() == ["mymodel"]
    cars = rows(read_oracle(out / "cars.parquet"))
    assert cars[("vit_small_patch16_224.augreg_in21k_ft_in1k", "linear")] == (pytest.approx(0.855), 150.0)
    assert cars[("mymodel", "knn")] == (pytest.approx(0.4), 4.0)
    f = pets.frame.filter(pl.col("evaluator") == "knn").sort("backbone")
    assert f["fraction"].to_list() == [1.0] * 3 and f["seed"].to_list() == [0] * 3
    assert f["status"].to_list() == ["ok"] * 3
    assert f["pretrain_dataset"].to_list() == ["ImageNet-1k", "ImageNet-1k", "ImageNet-22k"]  # mymodel via --names
    assert f["pretrain_images"].to_list() == [1_281_167.0, 1_281_167.0, 14_200_000.0]
    assert f["architecture"].to_list() == ["convnext_tiny", "resnet50", "vit_small_patch16_224"]
    assert f["params_m"].to_list() == [pytest.approx(28.59, abs=0.01), pytest.approx(25.56, abs=0.01),
                                       pytest.approx(22.05, abs=0.01)]


def test_truth_and_no_names(long_csv, tmp_path, capsys):
    out = tmp_path / "o"
    assert run(long_csv, "--out", out, *LONG_ARGS, "--truth", "knn") == 0
    assert "metadata: 2 of 4 backbones matched the timm pool (1 by alias, 0 by --names)" in capsys.readouterr().out
    pets = read_oracle(out / "pets.parquet")
    assert pets.truth == "knn" and pets.true_scores().height == 3
    mine = pets.frame.filter(pl.col("backbone") == "mymodel")
    assert mine["architecture"].to_list() == ["mymodel"] and mine["params_m"].null_count() == 1


def test_wide_table(wide_csv, tmp_path, capsys):
    out = tmp_path / "w"
    assert run(wide_csv, "--out", out, *WIDE_ARGS) == 0
    cap = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["dtd.parquet", "flowers-102.parquet"]
    assert "DTD: 1 backbone(s) have no published result (blank cell)" in cap.err
    flowers = read_oracle(out / "flowers-102.parquet")
    assert flowers.truth == "published" and flowers.dataset == "Flowers 102"
    assert flowers.meta["costs"] == "modelled"
    assert flowers.meta["cost_model"] == ("modelled: GFLOPs (column 'gflops') × 1,000 images ÷ 100 GFLOP/s "
                                          "(not measured)")
    assert "gmacs column holds the table's GFLOPs" in flowers.meta["gmacs"] and flowers.meta["n_test"] == 1000
    f = flowers.frame.sort("backbone")
    assert f["backbone"].to_list() == ["a.x", "b.y", "c.z"]
    assert f["score"].to_list() == [0.9, 0.8, 0.7]  # fractions taken as they are: exact
    assert f["seconds"].to_list() == [pytest.approx(20.0), pytest.approx(40.0), pytest.approx(10.0)]  # 2 × 1000 / 100
    assert f["params_m"].to_list() == [10.0, 20.0, 5.0] and f["gmacs"].to_list() == [2.0, 4.0, 1.0]
    assert f["pretrain_dataset"].to_list() == ["LAION-400M", "WebLI", "Mystery set"]
    assert f["pretrain_images"].to_list() == [400_000_000.0, 10_000_000_000.0, None]
    assert f["n_test"].to_list() == [1000] * 3 and f["architecture"].to_list() == ["a", "b", "c"]
    dtd = read_oracle(out / "dtd.parquet").frame.sort("backbone")
    assert dtd["backbone"].to_list() == ["a.x", "c.z"] and dtd["score"].to_list() == [0.5, 0.6]


def test_wide_percent_parquet_constant_cost(tmp_path, capsys):
    table = tmp_path / "t.parquet"
    pl.DataFrame({"Unnamed: 0": [0, 1, 2], "name": ["p", "q", "r"], "Set A": [50.0, 75.0, 0.0],
                  "Set B": [0.25, 0.5, 1.0]}).write_parquet(table)
    out = tmp_path / "o"
    assert run(table, "--out", out, "--backbone-col", "name", "--datasets", "Set A,Set B",
               "--cost-model", "constant:2min", "--evaluator", "top1") == 0
    a = read_oracle(out / "set-a.parquet")
    assert a.frame.sort("backbone")["score"].to_list() == [0.5, 0.75, 0.0]  # percent (÷ 100), exact here
    assert a.frame["seconds"].to_list() == [120.0] * 3 and a.truth == "top1"
    assert a.meta["cost_model"] == "modelled: every evaluation 120 s (a constant, not measured)"
    assert "in percent" in a.meta["score_scale"]
    assert read_oracle(out / "set-b.parquet").frame.sort("backbone")["score"].to_list() == [0.25, 0.5, 1.0]
    assert "metadata: 0 of 3 backbones matched the timm pool (0 by alias, 0 by --names)" in capsys.readouterr().out


def test_explicit_percent_and_long_single_evaluator(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("backbone,ds,s,sec\nm1,X,0.5,1\nm2,X,1.0,2\n")  # 0.5 % and 1 %: only said, not guessed
    out = tmp_path / "o"
    assert run(table, "--out", out, "--dataset-col", "ds", "--score-col", "s", "--seconds-col", "sec",
               "--score-scale", "percent") == 0
    x = read_oracle(out / "x.parquet")
    assert x.frame.sort("backbone")["score"].to_list() == [0.005, 0.01] and x.truth == "published"


def test_backbone_named_by_two_columns(tmp_path):
    # a table that splits architecture and pretrained tag (as OpenCLIP's): name,tag -> "name.tag"
    table = tmp_path / "t.csv"
    table.write_text("name,tag,X\nvit,openai,0.5\nvit,laion2b,0.7\nrn50,openai,0.4\n")
    out = tmp_path / "o"
    assert run(table, "--out", out, "--backbone-col", "name,tag", "--datasets", "X", "--cost-model", "constant:1") == 0
    x = read_oracle(out / "x.parquet").frame.sort("backbone")
    assert x["backbone"].to_list() == ["rn50.openai", "vit.laion2b", "vit.openai"]
    assert x["score"].to_list() == [0.4, 0.7, 0.5]


def test_slugify():
    assert slugify("Oxford Flowers-102") == "oxford-flowers-102"
    assert slugify("ImageNet 1k") == "imagenet-1k" and slugify("  A/B  c ") == "a-b-c"


LONG_OK = "backbone,dataset,score,seconds\na,X,0.5,10\nb,X,0.6,20\n"


@pytest.mark.parametrize("table, args, message", [
    (LONG_OK, ["--dataset-col", "dataset", "--score-col", "acc", "--seconds-col", "seconds"],
     "table has no column(s) 'acc'; its columns: 'backbone', 'dataset', 'score', 'seconds'"),
    ("backbone,dataset,score,seconds\na,X,0.5,10\nb,X,n/a,20\n",
     ["--dataset-col", "dataset", "--score-col", "score", "--seconds-col", "seconds"],
     "score column 'score' is not numeric (e.g. 'n/a')"),
    ("backbone,dataset,score,seconds\na,X,0.5,10\nb,X,0.6,0\n",
     ["--dataset-col", "dataset", "--score-col", "score", "--seconds-col", "seconds"],
     "zero or negative seconds, e.g. b on X"),
    ("backbone,dataset,score,seconds\na,X,0.5,-3\nb,X,0.6,2\n",
     ["--dataset-col", "dataset", "--score-col", "score", "--seconds-col", "seconds"],
     "zero or negative seconds, e.g. a on X"),
    ("backbone,dataset,score,seconds\na,X,0.5,10\nb,Y,0.6,20\n",
     ["--dataset-col", "dataset", "--score-col", "score", "--seconds-col", "seconds"],
     "no dataset has two backbones with a published score"),
    (LONG_OK, ["--dataset-col", "dataset", "--score-col", "score"], "an oracle needs costs"),
    (LONG_OK, ["--dataset-col", "dataset", "--score-col", "score", "--cost-model", "gflops:seconds"],
     "needs --images N"),
    (LONG_OK, ["--dataset-col", "dataset", "--score-col", "score", "--cost-model", "speed:3"],
     "expected gflops:COL or constant:S"),
    ("backbone,dataset,score,seconds\na,X,0.5,10\nb,X,60,20\n",
     ["--dataset-col", "dataset", "--score-col", "score", "--seconds-col", "seconds"],
     "mix values in (0, 1] (a fraction? e.g. 0.5) and above 1 (a percentage? e.g. 60)"),
    ("backbone,dataset,score,seconds\na,X,-2,10\nb,X,0.6,20\n",
     ["--dataset-col", "dataset", "--score-col", "score", "--seconds-col", "seconds"],
     "outside [0, 100]: neither a fraction nor a percentage"),
    ("backbone,dataset,score,seconds\na,X,0.5,10\na,X,0.7,12\nb,X,0.6,20\n",
     ["--dataset-col", "dataset", "--score-col", "score", "--seconds-col", "seconds", "--on-duplicate", "error"],
     "1 duplicate (backbone, dataset, evaluator) key(s), e.g. a / X / published appears 2 times"),
    (LONG_OK, ["--seconds-col", "seconds"], "say the table's shape"),
    (LONG_OK, ["--dataset-col", "dataset", "--score-col", "score", "--datasets", "score", "--seconds-col", "seconds"],
     "say the table's shape"),
    (LONG_OK, ["--dataset-col", "dataset", "--score-col", "score", "--seconds-col", "seconds", "--truth", "mlp"],
     "unknown --truth evaluator 'mlp'; valid: published"),
    ("backbone,dataset,score,seconds\na,A b,0.5,10\nb,A b,0.6,20\na,a-b,0.5,10\nb,a-b,0.6,20\n",
     ["--dataset-col", "dataset", "--score-col", "score", "--seconds-col", "seconds"],
     "two datasets share the file name a-b.parquet"),
    ("model,X,Y\na,0.5,0.1\nb,0.6,0.2\n",
     ["--backbone-col", "model", "--datasets", "X,Z", "--cost-model", "constant:1"],
     "table has no column(s) 'Z'; its columns: 'model', 'X', 'Y'"),
    ("model,X,Y\na,0.5,0.1\nb,0.6,0.2\n", ["--backbone-col", "model", "--datasets", "all", "--exclude", "X,Y",
                                         "--cost-model", "constant:1"],
     "--datasets all: the table has no numeric column besides the named ones"),
    ("model,X\na,0.5\nb,0.6\n", ["--backbone-col", "model", "--datasets", "X", "--cost-model", "constant:1",
                                 "--pretrain-method", "magic"], "unknown pretraining method 'magic'"),
])
def test_bad_input(tmp_path, capsys, table, args, message):
    path = tmp_path / "t.csv"
    path.write_text(table)
    out = tmp_path / "out"
    assert run(path, "--out", out, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert not out.exists()


def test_unreadable_tables(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    for path, message in [(bad, "cannot read table"), (tmp_path / "none.csv", "does not exist"),
                          (tmp_path / "t.xlsx", "does not exist")]:
        assert run(path, "--out", tmp_path / "out", "--dataset-col", "d", "--score-col", "s") == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    xlsx = tmp_path / "t.xlsx"
    xlsx.write_text("x")
    assert run(xlsx, "--out", tmp_path / "out", "--dataset-col", "d", "--score-col", "s") == 2
    assert "expected a .csv, .tsv or .parquet file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_console_script_help():
    p = subprocess.run([sys.executable, "-m", "simulate.cli", "import", "--help"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert p.returncode == 0 and "--score-scale" in p.stdout and "Examples:" in p.stdout
    p = subprocess.run([sys.executable, "-m", "simulate.cli", "--help"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert "simulate import" in p.stdout and "openclip:" in p.stdout
