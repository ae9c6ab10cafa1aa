"""A started bridge over a migrated SQLite store with one user per role and a token each:
what the access API tests (and the fuzz) run against."""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from ccbridge.access.passwords import hash_password
from ccbridge.access.users import add_user, issue_token
from ccbridge.app import Bridge
from ccbridge.clock import Clock
from ccbridge.config import Config, parse_config
from ccbridge.config.model import HostPort
from ccbridge.store.engine import make_engine
from ccbridge.store.migrate import upgrade
from ccbridge.store.schema import audit

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
BOOTSTRAP = "the-bootstrap-token"
PASSWORD = "correct horse battery"

# name -> (role, sites, agent)
USERS: dict[str, tuple[str, list[str], str | None]] = {
    "sue": ("supervisor", ["dhaka"], None),
    "dac-agent1": ("agent", [], "dac-agent1"),
    "vic": ("viewer", [], None),
    "ada": ("admin", [], None),
    "crm": ("service", ["bangalore"], None),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def world_config(tmp: Path, extra: str = "", tls: tuple[Path, Path] | None = None) -> Config:
    text = (REPO / "examples" / "lab.yaml").read_text()
    if tls is not None:
        text = text.replace("bridge:\n", f"bridge:\n  tls: {{cert: {tls[0]}, key: {tls[1]}}}\n", 1)
    text += f"\nstore:\n  url: sqlite:///{tmp / 'ccbridge.db'}\n" + extra
    cfg = parse_config(text, str(tmp / "deploy.yaml"), REPO / "examples")
    # AMI at a closed port (the links retry, as with sites down; never the lab's), the
    # listeners on free ports.
    closed = free_port()
    sites = tuple(replace(s, ami=replace(s.ami, host="127.0.0.1", port=closed)) for s in cfg.sites)
    bridge = replace(
        cfg.bridge,
        agi_listen=HostPort("127.0.0.1", 0),
        http_listen=HostPort("127.0.0.1", 0),
    )
    return replace(cfg, sites=sites, bridge=bridge)


@dataclass
class World:
    bridge: Bridge
    config: Config
    tokens: dict[str, str]
    base: str

    def auth(self, user: str) -> dict[str, str]:
        token = BOOTSTRAP if user == "bootstrap" else self.tokens[user]
        return {"Authorization": f"Bearer {token}"}

    async def audit_rows(self) -> list[dict[str, object]]:
        engine = make_engine(self.config.store)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(select(audit).order_by(audit.c.seq))
                return [dict(r) for r in rows.mappings()]
        finally:
            await engine.dispose()


async def make_world(
    tmp: Path, scheme: str = "http", extra: str = "", tls: tuple[Path, Path] | None = None
) -> World:
    config = world_config(tmp, extra, tls)
    engine = make_engine(config.store)
    now = datetime.now(UTC)
    tokens: dict[str, str] = {}
    try:
        await upgrade(engine)
        hashed = await hash_password(PASSWORD)
        async with engine.begin() as conn:
            for name, (role, sites, agent) in USERS.items():
                await add_user(
                    conn,
                    name,
                    kind="service" if role == "service" else "user",
                    role=role,
                    sites=sites,
                    agent=agent,
                    password_hash=None if role == "service" else hashed,
                    now=now,
                )
                issued = await issue_token(
                    conn, name, now=now, lifetime=timedelta(days=1), label="test"
                )
                tokens[name] = issued.token
    finally:
        await engine.dispose()
    bridge = Bridge(config, Clock(T0))
    await bridge.start()
    return World(bridge, config, tokens, f"{scheme}://127.0.0.1:{bridge.http_port}")
