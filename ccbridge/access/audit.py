"""Writing the audit trail: ``AuditTrail`` in the bridge (through a RecordWriter: journaled
first, so a database blip loses nothing), ``append`` for commands that audit what they do
(``ccbridge users``, deploys) in their own transaction.

For a helper that needs to audit an action (e.g. a deploy)::

    from ccbridge.access.audit import AuditEvent, append
    await append(engine, AuditEvent(actor="alice", source="cli", action="deploy.apply",
                                    object="release:42", site="dhaka", result="ok"))

and in the bridge, with the ``AuditTrail`` the HTTP app holds: ``trail.record(event)``.
Keep caller numbers, tokens and passwords out of every field but ``details`` (the part
that can be erased).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.store.audit import append_rows
from ccbridge.store.records import check_record
from ccbridge.store.writer import RecordWriter

RESULTS = ("ok", "denied", "unauthorized", "failed", "limited")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    actor: str  # user name, "bootstrap", or "anonymous"
    source: str  # the client's address, or "cli"
    action: str  # e.g. "POST /api/v1/sites/{name}/drain", "login", "users.add"
    result: str  # one of RESULTS
    object: str | None = None  # e.g. "site:bangalore", "agent:a7", "user:bob"
    site: str | None = None
    status: int | None = None  # the HTTP status, for API calls
    details: Mapping[str, Any] | None = None  # erasable
    at: datetime | None = None  # default: now
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def values(self, now: Callable[[], datetime]) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "at": self.at or now(),
            "actor": self.actor[:64],
            "source": self.source[:64],
            "action": self.action[:80],
            "object": self.object[:160] if self.object else None,
            "site": self.site[:64] if self.site else None,
            "result": self.result,
            "status": self.status,
            "details": dict(self.details) if self.details is not None else None,
        }


def utc_now() -> datetime:
    return datetime.now(UTC)


def cli_actor() -> str:
    """Who runs a command, as audit rows name them: ``cli:`` and the login (sudo's)."""
    import getpass
    import os

    try:
        who = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return f"cli:{who}"[:64]


class AuditTrail:
    """The bridge's audit trail: ``record`` never waits and never raises."""

    def __init__(self, writer: RecordWriter, now: Callable[[], datetime] = utc_now) -> None:
        self.writer = writer
        self.now = now

    def record(self, event: AuditEvent) -> bool:
        """Queue one row (journaled within the writer's flush interval); False when the
        writer refused it (counted in its metrics)."""
        return self.writer.put("audit", event.values(self.now))

    async def start(self) -> None:
        await self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()


async def append(
    engine: AsyncEngine, *events: AuditEvent, now: Callable[[], datetime] = utc_now
) -> int:
    """Write events now, in one transaction (for commands; the bridge uses AuditTrail)."""
    rows = [check_record("audit", e.values(now)).values for e in events]
    async with engine.begin() as conn:
        return await append_rows(conn, rows)


async def erase_audit_details(engine: AsyncEngine, number: str, calls: int) -> int:
    """The audit side of erasing a caller's number (`ccbridge records erase`): the details
    of every audit row that mention it are erased (the chain still verifies), and the
    erasure itself is audited, without the number. Rows erased."""
    from ccbridge.store.audit import erase_details

    now = utc_now()
    async with engine.begin() as conn:
        n = await erase_details(conn, number, now)
        event = AuditEvent(
            cli_actor(), "cli", "records.erase", "ok", details={"calls": calls, "audit_rows": n}
        )
        await append_rows(conn, [check_record("audit", event.values(lambda: now)).values])
    return n
