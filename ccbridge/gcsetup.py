"""The garbage collector's thresholds for ``ccbridge run``: full collections made rare.

A full (generation-2) collection walks every tracked object not frozen, all inside
whatever loop callback it hits. After start-up and the first sync are frozen
(ccbridge/app.py), what is left in generation 2 is the live state's current version:
the queue members (``Member`` and ``MemberExtra`` are named tuples, which CPython never
untracks, only exact tuples) and the ``immutables.Map`` nodes that hold them, ~28,000
objects at 20 sites and 5,000 agents, 21 ms of the loop thread's CPU a collection on the
shared 2-core machine (BENCHMARKS §12, ninth session). With Python's default (700, 10,
10) one came every few seconds at 500 calls/s, and one in a 3 s step puts p99 over 5 ms.

They find little: 0-800 objects each in the ceiling bench, against 60,000 a run for the
young generations (asyncio's socket transports hold a bound method of themselves, so
every FastAGI connection's transport was cyclic garbage: the young collections took it;
the FastAGI server's own transport, agi/transport.py, is freed by reference counting).
Cyclic garbage that outlived two young collections waits longer for its full
collection, so full collections are made rarer, not disabled: one after 7,000,000 net
allocations of tracked objects (CPython also waits until a quarter of what the last full
collection kept is new) instead of Python's 70,000.

The youngest generation is collected after 10,000 allocations, not 700. In a ceiling
bench run at 20 sites and 5,000 agents (two 8 s steps at 1,000 calls/s, with its
warm-up and an 8 s step of AMI events alone) Python's 700 ran 874 young and 78 middle
collections, 10,000 ran 44 and 2. With 10,000 (the full collections' cadence kept:
10,000 x 10 x 70) the goal row took ~30 us less CPU a call (522 against 552 us, means of
8 steps each, alternating runs) and held p99 < 5 ms in 6 of 8 steps against 3 of 8; no
collection of any generation took over 1 ms in either (BENCHMARKS §12, twentieth
session). A young collection then walks at most ~10,000 objects.

Python 3.11 has no incremental collector, so this is the lever left without a
collection of our own on a timer (which would stall the loop as long, at a moment no
better chosen). Set in ``ccbridge run`` before the configuration is read: parsing the
deployment file made four full collections of 47,000-277,000 objects (up to 210 ms).
"""

from __future__ import annotations

import gc

# Young collections every 10,000 allocations, full ones a hundred times rarer than
# Python's (700 x 10 x 10). (Not Final: the ceiling bench's CCB_BENCH_GC sets its own,
# tests/bench/gcwatch.py.)
THRESHOLDS: tuple[int, int, int] = (10_000, 10, 70)


def tune() -> None:
    """Set the collector's thresholds for a long-running bridge (process-wide)."""
    gc.set_threshold(*THRESHOLDS)
