"""The record writer's memory queue at its default size, full of the ingest's own records,
fits a fixed share of the bridge's 100 MB RSS bound (BENCHMARKS.md section 4)."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime

from ccbridge.config.store import StoreSettings
from ccbridge.store.records import Record
from tests.unit.records_streams import call_id_of, feed_all, load, machine

SHARE = 16 * 2**20  # bytes: the queue's share of the 100 MB bound
SAMPLE = 4_000  # records measured; every call has the same shape, so the cost is linear
LATER = datetime(2100, 1, 1, tzinfo=UTC)  # every ended call's linger is over


def test_a_full_default_memory_queue_fits_its_share_of_the_rss_bound() -> None:
    size = StoreSettings().queue_size
    stream = load("answered")
    cid = call_id_of(stream)
    entry, epoch = cid.split(":")[0], cid.split(":")[1].split(".")[0]
    m = machine()
    held: list[Record] = []
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        n = 0
        while len(held) < SAMPLE:
            # the recorded call again with its own call ID and channels
            ids = {cid: f"{entry}:{int(epoch) + n}.000000:{n}"}
            ids[f"{entry}-{epoch}."] = f"{entry}-{int(epoch) + n}."
            call = []
            for site, ev in stream:
                values = dict(ev)
                for k, v in values.items():
                    for old, new in ids.items():
                        v = v.replace(old, new)
                    values[k] = v
                call.append((site, values))
            held += [Record(table, values) for table, values in feed_all(m, call)]
            m.sweep(LATER)  # the machine forgets the ended call: the queue alone holds it
            n += 1
        del call
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    full = used / len(held) * size
    assert len(m.calls) == 0 and n > 100
    assert full < SHARE, f"{size:,} queued records would hold {full / 2**20:.1f} MiB"
