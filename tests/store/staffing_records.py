"""The synthetic staffing history (tests/unit/staffing_history.py) as call records: one
``calls`` record per call at a seeded instant in its slot, a ``coverage_gaps`` row for
each gap slot, handle times with a known mean, written through the RecordWriter."""

from __future__ import annotations

import random
from datetime import UTC, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from ccbridge.staffing.slots import Slot
from ccbridge.store.schema import Outcome
from ccbridge.store.writer import RecordWriter
from tests.polling import until
from tests.store.conftest import Db
from tests.unit.staffing_history import KEY, Synthetic

TZ = ZoneInfo("Asia/Kolkata")
QUEUE = "orders-en"
AHT_TALK = (120.0, 200.0)  # talk seconds, uniform: a mean of 160
HOLD, WRAPUP = 10.0, 15.0  # every answered call: the AHT is 185 s on average


def slot_start(s: Slot) -> Any:
    return s.local_start.replace(tzinfo=TZ).astimezone(UTC)


def records(syn: Synthetic, *, seed: int = 16, with_week_nine: bool = True) -> list[Any]:
    """(table, values) for every generated call, the gaps, and the held-out week's calls."""
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    counts = {(o.slot, o.complete): o.count for o in syn.history.arrivals(KEY, *_span(syn))}
    if with_week_nine:
        counts.update({(s, True): n for s, n in syn.held_out.items()})
    n_call = 0
    for (slot, complete), n in sorted(counts.items()):
        t0 = slot_start(slot)
        if not complete:
            # the AMI link was down for 20 of the slot's 30 minutes
            out.append(
                (
                    "coverage_gaps",
                    {
                        "site": KEY.site,
                        "started_at": t0 + timedelta(minutes=5),
                        "ended_at": t0 + timedelta(minutes=25),
                    },
                )
            )
        for _ in range(n):
            n_call += 1
            at = t0 + timedelta(seconds=rng.uniform(0, 1799.9))
            values: dict[str, Any] = {
                "call_id": f"syn-{n_call:07d}",
                "entry_site": KEY.site,
                "arrived_at": at,
                "queued_at": at + timedelta(seconds=2),
                "target_site": KEY.site,
                "queue": QUEUE,
                "service": KEY.service,
                "language": KEY.language,
            }
            if rng.random() < 0.9:
                values |= {
                    "outcome": Outcome.ANSWERED,
                    "talk_s": rng.uniform(*AHT_TALK),
                    "hold_s": HOLD,
                    "wrapup_s": WRAPUP,
                }
            else:
                values["outcome"] = Outcome.ABANDONED
            out.append(("calls", values))
    return out


def _span(syn: Synthetic) -> tuple[Any, Any]:
    span = syn.history.span(KEY)
    assert span is not None
    return span


async def write(db: Db, recs: list[Any], journal: Any) -> float:
    """Put every record through a RecordWriter and wait until the database holds them:
    the store's normal write path. Returns the seconds it took."""
    # Every record is put in one loop turn (the journal task never runs in between), so
    # the memory queue must hold them all: a bridge's events arrive over many turns.
    writer = RecordWriter(
        db.engine(),
        journal,
        registry=CollectorRegistry(),
        batch_size=2000,
        queue_size=len(recs) + 1,
        queue_bytes=(len(recs) + 1) * 4096,  # and their bytes: far over the 16 MiB default
    )
    await writer.start()
    try:
        for table, values in recs:
            assert writer.put(table, values), (table, values)
        return await until(
            lambda: writer.status().written >= len(recs) and writer.status().caught_up,
            120,
            "records written",
        )
    finally:
        await writer.stop()
