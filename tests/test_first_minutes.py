"""What a practitioner sees in the first five minutes (#17): degenerate data refused in one line with
nothing written, timm's toy test models out of the default pool, a truth other than ``mlp``, and the
small things (the check's worker log, a failed download's folders, advice an option takes, a demo
command that pastes)."""
from __future__ import annotations

import shlex
import subprocess
import urllib.request
from pathlib import Path

import fixtures_datasets as fx
import numpy as np
import polars as pl
import pytest
from test_sweep import centroid_acc, data_cache, fake_load_backbone, pool_frame, spread  # noqa: F401

import precompute.backbone as backbone_mod
import precompute.evaluators as evaluators_mod
from precompute import datasets as D
from precompute import parts as P
from precompute.cli import main
from precompute.evaluators import EvaluatorSpec
from precompute.pool import (
    default_names,
    left_out_test_models,
    match_names,
    pool_names,
    pretrained_names,
    shipped_path,
)
from precompute.sweep import SweepConfig, check_truth, run_sweep
from shared.errors import VibesError
from shared.oracle import read_oracle
from shared.protocol import infer_truth

REPO = Path(__file__).resolve().parents[1]


def call(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code, err, *patterns):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for pattern in patterns:
        assert pattern in lines[0], lines[0]
    return lines[0]


def three_classes(root: Path, train: int = 8, test: int = 2) -> Path:
    """3 classes with ``train`` train and ``test`` test images each, in train/ and test/ folders."""
    fx.write_class_tree(root / "train", {c: train for c in "abc"}, h=8, w=8)
    fx.write_class_tree(root / "test", {c: test for c in "abc"}, h=8, w=8)
    return root


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing here reaches for the network (timm's results, weights): offline, said in a note."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def image_set(train_counts, test_counts, name="toy") -> D.ImageSet:
    """An ImageSet of blank 2x2 images with these per-class counts (labels grouped by class)."""
    def split(counts):
        y = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
        return np.zeros((len(y), 2, 2, 3), np.uint8), y
    (xtr, ytr), (xte, yte) = split(train_counts), split(test_counts)
    return D.ImageSet(name, xtr, ytr, xte, yte, [f"c{i}" for i in range(len(train_counts))])


@pytest.fixture
def heads(monkeypatch):
    """Cheap stand-ins under the real names: two heads and two train-only proxies."""
    fake = {"mlp": EvaluatorSpec("mlp", True, centroid_acc),
            "mlp-sklearn": EvaluatorSpec("mlp-sklearn", True, centroid_acc),
            "knn": EvaluatorSpec("knn", True, centroid_acc),
            "silhouette": EvaluatorSpec("silhouette", False, spread),
            "logme": EvaluatorSpec("logme", False, spread)}
    monkeypatch.setattr(evaluators_mod, "EVALUATORS", fake)
    monkeypatch.setattr(backbone_mod, "load_backbone", fake_load_backbone)
    return fake


@pytest.fixture
def pool_file(tmp_path):
    path = tmp_path / "pool.parquet"
    pool_frame(["fake_a.x", "fake_b.y"], [1.0, 2.0]).write_parquet(path)
    return path


# ---------------------------------------------------------------------------- degenerate data
def test_check_fractions_hand_computed():
    """4 balanced classes, 25 test images each: the first 4 of any stratified order are one per class
    (first keys u/25 < 1/25 <= second keys), so every class is in the test subset from
    floor(f*100 + 0.5) >= 4 on: the smallest fraction is ceil((4 - 0.5) / 100, 4 decimals) = 0.035."""
    ds = image_set([100] * 4, [25] * 4)
    assert D.covering_fraction(ds.test_labels, [0, 1, 2]) == 0.035
    D.check_fractions(ds, (1.0, 0.1, 0.04), [0, 1], ["mlp"])  # 0.04 keeps 4: one per class
    with pytest.raises(D.SubsetError) as err:
        D.check_fractions(ds, (1.0, 0.1, 0.02), [0, 1], ["mlp", "knn"])
    assert str(err.value) == (
        "fraction 0.02 of toy keeps 2 of its 100 test images for 4 classes: at least 2 classes would have no "
        "test image to score mlp, knn on; the smallest fraction that keeps every class in the test split is "
        "0.035: e.g. --fractions 1.0,0.1 or --fractions 1.0,0.1,0.035")
    D.check_fractions(ds, (1.0, 0.02), [0], [])  # nothing scores on the test split: any fraction
    no_test_d = image_set([10] * 4, [5, 5, 5, 0])
    with pytest.raises(D.SubsetError, match="class 'c3' has no test image, so mlp cannot score it"):
        D.check_fractions(no_test_d, (1.0,), [0], ["mlp"])


def _covers(labels, x, seeds) -> bool:
    k = len(np.unique(labels))
    return all(len(np.unique(labels[D.nested_subsets(labels, [x], s, min_per_class=0)[x]])) == k for s in seeds)


def test_covering_fraction_is_the_smallest_that_holds_every_class():
    """Against the subsets themselves, on uneven classes: at the fraction every seed's test subset
    holds every class, 1e-4 below it some seed's does not (or it keeps as many images)."""
    rng = np.random.default_rng(3)
    seeds = [0, 1, 2]
    for _ in range(20):
        counts = rng.integers(1, 40, size=rng.integers(2, 7))
        labels = rng.permutation(np.repeat(np.arange(len(counts)), counts))
        f = D.covering_fraction(labels, seeds)
        assert _covers(labels, f, seeds)
        below = round(f - 1e-4, 4)
        n = len(labels)
        assert below <= 0 or not _covers(labels, below, seeds) or D.subset_size(n, below) == D.subset_size(n, f)


def test_digits_at_one_percent_is_refused_and_the_demo_fractions_are_not(tmp_path):
    """digits: 359 test images for 10 classes; 1 % keeps floor(3.59 + 0.5) = 4.  Its classes hold 35-37 test
    images; the stratified order puts one image of each first for these seeds, so the smallest fraction is
    ceil((10 - 0.5) / 359, 4 decimals) = 0.0265.  The demo's 0.03 keeps 11."""
    from precompute.demo import DEMO_FRACTIONS

    ds = D.load_dataset("digits", cache_dir=tmp_path)
    with pytest.raises(D.SubsetError, match=r"fraction 0.01 of digits keeps 4 of its 359 test images for 10 "
                                            r"classes: at least 6 classes .* is 0.0265"):
        D.check_fractions(ds, (1.0, 0.1, 0.01), [0, 1], ["mlp"])
    D.check_fractions(ds, DEMO_FRACTIONS, [0, 1], ["mlp", "knn"])
    assert min(DEMO_FRACTIONS) == 0.03


def test_one_class_folder_is_refused_by_run_and_search(capsys, tmp_path):
    root = tmp_path / "one"
    fx.write_class_tree(root, {"only": 10}, h=8, w=8)
    with pytest.raises(D.DatasetError, match=r"has 1 class \('only'\): choosing a backbone needs at least 2"):
        D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "c")
    parts, out = tmp_path / "parts", tmp_path / "oracles"
    code, _, err = call(capsys, "run", "--dataset", f"folder:{root}", "--pool", "resnet10t.c3_in1k",
                        "--weights", "random", "--device", "cpu", "--no-progress", "--cache-dir", tmp_path / "c",
                        "--parts-dir", parts, "--out", out)
    one_error_line(code, err, f"image folder {root} has 1 class ('only')")
    code, _, err = call(capsys, "search", "--dataset", f"folder:{root}", "--pool", "resnet10t.c3_in1k",
                        "--weights", "random", "--device", "cpu", "--budget", "1min", "--strategy", "cycling",
                        "--evaluator", "mlp", "--no-progress", "--cache-dir", tmp_path / "c",
                        "--out", tmp_path / "search")
    one_error_line(code, err, "has 1 class ('only')")
    assert not parts.exists() and not out.exists() and not (tmp_path / "search").exists()


def test_a_fraction_without_a_test_image_per_class_is_refused_by_run(capsys, tmp_path, pool_file, heads):
    """3 classes x 2 test images: 10 % keeps floor(0.6 + 0.5) = 1 test image (every backbone scored 0.0
    on it); one per class from floor(6f + 0.5) >= 3 on: f = ceil(2.5 / 6, 4 decimals) = 0.4167."""
    root = three_classes(tmp_path / "three")
    parts, out = tmp_path / "parts", tmp_path / "oracles"
    args = ["run", "--dataset", f"folder:{root}", "--pool", pool_file, "--weights", "random", "--device", "cpu",
            "--seeds", "1", "--evaluators", "mlp,silhouette", "--no-progress", "--cache-dir", tmp_path / "c",
            "--parts-dir", parts, "--out", out]
    code, _, err = call(capsys, *args, "--fractions", "1.0,0.1")
    one_error_line(code, err, f"fraction 0.1 of folder:{root} keeps 1 of its 6 test images for 3 classes",
                   "the smallest fraction that keeps every class in the test split is 0.4167: e.g. --fractions 1.0 "
                   "or --fractions 1.0,0.4167", "evaluators without a test split (silhouette, logme) run at any "
                   "fraction")
    assert not parts.exists() and not out.exists()
    code, out_text, err = call(capsys, *args, "--fractions", "1.0,0.5")  # 3 test images: one per class
    assert code == 0, err
    assert read_oracle(out / f"{P.safe_name(f'folder:{root}')}.parquet").frame["n_test"].max() == 6


def test_a_fraction_without_a_test_image_per_class_is_refused_by_search(capsys, tmp_path, pool_file, heads):
    root = three_classes(tmp_path / "three", train=20)
    code, _, err = call(capsys, "search", "--dataset", f"folder:{root}", "--pool", pool_file, "--weights", "random",
                        "--device", "cpu", "--budget", "1h", "--strategy", "cycling", "--evaluator", "mlp@0.1",
                        "--no-progress", "--cache-dir", tmp_path / "c", "--out", tmp_path / "search")
    # the sweep's rule and words (test_a_fraction_without_a_test_image_per_class_is_refused_by_run), with the
    # search's options named instead of a --fractions fix
    one_error_line(code, err, "fraction 0.1 of", "keeps 1 of its 6 test images for 3 classes: at least 2 classes "
                   "would have no test image to score mlp@0.1 on; the smallest fraction that keeps every class in "
                   "the test split is 0.4167; for --evaluator, and --sh-fractions with successive halving")
    assert not (tmp_path / "search").exists()


def test_subset_notes_say_once_what_the_subsets_do(tmp_path, heads):
    """No raw UserWarning: a train subset kept at one image per class, or a stratified test draw that
    lacks a rare class (allowed: the fraction could hold every class), is one line each."""
    ds = image_set([40] * 5, [10] * 5)
    cfg = SweepConfig(dataset="toy", fractions=(1.0, 0.1, 0.01), seeds=1, evaluators=("silhouette",))
    from precompute.sweep import subset_notes
    plans = D.subset_plan(ds, cfg.fractions, cfg.seed_list)
    assert subset_notes(cfg, ds, plans) == [
        "fraction 0.01 of toy keeps fewer train images than its 5 classes (e.g. 2 of 200 at 0.01): those train "
        "subsets keep one image per class (5 images; each row's n_train says so)"]
    rare = image_set([40, 40, 4], [50, 50, 2])  # 102 test images: 10 % keeps 10, the rare class 0.2 of one
    cfg = SweepConfig(dataset="toy", fractions=(1.0, 0.1), seeds=3, evaluators=("mlp",))
    plans = D.subset_plan(rare, cfg.fractions, cfg.seed_list)
    lack = [3 - len(np.unique(rare.test_labels[plans[s][0.1][1]])) for s in range(3)]
    assert any(lack)  # the rare class's 2 images are 1 in 51 of the split: most 10-image draws miss it
    assert subset_notes(cfg, rare, plans) == [f"at fraction 0.1 the stratified test subsets of seeds 0, 1, 2 lack "
                                              f"{', '.join(map(str, lack))} of the 3 classes (10 of 102 images)"]


# ---------------------------------------------------------------------------- timm's test models
def test_test_models_leave_the_default_pool_unless_named():
    shipped = pl.read_parquet(shipped_path(), columns=["backbone"])["backbone"].to_list()
    toys = [n for n in shipped if n.split(".")[0].startswith("test_")]
    assert len(toys) == 13 and "test_vit.r160_in1k" in toys
    assert default_names() == [n for n in shipped if n not in toys]
    assert default_names(include_test_models=True) == shipped == pretrained_names()
    assert pool_names([]) == default_names() and pool_names([], include_test_models=True) == shipped
    # a pattern matching only test models keeps them: whoever names them wants them
    assert match_names(["test_*"], shipped) == toys
    assert match_names(["test_vit.r160_in1k"], shipped) == ["test_vit.r160_in1k"]
    # a pattern matching real backbones too leaves them out, unless asked
    vit = match_names(["*vit*"], shipped)
    assert not any(n.startswith("test_") for n in vit) and "vit_tiny_patch16_224.augreg_in21k_ft_in1k" in vit
    assert sorted(set(match_names(["*vit*"], shipped, True)) - set(vit)) == \
        ["test_vit.r160_in1k", "test_vit2.r160_in1k", "test_vit3.r160_in1k"]
    assert left_out_test_models(["*vit*"]) == ["test_vit2.r160_in1k", "test_vit3.r160_in1k", "test_vit.r160_in1k"]
    assert left_out_test_models(["test_*"]) == [] and left_out_test_models(None, True) == []


def test_pool_command_leaves_test_models_out_and_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no download of timm's results: the note says so
    code, out, err = call(capsys, "pool", "--glob", "*vit*", "--max-params", "6", "--out", "p.parquet",
                          "--no-progress")
    assert code == 0, err
    names = pl.read_parquet(tmp_path / "p.parquet")["backbone"].to_list()
    assert names and not any(n.startswith("test_") for n in names)
    assert "note: timm's 3 toy test model(s) left out" in err and "--include-test-models keeps them" in err
    assert "--timm-benchmark" not in err  # advice `pool` cannot take
    code, out, err = call(capsys, "pool", "--glob", "*vit*", "--max-params", "6", "--include-test-models",
                          "--out", "q.parquet", "--no-progress")
    assert code == 0, err
    with_toys = pl.read_parquet(tmp_path / "q.parquet")["backbone"].to_list()
    assert sorted(set(with_toys) - set(names)) == ["test_vit.r160_in1k", "test_vit2.r160_in1k", "test_vit3.r160_in1k"]
    code, out, err = call(capsys, "pool", "--glob", "test_vit*", "--out", "t.parquet", "--no-progress")
    assert code == 0 and len(pl.read_parquet(tmp_path / "t.parquet")) == 3 and "left out" not in err


@pytest.mark.parametrize("command", ["pool", "run", "search", "fetch", "check"])
def test_every_pool_command_takes_include_test_models(capsys, command):
    assert main([command, "--help"]) == 0
    assert "--include-test-models" in capsys.readouterr().out


# ---------------------------------------------------------------------------- the truth
def test_infer_truth():
    assert infer_truth(["mlp", "silhouette"]) == "mlp"
    assert infer_truth(["mlp-sklearn", "knn"]) == "mlp-sklearn"
    assert infer_truth(["mlp-sklearn", "mlp"]) == "mlp"
    assert infer_truth(["knn", "ridge"]) == "mlp"  # no head: the run refuses it (check_truth)


def test_a_run_of_mlp_sklearn_alone_makes_an_oracle_whose_truth_says_so(capsys, tmp_path, pool_file, heads):
    args = ["run", "--dataset", "digits", "--pool", pool_file, "--weights", "random", "--device", "cpu",
            "--seeds", "1", "--fractions", "1.0,0.1", "--no-progress", "--cache-dir", tmp_path / "c",
            "--parts-dir", tmp_path / "parts", "--out", tmp_path / "o"]
    code, out, err = call(capsys, *args, "--evaluators", "mlp-sklearn,silhouette")
    assert code == 0, err
    oracle = read_oracle(tmp_path / "o" / "digits.parquet")
    assert oracle.meta["truth"] == oracle.truth == "mlp-sklearn"
    truth = oracle.frame.filter((pl.col("evaluator") == "mlp-sklearn") & (pl.col("fraction") == 1.0))
    assert oracle.true_scores().sort("backbone")["true_score"].to_list() == truth.sort("backbone")["score"].to_list()
    # --truth names it; merge --truth reads the same parts under another truth
    code, out, err = call(capsys, "merge", "--dataset", "digits", "--parts-dir", tmp_path / "parts",
                          "--out", tmp_path / "s.parquet", "--truth", "silhouette")
    assert code == 0, err
    assert read_oracle(tmp_path / "s.parquet").truth == "silhouette"


@pytest.mark.parametrize("extra, pattern", [
    (["--evaluators", "knn,silhouette"], "--evaluators knn,silhouette has no head to be the truth (mlp or "
                                         "mlp-sklearn, at fraction 1.0): add one, or name the truth with --truth"),
    (["--evaluators", "mlp", "--truth", "knn"], "--truth knn is not among --evaluators mlp"),
    (["--evaluators", "mlp", "--truth", "nope"], "unknown evaluator 'nope'"),
    (["--evaluators", "mlp", "--fractions", "0.5"], "the truth (mlp at fraction 1.0) needs 1.0 in --fractions"),
])
def test_a_run_without_truth_rows_is_refused_before_anything(capsys, tmp_path, pool_file, heads, extra, pattern):
    code, _, err = call(capsys, "run", "--dataset", "digits", "--pool", pool_file, "--weights", "random",
                        "--device", "cpu", "--no-progress", "--parts-dir", tmp_path / "parts",
                        "--out", tmp_path / "o", *extra)
    one_error_line(code, err, pattern)
    assert not (tmp_path / "parts").exists() and not (tmp_path / "o").exists()


def test_merge_of_parts_naming_no_or_different_truths(tmp_path, heads):
    """Parts recorded before the truth was inferred (truth mlp, but only mlp-sklearn rows), and parts of
    two runs naming different truths: merge says which --truth to give, and takes it."""
    pool = pool_frame(["fake_a.x", "fake_b.y"])
    cfg = SweepConfig(dataset="digits", fractions=(1.0,), seeds=1, evaluators=("mlp-sklearn",), weights="random",
                      device="cpu", parts_dir=str(tmp_path / "parts"), cache_dir=str(tmp_path / "c"), truth="mlp")
    assert check_truth(SweepConfig(**{**cfg.__dict__, "truth": None})) == "mlp-sklearn"
    run_sweep(cfg, pool, show_progress=False, echo=None)
    with pytest.raises(P.MergeError, match="have no mlp row at fraction 1.0 to be the truth; they have mlp-sklearn "
                                           "there: give --truth NAME, e.g. --truth mlp-sklearn"):
        P.merge("digits", cfg.parts_dir, tmp_path / "o.parquet")
    assert P.merge("digits", cfg.parts_dir, tmp_path / "o.parquet", truth="mlp-sklearn").n_backbones == 2
    frame, meta = P.read_part(P.part_path(cfg.parts_dir, "digits", "fake_b.y"))  # as a run with --truth would
    P.write_part(frame, P.part_path(cfg.parts_dir, "digits", "fake_b.y"), {**meta, "truth": "mlp-sklearn"})
    with pytest.raises(P.MergeError, match=r"name different truths \(mlp, mlp-sklearn\); choose one with --truth"):
        P.merge("digits", cfg.parts_dir, tmp_path / "o.parquet")
    assert read_oracle(P.merge("digits", cfg.parts_dir, tmp_path / "o.parquet", truth="mlp-sklearn").path).truth \
        == "mlp-sklearn"


# ---------------------------------------------------------------------------- small things
def test_failed_timm_results_download_leaves_no_folder_and_no_foreign_advice(tmp_path, monkeypatch):
    from shared import timm_results as T

    monkeypatch.delenv(T.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(VibesError) as err:
        T.imagenet_top1()
    assert "--timm-results DIR" in str(err.value) and "--timm-benchmark" not in str(err.value)
    assert not (tmp_path / "cache").exists()  # every folder the download made is gone
    (tmp_path / "cache").mkdir()
    with pytest.raises(VibesError, match="choose the benchmark file with --timm-benchmark FILE"):
        T.locate("benchmark-x.csv", None, hint="choose the benchmark file with --timm-benchmark FILE")
    assert list((tmp_path / "cache").iterdir()) == []  # a folder that was there stays, emptied of ours


@pytest.mark.parametrize("command", ["run", "merge"])
def test_dataset_help_lists_the_datasets(capsys, command):
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "One of cifar10, digits, eurosat, flowers102, gtsrb, synthetic:N@SIZE, folder:PATH" in text
    assert "see error" not in text


def test_the_demo_prints_a_simulate_command_that_pastes(tmp_path):
    """No prompt in front; the program relative to the repository when it lies in it; it runs in a shell
    as printed (here with --help appended, so nothing is simulated)."""
    from precompute.demo import shown_command, simulate_command

    cmd = simulate_command()
    line = shown_command(cmd)
    assert not line.startswith("$") and shlex.split(line)[1:] == cmd[1:]
    assert "--evaluator mlp@0.03" in line and "mlp@0.01" not in line
    if Path(cmd[0]).is_relative_to(REPO):
        assert not Path(shlex.split(line)[0]).is_absolute()
    p = subprocess.run(["bash", "-c", line + " --help"], cwd=REPO if Path(cmd[0]).is_relative_to(REPO) else None,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "--oracle" in p.stdout, p.stderr[-2000:]


def test_check_keeps_its_worker_log_only_when_something_was_not_ok(tmp_path, monkeypatch):
    """The log is written while the workers run; an all-ok run removes it, a run with a failed row keeps it
    (its path printed by the CLI).  A fake worker: no torch import, same log path and statuses."""
    from precompute import check as C

    written = []

    class FakeWorker:
        def __init__(self, threads=1, log_path=None, **kw):
            self.log_path, self.proc = log_path, None

        def start(self):
            self.proc = object()
            Path(self.log_path).write_text("worker output\n")
            written.append(Path(self.log_path).exists())

        def run(self, task, timeout):
            row = {c: None for c in C.CHECK_COLUMNS}
            bad = task["name"].startswith("resnet18.")
            row.update(backbone=task["name"], architecture=task["name"].split(".")[0],
                       status="failed" if bad else "ok", reason="ValueError: boom" if bad else None,
                       device=task["device"])
            return row

        def close(self):
            pass

    monkeypatch.setattr(C, "Worker", FakeWorker)
    cfg = C.CheckConfig(device="cpu")
    out = tmp_path / "check.parquet"
    C.run_check(["resnet10t.c3_in1k"], cfg, out=out)
    assert written == [True] and not C.worker_log(out).exists()
    C.run_check(["resnet18.a1_in1k"], cfg, out=out)
    assert C.worker_log(out).read_text() == "worker output\n"
    assert str(C.worker_log(out)) == str(out) + ".worker.log"


def test_no_raw_warnings_when_a_sweep_runs_small_fractions(tmp_path, heads, recwarn):
    """The demo's digits run (nested subsets with a per-class minimum) prints no UserWarning."""
    cfg = SweepConfig(dataset="digits", fractions=(1.0, 0.1, 0.03), seeds=2, evaluators=("mlp", "silhouette"),
                      weights="random", device="cpu", parts_dir=str(tmp_path / "parts"), cache_dir=str(tmp_path / "c"))
    run_sweep(cfg, pool_frame(["fake_a.x"]), show_progress=False, echo=None)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


# ------------------------------------------------------------------------------------------------
# A laptop without a GPU (issue 24 item 10)
def test_make_install_cpu_takes_torch_from_the_cpu_wheel_index(tmp_path):
    venv = tmp_path / "venv"
    p = subprocess.run(["make", "--no-print-directory", "-n", "install-cpu", f"VENV={venv}",
                        "TORCH_SPEC=torch==9.9 torchvision==8.8"], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    torch_lines = [line for line in p.stdout.splitlines() if "pip install" in line and "torch==" in line]
    assert torch_lines == [f"{venv}/bin/python -m pip install -q --index-url https://download.pytorch.org/whl/cpu "
                           "torch==9.9 torchvision==8.8"], p.stdout
    p = subprocess.run(["make", "--no-print-directory", "-n", "install-cpu", f"VENV={venv}",
                        "TORCH_CPU_INDEX=file:///mirror/cpu"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "pip install -q --index-url file:///mirror/cpu torch==" in p.stdout


def test_the_readme_tells_laptop_users_first_that_simulate_needs_no_torch():
    setup = (REPO / "README.md").read_text().split("## Set up\n", 1)[1].split("```", 1)[0]
    assert "`pip install .` (no extras: no torch, no GPU) gives a working\n`simulate`" in setup
