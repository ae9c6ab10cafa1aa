"""`ccbridge` under tracemalloc for bench_memory's --tracemalloc: SIGUSR1 writes a snapshot.

    python -X tracemalloc=8 -m tests.bench.memtrace DIR run CONFIG

Each SIGUSR1 writes DIR/snapshot-N.pickle (N from 1) and then DIR/snapshot-N.done, so the
reader never opens a half-written file. The snapshot is taken in the signal handler, on
the main thread between two bytecodes: it stops the bridge's loop for as long as it takes
(a debugging run, never a measured one). ``diff`` prints what grew between two snapshots,
grouped by the line that allocated it.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType


def install(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    numbers = itertools.count(1)

    def dump(signum: int, frame: FrameType | None) -> None:
        n = next(numbers)
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(folder / f"snapshot-{n}.pickle"))
            (folder / f"snapshot-{n}.done").touch()
            return
        (folder / f"census-{n}.json").write_text(json.dumps(census()))
        malloc_stats(folder / f"mallocstats-{n}.txt")
        # What of it was garbage waiting for the collector (cycles): gone after a full
        # collection (this stops the loop: a debugging run).
        rss = _rss_kb()
        found = gc.collect()
        (folder / f"census-{n}-collected.json").write_text(json.dumps(census()))
        summary = {"collected": found, "rss_kb_before": rss, "rss_kb_after": _rss_kb()}
        (folder / f"collect-{n}.json").write_text(json.dumps(summary))
        (folder / f"census-{n}.done").touch()

    signal.signal(signal.SIGUSR1, dump)


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def census() -> dict[str, list[int]]:
    """Type name -> [objects, shallow bytes] over every object gc tracks."""
    out: dict[str, list[int]] = {}
    for obj in gc.get_objects():
        t = type(obj)
        row = out.setdefault(f"{t.__module__}.{t.__qualname__}", [0, 0])
        row[0] += 1
        row[1] += sys.getsizeof(obj)
    return out


def malloc_stats(path: Path) -> None:
    """pymalloc's arenas, pools and free blocks (sys._debugmallocstats writes them to the
    C stderr: pointed at ``path`` meanwhile)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "wb") as out:
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def census_diff(before: Path, after: Path, top: int = 25) -> list[str]:
    """The ``top`` types whose shallow bytes grew most from ``before`` to ``after``."""
    old = json.loads(before.read_text())
    new = json.loads(after.read_text())
    grew = sorted(new, key=lambda k: old.get(k, [0, 0])[1] - new[k][1])[:top]
    lines = [
        f"{(new[k][1] - old.get(k, [0, 0])[1]) / 1024:+10.1f} KiB "
        f"{new[k][0] - old.get(k, [0, 0])[0]:+8d} objects (now {new[k][0]:,})  {k}"
        for k in grew
    ]
    total = sum(v[1] for v in new.values()) - sum(v[1] for v in old.values())
    lines.append(f"total shallow growth of gc-tracked objects: {total / 2**20:+.1f} MiB")
    return lines


def diff(before: Path, after: Path, top: int = 25) -> list[str]:
    """The ``top`` lines whose allocations grew most from ``before`` to ``after``."""
    old = tracemalloc.Snapshot.load(str(before))
    new = tracemalloc.Snapshot.load(str(after))
    lines = []
    for stat in new.compare_to(old, "traceback")[:top]:
        frames = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stat.traceback]
        lines.append(
            f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks  "
            + " <- ".join(frames[:4])
        )
    total = sum(s.size_diff for s in new.compare_to(old, "filename"))
    lines.append(f"total traced growth: {total / 2**20:+.1f} MiB")
    return lines


def main() -> None:
    folder, *args = sys.argv[1:]
    install(Path(folder))
    from ccbridge.cli import main as ccbridge_main

    sys.exit(ccbridge_main(args))


if __name__ == "__main__":
    main()
