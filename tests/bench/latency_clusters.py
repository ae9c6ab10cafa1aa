"""Bench only: when a step's slow calls came, from ``CCB_BENCH_LATENCY_DUMP``'s file.

``agi_load`` appends each step's calls to that file when the variable names one: a
header line ``# step at R/s from T0 (...)`` and a line a call, its start (seconds into
the step) and its latency (ms). This prints each step's percentiles and its slow calls
(over ``--over`` ms) grouped into clusters (calls started within ``--gap`` s of the
previous slow one): a tail made of a few clusters points at something that holds every
call in flight for a while (a pause), one spread evenly over the step at a per-call cost.

    CCB_BENCH_LATENCY_DUMP=/tmp/lat.txt .venv/bin/python -m tests.bench.bench_ceiling \\
        --rows 20x5000 --rates 250,500 --seconds 10 --no-pg
    .venv/bin/python -m tests.bench.latency_clusters /tmp/lat.txt
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.bench_fastagi import percentile

_HEADER = re.compile(r"# step at (\S+)/s from ([0-9.]+)")


@dataclass
class Step:
    rate: str
    started: float  # the monotonic clock, as the bridge's and other processes' logs
    calls: list[tuple[float, float]] = field(default_factory=list)  # (start s, latency ms)


def read(path: Path) -> list[Step]:
    steps: list[Step] = []
    for line in path.read_text().splitlines():
        head = _HEADER.match(line)
        if head:
            steps.append(Step(head.group(1), float(head.group(2))))
        elif line.strip() and steps:
            start, latency = line.split()
            steps[-1].calls.append((float(start), float(latency)))
    return steps


def clusters(
    calls: list[tuple[float, float]], over_ms: float, gap_s: float
) -> list[list[tuple[float, float]]]:
    found: list[list[tuple[float, float]]] = []
    for start, latency in sorted(calls):
        if latency <= over_ms:
            continue
        if found and start - found[-1][-1][0] < gap_s:
            found[-1].append((start, latency))
        else:
            found.append([(start, latency)])
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump", type=Path)
    ap.add_argument("--over", type=float, default=5.0, help="a slow call, ms (default 5)")
    ap.add_argument("--gap", type=float, default=0.1, help="s between clusters (default 0.1)")
    args = ap.parse_args()
    for step in read(args.dump):
        lat = sorted(latency for _, latency in step.calls)
        if not lat:
            continue
        found = clusters(step.calls, args.over, args.gap)
        slow = sum(len(c) for c in found)
        print(
            f"step {step.rate}/s from {step.started:.3f}: {len(lat)} calls, p50 "
            f"{percentile(lat, 0.5):.2f} ms, p99 {percentile(lat, 0.99):.2f} ms; {slow} over "
            f"{args.over:g} ms in {len(found)} clusters"
        )
        for c in found:
            if len(c) >= 3:
                first, last = c[0][0], c[-1][0]
                worst = max(latency for _, latency in c)
                print(f"  {first:7.3f}-{last:7.3f} s: {len(c):3d} calls, worst {worst:.1f} ms")


if __name__ == "__main__":
    main()
