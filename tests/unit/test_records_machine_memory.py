"""The record machine's per-call state fits its share of the bridge's 100 MB RSS bound
(BENCHMARKS.md section 4): what an ended call costs while it lingers for late events."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime

from tests.unit.records_streams import decide, feed_all, lab_config, load, machine, renumbered

LATER = datetime(2100, 1, 1, tzinfo=UTC)  # every ended call's linger is over
# Bytes the machine holds for an answered call with its decision, ended and lingering for
# a late site's events (the longest a call is held: 10 s at 150 calls/s is 1,500 calls).
# 2,326 before its state was compacted (interned names, no uniqueids kept past the
# first BridgeLeave, no empty IVR list, the reasons' own enum strings): 1,653 after.
CALL_SHARE = 1_800


def test_an_ended_call_lingering_in_the_record_machine_costs_under_its_share() -> None:
    config = lab_config()
    stream = load("answered")
    m = machine(config)
    n = 600
    for i in range(n, n + 50):  # the router's and the machine's one-time costs, first
        warm = renumbered(stream, i)
        decide(m, config, warm)
        feed_all(m, warm)
    m.sweep(LATER)
    del warm
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            call = renumbered(stream, i)
            decide(m, config, call)
            feed_all(m, call)
        del call
        gc.collect()
        per_call = (tracemalloc.get_traced_memory()[0] - base) / n
    finally:
        tracemalloc.stop()
    held = list(m.calls.values())
    assert len(held) == n and all(c.ended is not None for c in held)  # ended, lingering
    assert per_call < CALL_SHARE, f"{per_call:.0f} bytes a call"
    # what it no longer keeps: the channels' uniqueids once the bridge said who left first
    legs = [lg for c in held for lg in c.legs.values()]
    assert all(lg.agent_uniqueid is None and lg.first_leave == "caller" for lg in legs)
    # names held once, not once a call
    assert len({id(lg.agent) for lg in legs}) == 1
    assert len({id(c.cid.entry_site) for c in held}) == 1
