"""The two phases' boundary: simulate/ and shared/ never import torch or timm."""
from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

FORBIDDEN = ("torch", "timm", "torchvision")


def test_no_static_imports_of_torch_or_timm():
    offenders = []
    for pkg in ("simulate", "shared"):
        for path in (REPO / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
                         else [])
                offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                              if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


BLOCKER = """
import sys
for name in ('torch', 'timm', 'torchvision'):
    sys.modules[name] = None  # as if not installed: import raises, find_spec says absent
import pkgutil, importlib
for pkg in ('shared', 'simulate'):
    mod = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):
        importlib.import_module(info.name)
from tests.conftest import random_oracle
random_oracle().write(sys.argv[1] + '/o.parquet')
from simulate.cli import main
sys.exit(main(['--oracle', sys.argv[1] + '/o.parquet', '--runs', '20', '--out', sys.argv[1] + '/out',
               '--evaluator', 'mlp', '--evaluator', 'silhouette@0.1']))
"""


def test_simulator_runs_with_torch_and_timm_blocked(tmp_path):
    p = subprocess.run([sys.executable, "-c", BLOCKER, str(tmp_path)], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "report.html").is_file()


def test_blocking_works():
    p = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; import torch"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "ModuleNotFoundError" in p.stderr
