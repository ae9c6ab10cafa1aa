"""Records as the ingest will produce them, for the store tests and the bench."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ccbridge.store.schema import Outcome

T0 = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)


def call_records(n: int, site: str = "dhaka") -> list[tuple[str, dict[str, Any]]]:
    """For call n: the arrival, its leg, two events, and the end (the calls row in
    two parts, as the ingest writes it)."""
    cid = f"c{n:08d}"
    at = T0 + timedelta(seconds=n)
    head = {"call_id": cid, "entry_site": site, "arrived_at": at}
    return [
        ("calls", {**head, "did": "+8809600000001", "caller_number": "+8801712345678"}),
        ("legs", {"call_id": cid, "site": site, "linkedid": f"{n}.1", "queued_at": at}),
        (
            "call_events",
            {
                "site": site,
                "event_key": f"{n}.1/QueueCallerJoin",
                "call_id": cid,
                "at": at,
                "name": "QueueCallerJoin",
                "fields": {"Queue": "orders-en"},
            },
        ),
        (
            "call_events",
            {
                "site": site,
                "event_key": f"{n}.1/AgentConnect",
                "call_id": cid,
                "at": at + timedelta(seconds=7),
                "name": "AgentConnect",
                "fields": {"HoldTime": "7"},
            },
        ),
        (
            "calls",
            {
                **head,
                "answered_at": at + timedelta(seconds=7),
                "wait_s": 7.0,
                "talk_s": 63.5,
                "agent": "dac-agent2",
                "outcome": Outcome.ANSWERED,
                "hung_up_by": "caller",
            },
        ),
    ]
