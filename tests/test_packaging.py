"""A regular (non-editable) install carries the committed splits as package data (issue 7, item 6):
the package is installed with pip into a fresh target folder from a copy of the project, and a
python started elsewhere, with only that target (and the venv's dependencies) importable, loads
``digits`` for real and reads ``eurosat``'s split through the real loader (its image tree is
stood in by a listing with EuroSAT's per-class counts: only the split file is under test)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    target = sys.argv[1]
    repo = Path(sys.argv[2]).resolve()  # the source tree must not be importable
    sys.path = [target] + [p for p in sys.path if p not in ("", ".") and Path(p).resolve() != repo]
    import numpy as np
    import precompute.datasets as D
    assert D.__file__.startswith(target), D.__file__
    out = {"splits_dir": str(D.SPLITS_DIR), "files": sorted(p.name for p in D.SPLITS_DIR.glob("*.json"))}
    ds = D.load_dataset("digits", cache_dir=sys.argv[3])
    out["digits"] = [len(ds.train_labels), len(ds.test_labels), ds.split]

    import torchvision.datasets

    class StandIn:  # EuroSAT's listing (sorted class folders, sorted files), no images read
        def __init__(self, root, download=False):
            self.classes = sorted(D.EUROSAT_COUNTS)
            self.targets = [k for k, c in enumerate(self.classes) for _ in range(D.EUROSAT_COUNTS[c])]
            self.samples = [(f"{root}/eurosat/2750/{self.classes[t]}/{i}.jpg", t) for i, t in enumerate(self.targets)]

    torchvision.datasets.EuroSAT = StandIn
    raw = D._load_eurosat(data_root=Path(sys.argv[3]), download=False)
    out["eurosat"] = [len(raw.train), len(raw.test), raw.split]
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_non_editable_install_loads_committed_splits(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for pkg in ("shared", "simulate", "precompute"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=ignore)
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-compile", "--target", str(target), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    assert not (target / "precompute" / "__init__.py").is_symlink()
    # every module of the source tree travels, subpackages too (precompute.cli, precompute.search)
    sources = {p.relative_to(src).as_posix() for pkg in ("shared", "simulate", "precompute")
               for p in (src / pkg).rglob("*.py")}
    installed = {p.relative_to(target).as_posix() for pkg in ("shared", "simulate", "precompute")
                 for p in (target / pkg).rglob("*.py")}
    assert sources - installed == set() and "precompute/cli/__main__.py" in installed
    cli = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                          "from precompute.cli import main; sys.exit(main(['search', '--help']))", str(target)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and "Examples:" in cli.stdout, cli.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-c", PROBE, str(target), str(REPO), str(elsewhere / "cache")],
                          cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["splits_dir"] == str(target / "precompute" / "data" / "splits")
    assert out["files"] == ["digits.json", "eurosat.json"]
    committed = {n: json.loads((REPO / "precompute" / "data" / "splits" / f"{n}.json").read_text())
                 for n in ("digits", "eurosat")}
    for name in ("digits", "eurosat"):
        n_train, n_test, split = out[name]
        assert (n_train, n_test) == (len(committed[name]["train"]), len(committed[name]["test"]))
        assert split == f"committed 80/20 {name}.json (seed 0)"
    assert out["digits"][:2] == [1438, 359] and out["eurosat"][:2] == [21600, 5400]
