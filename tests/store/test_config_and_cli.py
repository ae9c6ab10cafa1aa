"""The `store:` section and `ccbridge db upgrade|check` on both engines: a password only
from a secret, a clear line and exit 2 for a schema the bridge refuses, exit 1 for a
database it cannot reach; never a traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from ccbridge.config import ConfigError, parse_config
from ccbridge.config.store import StoreSettings
from ccbridge.store.migrate import head_revision
from tests.store.conftest import Db
from tests.store.pg import PASSWORD

REPO = Path(__file__).resolve().parents[2]
LAB = (REPO / "examples" / "lab.yaml").read_text()


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AMI_SECRET", "ami-secret-from-env")
    monkeypatch.setenv("CCBRIDGE_API_TOKEN", "token-from-env")
    monkeypatch.setenv("CCBRIDGE_TEST_DB_PASSWORD", PASSWORD)


def _store(section: str, base: Path = REPO / "examples") -> StoreSettings:
    return parse_config(LAB + section, "deploy.yaml", base).store


def _problems(section: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(LAB + section, "deploy.yaml", REPO / "examples")
    return [str(p) for p in info.value.problems]


def test_without_a_store_section_records_go_to_sqlite_beside_the_config() -> None:
    s = _store("")
    assert s.url == f"sqlite+aiosqlite:///{REPO / 'examples' / 'var' / 'ccbridge.db'}"
    assert s.journal == str(REPO / "examples" / "var" / "ccbridge.db.journal")
    assert s.engine == "sqlite" and s.password is None
    assert not s.enabled  # no section: the bridge keeps no call records


def test_a_store_section_turns_records_on_unless_it_says_not() -> None:
    assert _store("store: {}\n").enabled
    assert not _store("store:\n  enabled: false\n").enabled


def test_a_postgresql_store_takes_its_password_from_a_secret() -> None:
    s = _store(
        "store:\n  url: postgresql://ccbridge@db.example:5433/records\n"
        "  password: {env: CCBRIDGE_TEST_DB_PASSWORD}\n  batch_size: 200\n"
        "  queue_bytes: 33554432\n"
    )
    assert s.url == "postgresql+asyncpg://ccbridge@db.example:5433/records"
    assert s.password is not None and s.password.reveal() == PASSWORD
    assert PASSWORD not in repr(s) and s.batch_size == 200 and s.queue_bytes == 32 * 2**20
    assert s.journal == str(REPO / "examples" / "var" / "ccbridge-records.journal")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "store:\n  url: postgresql://ccbridge:hunter2@db/records\n",
            "store.url: the password must not be written in the URL",
        ),
        ("store:\n  url: mysql://db/records\n", "store.url: unknown database URL scheme 'mysql'"),
        ("store:\n  url: postgresql://db\n", "needs a host and a database"),
        ("store:\n  url: sqlite://\n", "an SQLite URL is sqlite:///PATH"),
        ("store:\n  url: postgresql://u@db:port/x\n", "the port in the URL is not a number"),
        ("store:\n  password: hunter2\n", "secrets must not be written in the config"),
        ("store:\n  password: {env: CCBRIDGE_TEST_DB_PASSWORD}\n", "takes no password"),
        ("store:\n  batch_size: 0\n", "store.batch_size"),
        ("store:\n  queue_bytes: 1000\n", "store.queue_bytes"),  # under 1 MiB
        ("store:\n  queue_bytes: lots\n", "store.queue_bytes"),
        ("store:\n  queue_bytes: 99999999999999\n", "store.queue_bytes"),
        ("store:\n  urll: sqlite:///x.db\n", "unknown key 'urll' (did you mean 'url'?)"),
        ("store: 5\n", "store: expected a mapping"),
        ("store:\n  enabled: maybe\n", "store.enabled"),
        ("store:\n  writer_process: 1\n", "store.writer_process: expected true or false"),
        ("store:\n  writer_process: [yes]\n", "store.writer_process: expected true or false"),
    ],
)
def test_bad_store_sections_name_the_key(section: str, message: str) -> None:
    found = _problems(section)
    assert any(message in p for p in found), found
    assert not any("hunter2" in p for p in found)


async def _ccbridge(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ccbridge",
        *args,
        cwd=REPO,
        env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _config_for(db: Db) -> Path:
    if db.kind == "sqlite":
        section = f"store:\n  url: sqlite:///{db.settings.url.split(':///', 1)[1]}\n"
    else:
        url = db.settings.url.replace("postgresql+asyncpg", "postgresql")
        section = f"store:\n  url: {url}\n  password: {{env: CCBRIDGE_TEST_DB_PASSWORD}}\n"
    path = db.tmp / "deploy.yaml"
    await asyncio.to_thread(path.write_text, LAB + section)
    return path


async def test_db_upgrade_then_check_on_the_command_line(db: Db) -> None:
    config = str(await _config_for(db))
    head = head_revision()  # every migration shipped, not a fixed one
    code, out, err = await _ccbridge("db", "upgrade", config)
    assert code == 0, err
    assert f"upgraded from empty to {head}" in out and PASSWORD not in out + err
    code, out, err = await _ccbridge("db", "upgrade", config)
    assert code == 0 and f"already at revision {head}" in out
    code, out, err = await _ccbridge("db", "check", config)
    assert code == 0 and f"schema at revision {head} (current)" in out


async def test_db_check_refuses_an_unknown_schema_with_exit_2(db: Db) -> None:
    config = str(await _config_for(db))
    if db.kind == "sqlite":
        code, _, err = await _ccbridge("db", "check", config)  # no file yet
        assert code == 2 and "no such database file" in err and "Traceback" not in err
    else:
        code, _, err = await _ccbridge("db", "check", config)  # an empty database
        assert code == 2 and "no ccbridge schema yet" in err and "Traceback" not in err
    await db.upgrade()
    async with db.engine().begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    for action in ("check", "upgrade"):
        code, out, err = await _ccbridge("db", action, config)
        assert code == 2, (out, err)
        assert "revision 0099, which this ccbridge does not know" in err
        assert "Traceback" not in err and err.count("\n") == 1


async def test_db_check_on_an_unreachable_database_exits_1_in_one_line(db: Db) -> None:
    config_path = await _config_for(db)
    if db.kind == "sqlite":
        # The database's folder is a file: nothing can be opened or created there.
        blocker = db.tmp / "db"
        await asyncio.to_thread(_replace_with_file, blocker)
    else:
        db.down()
    code, _, err = await _ccbridge("db", "upgrade", str(config_path))
    assert code == 1, err
    assert "cannot" in err and "Traceback" not in err and err.count("\n") == 1
    assert PASSWORD not in err


def _replace_with_file(path: Path) -> None:
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
    path.write_text("not a folder\n")
