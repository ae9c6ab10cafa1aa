"""``ccbridge run``'s threads share one glibc malloc arena (ccbridge/malloc.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from ccbridge import malloc

# Eight threads allocate through glibc's malloc (buffers over pymalloc's 512 bytes) at
# once, then glibc's own statistics (malloc_stats, on stderr) list the arenas.
PROBE = textwrap.dedent(
    """
    import ctypes, importlib.util, sys, threading
    if sys.argv[1] == "limit":  # the module alone: the package would import SQLAlchemy
        spec = importlib.util.spec_from_file_location("malloc", sys.argv[2])
        malloc = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(malloc)
        assert malloc.limit_arenas()
    barrier = threading.Barrier(8)
    def work():
        held = [bytearray(4096) for _ in range(64)]
        barrier.wait()
        held.clear()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctypes.CDLL(None).malloc_stats()
    """
)


def _arenas(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode, malloc.__file__],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


def test_the_threads_share_one_arena_beside_the_main_one() -> None:
    assert _arenas("limit") == malloc.ARENAS
    # the same threads without the limit: an arena each (what the limit saves)
    assert _arenas("default") > malloc.ARENAS + 4
