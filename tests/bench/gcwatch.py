"""Bench only: ``ccbridge`` with the garbage collector watched, and its thresholds set.

``python -m tests.bench.gcwatch run deploy.yaml`` runs the bridge as ``ccbridge run``
does; ``CCB_BENCH_GC=a,b,c`` sets ``gc.set_threshold(a, b, c)`` first. At exit it prints
one line, ``gcwatch: ...``: collections per generation, then every generation-2 one
(each holds the event loop for its whole length) as ``monotonic_end:ms``, for
bench_ceiling to place in its steps (``time.monotonic`` is the system's clock, the same
in every process).
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time

_started = 0.0
_counts = [0, 0, 0]
_gen2: list[tuple[float, float]] = []  # (monotonic at the end, seconds)


def _on_gc(phase: str, info: dict[str, int]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
        return
    generation = info.get("generation", 0)
    _counts[generation] += 1
    if generation == 2:
        _gen2.append((time.monotonic(), time.perf_counter() - _started))


def summary() -> str:
    gen2 = " ".join(f"{end:.3f}:{1000 * took:.1f}" for end, took in _gen2)
    threshold = ",".join(map(str, gc.get_threshold()))
    return f"gcwatch: threshold {threshold} collections {_counts} gen2 {gen2}"


def parse(line: str) -> tuple[str, list[tuple[float, float]]]:
    """(threshold, [(monotonic end, ms)]) from a ``summary()`` line."""
    head, _, gen2 = line.partition(" gen2 ")
    pairs = [tuple(map(float, p.split(":"))) for p in gen2.split()]
    return head.split()[2], [(a, b) for a, b in pairs]


def main() -> int:
    raw = os.environ.get("CCB_BENCH_GC", "")
    if raw:
        a, b, c = (int(x) for x in raw.split(","))
        gc.set_threshold(a, b, c)
    gc.callbacks.append(_on_gc)
    watch = os.environ.get("CCB_BENCH_LOOPWATCH", "")
    if watch:  # milliseconds: what holds the event loop (tests/bench/loopwatch.py)
        from tests.bench import loopwatch

        loopwatch.install(float(watch))
    atexit.register(lambda: print(summary(), file=sys.stderr, flush=True))
    from ccbridge.cli import main as ccbridge_main

    return ccbridge_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
