"""``ccbridge run``'s glibc malloc settings (ccbridge/malloc.py), each against glibc's
defaults in a fresh interpreter: what it keeps is read from glibc's own statistics."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from ccbridge import malloc

# The module alone (the package would import SQLAlchemy, which allocates on its own).
TUNE = textwrap.dedent(
    """
    import ctypes, importlib.util, sys
    libc = ctypes.CDLL(None)
    if sys.argv[1] == "tuned":
        spec = importlib.util.spec_from_file_location("malloc", sys.argv[2])
        malloc = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(malloc)
        assert malloc.tune()
    """
)
# Eight threads allocate through glibc's malloc (buffers over pymalloc's 512 bytes) at
# once; malloc_stats (on stderr) lists the arenas.
ARENAS = TUNE + textwrap.dedent(
    """
    import threading
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
    libc.malloc_stats()
    """
)
# glibc's statistics of the main arena: libc.mallinfo2().
MALLINFO = textwrap.dedent(
    """
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]
    libc.mallinfo2.restype = Info
    """
)
# One 8 MB buffer freed, then a burst of 200 KiB buffers freed: the bytes the main heap
# still holds from the system after (mallinfo2's ``arena``).
BURST = (
    TUNE
    + MALLINFO
    + textwrap.dedent(
        """
    big = bytearray(8 << 20)
    del big
    burst = [bytearray(200 << 10) for _ in range(40)]
    del burst
    print(libc.mallinfo2().arena)
    """
    )
)


def _run(probe: str, mode: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", probe, mode, malloc.__file__],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def _arenas(mode: str) -> int:
    err = _run(ARENAS, mode).stderr
    return sum(1 for line in err.splitlines() if line.startswith("Arena "))


def test_the_threads_share_one_arena_beside_the_main_one() -> None:
    assert _arenas("tuned") == malloc.ARENAS
    # the same threads on glibc's defaults: an arena each (what the limit saves)
    assert _arenas("default") > malloc.ARENAS + 4


def test_a_burst_of_large_blocks_goes_back_to_the_system_after_one_huge_one() -> None:
    tuned = int(_run(BURST, "tuned").stdout)
    default = int(_run(BURST, "default").stdout)
    assert tuned < 2 << 20, f"the heap kept {tuned:,} bytes"
    # glibc's defaults: the freed 8 MB raised the thresholds, the burst stayed in the heap
    assert default > 6 << 20, f"the heap kept {default:,} bytes"


# 200 socket reads as asyncio's selector loop makes them (recv of ``max_size``, shrunk
# to what came): the mmapped blocks glibc made meanwhile (mallinfo2's ``hblks`` counts
# the live ones; a read's block lives across the shrink, so the most seen is read).
def _reads(read: str) -> str:
    """A probe: 200 socket reads of 1,500 bytes, each kept, under the bridge's settings;
    prints the most blocks glibc held mapped on their own meanwhile."""
    return (
        TUNE
        + MALLINFO
        + textwrap.dedent(
            """
        import asyncio.selector_events, socket
        size = asyncio.selector_events._SelectorSocketTransport.max_size
        buffer = memoryview(bytearray(size))  # ccbridge/readbuf.py's, one a thread
        a, b = socket.socketpair()
        before, mapped = libc.mallinfo2().hblks, 0
        kept = []
        for _ in range(200):
            a.send(b"x" * 1500)
            kept.append(READ)  # alive, as a read is until its events are handed on
            mapped = max(mapped, libc.mallinfo2().hblks - before)
        print(mapped)
        """
        ).replace("READ", read)
    )


# As the bridge's AMI and FastAGI protocols read (ccbridge/readbuf.py), and as a plain
# asyncio Protocol reads.
INTO_BUFFER = "bytes(buffer[: b.recv_into(buffer)])"
PLAIN = "b.recv(size)"


def test_a_socket_read_of_the_bridges_protocols_is_no_mapping_of_its_own() -> None:
    # A plain Protocol's read allocates 256 KiB: over the mmap threshold that is an
    # mmap, a page fault, an mremap and a munmap a read (BENCHMARKS §12). The bridge's
    # protocols read into one buffer and copy out what came: no mapping.
    assert int(_run(_reads(INTO_BUFFER), "tuned").stdout) == 0
    assert int(_run(_reads(PLAIN), "tuned").stdout) > 0  # why they read so
    assert malloc.TRIM_THRESHOLD >= 2 * malloc.MMAP_THRESHOLD


def test_trim_hands_back_free_pages_on_glibc() -> None:
    # The writer's child calls it between jobs (ccbridge/store/writeproc.py).
    assert malloc.trim()
