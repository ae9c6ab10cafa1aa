"""Write each deploy to the audit trail (ccbridge/access/audit.py): one event per site tried."""

from __future__ import annotations

import asyncio

from ccbridge.config.model import Config
from ccbridge.deploy.rollout import Outcome
from ccbridge.deploy.state import StateDir


def deploy_events(config: Config, outcome: Outcome, state: StateDir, actor: str) -> list[object]:
    from ccbridge.access.audit import AuditEvent

    events: list[object] = []
    for name in outcome.done:
        stamp = state.stamp(name)
        events.append(
            AuditEvent(
                actor=actor,
                source="cli",
                action="deploy.apply",
                result="ok",
                object=f"release:{stamp.version}" if stamp else None,
                site=name,
                details={"hash": stamp.hash} if stamp else None,
            )
        )
    if outcome.failed is not None:
        touched = outcome.failed not in outcome.not_started
        events.append(
            AuditEvent(
                actor=actor,
                source="cli",
                action="deploy.rollback" if touched else "deploy.unreachable",
                result="failed",
                site=outcome.failed,
                details={"not_started": list(outcome.not_started)},
            )
        )
    return events


async def _append(config: Config, events: list[object]) -> None:
    from ccbridge.access.audit import AuditEvent, append
    from ccbridge.store.engine import make_engine, sqlite_path
    from ccbridge.store.migrate import check_schema

    path = sqlite_path(config.store)
    if path is not None and not path.exists():
        raise OSError(f"no database file {path} (`ccbridge db upgrade CONFIG` creates it)")
    engine = make_engine(config.store)
    try:
        await check_schema(engine)
        await append(engine, *[e for e in events if isinstance(e, AuditEvent)])
    finally:
        await engine.dispose()


def write_audit(config: Config, outcome: Outcome, state: StateDir, actor: str) -> str | None:
    """Append the deploy's events; None when written, else why not (the deploy stands)."""
    events = deploy_events(config, outcome, state, actor)
    if not events:
        return None
    try:
        asyncio.run(_append(config, events))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
