"""What access control costs a request (issue 13), on a started bridge with a SQLite store.

    .venv/bin/python -m tests.bench.bench_access [--requests 3000] [--concurrency 8]

Side by side in one run, over keep-alive connections from the same process (client and
bridge share the loop and the cores, so the ratios are the figures to trust):

- floor: ``GET /healthz`` (public: no token, no permission check);
- ``GET /api/v1/sites`` with the bootstrap token (a constant-time compare, an ACL check);
- ``GET /api/v1/sites`` with a store token (one indexed lookup in the store per request);
- ``POST /api/v1/sites/dhaka/drain`` with a store token (audited: one audit row each,
  journaled and written by the audit writer).

Then the pure parts: ``Principal.can`` per call (a supervisor's expanded ACL), and one
argon2id hash and verify (what a login costs, in a thread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from ccbridge.access.passwords import hash_password_sync, verify_password_sync
from tests.store.access_world import BOOTSTRAP, World, make_world


async def _rate(
    w: World, method: str, path: str, headers: dict[str, str], n: int, conc: int
) -> dict[str, float]:
    lat: list[float] = []
    left = n

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t = time.perf_counter()
            async with http.request(method, w.base + path, headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(conc)))
    took = time.perf_counter() - start
    lat.sort()
    return {
        "per_s": n / took,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)],
    }


async def run(n: int, conc: int) -> dict[str, Any]:
    os.environ.setdefault("CCBRIDGE_AMI_SECRET", "x")
    os.environ.setdefault("CCBRIDGE_API_TOKEN", BOOTSTRAP)
    w = await make_world(Path(tempfile.mkdtemp(prefix="bench-access-")))
    out: dict[str, Any] = {}
    try:
        cases = {
            "healthz (floor)": ("GET", "/healthz", {}),
            "sites, bootstrap token": ("GET", "/api/v1/sites", w.auth("bootstrap")),
            "sites, store token": ("GET", "/api/v1/sites", w.auth("ada")),
            "drain, store token, audited": ("POST", "/api/v1/sites/dhaka/drain", w.auth("sue")),
        }
        for name, (method, path, headers) in cases.items():
            await _rate(w, method, path, headers, min(n, 300), conc)  # warm up
            out[name] = await _rate(w, method, path, headers, n, conc)
        floor = out["healthz (floor)"]["per_s"]
        for v in out.values():
            v["ratio_to_floor"] = v["per_s"] / floor
        sue = await w.bridge.access.authenticate(w.auth("sue")["Authorization"], "bench")
        k = 100_000
        t = time.perf_counter()
        for i in range(k):
            sue.can("ccb.sites.bangalore.drain" if i % 2 else "ccb.agents.dac-agent1.pause")
        out["acl_check_us"] = 1e6 * (time.perf_counter() - t) / k
        t = time.perf_counter()
        h = hash_password_sync("a password of some length")
        out["argon2_hash_ms"] = 1000 * (time.perf_counter() - t)
        t = time.perf_counter()
        assert verify_password_sync(h, "a password of some length")
        out["argon2_verify_ms"] = 1000 * (time.perf_counter() - t)
        out["load_avg"] = os.getloadavg()[0]
    finally:
        await w.bridge.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    out = asyncio.run(run(args.requests, args.concurrency))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
