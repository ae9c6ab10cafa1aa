"""A running bridge imports SQLAlchemy's asyncio extension without the ORM (7.6 MB of
RSS: ccbridge/leanimports.py), and every name of that package is still there; building
the command line parser (``ccbridge run`` does) imports no deploy code or jinja2."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from ccbridge import leanimports

REPO = Path(__file__).resolve().parents[2]

LEAN = """
import json, sys
import ccbridge.app, ccbridge.cli
ccbridge.cli.build_parser()
orm_at_start = "sqlalchemy.orm" in sys.modules
deploy = sorted(m for m in sys.modules if m == "jinja2" or m.startswith("ccbridge.deploy."))
import sqlalchemy.ext.asyncio as m
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
missing = [n for n in json.loads(sys.argv[1]) if getattr(m, n, None) is None]
print(json.dumps({"orm_at_start": orm_at_start, "missing": missing,
                  "engine": AsyncEngine.__module__, "deploy": deploy}))
"""


def _python(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=REPO
    )
    return done.stdout


def _package_names() -> list[str]:
    """The names the package's ``__init__`` exports (read, not run: running it is what
    imports the ORM)."""
    spec = importlib.util.find_spec(leanimports.PACKAGE)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    return sorted(
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
    )


def test_the_bridge_imports_no_orm_and_every_name_is_reachable() -> None:
    names = _package_names()
    assert "AsyncEngine" in names and "AsyncSession" in names and len(names) > 15
    got = json.loads(_python(LEAN, json.dumps(names)))
    assert got == {
        "orm_at_start": False,
        "missing": [],
        "engine": "sqlalchemy.ext.asyncio.engine",
        "deploy": ["ccbridge.deploy.parsers"],
    }


WITHOUT_SQLALCHEMY = """
import sys
class NoSqlAlchemy:  # as on the system Python that builds the lab's root (make test)
    def find_spec(self, name, path=None, target=None):
        if name == "sqlalchemy" or name.startswith("sqlalchemy."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoSqlAlchemy())
import ccbridge.lab.rootfs
print("sqlalchemy" in sys.modules)
"""


def test_the_package_imports_without_sqlalchemy() -> None:
    # `make test` builds the lab's root with the system Python (standard library only)
    # while the venv is made: importing ccbridge must not need SQLAlchemy there.
    assert _python(WITHOUT_SQLALCHEMY).strip() == "False"
