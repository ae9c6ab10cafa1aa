"""The import graph of the ccbridge package: no cycle between the composition root or the
services and the HTTP layer (issue 11).

The graph is read from the source with ``ast``, not by importing: every ``import`` and
``from ... import`` anywhere in a module (top level, inside functions, under
``if TYPE_CHECKING``) is an edge, since each one is a dependency a reader has to follow.
``from a.b import c`` points at ``a.b.c`` when that is a module, else at ``a.b``; importing
``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, so those are edges too. Cycles are
the strongly connected components of that graph (Tarjan).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ccbridge"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its source)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node.module, node.level)
                targets = [base]
                targets += [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                graph[mod] |= _with_parents(target, modules) - {mod}
    return graph


def _resolve(mod: str, is_pkg: bool, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = here[: len(here) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _with_parents(target: str, modules: set[str]) -> set[str]:
    parts = target.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & modules


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(component)
    return out


def _is_top(mod: str) -> bool:
    return mod == "ccbridge.app" or mod.startswith("ccbridge.services")


def _is_http(mod: str) -> bool:
    return mod == "ccbridge.http" or mod.startswith("ccbridge.http.")


def layer_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Cycles holding both the root or a service and an HTTP module."""
    return [c for c in cycles(graph) if any(map(_is_top, c)) and any(map(_is_http, c))]


def test_no_cycle_between_the_root_or_the_services_and_http() -> None:
    graph = import_graph(PACKAGE)
    assert "ccbridge.http.base" in graph["ccbridge.http.agents"]  # the reader sees imports
    assert layer_cycles(graph) == []


def test_the_services_and_http_depend_one_way() -> None:
    graph = import_graph(PACKAGE)
    for mod, deps in graph.items():
        if mod.startswith("ccbridge.services"):
            assert not [d for d in deps if _is_http(d) or d == "ccbridge.app"], mod
        if _is_http(mod):
            assert "ccbridge.app" not in deps, mod


def test_the_check_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    """The shape issue 11 removed: app imports http at the top, http imports app lazily."""
    pkg = tmp_path / "ccbridge"
    (pkg / "http").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "http" / "__init__.py").write_text("")
    (pkg / "app.py").write_text("from ccbridge.http.app import build_app\n")
    (pkg / "http" / "app.py").write_text(
        "def build_app():\n    from ..app import Bridge\n    return Bridge\n"
    )
    (pkg / "http" / "calls.py").write_text("from . import app\n")
    graph = import_graph(pkg)
    assert graph["ccbridge.http.calls"] == {"ccbridge", "ccbridge.http", "ccbridge.http.app"}
    assert layer_cycles(graph) == [{"ccbridge.app", "ccbridge.http.app"}]
