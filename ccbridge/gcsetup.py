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
every FastAGI connection's transport is cyclic garbage: the young collections take it).
Cyclic garbage that outlived two young collections waits longer for its full
collection, so the third threshold is raised, not disabled: a full collection after
1,000 generation-1 collections (~10,000 young ones; CPython also waits until a quarter
of what the last full collection kept is new) instead of 10. The young generations keep
Python's defaults: each walks at most a few thousand objects.

Python 3.11 has no incremental collector, so this is the lever left without a
collection of our own on a timer (which would stall the loop as long, at a moment no
better chosen). Set in ``ccbridge run`` before the configuration is read: parsing the
deployment file made four full collections of 47,000-277,000 objects (up to 210 ms).
"""

from __future__ import annotations

import gc

# Python's own young thresholds, and full collections a hundred times rarer. (Not Final:
# the ceiling bench's CCB_BENCH_GC sets its own, tests/bench/gcwatch.py.)
THRESHOLDS: tuple[int, int, int] = (700, 10, 1000)


def tune() -> None:
    """Set the collector's thresholds for a long-running bridge (process-wide)."""
    gc.set_threshold(*THRESHOLDS)
