"""Datasets for the precompute phase: load, decode once into a uint8 cache, subsample.

One obvious place per dataset: :data:`DATASETS` maps a registry name to a
:class:`DatasetSpec` (loader, cache size, split rule, source).  ``folder:PATH`` is the
one pattern name on top of the registry.

Registry (name: torchvision source with ``root=data_root``; cache size S; split):

* ``digits``: sklearn.datasets.load_digits (bundled, 0..16 -> 0..255 gray as RGB); S=8 native;
  committed 80/20 ``precompute/data/splits/digits.json``.
* ``cifar10``: CIFAR10, ``cifar-10-batches-py/``; S=32 native; standard train / test.
* ``gtsrb``: GTSRB, ``gtsrb/GTSRB/Training``, ``gtsrb/GTSRB/Final_Test/Images`` +
  ``gtsrb/GT-final_test.csv``; S=64; standard train / test.
* ``flowers102``: Flowers102, ``flowers-102/``; S=256; standard train / test, val unused.
* ``eurosat``: EuroSAT (RGB), ``eurosat/2750/<Class>/*.jpg``; S=64 native; committed 80/20
  ``precompute/data/splits/eurosat.json`` (indices into torchvision's order, with the expected per-class
  counts, checked before use).
* ``synthetic:N@SIZE``: N random uint8 images at SIZE (numpy ``default_rng(0)``), 10 balanced
  classes, split 5:1 (CIFAR-10's proportion) by :func:`stratified_split`; generated in memory,
  never cached.  A stand-in of a real dataset's size for timing (``precompute estimate``, the bench).
* ``folder:PATH``: torchvision ImageFolder rules; S=256; ``PATH/train`` + ``PATH/test``, or one
  class-folder tree split 80/20 by :func:`stratified_split` with seed 0.

Decoding rule (:func:`to_rgb`): every image becomes 8-bit RGB (grayscale, palette,
RGBA/LA (alpha dropped, as torchvision's loader does), CMYK, 16-bit (value / 257) and
32-bit/float images), then, unless it already is S×S, its shorter side is resized to S
(bilinear, antialiased) and the centre S×S crop is kept; tiny images are simply upscaled.
JPEGs at least twice S are first reduced in the DCT domain (PIL ``draft``), which is much
faster for large photos.
A backbone's eval transform (resize by crop_pct, centre crop) on the cached square sees the
same centre region it would see on the original image (up to a second resampling).  ``cache_size`` overrides S.

Cache: ``cache_dir/<name>-<S>-<fingerprint>.npz``.  The fingerprint hashes the decode
rule, the size, the split indices and every source file's path, size and mtime, so a
changed source is never silently reused; the file is written atomically.

Bad inputs (one decision, used everywhere):

* a corrupt or truncated image file is SKIPPED AND COUNTED: it is listed in
  ``ImageSet.skipped`` as ``(file, reason)`` and a warning on stderr names the count and the
  first file.  It never stops the dataset, unless no image at all remains.
* one-line :class:`~shared.errors.VibesError` for: an unknown dataset name (lists the valid
  ones), missing data (names ``--data-root`` and ``--download``), a failed download, fewer than
  two classes (nothing to tell apart), a class with no (readable) train image (names it),
  ``train/`` and ``test/`` folders with different classes (names the difference), an empty or
  missing folder, a EuroSAT / digits source whose per-class counts differ from the committed
  split file, no readable image at all; and, for a run whose evaluators score on the test split,
  a fraction at which a class has no test image (:func:`check_fractions`: says the smallest
  fraction that keeps every class).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.atomic import temp_beside
from shared.errors import VibesError, unknown

CACHE_VERSION = 1  # bump when the decoding rule or the cache layout changes
#: the committed split files: package data (pyproject's package-data), found beside this module in a
#: source tree, an editable install and a regular one alike
SPLITS_DIR = Path(__file__).resolve().parent / "data" / "splits"
FOLDER_PREFIX = "folder:"
TEST_FRACTION = 0.2
FOLDER_SPLIT_SEED = 0


class DatasetError(VibesError):
    """A dataset is missing, malformed or cannot be loaded."""


# --------------------------------------------------------------------------- the image set
@dataclass
class ImageSet:
    """A decoded dataset: uint8 (N, S, S, 3) images of one common size, int64 labels."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    split: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[1])

    def facts(self) -> dict:
        """Dataset facts for the oracle metadata."""
        return {
            "n_train": int(len(self.train_labels)),
            "n_test": int(len(self.test_labels)),
            "n_classes": self.n_classes,
            "image_size": self.image_size,
            "n_skipped": len(self.skipped),
            "source": self.source,
            "split": self.split,
        }


# --------------------------------------------------------------------------- raw listings
@dataclass
class _Split:
    """One split before decoding: either file paths or already-decoded uint8 HWC arrays."""

    labels: np.ndarray
    files: list[str] | None = None
    arrays: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class _Raw:
    train: _Split
    test: _Split
    classes: list[str]
    source: str
    split: str
    fingerprint: list[str] = field(default_factory=list)  # extra parts (split file, versions)


@dataclass(frozen=True)
class DatasetSpec:
    """Registry entry: how to list a dataset, its cache size, split rule and source."""

    name: str
    loader: Callable[..., _Raw]
    cache_size: int
    split: str
    source: str
    cached: bool = True  # False: generated in memory (synthetic:N@SIZE), never decoded nor cached


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, cache_size: int, split: str, source: str, cached: bool = True):
    """Decorator (timm-style) adding a loader to :data:`DATASETS`."""

    def deco(fn: Callable[..., _Raw]) -> Callable[..., _Raw]:
        DATASETS[name] = DatasetSpec(name, fn, cache_size, split, source, cached)
        return fn

    return deco


def dataset_names() -> list[str]:
    """Valid dataset names, for error messages and ``--help``."""
    return sorted(DATASETS) + [f"{FOLDER_PREFIX}PATH"]


# --------------------------------------------------------------------------- splits
def _round_half_up(x: np.ndarray | float) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified split -> sorted (train_idx, test_idx).

    Rule: a permutation of all indices by ``numpy.random.default_rng(seed)``, stably sorted by
    label; in each class the first ``n_test = floor(test_fraction * n + 0.5)`` go to test,
    with at least one test image when the class has two or more and at least one train image.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]
    cls, start, counts = np.unique(labels[order], return_index=True, return_counts=True)
    n_test = np.clip(_round_half_up(test_fraction * counts), np.minimum(1, counts - 1), counts - 1)
    rank = np.arange(len(order)) - np.repeat(start, counts)
    is_test = rank < np.repeat(n_test, counts)
    return np.sort(order[~is_test]), np.sort(order[is_test])


def write_split_file(path: str | Path, name: str, labels: np.ndarray, classes: Sequence[str],
                     seed: int = 0, order: str = "") -> dict:
    """Write a committed split file: the rule, the seed, the expected counts and the indices."""
    labels = np.asarray(labels)
    train, test = stratified_split(labels, TEST_FRACTION, seed)
    counts = np.bincount(labels, minlength=len(classes))
    doc = {
        "dataset": name,
        "rule": (f"precompute.datasets.stratified_split(labels, test_fraction={TEST_FRACTION}, "
                 f"seed={seed}): default_rng(seed).permutation of all indices, stably sorted by "
                 "label; per class the first floor(0.2*n+0.5) go to test"),
        "order": order,
        "seed": seed,
        "test_fraction": TEST_FRACTION,
        "n_total": int(len(labels)),
        "expected_counts": {c: int(n) for c, n in zip(classes, counts)},
        "train": train.tolist(),
        "test": test.tolist(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: v for k, v in doc.items() if k not in ("train", "test")}, indent=1)
    # indices on one line each keep the file short and diff-friendly
    text = (text[:-2] + ',\n "train": ' + json.dumps(doc["train"]) + ',\n "test": '
            + json.dumps(doc["test"]) + "\n}\n")
    path.write_text(text)
    return doc


def read_split_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        _ = doc["expected_counts"], doc["train"], doc["test"], doc["n_total"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"split file {path} is missing or malformed ({err})") from None
    return doc


def _check_counts(what: str, where: str, classes: Sequence[str], labels: np.ndarray,
                  doc: dict, split_path: Path) -> None:
    """Fail with one line when the source's per-class counts differ from the split file."""
    expected = {str(c): int(n) for c, n in doc["expected_counts"].items()}
    found = dict(zip(map(str, classes), np.bincount(labels, minlength=len(classes)).tolist()))
    if found == expected:
        return
    diffs = [f"{c}: {found.get(c, 0)} (expected {expected.get(c, 0)})"
             for c in sorted(set(found) | set(expected)) if found.get(c, 0) != expected.get(c, 0)]
    raise DatasetError(
        f"{what} at {where} differs from {split_path}: expected {sum(expected.values())} images in "
        f"{len(expected)} classes, found {len(labels)} in {len(found)}; "
        + "; ".join(diffs[:5]) + ("; ..." if len(diffs) > 5 else "")
        + "; fix the folder, or remove it and run again with --download")


def _apply_split(labels: np.ndarray, files: list[str] | None, arrays: np.ndarray | None,
                 train: Sequence[int], test: Sequence[int]) -> tuple[_Split, _Split]:
    def take(idx):
        idx = np.asarray(idx, dtype=np.int64)
        return _Split(labels[idx], None if files is None else [files[i] for i in idx],
                      None if arrays is None else arrays[idx])
    return take(train), take(test)


# --------------------------------------------------------------------------- loaders
def _torchvision_call(name: str, data_root: Path, where: Path, download: bool, make):
    """Build a torchvision dataset, turning its failures into one-line errors."""
    try:
        return make()
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted..."
        if download:
            raise DatasetError(f"could not download {name} to {where}: {err}") from None
        rel = where.relative_to(data_root) if where.is_relative_to(data_root) else where
        raise DatasetError(f"{name} not found (or incomplete) at {where}; pass --data-root DIR "
                           f"where DIR/{rel} exists, or --download to fetch it") from None
    except FileNotFoundError as err:  # an empty class folder or a missing listing file
        raise DatasetError(f"{name} at {where}: {err}") from None
    except OSError as err:  # network failure during download
        raise DatasetError(f"could not download {name} to {where}: {err}") from None


@register_dataset("cifar10", cache_size=32, split="standard train/test",
                  source="torchvision.datasets.CIFAR10")
def _load_cifar10(data_root: Path, download: bool, **_) -> _Raw:
    from torchvision.datasets import CIFAR10

    where = data_root / CIFAR10.base_folder
    tr = _torchvision_call("cifar10", data_root, where, download,
                           lambda: CIFAR10(str(data_root), train=True, download=download))
    te = _torchvision_call("cifar10", data_root, where, download,
                           lambda: CIFAR10(str(data_root), train=False, download=False))
    files = [str(where / f) for f, _ in CIFAR10.train_list + CIFAR10.test_list]
    return _Raw(_Split(np.asarray(tr.targets, np.int64), arrays=tr.data),
                _Split(np.asarray(te.targets, np.int64), arrays=te.data),
                list(tr.classes), f"torchvision.datasets.CIFAR10 at {where}", "standard train/test",
                fingerprint=_file_stats(files + [str(where / CIFAR10.meta["filename"])]))


@register_dataset("gtsrb", cache_size=64, split="standard train/test",
                  source="torchvision.datasets.GTSRB")
def _load_gtsrb(data_root: Path, download: bool, **_) -> _Raw:
    from torchvision.datasets import GTSRB
    from torchvision.datasets.folder import find_classes

    where = data_root / "gtsrb"
    tr = _torchvision_call("gtsrb", data_root, where, download,
                           lambda: GTSRB(str(data_root), split="train", download=download))
    te = _torchvision_call("gtsrb", data_root, where, download,
                           lambda: GTSRB(str(data_root), split="test", download=download))
    classes, class_to_idx = find_classes(where / "GTSRB" / "Training")
    if any(not c.isdigit() or int(c) != i for c, i in class_to_idx.items()):
        raise DatasetError(f"gtsrb training folders at {where / 'GTSRB' / 'Training'} must be "
                           f"numbered 00000, 00001, ... without gaps; found {', '.join(classes[:5])}...")
    train_files, train_labels = zip(*tr._samples) if tr._samples else ((), ())
    test_files, test_labels = zip(*te._samples) if te._samples else ((), ())
    test_labels = np.asarray(test_labels, np.int64)
    if len(test_labels) and (test_labels.min() < 0 or test_labels.max() >= len(classes)):
        raise DatasetError(f"gtsrb GT-final_test.csv at {where} has ClassId {int(test_labels.max())}"
                           f" but only {len(classes)} training class folders exist")
    return _Raw(_Split(np.asarray(train_labels, np.int64), list(train_files)),
                _Split(test_labels, list(test_files)), classes,
                f"torchvision.datasets.GTSRB at {where}", "standard train/test",
                fingerprint=_file_stats([str(where / "GT-final_test.csv")]))


@register_dataset("flowers102", cache_size=256, split="standard train/test (val unused)",
                  source="torchvision.datasets.Flowers102")
def _load_flowers102(data_root: Path, download: bool, **_) -> _Raw:
    from torchvision.datasets import Flowers102

    where = data_root / "flowers-102"
    tr = _torchvision_call("flowers102", data_root, where, download,
                           lambda: Flowers102(str(data_root), split="train", download=download))
    te = _torchvision_call("flowers102", data_root, where, download,
                           lambda: Flowers102(str(data_root), split="test", download=False))
    return _Raw(_Split(np.asarray(tr._labels, np.int64), [str(p) for p in tr._image_files]),
                _Split(np.asarray(te._labels, np.int64), [str(p) for p in te._image_files]),
                list(Flowers102.classes), f"torchvision.datasets.Flowers102 at {where}",
                "standard train/test (val unused)",
                fingerprint=_file_stats([str(where / "imagelabels.mat"), str(where / "setid.mat")]))


@register_dataset("eurosat", cache_size=64, split="committed 80/20 precompute/data/splits/eurosat.json",
                  source="torchvision.datasets.EuroSAT")
def _load_eurosat(data_root: Path, download: bool, split_file: Path | None = None, **_) -> _Raw:
    from torchvision.datasets import EuroSAT

    where = data_root / "eurosat" / "2750"
    ds = _torchvision_call("eurosat", data_root, where, download,
                           lambda: EuroSAT(str(data_root), download=download))
    split_path = Path(split_file or SPLITS_DIR / "eurosat.json")
    doc = read_split_file(split_path)
    files = [p for p, _ in ds.samples]
    labels = np.asarray(ds.targets, np.int64)
    _check_counts("eurosat", str(where), ds.classes, labels, doc, split_path)
    train, test = _apply_split(labels, files, None, doc["train"], doc["test"])
    return _Raw(train, test, list(ds.classes), f"torchvision.datasets.EuroSAT at {where}",
                f"committed 80/20 {split_path.name} (seed {doc.get('seed')})",
                fingerprint=[hashlib.sha256(split_path.read_bytes()).hexdigest()])


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    gray = _round_half_up(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1), np.asarray(d.target, np.int64)


@register_dataset("digits", cache_size=8, split="committed 80/20 precompute/data/splits/digits.json",
                  source="sklearn.datasets.load_digits")
def _load_digits(data_root: Path, download: bool, split_file: Path | None = None, **_) -> _Raw:
    import sklearn

    images, labels = _digits_arrays()
    classes = [str(i) for i in range(10)]
    split_path = Path(split_file or SPLITS_DIR / "digits.json")
    doc = read_split_file(split_path)
    _check_counts("digits", "sklearn.datasets.load_digits", classes, labels, doc, split_path)
    train, test = _apply_split(labels, None, images, doc["train"], doc["test"])
    return _Raw(train, test, classes, f"sklearn {sklearn.__version__} load_digits (8x8, 0..16 -> 0..255)",
                f"committed 80/20 {split_path.name} (seed {doc.get('seed')})",
                fingerprint=[hashlib.sha256(images.tobytes()).hexdigest(),
                             hashlib.sha256(split_path.read_bytes()).hexdigest()])


SYNTHETIC_PREFIX = "synthetic:"
SYNTHETIC_NAME = "synthetic:N@SIZE"
SYNTHETIC_CLASSES = 10
SYNTHETIC_TEST_FRACTION = 1 / 6  # CIFAR-10's 50,000 : 10,000, so synthetic:60000@32 is CIFAR-10's size
SYNTHETIC_MAX_BYTES = 16 * 2**30


def parse_synthetic(name: str) -> tuple[int, int]:
    """``synthetic:N@SIZE`` -> (N, SIZE), or a one-line DatasetError saying what was expected."""
    body = name[len(SYNTHETIC_PREFIX):]
    n_text, at, size_text = body.partition("@")
    hint = "expected synthetic:N@SIZE with N >= 20 images and SIZE in 1..4096 pixels, e.g. synthetic:60000@32"
    if not at or not n_text.isdigit() or not size_text.isdigit():
        raise DatasetError(f"malformed dataset {name!r}; {hint}")
    n, size = int(n_text), int(size_text)
    if n < 2 * SYNTHETIC_CLASSES or not 1 <= size <= 4096:
        raise DatasetError(f"dataset {name!r} out of range; {hint}")
    if n * size * size * 3 > SYNTHETIC_MAX_BYTES:
        raise DatasetError(f"dataset {name!r} would hold {n * size * size * 3 / 2**30:.1f} GiB of images "
                           f"(at most {SYNTHETIC_MAX_BYTES / 2**30:.0f} GiB); use fewer or smaller images")
    return n, size


def synthetic_arrays(n: int, size: int, n_classes: int = SYNTHETIC_CLASSES,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform random uint8 RGB images (size x size) and balanced labels: with
    ``numpy.random.default_rng(seed)``, labels = permutation of ``arange(n) % n_classes``, then
    the images in one ``integers(0, 256)`` draw."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n, dtype=np.int64) % n_classes)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return images, labels


@register_dataset(SYNTHETIC_NAME, cache_size=0, cached=False,
                  split="stratified_split(labels, test_fraction=1/6, seed=0): 5:1 like CIFAR-10",
                  source="random uint8 images, numpy default_rng(0), 10 balanced classes")
def _load_synthetic(n: int, size: int, **_) -> _Raw:
    """A stand-in of a real dataset's size and resolution for timing (``precompute estimate``, the
    benchmark): random images, so scores are at chance; nothing is read, decoded or cached."""
    images, labels = synthetic_arrays(n, size)
    tr, te = stratified_split(labels, SYNTHETIC_TEST_FRACTION, seed=0)
    train, test = _apply_split(labels, None, images, tr, te)
    return _Raw(train, test, [str(i) for i in range(SYNTHETIC_CLASSES)],
                f"synthetic: {n} random uint8 images at {size}x{size}, numpy default_rng(0)",
                "5:1 stratified_split(test_fraction=1/6, seed=0)")


def _image_folder(path: Path, what: str):
    """(classes, files, labels) of one class-folder tree, via torchvision's ImageFolder rules."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(path)
    except FileNotFoundError:
        raise DatasetError(f"{what} {path} is empty: expected class sub-folders holding images "
                           f"({', '.join(IMG_EXTENSIONS)})") from None
    samples = make_dataset(str(path), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    labels = np.asarray([t for _, t in samples], np.int64)
    empty = [c for c, n in zip(classes, np.bincount(labels, minlength=len(classes))) if n == 0]
    if empty:
        raise DatasetError(f"class {', '.join(map(repr, empty))} in {path} has no image "
                           f"({', '.join(IMG_EXTENSIONS)})")
    return classes, [p for p, _ in samples], labels


#: a backbone is chosen by how well its features tell classes apart: one class leaves nothing to tell
MIN_CLASSES = 2


def one_class_message(what: str, classes: Sequence[str]) -> str:
    return (f"{what} has {len(classes)} class{'' if len(classes) == 1 else 'es'}"
            f"{' (' + ', '.join(map(repr, classes)) + ')' if classes else ''}: choosing a backbone needs at "
            f"least {MIN_CLASSES} classes to tell apart (with one, every backbone scores 1.0); add a folder per class")


def check_folder(path: Path) -> None:
    """``path`` is a folder holding sub-folders, else a one-line :class:`DatasetError` (checked
    before anything is loaded: ``precompute run``/``search`` fail fast on it)."""
    if not path.is_dir():
        raise DatasetError(f"image folder {path} not found; expected class sub-folders "
                           "(or train/ and test/ holding them)")
    if not any(p.is_dir() for p in path.iterdir()):
        raise DatasetError(f"image folder {path} is empty: expected class sub-folders "
                           "(or train/ and test/ holding them)")
    has_train, has_test = (path / "train").is_dir(), (path / "test").is_dir()
    tree = path / "train" if has_train else path
    classes = sorted(p.name for p in tree.iterdir() if p.is_dir())  # torchvision's find_classes rule
    if has_train == has_test and len(classes) < MIN_CLASSES:  # (one without the other: the loader says so)
        raise DatasetError(one_class_message(f"image folder {tree}", classes))


def _load_folder(path: Path, **_) -> _Raw:
    check_folder(path)
    has_train, has_test = (path / "train").is_dir(), (path / "test").is_dir()
    if has_train != has_test:
        raise DatasetError(f"image folder {path} has {'train/' if has_train else 'test/'} but no "
                           f"{'test/' if has_train else 'train/'}; give both, or only class sub-folders")
    if has_train:
        classes, train_files, train_labels = _image_folder(path / "train", "train folder")
        test_classes, test_files, test_labels = _image_folder(path / "test", "test folder")
        if classes != test_classes:
            only_tr = sorted(set(classes) - set(test_classes))
            only_te = sorted(set(test_classes) - set(classes))
            raise DatasetError(f"train and test folders in {path} have different classes: "
                               f"only in train: {', '.join(only_tr) or '-'}; "
                               f"only in test: {', '.join(only_te) or '-'}")
        return _Raw(_Split(train_labels, train_files), _Split(test_labels, test_files), classes,
                    f"ImageFolder {path}", "train/ and test/ folders")
    classes, files, labels = _image_folder(path, "image folder")
    tr, te = stratified_split(labels, TEST_FRACTION, FOLDER_SPLIT_SEED)
    train, test = _apply_split(labels, files, None, tr, te)
    return _Raw(train, test, classes, f"ImageFolder {path}",
                f"80/20 stratified_split seed {FOLDER_SPLIT_SEED}")


FOLDER_SPEC = DatasetSpec(f"{FOLDER_PREFIX}PATH", _load_folder, 256,
                          "train/ + test/, or one tree split 80/20 (stratified_split, seed 0)",
                          "torchvision ImageFolder rules")


def resolve(name: str) -> tuple[str, DatasetSpec, dict]:
    """Canonical name, registry entry and extra loader arguments for a dataset name."""
    if name.startswith(FOLDER_PREFIX):
        raw = name[len(FOLDER_PREFIX):]
        if not raw:
            raise DatasetError("folder: needs a path, e.g. folder:/data/my_images")
        path = Path(raw).expanduser().resolve()
        return f"{FOLDER_PREFIX}{path}", FOLDER_SPEC, {"path": path}
    if name.startswith(SYNTHETIC_PREFIX):
        n, size = parse_synthetic(name)
        spec = dataclasses.replace(DATASETS[SYNTHETIC_NAME], cache_size=size)
        return f"{SYNTHETIC_PREFIX}{n}@{size}", spec, {"n": n, "size": size}
    if name not in DATASETS:
        raise unknown("dataset", name, dataset_names())
    return name, DATASETS[name], {}


# --------------------------------------------------------------------------- decoding
def _to_uint8(img):
    """Any PIL mode -> 8-bit RGB PIL image (16-bit / 32-bit / float scaled, alpha dropped)."""
    from PIL import Image

    mode = img.mode
    if mode in ("RGB",):
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16") or (a.min() >= 0 and a.max() > 255 and a.max() <= 65535):
            a = a / 257.0
        elif a.min() < 0 or a.max() > 255:
            lo, hi = a.min(), a.max()
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        g = _round_half_up(a).clip(0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(g[..., None], 3, axis=-1))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def to_rgb(img, size: int) -> np.ndarray:
    """PIL image -> uint8 (size, size, 3): 8-bit RGB, shorter side to ``size`` + centre crop."""
    from PIL import Image

    img = _to_uint8(img)
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


def _decode_file(path: str, size: int) -> np.ndarray | str:
    """Decoded image, or the reason (one line) why the file was skipped."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.format == "JPEG":  # DCT-domain downscale (to >= size) for large photos
                img.draft(None, (size, size))
            img.load()
            return to_rgb(img, size)
    except Exception as err:  # any decoder failure means a corrupt / truncated file
        return " ".join(f"{type(err).__name__}: {err}".split())


def _decode(split: _Split, size: int, skipped: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    if split.arrays is not None:
        arr = split.arrays
        if arr.shape[1:] != (size, size, 3):
            from PIL import Image
            arr = np.stack([to_rgb(Image.fromarray(a), size) for a in arr]) if len(arr) else \
                np.zeros((0, size, size, 3), np.uint8)
        return np.ascontiguousarray(arr, dtype=np.uint8), split.labels.astype(np.int64)
    out = np.zeros((len(split), size, size, 3), np.uint8)
    ok = np.ones(len(split), bool)
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        for i, res in enumerate(pool.map(lambda p: _decode_file(p, size), split.files)):
            if isinstance(res, str):
                ok[i] = False
                skipped.append((split.files[i], res))
            else:
                out[i] = res
    if ok.all():
        return out, split.labels.astype(np.int64)
    return out[ok], split.labels[ok].astype(np.int64)


# --------------------------------------------------------------------------- cache
def _file_stats(files: Sequence[str]) -> list[str]:
    parts = []
    for f in files:
        try:
            st = os.stat(f)
            parts.append(f"{f}\0{st.st_size}\0{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{f}\0missing")
    return parts


def _fingerprint(name: str, raw: _Raw, size: int) -> str:
    h = hashlib.sha256()
    for part in [f"v{CACHE_VERSION}", name, str(size), *raw.classes, *raw.fingerprint]:
        h.update(part.encode() + b"\n")
    for split in (raw.train, raw.test):
        h.update(split.labels.astype(np.int64).tobytes())
        if split.files is not None:
            h.update("\n".join(_file_stats(split.files)).encode())
        elif split.arrays is not None:
            h.update(str(split.arrays.shape).encode())
    return h.hexdigest()[:16]


def cache_path(cache_dir: str | Path, name: str, size: int, fingerprint: str) -> Path:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("_")[-80:]
    return Path(cache_dir) / f"{slug}-{size}-{fingerprint}.npz"


def _save_cache(path: Path, ds: ImageSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)  # 0666 & ~umask: a shared cache readable by colleagues (not mkstemp's 0600)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, train_images=ds.train_images, train_labels=ds.train_labels,
                     test_images=ds.test_images, test_labels=ds.test_labels,
                     classes=np.asarray(ds.classes, dtype=str),
                     skipped=np.asarray(ds.skipped, dtype=str).reshape(-1, 2),
                     meta=np.asarray(json.dumps({"name": ds.name, "source": ds.source,
                                                 "split": ds.split})))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_cache(path: Path) -> ImageSet:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return ImageSet(meta["name"], z["train_images"], z["train_labels"], z["test_images"],
                        z["test_labels"], z["classes"].tolist(),
                        [tuple(r) for r in z["skipped"].tolist()], meta["source"], meta["split"])


def _warn_skipped(ds: ImageSet) -> None:
    if ds.skipped:
        first, reason = ds.skipped[0]
        print(f"warning: {ds.name}: skipped {len(ds.skipped)} unreadable image(s); "
              f"first: {first} ({reason})", file=sys.stderr)


# --------------------------------------------------------------------------- entry point
def load_dataset(name: str, data_root: str | Path = "data/datasets", download: bool = False,
                 cache_dir: str | Path = "data/cache", cache_size: int | None = None,
                 split_file: str | Path | None = None) -> ImageSet:
    """Load a dataset by registry name (or ``folder:PATH``), decoding once into a uint8 cache.

    ``cache_size`` overrides the registry's cache size; ``split_file`` overrides the committed
    split file (eurosat, digits).  See the module docstring for the bad-input decision.
    """
    canonical, spec, extra = resolve(name)
    size = int(cache_size or spec.cache_size)
    if size < 1:
        raise DatasetError(f"cache_size must be a positive number of pixels, got {cache_size}")
    raw = spec.loader(data_root=Path(data_root).expanduser(), download=download,
                      split_file=None if split_file is None else Path(split_file), **extra)
    if len(raw.classes) < MIN_CLASSES:
        raise DatasetError(one_class_message(canonical, raw.classes))
    if not spec.cached:  # generated in memory (synthetic:N@SIZE): nothing to decode or cache
        tr_x, tr_y = _decode(raw.train, size, [])
        te_x, te_y = _decode(raw.test, size, [])
        return ImageSet(canonical, tr_x, tr_y, te_x, te_y, list(raw.classes), [], raw.source, raw.split)
    path = cache_path(cache_dir, canonical, size, _fingerprint(canonical, raw, size))
    if path.is_file():
        try:
            ds = _load_cache(path)
            _warn_skipped(ds)
            return ds
        except (OSError, ValueError, KeyError):
            pass  # an unreadable cache is rebuilt
    skipped: list[tuple[str, str]] = []
    tr_x, tr_y = _decode(raw.train, size, skipped)
    te_x, te_y = _decode(raw.test, size, skipped)
    ds = ImageSet(canonical, tr_x, tr_y, te_x, te_y, list(raw.classes), skipped, raw.source, raw.split)
    if len(tr_y) + len(te_y) == 0:
        raise DatasetError(f"{canonical}: no readable image at all ({len(skipped)} unreadable, "
                           f"first: {skipped[0][0] if skipped else '-'})")
    empty = [c for c, n in zip(ds.classes, np.bincount(tr_y, minlength=ds.n_classes)) if n == 0]
    if empty:
        raise DatasetError(f"{canonical}: class {', '.join(map(repr, empty[:10]))} has no readable "
                           f"train image" + (f" ({len(empty)} classes in all)" if len(empty) > 10 else ""))
    if len(te_y) == 0:
        raise DatasetError(f"{canonical}: no readable test image")
    _warn_skipped(ds)
    _save_cache(path, ds)
    return ds


# --------------------------------------------------------------------------- subsets
class SubsetError(DatasetError):
    """A fraction the dataset cannot give (a class would have no test image at it)."""


def subset_size(n: int, fraction: float) -> int:
    """``floor(fraction * n + 0.5)``: the images a fraction of ``n`` keeps, before any per-class minimum."""
    return int(_round_half_up(float(fraction) * n))


def _subset_order(labels: np.ndarray, seed: int, min_per_class: int) -> tuple[np.ndarray, int]:
    """The one stratified ordering of all indices of ``labels`` for ``seed`` (see :func:`nested_subsets`)
    and how many forced images (the first ``min_per_class`` of every class) lead it."""
    n = len(labels)
    rng = np.random.default_rng(int(seed))
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    k = len(counts)
    shuffled = rng.permutation(n)
    grouped = shuffled[np.argsort(inv[shuffled], kind="stable")]  # by class, random within
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - np.repeat(starts, counts)
    cls = inv[grouped]
    u = rng.random(k)
    key = (rank + u[cls]) / counts[cls]
    forced = rank < min(int(min_per_class), n)
    key = np.where(forced, -1.0, key)  # forced images first, in random order
    tie = rng.random(n)
    return grouped[np.lexsort((tie, key))], int(forced.sum())


def nested_subsets(labels: np.ndarray, fractions: Sequence[float], seed: int,
                   min_per_class: int = 1) -> dict[float, np.ndarray]:
    """Stratified, nested subsets: fraction -> sorted index array.

    One stratified ordering of all indices per seed; each fraction takes a prefix of it, so
    smaller fractions are subsets of larger ones.  Ordering: the first ``min_per_class``
    images of every class (classes shuffled) come first, then image j of class c (shuffled
    within c) gets key ``(j + u_c) / n_c`` with ``u_c ~ U(0, 1)`` (systematic sampling), so
    any prefix holds each class within about one image of its share.  Fraction f keeps
    ``max(floor(f*N + 0.5), sum_c min(min_per_class, n_c), 1)`` images.  It says nothing about a
    subset smaller than the number of classes: :func:`check_fractions` refuses the fractions a run
    cannot use, and the sweep says once what the per-class minimum did.
    """
    labels = np.asarray(labels)
    fr = np.asarray(list(fractions), dtype=np.float64)
    if fr.size == 0 or not np.all((fr > 0) & (fr <= 1)):
        raise VibesError(f"fractions must be in (0, 1], got {list(fractions)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise VibesError(f"seed must be a non-negative integer, got {seed!r}")
    n = len(labels)
    if n == 0:
        raise VibesError("cannot subsample an empty split")
    order, n_forced = _subset_order(labels, int(seed), min_per_class)
    return {f: np.sort(order[:min(n, max(subset_size(n, f), n_forced, 1))]) for f in fr.tolist()}


def subset_plan(ds: ImageSet, fractions: Sequence[float], seeds: Sequence[int]
                ) -> dict[int, dict[float, tuple[np.ndarray, np.ndarray]]]:
    """seed -> fraction -> (train_idx, test_idx): train keeps >= 1 image per class, both stratified."""
    plan: dict[int, dict[float, tuple[np.ndarray, np.ndarray]]] = {}
    for seed in seeds:
        tr = nested_subsets(ds.train_labels, fractions, seed, min_per_class=1)
        te = nested_subsets(ds.test_labels, fractions, seed, min_per_class=0)
        plan[int(seed)] = {f: (tr[f], te[f]) for f in tr}
    return plan


def smallest_fraction(keep: int, n: int) -> float:
    """The smallest fraction, rounded up to 4 decimals, at which ``floor(f * n + 0.5) >= keep``
    ((keep - 0.5) / n; 1e-9 absorbs the float error of a quotient that is already round: 3.5 / 100)."""
    return math.ceil((keep - 0.5) / n * 1e4 - 1e-9) / 1e4


def covering_fraction(labels: np.ndarray, seeds: Sequence[int]) -> float:
    """The smallest fraction, rounded up to 4 decimals, whose stratified subset (``min_per_class=0``,
    as the test split's) holds every class present in ``labels`` for every seed of ``seeds``."""
    labels = np.asarray(labels)
    n = len(labels)
    need = 1
    for seed in seeds or [0]:
        order, _ = _subset_order(labels, int(seed), 0)
        _, first = np.unique(labels[order], return_index=True)  # each class's first place in the order
        need = max(need, int(first.max()) + 1)
    f = min(1.0, smallest_fraction(need, n))
    while f < 1.0 and subset_size(n, f) < need:  # float rounding: never below what it must keep
        f = min(1.0, round(f + 1e-4, 4))
    return float(f)


def check_fractions(ds: ImageSet, fractions: Sequence[float], seeds: Sequence[int],
                    scored_on_test: Sequence[str], option: str | None = "--fractions", hint: str = "") -> None:
    """Refuse (one line, :class:`SubsetError`) a fraction at which some class has no test image
    whatever the seed, when an evaluator (``scored_on_test``: their names) scores on the test split:
    the test subset ``floor(f * n_test + 0.5)`` holds fewer images than the dataset has classes
    (or the whole test split lacks a class).  Accuracy on such a subset says nothing about the
    missing classes, and on a tiny one every backbone ties (``precompute run`` would still fill the
    oracle, ``search`` still name a winner).  The message names the fraction, what it keeps, and
    the smallest fraction whose test subsets hold every class for these seeds (:func:`covering_fraction`).
    A fraction at which one seed's draw misses a rare class but which could hold every class is
    not refused (``precompute run`` says it once).  ``option`` None: no fix is spelt out (the live search's
    fractions come from several options; ``hint`` names them)."""
    if not scored_on_test:
        return
    n_test, k = len(ds.test_labels), int(ds.n_classes)
    who = ", ".join(scored_on_test)
    absent = [c for c, m in zip(ds.classes, np.bincount(ds.test_labels, minlength=k)) if m == 0]
    if absent:
        raise SubsetError(f"{ds.name}: class {', '.join(map(repr, absent[:5]))}"
                          f"{f' (and {len(absent) - 5} more)' if len(absent) > 5 else ''} has no test image, so "
                          f"{who} cannot score it at any fraction; give it test images (a test/ folder, or more "
                          f"images in its class folder: the 80/20 split keeps at least one for training)")
    bad = sorted({float(f) for f in fractions if subset_size(n_test, f) < k}, reverse=True)
    if not bad:
        return
    smallest = covering_fraction(ds.test_labels, seeds)
    kept = [float(f) for f in sorted(set(map(float, fractions)), reverse=True) if f not in bad]
    with_smallest = sorted(set(kept) | {smallest}, reverse=True)
    fix = " or ".join(dict.fromkeys(f"{option} {','.join(repr(x) for x in fs)}"
                                    for fs in (kept, with_smallest) if fs and option))
    f = bad[0]
    n = subset_size(n_test, f)
    more = f" (and {', '.join(f'{x:g}' for x in bad[1:])})" if len(bad) > 1 else ""
    raise SubsetError(f"fraction {f:g}{more} of {ds.name} keeps {n} of its {n_test} test images for {k} classes: "
                      f"at least {k - n} classes would have no test image to score {who} on; the smallest "
                      f"fraction that keeps every class in the test split is {smallest:g}"
                      + (f": e.g. {fix}" if fix else "")
                      + (f"; {hint}" if hint else ""))


def missing_test_classes(ds: ImageSet, plan: dict[int, dict[float, tuple[np.ndarray, np.ndarray]]]
                         ) -> dict[float, list[int]]:
    """fraction -> per seed, how many classes its test subset lacks (only fractions where a seed lacks any)."""
    out: dict[float, list[int]] = {}
    k = int(ds.n_classes)
    for by_f in plan.values():
        for f, (_, te) in by_f.items():
            lack = k - len(np.unique(ds.test_labels[te]))
            out.setdefault(f, []).append(lack)
    return {f: v for f, v in out.items() if any(v)}


# --------------------------------------------------------------------------- committed splits
EUROSAT_COUNTS = {"AnnualCrop": 3000, "Forest": 3000, "HerbaceousVegetation": 3000,
                  "Highway": 2500, "Industrial": 2500, "Pasture": 2000, "PermanentCrop": 2500,
                  "Residential": 3000, "River": 2500, "SeaLake": 3000}


def write_committed_splits(out_dir: str | Path = SPLITS_DIR) -> None:
    """Regenerate ``precompute/data/splits/{eurosat,digits}.json`` (``python -m precompute.datasets``)."""
    out_dir = Path(out_dir)
    classes = sorted(EUROSAT_COUNTS)
    labels = np.repeat(np.arange(len(classes)), [EUROSAT_COUNTS[c] for c in classes])
    write_split_file(out_dir / "eurosat.json", "eurosat", labels, classes, seed=0,
                     order="torchvision.datasets.EuroSAT index order (ImageFolder: sorted class "
                           "folders, sorted files within each)")
    _, digit_labels = _digits_arrays()
    write_split_file(out_dir / "digits.json", "digits", digit_labels, [str(i) for i in range(10)],
                     seed=0, order="sklearn.datasets.load_digits() order")


if __name__ == "__main__":
    write_committed_splits()
    print(f"wrote {SPLITS_DIR / 'eurosat.json'} and {SPLITS_DIR / 'digits.json'}")
