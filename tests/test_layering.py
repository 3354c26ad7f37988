"""The import graph of rvoslib: no cycles, and no package imports one above it.

Every ``import`` statement of every module counts, at module level or inside a function
(a lazy import that closes a cycle is still a cycle); only imports under
``if TYPE_CHECKING:`` are left out. Layers, low to high: ``data``, ``losses``, ``metrics`` and
``models`` never import ``training``, ``evaluation`` or ``cli``; ``data`` never imports
``models``; ``training`` never imports ``cli``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rvoslib

ROOT = Path(rvoslib.__file__).parent
FORBIDDEN = {
    "data": ("training", "evaluation", "cli", "models"),
    "losses": ("training", "evaluation", "cli"),
    "metrics": ("training", "evaluation", "cli"),
    "models": ("training", "evaluation", "cli"),
    "training": ("cli",),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in ROOT.rglob("*.py")}


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The rvoslib modules an import statement loads (the closest existing module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")
            if MODULES[module].name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        submodules = [f"{base}.{alias.name}" for alias in node.names]
        # ``from package import submodule`` loads the submodule; the package itself counts
        # only when a name is not a submodule (the package above the importer runs anyway).
        names = [
            *submodules,
            *([base] if any(name not in MODULES for name in submodules) else []),
        ]
    found = []
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES and name.startswith("rvoslib"):
            found.append(name)
    return found


def _imports(module: str) -> set[str]:
    """Every rvoslib module ``module`` imports (and the packages above them), except under
    ``if TYPE_CHECKING``."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update(_targets(module, node))
            for field in ("body", "orelse", "finalbody"):
                visit(getattr(node, field, []) or [])
            for handler in getattr(node, "handlers", []):
                visit(handler.body)

    visit(ast.parse(MODULES[module].read_text(encoding="utf-8")).body)
    for target in list(found):  # importing a.b.c runs a/__init__ and a/b/__init__
        parts = target.split(".")
        for end in range(2, len(parts)):
            package = ".".join(parts[:end])
            if not module.startswith(package + ".") and package != module:
                found.add(package)
    found.discard(module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_cycle_finder_finds_a_cycle_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_walker_sees_lazy_and_relative_imports():
    assert "rvoslib.models.registry" in GRAPH["rvoslib.models"]
    assert "rvoslib._io" in GRAPH["rvoslib.animation"]
    assert len(MODULES) > 100


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_no_package_imports_one_above_it():
    wrong = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if module.count(".") >= 1
        and target.count(".") >= 1
        and target.split(".")[1] in FORBIDDEN.get(module.split(".")[1], ())
    ]
    assert wrong == []
