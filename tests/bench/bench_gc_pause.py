"""Benchmark: the loop stall of a full garbage collection in a started bridge, with and
without ``gc.freeze()`` (Bridge.start freezes what start-up built).

Run: ``.venv/bin/python -m tests.bench.bench_gc_pause [--repeat N]``. Starts a Bridge on
examples/lab.yaml with its AMI pointed at a closed port (no lab needed), measures
``gc.collect()`` (what a generation-2 collection costs the event loop, in one callback)
before and after the freeze, and prints both and their ratio. Single-threaded, one core.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ccbridge.app import Bridge
from ccbridge.config import load_config
from ccbridge.config.model import HostPort

REPO = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _collect_ms(repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gc.collect()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def main(repeat: int) -> None:
    os.environ.setdefault("CCBRIDGE_AMI_SECRET", "bench")
    os.environ.setdefault("CCBRIDGE_API_TOKEN", "bench")
    config = load_config(REPO / "examples" / "lab.yaml")
    port = _closed_port()
    sites = tuple(replace(s, ami=replace(s.ami, host="127.0.0.1", port=port)) for s in config.sites)
    local = HostPort("127.0.0.1", 0)
    bridge_settings = replace(config.bridge, agi_listen=local, http_listen=local)
    bridge = Bridge(replace(config, sites=sites, bridge=bridge_settings))
    await bridge.start()
    try:
        frozen = _collect_ms(repeat)
        gc.unfreeze()
        unfrozen = _collect_ms(repeat)
        gc.freeze()
    finally:
        await bridge.stop()
    objects = len(gc.get_objects()) + gc.get_freeze_count()
    med_u, med_f = statistics.median(unfrozen), statistics.median(frozen)
    print(f"objects tracked: {objects}")
    print(f"full collection, not frozen: median {med_u:.2f} ms, max {max(unfrozen):.2f} ms")
    us_f, us_max = med_f * 1000, max(frozen) * 1000
    print(f"full collection, frozen:     median {us_f:.1f} us, max {us_max:.1f} us")
    print(f"not frozen / frozen: {med_u / med_f:,.0f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    asyncio.run(main(parser.parse_args().repeat))
