"""Write tiny dataset fixtures in torchvision's real on-disk layouts (torchvision 0.29).

CIFAR-10 and Flowers102 check md5 sums of their files; the ``patch_*_md5`` helpers point
torchvision's class attributes at the fixtures' own sums (pytest ``monkeypatch``), so
torchvision's integrity logic still runs.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]


def md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_image(path: str | Path, h: int = 12, w: int = 12, seed: int = 0, fmt: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb(h, w, seed)).save(path, format=fmt)
    return path


# --------------------------------------------------------------------------- odd images
def write_corrupt(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image at all" * 10)
    return path


def write_truncated_jpeg(path: str | Path, size: int = 64) -> Path:
    path = Path(path)
    write_image(path, size, size, seed=3, fmt="JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_grayscale(path: str | Path, value: int = 100, size: int = 10) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8), mode="L").save(path)
    return Path(path)


def write_rgba(path: str | Path, color=(10, 20, 30), size: int = 10) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((size, size, 4), np.uint8)
    a[..., :3], a[..., 3] = color, 50
    Image.fromarray(a, mode="RGBA").save(path)
    return Path(path)


def write_palette(path: str | Path, size: int = 10) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(rgb(size, size, 5)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    im.info["transparency"] = 0
    im.save(path, transparency=0)
    return Path(path)


def write_16bit(path: str | Path, value: int = 65535, size: int = 10) -> Path:
    """16-bit grayscale PNG (PIL mode I;16) filled with ``value``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint16)).save(path)
    return Path(path)


def write_tiny(path: str | Path, color=(200, 10, 10)) -> Path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.array([[color]], np.uint8)).save(path)
    return Path(path)


# --------------------------------------------------------------------------- CIFAR-10
def write_cifar10(root: str | Path, per_class_per_batch: int = 1, test_per_class: int = 2) -> dict[str, str]:
    """``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``; returns md5 by name."""
    base = Path(root) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)

    def batch(name: str, per_class: int, seed: int):
        labels = np.repeat(np.arange(10), per_class).tolist()
        data = np.random.default_rng(seed).integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        entry = {"batch_label": name, "labels": labels, "data": data,
                 "filenames": [f"img_{seed}_{i}.png" for i in range(len(labels))]}
        with open(base / name, "wb") as f:
            pickle.dump(entry, f)

    for i in range(1, 6):
        batch(f"data_batch_{i}", per_class_per_batch, i)
    batch("test_batch", test_per_class, 99)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": 10, "num_vis": 3072}, f)
    return {p.name: md5(p) for p in base.iterdir()}


def patch_cifar_md5(monkeypatch, sums: dict[str, str]) -> None:
    from torchvision.datasets import CIFAR10

    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", sums[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": sums["batches.meta"]})


# --------------------------------------------------------------------------- GTSRB
def write_gtsrb(root: str | Path, n_classes: int = 3, train_per_class: int = 2,
                test_per_class: int = 2) -> Path:
    """``root/gtsrb/GTSRB/Training/000cc/*.ppm`` (+ GT-000cc.csv), ``Final_Test/Images/*.ppm``,
    ``root/gtsrb/GT-final_test.csv`` (';'-separated, Filename ... ClassId)."""
    base = Path(root) / "gtsrb"
    rows = []
    for c in range(n_classes):
        folder = base / "GTSRB" / "Training" / f"{c:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(train_per_class):
            write_image(folder / f"00000_{j:05d}.ppm", 20 + j, 24 + c, seed=100 * c + j)
        (folder / f"GT-{c:05d}.csv").write_text("Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n")
    test_dir = base / "GTSRB" / "Final_Test" / "Images"
    test_dir.mkdir(parents=True, exist_ok=True)
    k = 0
    for c in range(n_classes):
        for _ in range(test_per_class):
            name = f"{k:05d}.ppm"
            write_image(test_dir / name, 30, 28, seed=1000 + k)
            rows.append(f"{name};28;30;5;5;23;25;{c}")
            k += 1
    (base / "GT-final_test.csv").write_text(
        "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n" + "\n".join(rows) + "\n")
    return base


# --------------------------------------------------------------------------- Flowers102
def write_flowers102(root: str | Path, n_classes: int = 102, per_split: int = 2) -> dict[str, str]:
    """``root/flowers-102/jpg/image_00001.jpg ...``, ``imagelabels.mat`` (1-based labels),
    ``setid.mat`` (trnid, valid, tstid); returns md5 of the two .mat files."""
    from scipy.io import savemat

    base = Path(root) / "flowers-102"
    labels, ids = [], {"trnid": [], "valid": [], "tstid": []}
    image_id = 0
    for c in range(n_classes):
        for split in ("trnid", "valid", "tstid"):
            for _ in range(per_split):
                image_id += 1
                write_image(base / "jpg" / f"image_{image_id:05d}.jpg", 24, 32, seed=image_id, fmt="JPEG")
                labels.append(c + 1)
                ids[split].append(image_id)
    savemat(base / "imagelabels.mat", {"labels": np.asarray(labels, np.uint8)[None, :]})
    savemat(base / "setid.mat", {k: np.asarray(v, np.uint16)[None, :] for k, v in ids.items()})
    return {"imagelabels.mat": md5(base / "imagelabels.mat"), "setid.mat": md5(base / "setid.mat")}


def patch_flowers_md5(monkeypatch, sums: dict[str, str]) -> None:
    from torchvision.datasets import Flowers102

    fd = dict(Flowers102._file_dict)
    fd["label"] = ("imagelabels.mat", sums["imagelabels.mat"])
    fd["setid"] = ("setid.mat", sums["setid.mat"])
    monkeypatch.setattr(Flowers102, "_file_dict", fd)


# --------------------------------------------------------------------------- EuroSAT / folders
def write_eurosat(root: str | Path, counts: dict[str, int]) -> Path:
    """``root/eurosat/2750/<Class>/<Class>_<i>.jpg`` (64x64 JPEG like the real files)."""
    base = Path(root) / "eurosat" / "2750"
    for ci, (cls, n) in enumerate(sorted(counts.items())):
        (base / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(base / cls / f"{cls}_{i + 1}.jpg", 64, 64, seed=1000 * ci + i, fmt="JPEG")
    return base


def write_class_tree(root: str | Path, counts: dict[str, int], ext: str = "png", h: int = 16,
                     w: int = 20) -> Path:
    """``root/<class>/<i>.<ext>`` -- one ImageFolder tree."""
    root = Path(root)
    for ci, (cls, n) in enumerate(sorted(counts.items())):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(root / cls / f"{i:03d}.{ext}", h, w, seed=7000 + 100 * ci + i)
    return root
