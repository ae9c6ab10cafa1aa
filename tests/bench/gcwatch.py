"""Bench only: ``ccbridge`` with the garbage collector watched, and its thresholds set.

``python -m tests.bench.gcwatch run deploy.yaml`` runs the bridge as ``ccbridge run``
does; ``CCB_BENCH_GC=a,b,c`` sets ``gc.set_threshold(a, b, c)`` first. At exit it prints
one line, ``gcwatch: ...``: collections per generation, then every generation-2 one
(each holds the event loop for its whole length) as ``monotonic_end:ms``, for
bench_ceiling to place in its steps (``time.monotonic`` is the system's clock, the same
in every process). ``CCB_BENCH_GCSIZES=1`` adds each full collection's objects walked,
objects freed and thread CPU ms (``sizes``); ``gen2`` also prints generation 2's content
by type before each; ``types`` keeps every unreachable object (``gc.DEBUG_SAVEALL``) and
prints them by type at exit (``gctypes:``). Each walks the heap: bench only.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time

_started = 0.0
_SIZES = os.environ.get("CCB_BENCH_GCSIZES", "")  # walk generation 2 before each full one
_counts = [0, 0, 0]
_gen2: list[tuple[float, float]] = []  # (monotonic at the end, seconds)
_collected = [0, 0, 0]  # objects each generation's collections freed
_sizes: list[tuple[int, int, float]] = []  # generation 2's collections: (objects walked, freed)
_walked = 0
_cpu_started = [0.0]
_LONG_MS = float(os.environ.get("CCB_BENCH_GCLONG", "0") or 0)  # any generation's over this
_long: list[tuple[int, float, float]] = []  # (generation, monotonic at the end, ms)


def _on_gc(phase: str, info: dict[str, int]) -> None:
    global _started, _walked
    generation = info.get("generation", 0)
    if phase == "start":
        if generation == 2 and _SIZES:
            _walked = len(gc.get_objects(2)) + len(gc.get_objects(1)) + len(gc.get_objects(0))
            if _SIZES == "gen2":
                from collections import Counter

                top = Counter(type(o).__qualname__ for o in gc.get_objects(2)).most_common(12)
                print(f"gen2 at {time.monotonic():.3f}: {_walked} {top}", file=sys.stderr)
        _started = time.perf_counter()
        _cpu_started[0] = time.thread_time()
        return
    took = time.perf_counter() - _started
    _counts[generation] += 1
    _collected[generation] += info.get("collected", 0)
    if _LONG_MS and 1000 * took >= _LONG_MS:
        _long.append((generation, time.monotonic(), 1000 * took))
    if generation == 2:
        _gen2.append((time.monotonic(), took))
        cpu_ms = round(1000 * (time.thread_time() - _cpu_started[0]), 1)
        _sizes.append((_walked, info.get("collected", 0), cpu_ms))


def summary() -> str:
    gen2 = " ".join(f"{end:.3f}:{1000 * took:.1f}" for end, took in _gen2)
    threshold = ",".join(map(str, gc.get_threshold()))
    if _SIZES == "types":  # what the collections found unreachable, by type (DEBUG_SAVEALL)
        from collections import Counter

        top = Counter(type(o).__qualname__ for o in gc.garbage).most_common(25)
        print(f"gctypes: {len(gc.garbage)} {top}", file=sys.stderr, flush=True)
    sizes = f" sizes {_sizes} collected {_collected}" if _SIZES else ""
    if _LONG_MS:
        long = " ".join(f"{g}@{end:.3f}:{ms:.1f}" for g, end, ms in _long)
        print(f"gclong: {long}", file=sys.stderr)
    return f"gcwatch: threshold {threshold} collections {_counts}{sizes} gen2 {gen2}"


def parse(line: str) -> tuple[str, list[tuple[float, float]]]:
    """(threshold, [(monotonic end, ms)]) from a ``summary()`` line."""
    head, _, gen2 = line.partition(" gen2 ")
    pairs = [tuple(map(float, p.split(":"))) for p in gen2.split()]
    return head.split()[2], [(a, b) for a, b in pairs]


def main() -> int:
    raw = os.environ.get("CCB_BENCH_GC", "")
    if raw:  # in place of ccbridge run's own (ccbridge/gcsetup.py)
        from ccbridge import gcsetup

        a, b, c = (int(x) for x in raw.split(","))
        gcsetup.THRESHOLDS = (a, b, c)
        gc.set_threshold(a, b, c)
    gc.callbacks.append(_on_gc)
    if _SIZES == "types":
        gc.set_debug(gc.DEBUG_SAVEALL)
    watch = os.environ.get("CCB_BENCH_LOOPWATCH", "")
    if watch:  # milliseconds: what holds the event loop (tests/bench/loopwatch.py)
        from tests.bench import loopwatch

        loopwatch.install(float(watch))
    atexit.register(lambda: print(summary(), file=sys.stderr, flush=True))
    from ccbridge.cli import main as ccbridge_main

    return ccbridge_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
