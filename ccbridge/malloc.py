"""glibc's malloc set for a long-running bridge: its threads share one arena (RSS).

glibc gives each thread that allocates while another holds an arena's lock an arena of
its own, up to 8 per core: the bridge's default-executor threads, the SQLite
connections' threads and the pools' helpers held 12 arenas and 12 MB of RSS in the
memory bench (BENCHMARKS.md section 4), most of it freed chunks no other thread could
reuse. With ``M_ARENA_MAX`` 2 the event loop's thread keeps the main arena and every
other thread shares the second. Set once in ``ccbridge run`` before any thread starts
(glibc reads it when a thread first needs an arena). The heap is never trimmed on a
timer: ``malloc_trim`` holds an arena's lock while it walks it, and the loop's own
allocations waited up to 60 ms (BENCHMARKS.md section 4).
"""

from __future__ import annotations

import ctypes
import sys

M_ARENA_MAX = -8  # glibc malloc.h
ARENAS = 2  # the main arena and one for every other thread


def limit_arenas(arenas: int = ARENAS) -> bool:
    """True when glibc took the limit; False on another libc or platform (nothing done)."""
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
    return bool(mallopt(M_ARENA_MAX, arenas))
