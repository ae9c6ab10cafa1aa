"""glibc's malloc set for a long-running bridge: fewer arenas, big blocks given back (RSS).

glibc gives each thread that allocates while another holds an arena's lock an arena of
its own, up to 8 per core: the bridge's default-executor threads, the SQLite
connections' threads and the pools' helpers held 12 arenas and 12 MB of RSS in the
memory bench (BENCHMARKS.md section 4), most of it freed chunks no other thread could
reuse. With ``M_ARENA_MAX`` 2 the event loop's thread keeps the main arena and every
other thread shares the second.

glibc also raises its mmap threshold to the size of any mapped block freed (up to 32 MB)
and its trim threshold to twice that: after one large buffer (a journal batch, a big
read) every block below that size comes from the heap, and up to twice it stays in the
heap unreturned after a burst. The thresholds are set fixed instead (which turns that
off): blocks of 128 KiB and more are mapped and unmapped on their own, and the heap's
free top is given back past 256 KiB (3 MB less peak RSS in the memory bench than 512
KiB / 1 MiB). A plain asyncio ``Protocol``'s every socket read allocates ``max_size``
(256 KiB) and shrinks it to what came: under these thresholds an mmap, a page fault, an
mremap and a munmap a read (13-15 us; BENCHMARKS §12, ninth session). The bridge's busy
sockets (AMI, FastAGI) therefore read into one buffer a thread (ccbridge/readbuf.py),
and copy out only what came (tests/unit/test_malloc.py).

Set once in ``ccbridge run`` before any thread starts (glibc reads the arena limit when
a thread first needs an arena). The heap is never trimmed on a timer: ``malloc_trim``
holds an arena's lock while it walks it, and the loop's own allocations waited up to
60 ms (BENCHMARKS.md section 4).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
ARENAS = 2  # the main arena and one for every other thread
MMAP_THRESHOLD = 128 * 1024  # under asyncio's 256 KiB read: see the module docstring
TRIM_THRESHOLD = 256 * 1024


def tune() -> bool:
    """True when glibc took every setting; False on another libc or platform (nothing
    done)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: libc's among them
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only: musl has a no-op
    except (OSError, AttributeError):
        return False
    del gnu_get_libc_version
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = (
        (M_ARENA_MAX, ARENAS),
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    )
    return all([mallopt(option, value) == 1 for option, value in settings])  # each tried


def trim() -> bool:
    """``malloc_trim(0)``: the free pages of every arena given back to the system. Not
    for the bridge's own process (see above: its loop would wait on the arena's lock);
    for a child between jobs (ccbridge/store/writeproc.py). False on another libc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes = (ctypes.c_size_t,)
    malloc_trim.restype = ctypes.c_int
    malloc_trim(0)
    return True
