"""precompute/datasets.py: loaders on fixture files in torchvision's real layouts, the
decode/skip decision, the cache, committed splits and nested stratified subsets."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchvision")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_datasets as fx  # noqa: E402

from precompute import datasets as D  # noqa: E402
from shared.errors import VibesError  # noqa: E402


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg
    assert isinstance(err.value, VibesError)
    return msg


def load(name, tmp_path, **kw):
    return D.load_dataset(name, data_root=tmp_path / "data", cache_dir=tmp_path / "cache", **kw)


def check_set(ds: D.ImageSet, size: int, n_train: int, n_test: int, n_classes: int):
    assert ds.train_images.dtype == np.uint8 and ds.test_images.dtype == np.uint8
    assert ds.train_images.shape == (n_train, size, size, 3)
    assert ds.test_images.shape == (n_test, size, size, 3)
    assert ds.train_labels.dtype == np.int64 and ds.test_labels.dtype == np.int64
    assert ds.n_classes == n_classes
    f = ds.facts()
    assert (f["n_train"], f["n_test"], f["n_classes"], f["image_size"]) == (n_train, n_test, n_classes, size)
    assert f["n_skipped"] == len(ds.skipped) and f["source"]
    json.dumps(f)


# --------------------------------------------------------------------------- public loaders
def test_cifar10_fixture(tmp_path, monkeypatch):
    sums = fx.write_cifar10(tmp_path / "data", per_class_per_batch=1, test_per_class=2)
    fx.patch_cifar_md5(monkeypatch, sums)
    ds = load("cifar10", tmp_path)
    check_set(ds, 32, 50, 20, 10)
    assert ds.classes == fx.CIFAR_CLASSES
    # pixel layout: CHW pickled rows -> HWC images, unchanged at native size
    import pickle
    with open(tmp_path / "data/cifar-10-batches-py/data_batch_1", "rb") as f:
        row = pickle.load(f)["data"][3]
    assert np.array_equal(ds.train_images[3], row.reshape(3, 32, 32).transpose(1, 2, 0))
    assert np.bincount(ds.train_labels).tolist() == [5] * 10


def test_cifar10_corrupted_batch_is_one_line(tmp_path, monkeypatch):
    sums = fx.write_cifar10(tmp_path / "data")
    fx.patch_cifar_md5(monkeypatch, sums)
    (tmp_path / "data/cifar-10-batches-py/data_batch_2").write_bytes(b"broken")
    with pytest.raises(VibesError) as err:
        load("cifar10", tmp_path)
    msg = one_line(err)
    assert "cifar10 not found" in msg and "--data-root" in msg and "--download" in msg


def test_gtsrb_fixture(tmp_path):
    fx.write_gtsrb(tmp_path / "data", n_classes=3, train_per_class=2, test_per_class=2)
    ds = load("gtsrb", tmp_path)
    check_set(ds, 64, 6, 6, 3)
    assert ds.classes == ["00000", "00001", "00002"]
    assert ds.train_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.test_labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_gtsrb_test_classid_out_of_range(tmp_path):
    base = fx.write_gtsrb(tmp_path / "data", n_classes=2)
    csv = base / "GT-final_test.csv"
    csv.write_text(csv.read_text().replace(";1\n", ";7\n"))
    with pytest.raises(VibesError) as err:
        load("gtsrb", tmp_path)
    assert "ClassId 7" in one_line(err)


def test_flowers102_fixture(tmp_path, monkeypatch):
    sums = fx.write_flowers102(tmp_path / "data", n_classes=102, per_split=1)
    fx.patch_flowers_md5(monkeypatch, sums)
    ds = load("flowers102", tmp_path, cache_size=16)  # val unused
    check_set(ds, 16, 102, 102, 102)
    assert ds.classes[0] == "pink primrose"
    assert ds.train_labels.tolist() == list(range(102)) == ds.test_labels.tolist()
    assert D.DATASETS["flowers102"].cache_size == 256


def test_flowers102_class_without_train_image(tmp_path, monkeypatch):
    # only 3 of the 102 flower classes have images: class 4 ('sweet pea') is named
    sums = fx.write_flowers102(tmp_path / "data", n_classes=3, per_split=2)
    fx.patch_flowers_md5(monkeypatch, sums)
    with pytest.raises(VibesError) as err:
        load("flowers102", tmp_path, cache_size=8)
    msg = one_line(err)
    assert "'sweet pea'" in msg and "no readable train image" in msg


SMALL_EUROSAT = {"AnnualCrop": 5, "Forest": 5, "Pasture": 4}


def test_eurosat_fixture_with_small_split_file(tmp_path):
    fx.write_eurosat(tmp_path / "data", SMALL_EUROSAT)
    classes = sorted(SMALL_EUROSAT)
    labels = np.repeat(np.arange(3), [SMALL_EUROSAT[c] for c in classes])
    split = tmp_path / "eurosat_small.json"
    doc = D.write_split_file(split, "eurosat", labels, classes, seed=0)
    ds = load("eurosat", tmp_path, split_file=split)
    check_set(ds, 64, len(doc["train"]), len(doc["test"]), 3)
    assert (len(doc["train"]), len(doc["test"])) == (11, 3)  # 4/1, 4/1, 3/1
    assert np.array_equal(ds.train_labels, labels[doc["train"]])
    assert np.array_equal(ds.test_labels, labels[doc["test"]])
    assert "eurosat_small.json" in ds.facts()["split"]


def test_eurosat_count_check_against_committed_split(tmp_path):
    fx.write_eurosat(tmp_path / "data", SMALL_EUROSAT)
    with pytest.raises(VibesError) as err:
        load("eurosat", tmp_path)
    msg = one_line(err)
    assert "expected 27000 images in 10 classes, found 14 in 3" in msg
    assert "AnnualCrop: 5 (expected 3000)" in msg and "--download" in msg


def test_eurosat_count_check_small_split_one_image_missing(tmp_path):
    base = fx.write_eurosat(tmp_path / "data", SMALL_EUROSAT)
    classes = sorted(SMALL_EUROSAT)
    labels = np.repeat(np.arange(3), [SMALL_EUROSAT[c] for c in classes])
    D.write_split_file(tmp_path / "s.json", "eurosat", labels, classes)
    (base / "Forest" / "Forest_1.jpg").unlink()
    with pytest.raises(VibesError) as err:
        load("eurosat", tmp_path, split_file=tmp_path / "s.json")
    assert "Forest: 4 (expected 5)" in one_line(err)


def test_digits_committed_split(tmp_path):
    ds = D.load_dataset("digits", cache_dir=tmp_path)
    check_set(ds, 8, 1438, 359, 10)
    assert ds.train_images.max() == 255 and ds.train_images.min() == 0
    assert np.array_equal(ds.train_images[..., 0], ds.train_images[..., 2])  # gray as RGB
    from sklearn.datasets import load_digits
    d = load_digits()
    doc = json.loads((D.SPLITS_DIR / "digits.json").read_text())
    assert np.array_equal(ds.train_labels, d.target[doc["train"]])
    img = d.images[doc["test"][0]]
    assert np.array_equal(ds.test_images[0, ..., 1], np.floor(img * 255 / 16 + 0.5).astype(np.uint8))


@pytest.mark.parametrize("name", ["eurosat", "digits"])
def test_committed_split_files_follow_their_rule(name, tmp_path):
    committed = json.loads((D.SPLITS_DIR / f"{name}.json").read_text())
    D.write_committed_splits(tmp_path)
    assert json.loads((tmp_path / f"{name}.json").read_text()) == committed
    tr, te = np.array(committed["train"]), np.array(committed["test"])
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == committed["n_total"]
    counts = committed["expected_counts"]
    labels = np.repeat(np.arange(len(counts)), list(counts.values()))  # ImageFolder order
    if name == "digits":
        from sklearn.datasets import load_digits
        labels = load_digits().target
    assert np.array_equal(np.bincount(labels, minlength=len(counts)), list(counts.values()))
    assert np.array_equal(np.bincount(labels[te]), np.floor(0.2 * np.array(list(counts.values())) + 0.5))
    assert committed["seed"] == 0 and "stratified_split" in committed["rule"]
    if name == "eurosat":
        assert sum(counts.values()) == 27000 and counts["Pasture"] == 2000


# --------------------------------------------------------------------------- folder:PATH
def test_folder_train_test_layout(tmp_path):
    root = tmp_path / "imgs"
    fx.write_class_tree(root / "train", {"cat": 3, "dog": 2})
    fx.write_class_tree(root / "test", {"cat": 1, "dog": 2}, ext="jpg")
    ds = D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "cache", cache_size=24)
    check_set(ds, 24, 5, 3, 2)
    assert ds.name == f"folder:{root.resolve()}" and ds.classes == ["cat", "dog"]
    assert ds.facts()["split"] == "train/ and test/ folders"
    assert D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "cache").image_size == 256


def test_folder_single_tree_split(tmp_path):
    root = fx.write_class_tree(tmp_path / "tree", {"a": 10, "b": 5, "c": 2})
    ds = D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "cache", cache_size=8)
    check_set(ds, 8, 13, 4, 3)  # test: 2 + 1 + 1
    assert np.bincount(ds.test_labels).tolist() == [2, 1, 1]
    ds2 = D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "other", cache_size=8)
    assert np.array_equal(ds.train_images, ds2.train_images)  # the rule is fixed


def test_folder_different_classes(tmp_path):
    fx.write_class_tree(tmp_path / "f" / "train", {"cat": 1, "dog": 1, "emu": 1})
    fx.write_class_tree(tmp_path / "f" / "test", {"cat": 1, "dog": 1, "fox": 1})
    with pytest.raises(VibesError) as err:
        D.load_dataset(f"folder:{tmp_path / 'f'}", cache_dir=tmp_path / "c")
    assert "different classes: only in train: emu; only in test: fox" in one_line(err)


def test_folder_empty_and_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VibesError) as err:
        D.load_dataset(f"folder:{tmp_path / 'empty'}", cache_dir=tmp_path / "c")
    assert "is empty" in one_line(err)
    with pytest.raises(VibesError) as err:
        D.load_dataset(f"folder:{tmp_path / 'nope'}", cache_dir=tmp_path / "c")
    assert "not found" in one_line(err)
    fx.write_class_tree(tmp_path / "half" / "train", {"a": 1})
    with pytest.raises(VibesError) as err:
        D.load_dataset(f"folder:{tmp_path / 'half'}", cache_dir=tmp_path / "c")
    assert "has train/ but no test/" in one_line(err)


def test_folder_class_with_no_image(tmp_path):
    root = fx.write_class_tree(tmp_path / "t", {"a": 3, "b": 3})
    (root / "zebra").mkdir()
    (root / "zebra" / "notes.txt").write_text("not an image")
    with pytest.raises(VibesError) as err:
        D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "c")
    assert "class 'zebra'" in one_line(err) and "has no image" in str(err.value)


# --------------------------------------------------------------------------- the bad-input decision
def test_corrupt_and_truncated_are_skipped_and_counted(tmp_path, capsys):
    root = fx.write_class_tree(tmp_path / "t", {"a": 6, "b": 6})
    bad1 = fx.write_corrupt(root / "a" / "900.png")
    bad2 = fx.write_truncated_jpeg(root / "b" / "901.jpg")
    ds = D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "c", cache_size=8)
    assert sorted(f for f, _ in ds.skipped) == sorted([str(bad1), str(bad2)])
    assert all(reason for _, reason in ds.skipped) and ds.facts()["n_skipped"] == 2
    assert ds.facts()["n_train"] + ds.facts()["n_test"] == 12
    err = capsys.readouterr().err
    assert "skipped 2 unreadable image(s)" in err and "first: " in err
    # the cache remembers the skipped files and warns again
    ds2 = D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "c", cache_size=8)
    assert ds2.skipped == ds.skipped and "skipped 2" in capsys.readouterr().err


def test_all_images_of_a_class_corrupt_names_it(tmp_path):
    root = fx.write_class_tree(tmp_path / "t", {"a": 4})
    for i in range(3):
        fx.write_corrupt(root / "broken" / f"{i}.jpg")
    with pytest.raises(VibesError) as err:
        D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "c", cache_size=8)
    assert "class 'broken' has no readable train image" in one_line(err)


def test_no_readable_image_at_all(tmp_path):
    root = tmp_path / "t"
    for c in "ab":
        for i in range(2):
            fx.write_corrupt(root / c / f"{i}.png")
    with pytest.raises(VibesError) as err:
        D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "c", cache_size=8)
    assert "no readable image at all (4 unreadable" in one_line(err)


def test_odd_modes_become_8bit_rgb(tmp_path):
    root = tmp_path / "t"
    fx.write_grayscale(root / "a" / "gray.png", value=100)
    fx.write_rgba(root / "a" / "rgba.png", color=(10, 20, 30))
    fx.write_16bit(root / "a" / "deep.png", value=65535)
    fx.write_16bit(root / "a" / "deep_mid.tiff", value=257 * 40)
    fx.write_tiny(root / "a" / "tiny.png", color=(200, 10, 10))
    fx.write_palette(root / "a" / "pal.png")
    for i in range(2):
        fx.write_image(root / "b" / f"{i}.bmp", 7, 13, seed=i)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. PIL's palette-transparency warning
        ds = D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "c", cache_size=6)
    assert ds.skipped == []
    images = np.concatenate([ds.train_images, ds.test_images])
    assert images.shape == (8, 6, 6, 3) and images.dtype == np.uint8
    found = {tuple(im[3, 3]) for im in images}
    assert {(100, 100, 100), (10, 20, 30), (255, 255, 255), (40, 40, 40), (200, 10, 10)} <= found


def test_to_rgb_resizes_shorter_side_and_centre_crops():
    from PIL import Image
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :6] = 255  # a white band on the left: cropped away by the centre crop
    out = D.to_rgb(Image.fromarray(a), 10)
    assert out.shape == (10, 10, 3) and out.max() == 0
    assert D.to_rgb(Image.fromarray(a), 40).shape == (40, 40, 3)  # upscaled


def test_large_jpeg_draft_matches_full_decode(tmp_path):
    from PIL import Image
    y, x = np.mgrid[0:240, 0:320]
    a = np.stack([x * 255 // 320, y * 255 // 240, (x + y) * 255 // 560], -1).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "big.jpg", quality=95)
    fast = D._decode_file(str(tmp_path / "big.jpg"), 32)
    with Image.open(tmp_path / "big.jpg") as im:
        im.load()
        full = D.to_rgb(im, 32)
    assert fast.shape == full.shape == (32, 32, 3)
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 3


# --------------------------------------------------------------------------- errors and cache
def test_unknown_name_lists_valid(tmp_path):
    with pytest.raises(VibesError) as err:
        load("imagenet", tmp_path)
    msg = one_line(err)
    for name in ("cifar10", "gtsrb", "flowers102", "eurosat", "digits", "folder:PATH"):
        assert name in msg


@pytest.mark.parametrize("name", ["cifar10", "gtsrb", "flowers102", "eurosat"])
def test_missing_data_root_without_download(name, tmp_path):
    with pytest.raises(VibesError) as err:
        load(name, tmp_path)
    msg = one_line(err)
    assert f"{name} not found" in msg and "--data-root" in msg and "--download" in msg


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.cifar as tv_cifar

    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(VibesError) as err:
        D.load_dataset("cifar10", data_root=tmp_path / "d", download=True, cache_dir=tmp_path / "c")
    assert "could not download cifar10" in one_line(err) and "no network" in str(err.value)


def test_cache_is_reused_and_invalidated_on_change(tmp_path):
    root = fx.write_class_tree(tmp_path / "t", {"a": 3, "b": 3})
    ds = D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "c", cache_size=8)
    files = list((tmp_path / "c").glob("*.npz"))
    assert len(files) == 1 and files[0].name.endswith(".npz") and "-8-" in files[0].name
    again = D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "c", cache_size=8)
    assert np.array_equal(ds.train_images, again.train_images) and again.classes == ds.classes
    assert len(list((tmp_path / "c").glob("*.npz"))) == 1  # reused, not rebuilt
    fx.write_image(root / "a" / "000.png", 16, 20, seed=12345)  # same name, new content
    import os
    os.utime(root / "a" / "000.png", ns=(1, 1))
    changed = D.load_dataset(f"folder:{root}", cache_dir=tmp_path / "c", cache_size=8)
    assert len(list((tmp_path / "c").glob("*.npz"))) == 2
    assert not np.array_equal(np.concatenate([changed.train_images, changed.test_images]),
                              np.concatenate([ds.train_images, ds.test_images]))


# --------------------------------------------------------------------------- subsets
def test_nested_subsets_basic():
    labels = np.repeat(np.arange(10), 100)
    s = D.nested_subsets(labels, [0.01, 0.1, 1.0], seed=3)
    assert [len(s[f]) for f in (0.01, 0.1, 1.0)] == [10, 100, 1000]
    assert set(s[0.01]) <= set(s[0.1]) <= set(s[1.0])
    assert np.bincount(labels[s[0.1]]).tolist() == [10] * 10
    assert np.bincount(labels[s[0.01]], minlength=10).min() == 1
    assert all(np.all(np.diff(v) > 0) for v in s.values())
    other = D.nested_subsets(labels, [0.01, 0.1, 1.0], seed=4)
    assert not np.array_equal(other[0.1], s[0.1]) and not np.array_equal(other[0.01], s[0.01])


def test_nested_subsets_fewer_images_than_classes_say_nothing():
    """Below one image per class the train rule keeps one per class and the test rule one image; no
    raw UserWarning (the sweep refuses or says it once, in one line: check_fractions, subset_notes)."""
    labels = np.repeat(np.arange(20), 5)  # 100 images, 20 classes: 1% is 1 image
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = D.nested_subsets(labels, [0.01], seed=0)
        t = D.nested_subsets(labels, [0.01], seed=0, min_per_class=0)
    assert len(s[0.01]) == 20 and sorted(labels[s[0.01]]) == list(range(20))
    assert len(t[0.01]) == 1
    with pytest.raises(VibesError, match="fractions must be in"):
        D.nested_subsets(labels, [0.0], seed=0)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 40), min_size=1, max_size=8),
       fractions=st.lists(st.sampled_from([0.01, 0.05, 0.1, 0.3, 0.5, 1.0]), min_size=1, max_size=4, unique=True),
       seed=st.integers(0, 2**31), min_per_class=st.integers(0, 2))
def test_nested_subsets_properties(counts, fractions, seed, min_per_class):
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = labels[np.random.default_rng(seed).permutation(len(labels))]
    n, k = len(labels), len(counts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = D.nested_subsets(labels, fractions, seed, min_per_class=min_per_class)
        b = D.nested_subsets(labels, fractions, seed, min_per_class=min_per_class)
    assert a.keys() == set(fractions)
    fs = sorted(fractions)
    for f in fs:
        assert np.array_equal(a[f], b[f])  # identical for identical seed
        idx = a[f]
        assert idx.dtype.kind == "i" and np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < n
        got = np.bincount(labels[idx], minlength=k)
        assert np.all(got >= np.minimum(min_per_class, counts))
        m = len(idx)
        assert m == min(n, max(int(np.floor(f * n + 0.5)), int(np.minimum(min_per_class, counts).sum()), 1))
        if min_per_class == 0:  # stratified: each class within ~1 image of its share
            share = m * np.asarray(counts) / n
            assert np.all(np.abs(got - share) < 1 + k * np.asarray(counts) / n + 1e-9)
    for small, big in zip(fs, fs[1:]):
        assert np.all(np.isin(a[small], a[big]))  # nested
    if 1.0 in a:
        assert len(a[1.0]) == n


def test_subset_plan(tmp_path):
    ds = D.load_dataset("digits", cache_dir=tmp_path)
    plan = D.subset_plan(ds, [0.01, 0.1, 1.0], seeds=[0, 1])  # (a sweep refuses 0.01 here: 4 test images)
    assert set(plan) == {0, 1}
    for by_f in plan.values():
        tr1, te1 = by_f[0.01]
        tr10, te10 = by_f[0.1]
        assert np.bincount(ds.train_labels[tr1], minlength=10).min() >= 1
        assert set(tr1) <= set(tr10) and set(te1) <= set(te10)
        assert len(by_f[1.0][0]) == 1438 and len(by_f[1.0][1]) == 359
        assert abs(len(te10) - 36) <= 1 and np.bincount(ds.test_labels[te10], minlength=10).min() >= 3
    assert not np.array_equal(plan[0][0.1][0], plan[1][0.1][0])
    again = D.subset_plan(ds, [0.01, 0.1, 1.0], seeds=[0, 1])
    assert all(np.array_equal(again[s][f][i], plan[s][f][i]) for s in plan for f in plan[s] for i in (0, 1))
