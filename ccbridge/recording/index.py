"""The recordings table: each recording indexed on its call (SQLAlchemy Core, both engines).

Every write is an upsert on (call_id, recording_id): a recording seen twice (a rescan after
a crash, two bridges) stays one row. A stored row is never turned back into a failed one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ccbridge.store import dialects
from ccbridge.store.schema import RecordingStatus, recordings

_KEYS = ["call_id", "recording_id"]
MAX_ERROR = 255


@dataclass(frozen=True, slots=True)
class RecordingRow:
    call_id: str
    recording_id: str
    site: str
    status: str
    started_at: datetime | None
    duration_s: float | None
    size: int | None
    sha256: str | None
    key_id: str | None
    storage_key: str | None
    pauses: list[list[str | None]]
    error: str | None
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        """What the API shows of it (the storage key stays inside)."""
        return {
            "recording_id": self.recording_id,
            "site": self.site,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "duration_s": self.duration_s,
            "size": self.size,
            "sha256": self.sha256,
            "key_id": self.key_id,
            "pauses": self.pauses,
            "error": self.error,
        }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t is not None else None


def _insert(conn: AsyncConnection) -> Any:
    return dialects.insert(conn.dialect.name, recordings)


async def _upsert(
    engine: AsyncEngine,
    key: tuple[str, str, str],
    status: RecordingStatus,
    now: datetime,
    fields: dict[str, Any],
    update: Sequence[str],
) -> None:
    """Insert the row of ``key`` (call ID, recording ID, site) or, when it exists, set
    ``update`` (and updated_at) from ``fields``; ``update`` empty: leave it as it is."""
    call_id, rid, site = key
    values = {
        "call_id": call_id,
        "recording_id": rid,
        "site": site,
        "status": status.value,
        "pauses": [],
        "updated_at": now,
        **fields,
    }
    async with engine.begin() as conn:
        if status == RecordingStatus.FAILED:
            row = await _get(conn, call_id, rid)
            if row is not None and row.status == RecordingStatus.STORED:
                return  # a rescan's late failure never hides a stored recording
        ins = _insert(conn).values(**values)
        if update:
            sets = {k: ins.excluded[k] for k in (*update, "updated_at")}
            stmt = ins.on_conflict_do_update(index_elements=_KEYS, set_=sets)
        else:
            stmt = ins.on_conflict_do_nothing(index_elements=_KEYS)
        await conn.execute(stmt)


async def started(
    engine: AsyncEngine, call_id: str, rid: str, site: str, at: datetime, now: datetime
) -> None:
    """MixMonitor started: a row with status recording, unless the recording has one."""
    key = (call_id, rid, site)
    await _upsert(engine, key, RecordingStatus.RECORDING, now, {"started_at": at}, ())


async def set_pauses(
    engine: AsyncEngine,
    call_id: str,
    rid: str,
    site: str,
    pauses: list[list[str | None]],
    now: datetime,
) -> None:
    key = (call_id, rid, site)
    await _upsert(engine, key, RecordingStatus.RECORDING, now, {"pauses": pauses}, ("pauses",))


async def stored(
    engine: AsyncEngine,
    *,
    call_id: str,
    rid: str,
    site: str,
    duration_s: float,
    size: int,
    sha256: str,
    key_id: str,
    storage_key: str,
    now: datetime,
) -> None:
    fields = {
        "duration_s": duration_s,
        "size": size,
        "sha256": sha256,
        "key_id": key_id,
        "storage_key": storage_key,
        "error": None,
    }
    await _upsert(
        engine, (call_id, rid, site), RecordingStatus.STORED, now, fields, ("status", *fields)
    )


async def failed(
    engine: AsyncEngine, call_id: str, rid: str, site: str, error: str, now: datetime
) -> None:
    """The last try failed; a row already stored stays stored (a rescan's late failure)."""
    fields = {"error": error[:MAX_ERROR]}
    await _upsert(
        engine, (call_id, rid, site), RecordingStatus.FAILED, now, fields, ("status", "error")
    )


def _row(r: Any) -> RecordingRow:
    m = r._mapping
    return RecordingRow(
        **{k: m[k] for k in RecordingRow.__slots__ if k != "pauses"},
        pauses=list(m["pauses"] or []),
    )


async def _get(conn: AsyncConnection, call_id: str, rid: str) -> RecordingRow | None:
    c = recordings.c
    r = (
        await conn.execute(select(recordings).where(c.call_id == call_id, c.recording_id == rid))
    ).first()
    return _row(r) if r is not None else None


async def get(engine: AsyncEngine, call_id: str, rid: str) -> RecordingRow | None:
    async with engine.connect() as conn:
        return await _get(conn, call_id, rid)


async def for_call(engine: AsyncEngine, call_id: str) -> list[RecordingRow]:
    c = recordings.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(recordings).where(c.call_id == call_id).order_by(c.started_at, c.id)
        )
        return [_row(r) for r in rows]


async def keys_of_calls(conn: AsyncConnection, call_ids: Sequence[str]) -> list[str]:
    """The storage keys of the calls' stored recordings (retention and erasure)."""
    c = recordings.c
    rows = await conn.execute(
        select(c.storage_key).where(c.call_id.in_(list(call_ids)), c.storage_key.is_not(None))
    )
    return [str(k) for (k,) in rows if k]


async def delete_calls(conn: AsyncConnection, call_ids: Sequence[str]) -> int:
    r = await conn.execute(delete(recordings).where(recordings.c.call_id.in_(list(call_ids))))
    return int(r.rowcount or 0)
