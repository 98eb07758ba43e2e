"""The package's shape: no import cycle among the modules of src/ssdd (module-level and function-level imports
alike, read with `ast`), and no module outside src/ssdd/distill branches on a distillation method's name (a
method owns what is special about it: ssdd.distill.registry.DistillMethod; recipe and file-format names are
other things that happen to share a name)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "ssdd"
BUILT_IN_METHODS = {"boost", "krr_st", "mkdt", "random", "kmeans", "high_loss", "random_supervised"}


def modules() -> dict[str, Path]:
    found = {}
    for f in ROOT.rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = f
    return found


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of ssdd it imports anywhere in its text (a package imported from inside itself,
    `from ssdd.distill import boost`, counts as the submodule only)."""
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for target in targets:
                r = resolve(target)
                if r and r != m and not (f.name != "__init__.py" and r == pkg and target == pkg):
                    graph[m].add(r)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the components with more than one module (each is a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def method_name_branches() -> list[str]:
    """`file:line` of every comparison with a built-in method's name outside src/ssdd/distill, except those
    against a recipe (`.recipe`) or a file format (`fmt`)."""
    hits = []
    for f in sorted(ROOT.rglob("*.py")):
        if "distill" in f.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            if any((isinstance(x, ast.Attribute) and x.attr == "recipe") or (isinstance(x, ast.Name) and x.id == "fmt")
                   for x in sides):
                continue
            constants = [c for c in sides if isinstance(c, ast.Constant)]
            constants += [e for c in sides if isinstance(c, (ast.Tuple, ast.List, ast.Set)) for e in c.elts
                          if isinstance(e, ast.Constant)]
            if any(c.value in BUILT_IN_METHODS for c in constants):
                hits.append(f"{f.relative_to(SRC.parent)}:{node.lineno}")
    return hits


def test_the_graph_sees_the_imports():
    graph = import_graph(modules())
    assert len(graph) > 50
    assert "ssdd.distill.registry" in graph["ssdd.distill.krr_st"]  # a module-level import
    checks = graph["ssdd.run.checks"]
    assert "ssdd.models" in checks or "ssdd.models.registry" in checks  # an import inside a function


def test_a_cycle_is_found():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = strongly_connected(import_graph(modules()))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_module_outside_distill_compares_a_method_name():
    hits = method_name_branches()
    assert not hits, "branches on a method name (ask the method, ssdd.distill.registry):\n" + "\n".join(hits)
