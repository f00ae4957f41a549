"""The layering, read off the source with ``ast`` (nothing is imported or run):

* no import cycle among the modules of ``precompute``, ``simulate`` and ``shared`` — every import
  statement counts, at the top of a module or inside a function;
* ``precompute`` never imports ``simulate`` (the live search uses ``shared`` for the specs,
  samplers and the successive-halving schedule); ``simulate`` and ``shared`` never import torch or
  timm, nor ``precompute``;
* no domain module imports the command line (``precompute.cli``): it is the top layer;
* a function-local import of a project module says why it is local (a comment naming it lazy).

A test of the checker itself builds a cycle in a temporary tree and expects it found.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("precompute", "simulate", "shared")


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


def test_the_checker_finds_a_cycle(tmp_path):
    (tmp_path / "precompute").mkdir()
    (tmp_path / "simulate").mkdir()
    (tmp_path / "shared").mkdir()
    for pkg in PACKAGES:
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "precompute" / "a.py").write_text("from precompute import b\n")
    (tmp_path / "precompute" / "b.py").write_text("def f():\n    from .c import x\n")
    (tmp_path / "precompute" / "c.py").write_text("import precompute.a\nx = 1\n")
    graph, _, _ = import_graph(tmp_path)
    assert cycles(graph) == [["precompute.a", "precompute.b", "precompute.c"]]


def test_phases_keep_their_boundary():
    for name, path in modules(ROOT).items():
        imported = all_imports(path)
        top = {i.split(".")[0] for i in imported}
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
