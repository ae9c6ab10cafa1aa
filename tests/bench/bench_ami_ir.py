"""AMI ingest instructions a call under callgrind: the ceiling bench's per-call events
(tests/bench/bench_ceiling.py's mix: 11 admitted events, 30 with call records on)
parsed and dispatched to a Bridge's subscribers, a figure a shared machine's noise does
not move.

    .venv/bin/python -m tests.bench.bench_ami_ir                          # ~2 min
    .venv/bin/python -m tests.bench.bench_ami_ir --records
    .venv/bin/python -m tests.bench.bench_ami_ir --code /tmp/old          # another tree's ccbridge

A child process under ``valgrind --tool=callgrind`` builds the Bridge of
tests/bench/bench_ami_state.py (the lab deployment, one site synced with 1,000 agents'
memberships) and feeds it FEW and then MANY calls' events in 16 KiB reads through the
AMI protocol (``make_ingest``); the difference of the two totals over MANY - FEW calls
is one call's count, free of start-up. Needs valgrind (Debian ``valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FEW, MANY = 100, 600
READ = 16 * 1024  # bytes a read


def _ingest_main(calls: int, records: bool) -> None:
    """The child: set up, then ingest ``calls`` calls' events (what callgrind counts)."""
    from ccbridge.events import ALWAYS
    from tests.bench.bench_ami_state import generate_cel_stream, make_ingest, records_names

    ingest = make_ingest(1_000, records=records)
    names = records_names(ingest.bus) if records else ingest.bus.names() | ALWAYS
    data, _ = generate_cel_stream(calls, names)
    chunks = [data[i : i + READ] for i in range(0, len(data), READ)]

    async def run() -> None:
        ingest.run(chunks)

    asyncio.run(run())


def instructions(code: Path, calls: int, records: bool) -> int:
    """Instructions the child ran in all, ingesting ``calls`` calls."""
    env = dict(os.environ, PYTHONPATH=f"{code}{os.pathsep}{ROOT}")
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    # This file as a script: ``code``'s tree may predate it, its ccbridge and bench
    # helpers come first on the path.
    command += [sys.executable, str(Path(__file__).resolve()), "--child", str(calls)]
    if records:
        command.append("--records")
    done = subprocess.run(command, env=env, cwd=code, capture_output=True, text=True, timeout=1800)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed: {done.stderr[-800:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", action="store_true", help="the records mix (CEL too)")
    parser.add_argument("--code", type=Path, default=ROOT, help="the tree whose ccbridge runs")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _ingest_main(args.child, args.records)
        return 0
    few = instructions(args.code, FEW, args.records)
    many = instructions(args.code, MANY, args.records)
    per_call = (many - few) / (MANY - FEW)
    mix = "records mix" if args.records else "ceiling mix"
    print(f"AMI ingest, {mix}, ccbridge from {args.code}: {per_call:,.0f} instructions a call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
