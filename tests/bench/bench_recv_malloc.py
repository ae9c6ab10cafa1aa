"""A socket read as asyncio's selector loop makes it, under glibc's malloc settings: CPU
a read with ``ccbridge run``'s settings (ccbridge/malloc.py) against the 128/256 KiB
mmap/trim thresholds of the eighth session and glibc's own defaults.

Each read allocates the transport's ``max_size`` (256 KiB) and shrinks it to what came
(CPython's ``sock.recv``): with the mmap threshold under that block, every read is an
mmap, a page fault, an mremap and a munmap. Each setting runs in a fresh interpreter
(``mallopt`` before anything is allocated), alternating, ``--rounds`` times; thread CPU
time, so another process's load does not count.

    .venv/bin/python -m tests.bench.bench_recv_malloc          # ~30 s quiet, 1.5 min at load 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import textwrap

from ccbridge import malloc

PROBE = textwrap.dedent(
    """
    import asyncio.selector_events, ctypes, socket, sys, time
    mmap_at, trim_at = int(sys.argv[1]), int(sys.argv[2])
    libc = ctypes.CDLL(None)
    if mmap_at:
        libc.mallopt(-3, mmap_at)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, trim_at)  # M_TRIM_THRESHOLD
    size = asyncio.selector_events._SelectorSocketTransport.max_size
    a, b = socket.socketpair()
    chunk, n = b"x" * 1500, 50_000
    t = time.thread_time()
    for _ in range(n):
        a.send(chunk)
        b.recv(size)
    print((time.thread_time() - t) / n * 1e6)
    """
)
SETTINGS = {
    "ccbridge run (malloc.py)": (malloc.MMAP_THRESHOLD, malloc.TRIM_THRESHOLD),
    "128 KiB / 256 KiB (eighth session)": (128 * 1024, 256 * 1024),
    "glibc defaults": (0, 0),
}


def one(mmap_at: int, trim_at: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(mmap_at), str(trim_at)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    got: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, (mmap_at, trim_at) in SETTINGS.items():
            got[name].append(one(mmap_at, trim_at))
    print("us of CPU a send + a 1,500-byte read of asyncio's size (median, range):")
    for name, values in got.items():
        print(
            f"  {name:<36} {statistics.median(values):6.2f}  ({min(values):.2f}-{max(values):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
