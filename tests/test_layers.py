"""The layering, read off the source with ``ast`` (nothing is imported or run):

* no import cycle among the modules of ``precompute``, ``simulate`` and ``shared`` — every import
  statement counts, at the top of a module or inside a function;
* ``precompute`` never imports ``simulate`` (the live search uses ``shared`` for the specs,
  samplers and the successive-halving schedule); ``simulate`` and ``shared`` never import torch or
  timm, nor ``precompute``;
* no domain module imports the command line (``precompute.cli``): it is the top layer;
* ``bench`` (the benchmarks, ``bench/gpu/`` the parts of ``bench_gpu.py``) sits above both phases: it
  may import any of them, none of them imports it, and its modules import each other as ``bench.…``
  (never by a bare script name, which would hide the edge from these checks);
* a function-local import of a project module says why it is local (a comment naming it lazy).

A test of the checker itself builds a cycle in a temporary tree and expects it found.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("precompute", "simulate", "shared", "bench")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def resolve(name: str, node: ast.ImportFrom | ast.Import, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """The project modules an import statement in module ``name`` names: (module, line, local)."""
    out = []
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = name.split(".")
            is_pkg = known[name].name == "__init__.py"
            anchor = pkg if is_pkg else pkg[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        # `from a.b import c`: a.b.c when c is a module, else a.b
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    for t in targets:
        while t and t not in known:
            t = t.rpartition(".")[0]
        if t:
            out.append(t)
    return sorted(set(out))


def import_graph(root: Path):
    """module -> {imported module: [(line, local?)]} over the project's modules."""
    known = modules(root)
    graph: dict[str, dict[str, list]] = {m: {} for m in known}
    local_nodes: dict[str, list] = {m: [] for m in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        inside = {id(sub) for f in funcs for sub in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                local = id(node) in inside
                for t in resolve(name, node, known):
                    if t != name:
                        graph[name].setdefault(t, []).append((node.lineno, local))
                if local and resolve(name, node, known):
                    local_nodes[name].append(node)
    return graph, local_nodes, known


def cycles(graph: dict[str, dict]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def all_imports(path: Path) -> list[str]:
    """Every module name an import statement in ``path`` names (third-party ones too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def test_no_import_cycle():
    graph, _, _ = import_graph(ROOT)
    assert cycles(graph) == [], cycles(graph)


def package_tree(root: Path, files: dict[str, str]) -> Path:
    """Every package of PACKAGES under ``root`` (empty), and ``files`` ({relative path: source}) in them."""
    for path, text in {**{f"{pkg}/__init__.py": "" for pkg in PACKAGES}, **files}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def test_the_checker_finds_a_cycle(tmp_path):
    package_tree(tmp_path, {"precompute/a.py": "from precompute import b\n",
                            "precompute/b.py": "def f():\n    from .c import x\n",
                            "precompute/c.py": "import precompute.a\nx = 1\n"})
    graph, _, _ = import_graph(tmp_path)
    assert cycles(graph) == [["precompute.a", "precompute.b", "precompute.c"]]


def test_phases_keep_their_boundary():
    scripts = {p.stem for p in (ROOT / "bench").glob("*.py")}
    for name, path in modules(ROOT).items():
        imported = all_imports(path)
        top = {i.split(".")[0] for i in imported}
        if name.startswith("bench"):  # the benchmarks measure both phases: they may import any of them
            assert not top & scripts, f"{name} imports {top & scripts} by a bare name: import bench.<script>"
            continue
        assert "bench" not in top, f"{name} imports bench"
        if name.startswith("precompute"):
            assert "simulate" not in top, f"{name} imports simulate"
        else:
            assert not top & {"torch", "timm", "torchvision", "precompute"}, f"{name} imports {top}"


def test_no_domain_module_imports_the_command_line():
    graph, _, _ = import_graph(ROOT)
    for name, targets in graph.items():
        if not name.startswith("precompute.cli"):
            bad = [t for t in targets if t == "precompute.cli" or t.startswith("precompute.cli.")]
            assert not bad, f"{name} imports {bad}"


def test_function_local_project_imports_say_why():
    _, local_nodes, known = import_graph(ROOT)
    missing = []
    for name, nodes in local_nodes.items():
        lines = known[name].read_text().splitlines()
        by_line = sorted(nodes, key=lambda n: n.lineno)
        first_of_group = [n for i, n in enumerate(by_line)
                          if i == 0 or n.lineno > getattr(by_line[i - 1], "end_lineno", by_line[i - 1].lineno) + 1]
        for n in first_of_group:
            context = " ".join(lines[max(0, n.lineno - 2): n.lineno])
            if "lazy" not in context:
                missing.append(f"{name}:{n.lineno}: {lines[n.lineno - 1].strip()}")
    assert not missing, "function-local imports without a reason:\n" + "\n".join(missing)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_is_read(package):
    assert any(m.startswith(package) for m in modules(ROOT))


# ------------------------------------------------------------------------------------------------
# A function-local import of a project module is worth it only when that module brings in a heavy
# third-party library the importer does not already load at its top (issue 25): the check computes
# each module's import closure from the source (top-level imports only, parent packages included),
# it does not trust a comment.
HEAVY = frozenset({"torch", "torchvision", "timm", "numpy", "polars", "pyarrow", "plotly", "sklearn", "scipy",
                   "h5py", "pandas", "PIL", "dask", "distributed", "dask_jobqueue", "dask_cuda", "submitit",
                   "tqdm", "mpmath"})


def _top_level_imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported: module level, inside if/try blocks, but
    not inside functions, classes' methods or ``if TYPE_CHECKING:``."""
    out = []

    def walk(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append(node)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try):
                walk(node.body)
                walk(node.orelse)
                walk(node.finalbody)
                for h in node.handlers:
                    walk(h.body)
            elif isinstance(node, ast.ClassDef):
                walk(node.body)
    walk(ast.parse(path.read_text()).body)
    return out


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_closures(root: Path) -> dict[str, frozenset[str]]:
    """module -> the third-party top-level packages importing it loads (through its project imports)."""
    known = modules(root)
    direct: dict[str, tuple[set[str], set[str]]] = {}
    for name, path in known.items():
        project, third = set(), set()
        for node in _top_level_imports(path):
            hits = resolve(name, node, known)
            project.update(p for h in hits for p in _parents(h) if p in known and p != name)
            if isinstance(node, ast.Import):
                third.update(a.name.split(".")[0] for a in node.names if a.name.split(".")[0] not in PACKAGES)
            elif node.module and not node.level and node.module.split(".")[0] not in PACKAGES:
                third.add(node.module.split(".")[0])
        project.update(p for p in _parents(name)[:-1] if p in known)
        direct[name] = (project, third)
    closures: dict[str, frozenset[str]] = {}
    for name in known:
        seen, todo, third = {name}, [name], set()
        while todo:
            m = todo.pop()
            third |= direct[m][1]
            for p in direct[m][0] - seen:
                seen.add(p)
                todo.append(p)
        closures[name] = frozenset(third)
    return closures


def needless_local_imports(root: Path) -> list[str]:
    """Each function-local import of a project module whose closure adds no heavy library to the
    importer's own closure: ``module:line: statement (adds nothing heavy)``."""
    _, local_nodes, known = import_graph(root)
    closures = import_closures(root)
    out = []
    for name, nodes in local_nodes.items():
        lines = known[name].read_text().splitlines()
        for node in nodes:
            brought = set().union(*(closures[t] for t in resolve(name, node, known)))
            if not (brought - closures[name]) & HEAVY:
                out.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return out


def test_local_imports_keep_a_heavy_library_out_of_start_up():
    needless = needless_local_imports(ROOT)
    assert not needless, "function-local imports that keep nothing heavy out (move them to the top):\n" + \
        "\n".join(needless)


def test_the_closure_checker_tells_a_needless_local_import(tmp_path):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "shared" / "light.py").write_text("import json\n")
    (tmp_path / "shared" / "heavy.py").write_text("import polars as pl\n")
    (tmp_path / "shared" / "via.py").write_text("from shared import heavy\n")
    (tmp_path / "simulate" / "a.py").write_text(
        "def f():\n    from shared import light  # lazy\n\ndef g():\n    from shared.via import heavy  # lazy\n")
    (tmp_path / "simulate" / "b.py").write_text("import polars\n\ndef f():\n    from shared import heavy  # lazy\n")
    assert import_closures(tmp_path)["shared.via"] == frozenset({"polars"})
    assert needless_local_imports(tmp_path) == ["simulate.a:2: from shared import light  # lazy",
                                                "simulate.b:4: from shared import heavy  # lazy"]
