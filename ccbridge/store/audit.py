"""The audit chain: append rows with each one's hash over the previous row's, verify it,
erase a row's details without breaking it, and read it back.

Each row's ``hash`` is SHA-256 over a canonical JSON list of its sequence number, event
id, instant, actor, source, action, object, site, result, status, ``details_hash`` (the
SHA-256 of its details' canonical JSON) and the previous row's hash. ``audit_head`` holds
the last sequence number and hash. So:

- an edited row no longer hashes to its ``hash`` (or its details to ``details_hash``);
- a deleted row leaves a gap in the sequence and a ``prev_hash`` that points nowhere;
- deleted newest rows leave the head pointing past the table's end;
- erasing a row's details (``erase_details``: a caller's number on request) sets
  ``details`` to NULL and ``erased_at``: the row keeps ``details_hash``, so its hash and
  every later one still verify; only that row's details can no longer be checked.

Retention (``purge_before``) keeps the chain verifiable: the last purged row's sequence
number and hash become the chain's **anchor** (``audit_head`` row ``ANCHOR_ID``; verify
starts from it instead of the genesis hash), and the purge is itself an audit row
(action ``audit.purge``) whose ``object`` names the anchor, ``audit-chain:SEQ:HASH``.
``object`` is covered by the row's hash and never erased, so a verify checks that the
anchor is the one the newest purge recorded: moving the anchor forward to hide deleted
rows breaks the chain like deleting them. The anchor and the purge row are written in
one transaction before any row is deleted, so a purge cut short leaves rows below the
anchor that verify skips and the next purge deletes.

Who appends: the bridge through its RecordWriter (``write.py`` hands audit records
here inside the batch's transaction, so journal replay and two bridges are safe: rows
already written are skipped by event id, and the head row is locked first), and
commands (``ccbridge users``, deploys) through ``ccbridge.access.audit.append``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ccbridge.store.schema import audit, audit_head

GENESIS = "0" * 64
HEAD_ID = 1
ANCHOR_ID = 2  # audit_head's second row: the last purged row (absent: nothing purged)
PURGE_ACTION = "audit.purge"
PURGE_BATCH = 2000  # rows deleted per transaction: the writer is never locked out long
_HEAD = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ID)
_HEAD_LOCK = update(audit_head).where(audit_head.c.id == HEAD_ID).values(seq=audit_head.c.seq)
_FIELDS = ("event_id", "at", "actor", "source", "action", "object", "site", "result", "status")


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def details_hash(details: Any) -> str:
    return hashlib.sha256(canonical(details)).hexdigest()


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_hash(row: Mapping[str, Any], prev_hash: str) -> str:
    parts: list[Any] = [row["seq"]]
    for f in _FIELDS:
        v = row.get(f)
        parts.append(_instant(v) if isinstance(v, datetime) else v)
    parts += [row["details_hash"], prev_hash]
    return hashlib.sha256(canonical(parts)).hexdigest()


async def append_rows(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Chain and insert ``rows`` (audit records' values, in order) in the connection's
    transaction; rows whose event id is already there are skipped. Rows added."""
    if not rows:
        return 0
    # Take the write lock on the head first (a row lock on PostgreSQL, the database's
    # write lock on SQLite), so two writers chain one after the other.
    await conn.execute(
        update(audit_head).where(audit_head.c.id == HEAD_ID).values(seq=audit_head.c.seq)
    )
    head = (
        await conn.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ID)
        )
    ).first()
    if head is None:  # the migration writes the head row; be safe on a hand-made table
        await conn.execute(audit_head.insert().values(id=HEAD_ID, seq=0, hash=GENESIS))
        seq, prev = 0, GENESIS
    else:
        seq, prev = int(head.seq), str(head.hash)
    ids = [r["event_id"] for r in rows]
    seen = set(
        (await conn.execute(select(audit.c.event_id).where(audit.c.event_id.in_(ids)))).scalars()
    )
    out: list[dict[str, Any]] = []
    for r in rows:
        if r["event_id"] in seen:
            continue
        seen.add(r["event_id"])
        seq += 1
        row = {f: r.get(f) for f in _FIELDS}
        row["details"] = r.get("details")
        row["seq"] = seq
        row["details_hash"] = details_hash(row["details"])
        row["prev_hash"] = prev
        row["hash"] = prev = row_hash(row, prev)
        row["erased_at"] = None
        out.append(row)
    if out:
        await conn.execute(audit.insert(), out)
        await conn.execute(
            update(audit_head).where(audit_head.c.id == HEAD_ID).values(seq=seq, hash=prev)
        )
    return len(out)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    rows: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def anchor_object(seq: int, hash_: str) -> str:
    """The ``object`` of the purge row that set the anchor to row ``seq``."""
    return f"audit-chain:{seq}:{hash_}"


async def anchor(conn: AsyncConnection) -> tuple[int, str]:
    """Where the chain starts: the last purged row's sequence number and hash."""
    row = (
        await conn.execute(
            select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == ANCHOR_ID)
        )
    ).first()
    return (0, GENESIS) if row is None else (int(row.seq), str(row.hash))


@dataclass(frozen=True, slots=True)
class AuditPurged:
    anchor: int  # the chain now starts after this row
    rows: int  # rows deleted by this call


async def purge_before(
    engine: AsyncEngine,
    before: datetime,
    *,
    actor: str,
    source: str,
    now: datetime,
) -> AuditPurged:
    """Delete the audit rows older than ``before`` (the oldest run of them: a row is
    kept while an older-numbered one is kept), after moving the anchor past them and
    recording the purge as an audit row. The chain still verifies (module docstring)."""
    async with engine.begin() as conn:
        await conn.execute(_HEAD_LOCK)  # one purge or append at a time
        start, _ = await anchor(conn)
        head = (await conn.execute(_HEAD)).first()
        last = int(head.seq) if head is not None else 0
        first_kept = (
            await conn.execute(
                select(func.min(audit.c.seq)).where(audit.c.seq > start, audit.c.at >= before)
            )
        ).scalar()
        through = last if first_kept is None else int(first_kept) - 1
        if through > start:
            hash_: str = (
                await conn.execute(select(audit.c.hash).where(audit.c.seq == through))
            ).scalar_one()
            moved = await conn.execute(
                update(audit_head)
                .where(audit_head.c.id == ANCHOR_ID)
                .values(seq=through, hash=hash_)
            )
            if moved.rowcount == 0:
                await conn.execute(
                    audit_head.insert().values(id=ANCHOR_ID, seq=through, hash=hash_)
                )
            event = {
                "event_id": str(uuid.uuid4()),
                "at": now,
                "actor": actor[:64],
                "source": source[:64],
                "action": PURGE_ACTION,
                "object": anchor_object(through, hash_),
                "site": None,
                "result": "ok",
                "status": None,
                "details": {"rows": through - start, "before": _instant(before)},
            }
            await append_rows(conn, [event])
        else:
            through = start
    deleted = 0
    while True:  # also what an earlier purge cut short left below the anchor
        async with engine.begin() as conn:
            low = (
                await conn.execute(select(func.min(audit.c.seq)).where(audit.c.seq <= through))
            ).scalar()
            if low is None:
                break
            r = await conn.execute(
                delete(audit).where(audit.c.seq <= min(through, int(low) + PURGE_BATCH - 1))
            )
            deleted += r.rowcount
    return AuditPurged(through, deleted)


async def verify(conn: AsyncConnection, chunk: int = 2000, max_problems: int = 20) -> VerifyResult:
    """Walk the chain in order from its anchor; every edited, deleted or reordered row is
    a problem, and so is an anchor the newest purge row does not name."""
    problems: list[str] = []
    start, prev = await anchor(conn)
    prev0 = prev
    expected_seq = start + 1
    n = 0
    last = start
    purge_named: str | None = None  # the anchor the newest purge row recorded
    while len(problems) < max_problems:
        rows = (
            (
                await conn.execute(
                    select(audit).where(audit.c.seq > last).order_by(audit.c.seq).limit(chunk)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            break
        for row in rows:
            n += 1
            seq = row["seq"]
            if seq != expected_seq:
                problems.append(f"rows {expected_seq}..{seq - 1} are missing (deleted?)")
            if row["prev_hash"] != prev:
                problems.append(f"row {seq}: does not follow row {seq - 1} (previous hash differs)")
            if row_hash(dict(row), row["prev_hash"]) != row["hash"]:
                problems.append(f"row {seq}: its content does not match its hash (edited?)")
            if row["erased_at"] is None and details_hash(row["details"]) != row["details_hash"]:
                problems.append(f"row {seq}: its details do not match their hash (edited?)")
            if row["action"] == PURGE_ACTION:
                purge_named = row["object"]
            prev = row["hash"]
            expected_seq = seq + 1
            last = seq
    if start > 0 and len(problems) < max_problems and purge_named != anchor_object(start, prev0):
        problems.append(
            f"the chain starts after row {start}, but no purge row records that "
            "(rows deleted and the anchor moved?)"
        )
    head = (await conn.execute(_HEAD)).first()
    if head is None:
        problems.append("the audit head row is missing")
    elif len(problems) < max_problems and (head.seq != last or head.hash != prev):
        problems.append(
            f"the chain ends at row {last} but its head says row {head.seq} (newest rows deleted?)"
        )
    return VerifyResult(n, tuple(problems[:max_problems]))


def _mentions(value: Any, digits: str) -> bool:
    """True when a text in ``value`` holds the number's digits (+, spaces, dashes and a
    missing country prefix's + aside: the digits are compared, as the records erase does)."""
    if isinstance(value, str):
        return digits in "".join(ch for ch in value if ch.isdigit())
    if isinstance(value, dict):
        return any(_mentions(v, digits) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, digits) for v in value)
    return False


async def erase_details(conn: AsyncConnection, number: str, now: datetime) -> int:
    """Erase the details of every row whose details mention ``number`` (a caller's,
    at least 5 digits); the chain stays verifiable. Rows erased."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) < 5:
        return 0
    seqs: list[int] = []
    last = 0
    while True:
        found = (
            await conn.execute(
                select(audit.c.seq, audit.c.details)
                .where(audit.c.seq > last, audit.c.details.is_not(None))
                .order_by(audit.c.seq)
                .limit(2000)
            )
        ).all()
        if not found:
            break
        # Searched in Python: the JSON column's text form differs between the engines.
        seqs += [r.seq for r in found if _mentions(r.details, digits)]
        last = found[-1].seq
    for i in range(0, len(seqs), 500):
        await conn.execute(
            update(audit)
            .where(audit.c.seq.in_(seqs[i : i + 500]))
            .values(details=None, erased_at=now)
        )
    return len(seqs)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    site: str | None = None
    action: str | None = None
    after_seq: int = 0
    limit: int = 500


async def rows(conn: AsyncConnection, q: AuditQuery) -> list[dict[str, Any]]:
    stmt = select(audit).where(audit.c.seq > q.after_seq)
    if q.since is not None:
        stmt = stmt.where(audit.c.at >= q.since)
    if q.until is not None:
        stmt = stmt.where(audit.c.at < q.until)
    if q.actor is not None:
        stmt = stmt.where(audit.c.actor == q.actor)
    if q.site is not None:
        stmt = stmt.where(audit.c.site == q.site)
    if q.action is not None:
        stmt = stmt.where(audit.c.action == q.action)
    result = await conn.execute(stmt.order_by(audit.c.seq).limit(q.limit))
    return [dict(r) for r in result.mappings().all()]


async def count(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(audit))).scalar_one())


async def iterate(conn: AsyncConnection, q: AuditQuery) -> AsyncIterator[dict[str, Any]]:
    """Every row of the query, in pages (for CSV of any size)."""
    after = q.after_seq
    while True:
        page = await rows(conn, replace(q, after_seq=after, limit=1000))
        for r in page:
            yield r
        if len(page) < 1000:
            return
        after = page[-1]["seq"]
