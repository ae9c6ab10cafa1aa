"""CPU of glibc's malloc as ``ccbridge run`` sets it (ccbridge/malloc.py) against glibc's defaults.

Each round runs the same allocation mix twice in fresh interpreters, once per setting, in
alternating order: three threads writing SQLite batches (the writer's and the journal's
threads) while the main thread builds AMI-event-sized dicts (22 keys: over pymalloc's
512 bytes, so glibc's) and encodes batches of rows to JSON (over the 128 KiB mmap
threshold). The figure is the ratio of the medians of the processes' CPU seconds; the
memory side is bench_memory's.

    .venv/bin/python -m tests.bench.bench_malloc --rounds 6     # ~1.5 min
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import ccbridge.malloc

WORK = r"""
import importlib.util, json, os, sqlite3, sys, tempfile, threading, time
if sys.argv[1] == "tuned":
    spec = importlib.util.spec_from_file_location("malloc", sys.argv[2])
    malloc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(malloc)
    assert malloc.tune()
folder = tempfile.mkdtemp()
def writer(i):
    db = sqlite3.connect(os.path.join(folder, f"{i}.db"))
    db.execute("create table t (a, b, c)")
    for _ in range(60):
        rows = [(n, "x" * 40, json.dumps({"k": n})) for n in range(2000)]
        db.executemany("insert into t values (?, ?, ?)", rows)
        db.commit()
threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
t0 = time.process_time()
for t in threads:
    t.start()
rows = []
for n in range(60000):
    ev = {f"Key{k}": f"value-{n}-{k}" for k in range(22)}
    rows.append({"call_id": ev["Key1"], "fields": {"Queue": ev["Key2"]}})
    if len(rows) == 3000:
        blob = json.dumps(rows).encode()
        rows = []
for t in threads:
    t.join()
print(time.process_time() - t0)
"""


def cpu_s(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", WORK, mode, str(Path(ccbridge.malloc.__file__))],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(done.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    runs: dict[str, list[float]] = {"default": [], "tuned": []}
    for r in range(args.rounds):
        for mode in ("default", "tuned") if r % 2 == 0 else ("tuned", "default"):
            runs[mode].append(cpu_s(mode))
    medians = {mode: statistics.median(v) for mode, v in runs.items()}
    ratio = medians["tuned"] / medians["default"]
    print(json.dumps({"cpu_s": runs, "medians": medians, "ratio_tuned_default": round(ratio, 3)}))
    print(f"malloc: CPU tuned / glibc defaults = {ratio:.3f} (medians of {args.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
