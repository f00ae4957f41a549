"""What a module says it exports is there: every name of every ``__all__`` in ``shared``, ``simulate``
and ``precompute`` resolves once the module is imported (a name a package binds on first use through
PEP 562's ``__getattr__``, as :mod:`precompute.search` does, included).  The ``__all__`` lists are read
with ``ast``, not from the modules, so a module that fails to import fails here too."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def exported() -> dict[str, list[str]]:
    """module -> the names of its literal ``__all__``."""
    out = {}
    for path in sorted(p for pkg in ("shared", "simulate", "precompute") for p in (ROOT / pkg).rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
                    and isinstance(node.value, (ast.List, ast.Tuple))):
                parts = list(path.relative_to(ROOT).with_suffix("").parts)
                name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                out[name] = [ast.literal_eval(e) for e in node.value.elts]
    return out


def test_every_exported_name_resolves():
    missing = [f"{module}.{name}" for module, names in exported().items()
               for name in names if not hasattr(importlib.import_module(module), name)]
    assert not missing, missing


def test_the_search_package_exports_what_its_users_call():
    """``precompute.search`` exports the names the command line, the benchmarks and the tests import from it,
    not the loop's internals (issue 25, item 3: it exported 27)."""
    assert sorted(exported()["precompute.search"]) == [
        "SearchConfig", "SearchError", "SearchResult", "WorkersTimeout", "parse_budget", "run_search",
        "sampler_pool", "search_order", "summary_lines", "wall_ratio"]


@pytest.mark.parametrize("module", ["precompute.search"])
def test_an_unknown_name_is_an_attribute_error(module):
    with pytest.raises(AttributeError):
        _ = importlib.import_module(module).no_such_name
