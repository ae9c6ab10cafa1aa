"""A bridge on SQLite, started in a fresh interpreter, never loads PostgreSQL's dialect
(its asyncpg, psycopg and pg8000 modules: 2.2 MB of RSS, BENCHMARKS.md section 4), and
its first report request still answers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from ccbridge.config.store import StoreSettings
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade

REPO = Path(__file__).resolve().parents[2]

BRIDGE = """
import asyncio, json, socket, sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import ClientSession

from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import load_config
from ccbridge.config.model import HostPort
from ccbridge.config.store import StoreSettings


def heavy():
    return sorted(m for m in sys.modules if m.startswith("sqlalchemy.dialects.postgresql"))


async def main(url, journal):
    with socket.socket() as s:  # AMI at a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cfg = load_config(Path("examples/lab.yaml"))
    sites = tuple(replace(s, ami=replace(s.ami, host="127.0.0.1", port=closed)) for s in cfg.sites)
    cfg = replace(
        cfg,
        sites=sites,
        bridge=replace(
            cfg.bridge,
            agi_listen=HostPort("127.0.0.1", 0),
            http_listen=HostPort("127.0.0.1", 0),
        ),
        store=StoreSettings(url=url, journal=journal, enabled=True),
    )
    bridge = Bridge(cfg, Clock(datetime(2026, 11, 25, 5, 0, tzinfo=UTC)))
    await bridge.start()
    try:
        at_start = heavy()
        url = f"http://127.0.0.1:{bridge.http_port}/api/v1/reports/intervals"
        params = {"from": "2026-11-27T00:00:00Z", "to": "2026-11-28T00:00:00Z", "site": "dhaka"}
        auth = {"Authorization": "Bearer the-token"}
        async with ClientSession() as http, http.get(url, params=params, headers=auth) as r:
            status, body = r.status, await r.json()
    finally:
        await bridge.stop()
    print(json.dumps({"at_start": at_start, "status": status, "rows": len(body["rows"]),
                      "after_report": heavy()}))


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def _migrate(settings: StoreSettings) -> None:
    engine = make_engine(settings)
    try:
        await upgrade(engine)  # here: alembic's own PostgreSQL module loads the dialect
    finally:
        await engine.dispose()


def test_a_bridge_on_sqlite_loads_no_postgresql_dialect_and_reports(tmp_path: Path) -> None:
    settings = StoreSettings(
        url=f"sqlite+aiosqlite:///{tmp_path / 'records.db'}",
        journal=str(tmp_path / "records.journal"),
    )
    asyncio.run(_migrate(settings))
    env = {**os.environ, "CCBRIDGE_AMI_SECRET": "x", "CCBRIDGE_API_TOKEN": "the-token"}
    done = subprocess.run(
        [sys.executable, "-c", BRIDGE, settings.url, settings.journal],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["at_start"] == [] and got["after_report"] == []
    assert got["status"] == 200 and got["rows"] > 0  # every interval of the day, empty
