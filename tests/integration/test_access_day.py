"""A day on the lab through the API, over HTTPS with a CA made for the test: an admin
created with `ccbridge users add`, then a supervisor of dhaka, an agent, a viewer and the
admin each log in with their password and do their work. Every allowed call works, every
other is 403; `ccbridge audit verify` passes, and fails once one audit row is edited."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import ssl
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import trustme

from ccbridge.config import Config
from ccbridge.config.access_loader import TlsSettings
from ccbridge.config.model import HostPort
from ccbridge.config.store import StoreSettings
from ccbridge.lab.sites import REPO_ROOT
from tests.integration.conftest import BridgeFactory
from tests.polling import until

WEDNESDAY_MORNING = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
PASSWORD = "a-lab-day-password"


def ccbridge(config: Config, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CCBRIDGE_API_TOKEN": config.bridge.api_token.reveal() if config.bridge.api_token else "",
        "CCBRIDGE_AMI_SECRET": config.sites[0].ami.secret.reveal(),
    }
    return subprocess.run(
        [sys.executable, "-m", "ccbridge", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def deploy_file(tmp: Path, cert: Path, key: Path) -> Path:
    """examples/lab.yaml with this test's store and TLS files (secrets from the env)."""
    text = (REPO_ROOT / "examples" / "lab.yaml").read_text()
    text = text.replace("bridge:\n", f"bridge:\n  tls: {{cert: {cert}, key: {key}}}\n", 1)
    text += f"\nstore:\n  url: sqlite:///{tmp / 'ccbridge.db'}\n"
    path = tmp / "deploy.yaml"
    path.write_text(text)
    return path


def make_ca(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A CA made now, the API's certificate from it, a client that trusts it, and the
    deployment file naming the certificate."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "api.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "api.key"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return client, deploy_file(tmp, tmp / "api.pem", tmp / "api.key")


def edit_one_denial(db_file: Path) -> list[tuple[str, str, str]]:
    """The denied rows; then the first of them rewritten as allowed, as a tamperer would."""
    with sqlite3.connect(db_file) as db:
        denied = db.execute(
            "SELECT actor, action, object FROM audit WHERE result = 'denied'"
        ).fetchall()
        db.execute(
            "UPDATE audit SET result = 'ok' WHERE seq = "
            "(SELECT MIN(seq) FROM audit WHERE result = 'denied')"
        )
    return denied


class Api:
    """The API over one keep-alive session: one TLS handshake, not one per call."""

    def __init__(self, http: aiohttp.ClientSession, base: str, ssl_ctx: ssl.SSLContext) -> None:
        self.http, self.base, self.ssl = http, base, ssl_ctx
        self.tokens: dict[str, str] = {}

    async def login(self, user: str) -> None:
        status, body = await self.call(
            None, "POST", "/api/v1/login", {"user": user, "password": PASSWORD}
        )
        assert status == 200, body
        self.tokens[user] = body["token"]

    async def call(
        self, user: str | None, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        async with self.http.request(
            method, self.base + path, json=body, headers=headers, ssl=self.ssl
        ) as r:
            data = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, data


async def test_a_day_of_four_roles_on_the_lab(
    bridge_at: BridgeFactory, lab_config: Config, tmp_path: Path
) -> None:
    # Key generation and the system CA bundle take tens of ms: off the loop, which the
    # in-process bridge shares under the 50 ms gate.
    client, path = await asyncio.to_thread(make_ca, tmp_path)
    cfg = str(path)
    done = await asyncio.to_thread(ccbridge, lab_config, "db", "upgrade", cfg)
    assert done.returncode == 0, done.stderr
    for args in (
        ["ada", "--role", "admin"],  # the first admin, as the README says
        ["sue", "--role", "supervisor", "--site", "dhaka"],
        ["roam", "--role", "agent", "--agent", "roam1"],
        ["vic", "--role", "viewer"],
    ):
        done = await asyncio.to_thread(
            ccbridge,
            lab_config,
            "users",
            "add",
            cfg,
            *args,
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        assert done.returncode == 0, done.stderr

    config = dataclasses.replace(
        lab_config,
        store=StoreSettings(
            url=f"sqlite+aiosqlite:///{tmp_path / 'ccbridge.db'}",
            journal=str(tmp_path / "ccbridge.db.journal"),
        ),
        bridge=dataclasses.replace(
            lab_config.bridge,
            http_listen=HostPort("127.0.0.1", 0),
            tls=TlsSettings(str(tmp_path / "api.pem"), str(tmp_path / "api.key")),
        ),
    )
    async with bridge_at(WEDNESDAY_MORNING, config) as bridge, aiohttp.ClientSession() as http:
        api = Api(http, f"https://127.0.0.1:{bridge.http_port}", client)
        for user in ("ada", "sue", "roam", "vic"):
            await api.login(user)
        allowed: list[tuple[str, str, str, Any]] = [
            # the supervisor of dhaka: dhaka's state, its agents, a drain and back
            ("sue", "GET", "/api/v1/sites", None),
            ("sue", "GET", "/api/v1/queues", None),
            (
                "sue",
                "POST",
                "/api/v1/agents/roam1/login",
                {"site": "dhaka", "queues": ["orders-bn"]},
            ),
            ("sue", "POST", "/api/v1/agents/roam1/pause", {"site": "dhaka", "reason": "briefing"}),
            ("sue", "POST", "/api/v1/agents/roam1/unpause", {"site": "dhaka"}),
            ("sue", "POST", "/api/v1/sites/dhaka/drain", None),
            ("sue", "POST", "/api/v1/sites/dhaka/undrain", None),
            # the agent: itself
            ("roam", "POST", "/api/v1/agents/roam1/pause", {"reason": "lunch"}),
            ("roam", "POST", "/api/v1/agents/roam1/unpause", {}),
            ("roam", "GET", "/api/v1/agents", None),
            ("roam", "POST", "/api/v1/agents/roam1/logout", {}),
            # the viewer: reads
            ("vic", "GET", "/api/v1/sites", None),
            ("vic", "GET", "/api/v1/trunks", None),
            ("vic", "GET", "/api/v1/agents", None),
            (
                "vic",
                "POST",
                "/api/v1/route/preview",
                {"did": "+918000000001", "caller": "+919812345678"},
            ),
            # the admin: anything, and the audit trail
            ("ada", "POST", "/api/v1/sites/manila/drain", None),
            ("ada", "POST", "/api/v1/sites/manila/undrain", None),
            ("ada", "GET", "/api/v1/audit", None),
        ]
        forbidden: list[tuple[str, str, str, Any]] = [
            ("sue", "POST", "/api/v1/sites/bangalore/drain", None),
            (
                "sue",
                "POST",
                "/api/v1/agents/roam1/login",
                {"site": "bangalore", "queues": ["orders-en"]},
            ),
            ("sue", "POST", "/api/v1/agents/blr-agent1/pause", {"site": "bangalore"}),
            ("sue", "GET", "/api/v1/audit", None),
            ("roam", "POST", "/api/v1/agents/dac-agent1/pause", {}),
            ("roam", "POST", "/api/v1/sites/dhaka/drain", None),
            ("roam", "GET", "/api/v1/sites", None),
            ("vic", "POST", "/api/v1/sites/dhaka/drain", None),
            ("vic", "POST", "/api/v1/agents/roam1/pause", {"site": "dhaka"}),
            ("vic", "POST", "/api/v1/calls", {"to": "+919812345678", "service": "orders"}),
            ("vic", "GET", "/api/v1/audit", None),
        ]
        for user, method, p, body in allowed:
            status, data = await api.call(user, method, p, body)
            assert status == 200, (user, method, p, data)
        sue_sites = (await api.call("sue", "GET", "/api/v1/sites"))[1]["sites"]
        assert [s["name"] for s in sue_sites] == ["dhaka"]
        for user, method, p, body in forbidden:
            status, data = await api.call(user, method, p, body)
            assert status == 403, (user, method, p, data)
        assert not any(s.drained for s in bridge.state.sites.values())
        st, csv_text = await api.call("ada", "GET", "/api/v1/audit?format=csv")
        assert st == 200 and csv_text.startswith("seq,at,actor")
        trail = bridge.access.trail
        assert trail is not None
        await until(lambda: trail.writer.status().caught_up, 10, "the audit trail written")

    done = await asyncio.to_thread(ccbridge, lab_config, "audit", "verify", cfg)
    assert done.returncode == 0, done.stderr
    rows = int(done.stdout.split(":")[1].split()[0])
    # 4 users added, 4 logins, every mutating call, the denials, the audit reads
    assert rows >= 4 + 4 + len(forbidden) + 12
    denied = await asyncio.to_thread(edit_one_denial, tmp_path / "ccbridge.db")
    assert len(denied) == len(forbidden)
    done = await asyncio.to_thread(ccbridge, lab_config, "audit", "verify", cfg)
    assert done.returncode == 2 and "BROKEN" in done.stderr
