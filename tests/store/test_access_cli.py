"""`ccbridge users ...` and `ccbridge audit ...` as an admin runs them (SQLite store):
the first admin, scoped users, a token shown once and stored hashed, refusals with
exit 2, and `audit verify` passing until a row is edited in the database."""

from __future__ import annotations

import contextlib
import io
import sqlite3
from pathlib import Path

import pytest

from ccbridge.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def deploy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "boot")
    path = tmp_path / "deploy.yaml"
    text = (REPO / "examples" / "lab.yaml").read_text()
    path.write_text(text + f"\nstore:\n  url: sqlite:///{tmp_path / 'ccb.db'}\n")
    assert run(["db", "upgrade", str(path)])[0] == 0
    return path


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def test_users_tokens_and_the_audit_chain(deploy: Path, tmp_path: Path) -> None:
    cfg = str(deploy)
    pw = "first-admin-password\n"
    code, out, err = run(["users", "add", cfg, "ada", "--role", "admin", "--password-stdin"], pw)
    assert code == 0, err
    code, _, err = run(
        ["users", "add", cfg, "sue", "--role", "supervisor", "--site", "dhaka", "--password-stdin"],
        pw,
    )
    assert code == 0, err
    code, _, err = run(["users", "add", cfg, "crm", "--role", "service", "--site", "bangalore"])
    assert code == 0, err
    code, out, err = run(["users", "token", cfg, "crm", "--days", "365", "--label", "crm"])
    assert code == 0 and out.startswith("ccb_") and "expires" in err
    token = out.strip()
    tid = token.split("_")[1]
    db = tmp_path / "ccb.db"
    assert token.split("_", 2)[2].encode() not in db.read_bytes()  # stored hashed only
    assert b"first-admin-password" not in db.read_bytes()
    code, out, _ = run(["users", "list", cfg])
    assert code == 0
    assert "sue\tuser\tsupervisor\tsites=dhaka" in out and f"token {tid}\tcrm" in out
    assert run(["users", "token", cfg, "--revoke", tid])[0] == 0
    assert "revoked" in run(["users", "list", cfg])[1]
    assert run(["users", "disable", cfg, "sue"])[0] == 0
    code, out, _ = run(["audit", "verify", cfg])
    assert (code, out.strip()) == (0, "audit chain ok: 6 rows")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit SET actor = 'nobody' WHERE seq = 2")
    code, out, err = run(["audit", "verify", cfg])
    assert code == 2 and "row 2: its content does not match its hash" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "boss"], "unknown role 'boss'"),
        (["--role", "supervisor", "--site", "dacca"], "unknown site 'dacca'"),
        (["--role", "supervisor"], "role 'supervisor' covers sites: name them with --site"),
        (["--role", "agent"], "acts on the user's own agent: name it with --agent"),
    ],
)
def test_users_add_refuses_what_cannot_work(deploy: Path, args: list[str], message: str) -> None:
    code, _, err = run(
        ["users", "add", str(deploy), "bob", *args, "--password-stdin"], "pw-long-enough\n"
    )
    assert code == 2 and message in err


def test_a_short_password_and_a_duplicate_name_are_refused(deploy: Path) -> None:
    cfg = str(deploy)
    assert (
        run(["users", "add", cfg, "ada", "--role", "admin", "--password-stdin"], "short\n")[0] == 2
    )
    assert (
        run(["users", "add", cfg, "ada", "--role", "admin", "--password-stdin"], "long-enough\n")[0]
        == 0
    )
    code, _, err = run(
        ["users", "add", cfg, "ada", "--role", "admin", "--password-stdin"], "long-enough\n"
    )
    assert code == 2 and "already exists" in err


def test_without_a_database_it_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "x")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "boot")
    path = tmp_path / "deploy.yaml"
    text = (REPO / "examples" / "lab.yaml").read_text()
    path.write_text(text + f"\nstore:\n  url: sqlite:///{tmp_path / 'none.db'}\n")
    code, _, err = run(["audit", "verify", str(path)])
    assert code == 2 and "run `ccbridge db upgrade CONFIG` first" in err


def test_erasing_a_number_reaches_the_audit_details_and_the_chain_verifies(
    deploy: Path, tmp_path: Path
) -> None:
    import asyncio

    from ccbridge.access.audit import AuditEvent, append
    from ccbridge.config import load_config
    from ccbridge.store.engine import make_engine

    number = "+8801712345678"
    config = load_config(deploy)

    async def seed() -> None:
        engine = make_engine(config.store)
        try:
            await append(
                engine,
                AuditEvent(
                    "sue",
                    "10.0.0.7",
                    "GET /api/v1/calls csv",
                    "ok",
                    details={"query": {"caller": "880 1712-345678"}},
                ),
                AuditEvent("sue", "10.0.0.7", "GET /api/v1/calls", "ok", details={"query": {}}),
                AuditEvent(
                    "ada",
                    "10.0.0.8",
                    "GET /api/v1/calls/{id}",
                    "ok",
                    details={"query": {"caller": number}},
                ),
            )
        finally:
            await engine.dispose()

    asyncio.run(seed())
    code, out, err = run(["records", "erase", str(deploy), "--number", number])
    assert code == 0, err
    assert "from the details of 2 audit rows" in out
    assert run(["audit", "verify", str(deploy)])[1].strip() == "audit chain ok: 4 rows"
    db = (tmp_path / "ccb.db").read_bytes()
    assert b"1712345678" not in db and b"1712-345678" not in db
    # `ccbridge audit erase` does the same on its own (nothing left to erase now).
    code, out, _ = run(["audit", "erase", str(deploy), "--number", number])
    assert code == 0 and "details erased from 0 audit rows" in out


def test_records_purge_reaches_old_audit_rows_and_the_chain_still_verifies(deploy: Path) -> None:
    """`ccbridge records purge` deletes audit rows past records.audit_retention_days
    (400 by default); `ccbridge audit verify` passes after it, from the new anchor."""
    import asyncio
    from datetime import UTC, datetime, timedelta

    from ccbridge.access.audit import AuditEvent, append
    from ccbridge.config import load_config
    from ccbridge.store.engine import make_engine

    config = load_config(deploy)
    old = datetime.now(UTC) - timedelta(days=500)

    async def seed() -> None:
        engine = make_engine(config.store)
        try:
            events = [AuditEvent("sue", "10.0.0.7", "login", "ok", at=old) for _ in range(3)]
            await append(engine, *events, AuditEvent("sue", "10.0.0.7", "login", "ok"))
        finally:
            await engine.dispose()

    asyncio.run(seed())
    code, out, err = run(["records", "purge", str(deploy)])
    assert code == 0, err
    assert out.strip().endswith("3 audit"), out
    # The row of today and the purge's own row (the anchor's witness) remain.
    assert run(["audit", "verify", str(deploy)])[1].strip() == "audit chain ok: 2 rows"
