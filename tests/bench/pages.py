"""The bridge's memory as the kernel holds it: its processes' resident pages, each once.

RSS summed over the bridge's processes counts a page they share (the interpreter's and
the libraries' code, anything inherited from a fork and not written since) in each of
them; PSS summed splits a shared page among every process on the machine that maps it, so
it counts less than the bridge holds when a library is shared with other programs. The
exact figure is the set of physical pages resident in any of the bridge's processes:
``/proc/PID/pagemap`` gives each virtual page's frame number (bits 0-54, bit 63 "present";
frame numbers read as 0 without CAP_SYS_ADMIN), and the union of those sets is what a
container's memory limit is charged for the processes' mappings (page cache of files
they only read or write, the journal's and the database's, not included).
"""

from __future__ import annotations

import array
import sys
from collections.abc import Iterable
from pathlib import Path

_PRESENT = 1 << 63
_PFN = (1 << 55) - 1
PAGE = 4096


def frames(pid: int) -> set[int]:
    """The physical frame numbers of the process's resident pages. PermissionError when
    the frame numbers are hidden (not root): the figure would be meaningless."""
    out: set[int] = set()
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    seen_hidden = False
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if fields[-1] == "[vsyscall]":
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(start // PAGE * 8)
            entries = array.array("Q")
            entries.frombytes(pagemap.read((end - start) // PAGE * 8))
            if sys.byteorder != "little":
                entries.byteswap()
            for e in entries:
                if e & _PRESENT:
                    pfn = e & _PFN
                    if pfn:
                        out.add(pfn)
                    else:
                        seen_hidden = True
    if seen_hidden and not out:
        raise PermissionError("pagemap hides frame numbers (needs CAP_SYS_ADMIN)")
    return out


def distinct_mb(pids: Iterable[int]) -> float:
    """MB of distinct physical pages resident in any of the processes."""
    union: set[int] = set()
    for pid in pids:
        union |= frames(pid)
    return len(union) * PAGE / 2**20


async def distinct_mb_apart(pids: Iterable[int]) -> float:
    """``distinct_mb`` in a process of its own: reading the frames is ~0.1-0.5 s of
    Python, which on the bench's loop would hold up the load it drives."""
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.bench.pages",
        *(str(p) for p in pids),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"tests.bench.pages: {err.decode(errors='replace').strip()}")
    return float(out)


if __name__ == "__main__":
    print(f"{distinct_mb(int(a) for a in sys.argv[1:]):.3f}")
