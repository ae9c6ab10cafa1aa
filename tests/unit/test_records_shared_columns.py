"""Calls given the same decision share one columns dict in the record machine (~280 bytes
a call in progress): a call that learns more (a survey score, a lookup, a held route)
writes to its own copy, and no other call's record changes."""

from __future__ import annotations

from datetime import UTC, datetime

from ccbridge import variables as v
from tests.unit.records_streams import (
    call_id_of,
    decide,
    lab_config,
    load,
    machine,
    renumbered,
    rows,
)

LATER = datetime(2100, 1, 1, tzinfo=UTC)


def test_calls_with_the_same_decision_share_their_columns_until_one_learns_more() -> None:
    config = lab_config()
    m = machine(config)
    calls = [renumbered(load("answered"), i) for i in range(3)]
    texts = [call_id_of(c) for c in calls]
    first = calls[0]
    cut = next(i for i, (_, ev) in enumerate(first) if ev.get("Event") == "AgentConnect")
    for call in calls:
        decide(m, config, call)
        for site, ev in call[:cut]:
            m.feed(site, ev, LATER)
    a, b, c = (m.calls[t] for t in texts)
    assert a.columns is b.columns is c.columns  # one dict, not one a call
    # b learns its self-service lookup's outcome: b's own copy, a and c unchanged
    lookup = {
        "Event": "UserEvent",
        "UserEvent": v.EVENT_LOOKUP,
        "Linkedid": calls[1][0][1]["Linkedid"],
        "Uniqueid": calls[1][0][1]["Linkedid"],
        "ChanVariable": f"{v.CALLID}={texts[1]}",
        "Result": v.LOOKUP_OK,
        "Timestamp": first[cut][1]["Timestamp"],
    }
    assert m.feed("bangalore", lookup, LATER)
    assert b.columns is not a.columns and b.columns["lookup_outcome"] == v.LOOKUP_OK
    assert a.columns is c.columns and "lookup_outcome" not in a.columns
    # every call's row: its own facts, nothing of another's
    out = []
    for call in calls:
        for site, ev in call[cut:]:
            out += m.feed(site, ev, LATER)
    by_id = {row["call_id"]: row for row in rows(out)["calls"].values()}
    assert by_id[texts[1]]["lookup_outcome"] == v.LOOKUP_OK
    assert "lookup_outcome" not in by_id[texts[0]] and "lookup_outcome" not in by_id[texts[2]]
    assert {r["outcome"] for r in by_id.values()} == {"answered"}
    assert len({r["queue"] for r in by_id.values()}) == 1
