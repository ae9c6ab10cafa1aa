"""`ccbridge` under tracemalloc for bench_memory's --tracemalloc: SIGUSR1 writes a snapshot.

    python -X tracemalloc=8 -m tests.bench.memtrace DIR run CONFIG

Each SIGUSR1 writes DIR/snapshot-N.pickle (N from 1) and then DIR/snapshot-N.done, so the
reader never opens a half-written file. The snapshot is taken in the signal handler, on
the main thread between two bytecodes: it stops the bridge's loop for as long as it takes
(a debugging run, never a measured one). ``diff`` prints what grew between two snapshots,
grouped by the line that allocated it.
"""

from __future__ import annotations

import itertools
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
        tracemalloc.take_snapshot().dump(str(folder / f"snapshot-{n}.pickle"))
        (folder / f"snapshot-{n}.done").touch()

    signal.signal(signal.SIGUSR1, dump)


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
    if not tracemalloc.is_tracing():
        raise SystemExit("run with python -X tracemalloc=N")
    folder, *args = sys.argv[1:]
    install(Path(folder))
    from ccbridge.cli import main as ccbridge_main

    sys.exit(ccbridge_main(args))


if __name__ == "__main__":
    main()
