"""Every domain error id the services raise has an HTTP status (http/base.py's STATUS)."""

from __future__ import annotations

import ast
from pathlib import Path

from ccbridge.http.base import STATUS

SERVICES = Path(__file__).resolve().parents[2] / "ccbridge" / "services"


def raised_ids() -> set[str]:
    """The first argument of every ``ServiceError("...", ...)`` in the services' source."""
    ids = set()
    for path in SERVICES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "ServiceError"
                and node.args
            ):
                first = node.args[0]
                assert isinstance(first, ast.Constant), f"{path.name}: error id not a literal"
                ids.add(first.value)
    return ids


def test_every_service_error_has_a_status() -> None:
    ids = raised_ids()
    assert {"no-such-agent", "site-down", "no-carrier"} <= ids  # the reader finds them
    assert sorted(ids - set(STATUS)) == []
    assert sorted(set(STATUS) - ids) == []  # and no status is kept for an id gone
