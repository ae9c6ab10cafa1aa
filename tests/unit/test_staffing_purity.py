"""The staffing core is pure like the routing core: no event loop, sockets, clock reads,
Prometheus or matplotlib (those stay in the adapters: gauges.py, chart.py, cli.py)."""

from __future__ import annotations

import ast
from pathlib import Path

STAFFING = Path(__file__).resolve().parents[2] / "ccbridge" / "staffing"
ADAPTERS = {"gauges.py", "chart.py", "cli.py", "csvhistory.py", "storehistory.py", "refresher.py"}
FORBIDDEN_MODULES = ("asyncio", "socket", "time", "prometheus_client", "matplotlib", "aiohttp")
# datetime.now(), date.today() and friends; the time module is out with the imports
CLOCK_CALLS = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}


def _imports(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def _calls(tree: ast.AST) -> set[str]:
    return {
        n.func.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }


def test_the_core_modules_read_no_clock_and_import_no_io() -> None:
    core = sorted(p for p in STAFFING.glob("*.py") if p.name not in ADAPTERS)
    assert {p.name for p in core} >= {"erlang.py", "forecast.py", "plan.py", "coverage.py"}
    for path in core:
        tree = ast.parse(path.read_text(), str(path))
        bad = [m for m in _imports(tree) if m.split(".")[0] in FORBIDDEN_MODULES]
        assert bad == [], f"{path.name} imports {bad}"
        assert _calls(tree) & CLOCK_CALLS == set(), f"{path.name} reads a clock"


def test_the_erlang_module_imports_only_the_standard_library() -> None:
    tree = ast.parse((STAFFING / "erlang.py").read_text())
    assert _imports(tree) <= {"__future__", "math", "dataclasses"}
