"""`make bench`: every benchmark in its own process, one after the other, then a summary.

    .venv/bin/python -m tests.bench.run_all            # full (BENCH_SOAK_MINUTES, default 30)
    .venv/bin/python -m tests.bench.run_all --quick    # minutes, not an hour (BENCH_QUICK=1)
    .venv/bin/python -m tests.bench.run_all --only e2e,ami

Results go to .lab/bench/results.json (and each bench's own JSON beside it). Benches that
drive the lab take its lock, so they wait for (and never disturb) a running `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ccbridge.lab.sites import default_lab_dir


@dataclass(frozen=True)
class Bench:
    name: str
    argv: list[str]
    summary: Callable[[dict[str, object]], str]
    json_out: bool = True  # the bench writes --json itself


def _py(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _fastagi_parse(text: str) -> dict[str, object]:
    """The figures bench_fastagi prints (it predates --json)."""
    out: dict[str, object] = {}
    if m := re.search(r"median: ccbridge (\d+)/s, bare (\d+)/s, ratio ([\d.]+)", text):
        out |= {"ccbridge_per_s": int(m[1]), "bare_per_s": int(m[2]), "ratio": float(m[3])}
    fixed = re.search(r"fixed rate:.*?\n\s+ccbridge.*?p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", text)
    if fixed:
        out |= {"p50_ms_at_300": float(fixed[1]), "p99_ms_at_300": float(fixed[2])}
    ratio, p99 = out.get("ratio"), out.get("p99_ms_at_300")
    out["met"] = isinstance(ratio, float) and ratio >= 0.7 and isinstance(p99, float) and p99 < 2.0
    return out


def _soak_line(r: dict[str, object]) -> str:
    t, faults = r["totals"], r["faults"]
    assert isinstance(t, dict) and isinstance(faults, list)
    return (
        f"{t['placed']} calls, {t['failed']} failed, {t['failed_saveable']} saveable "
        f"(must be 0); {len(faults)} faults"
    )


def benches(quick: bool, soak_minutes: float, out: Path) -> list[Bench]:
    def j(name: str) -> list[str]:
        return ["--json", str(out / f"{name}.json")]

    e2e_args = ["--rounds", "1", "--seconds", "5"] if quick else []
    fastagi_args = ["--rounds", "1", "--sessions", "3000"] if quick else []
    return [
        Bench(
            "e2e",
            _py("tests.bench.bench_e2e", *e2e_args, *j("e2e")),
            lambda r: (
                f"PBX CPU per call against static, median of {r['rounds']} rounds: production "
                f"{r['production_ratio']} (>= 0.97), "
                + ", ".join(
                    f"{var} {(row.get('ratio_to_static') or {}).get('median')}"
                    for per in r["summary"].values()
                    for var, row in per.items()
                )
            ),
        ),
        Bench(
            "outage",
            _py("tests.bench.bench_outage", *j("outage")),
            lambda r: "; ".join(
                f"held routes {'on' if x['held_routes'] else 'off'}: {x['as_bridge_would']}"
                f"/{x['calls_during_outage']} as the bridge would"
                for x in r["runs"]
            ),
        ),
        Bench(
            "fastagi",
            _py("tests.bench.bench_fastagi", *fastagi_args),
            lambda r: (
                f"ccbridge {r.get('ccbridge_per_s')}/s vs bare {r.get('bare_per_s')}/s, "
                f"ratio {r.get('ratio')} (>= 0.7); p50 {r.get('p50_ms_at_300')} ms, "
                f"p99 {r.get('p99_ms_at_300')} ms at 300/s (< 2 ms)"
            ),
            json_out=False,
        ),
        Bench(
            "ami",
            _py("tests.bench.bench_ami_state", "--seconds", "1" if quick else "3", *j("ami")),
            lambda r: (
                "ingest / panoramisk bare parse: "
                + ", ".join(
                    f"{row['agents']} agents {row['ratio']}"
                    if row["mix"] == "queue"
                    else f"records mix {row['ratio']}"
                    for row in r["rows"]
                )
                + f" (>= 1.0); cost spread over sizes {r['cost_spread']:.0%} (<= 15%)"
            ),
        ),
        Bench(
            "ami-stream",
            _py("tests.bench.bench_ami_stream", "--events", "200000" if quick else "1000000")
            + j("ami-stream"),
            lambda r: (
                f"{r['events']:,} events, out of order {r['out_of_order']}, RSS growth after "
                f"warm-up {r['rss_end'] / 2**20 - r['rss_after_warmup'] / 2**20:+.1f} MB"
            ),
        ),
        Bench(
            "decide",
            _py("tests.bench.bench_decide", "--seconds", "3" if quick else "10", *j("decide")),
            lambda r: (
                f"{r['memo_hit']['per_s']:,} decisions/s, p50 {r['memo_hit']['p50_us']:.1f} us, "
                f"p99 {r['memo_hit']['p99_us']:.1f} us (>= 50,000/s); schedule memo misses "
                f"{r['memo_miss']['per_s']:,}/s"
            ),
        ),
        Bench(
            "store",
            _py("tests.bench.bench_store", "--seconds", "5" if quick else "10", *j("store")),
            lambda r: "; ".join(
                f"{e['engine']}: {e['offered']['offered_calls_per_s']:,} calls/s offered, queue "
                f"max {e['offered']['queue_depth_first_half_max']:,} then "
                f"{e['offered']['queue_depth_second_half_max']:,}, drained "
                f"{e['offered']['drain_after_last_put_s']} s after; floor "
                f"{e['floor_calls_per_s']:,}/s"
                for e in r["engines"]
            ),
        ),
        Bench(
            "memory",
            _py("tests.bench.bench_memory", "--minutes", str(3 if quick else soak_minutes))
            + j("memory"),
            lambda r: (
                f"RSS peak {r['rss_peak_mb']} MB, growth {r['growth_mb']} MB over "
                f"{r['minutes']:g} min (< 100 MB, flat)"
            ),
        ),
        Bench(
            "soak",
            _py("tests.bench.bench_soak", "--minutes", str(3 if quick else soak_minutes))
            + j("soak"),
            _soak_line,
        ),
        Bench(
            "ceiling",
            _py("tests.bench.bench_ceiling", *(["--quick"] if quick else []), *j("ceiling")),
            lambda r: "; ".join(
                f"{row['row']}: {row['ceiling_calls_per_s']:.0f} calls/s at p99 < 5 ms "
                f"(floor {r['floor_calls_per_s']:.0f}), {row['cpu_us_per_call_less_idle']} us "
                f"CPU a call"
                for row in r["rows"]
            ),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1")
    ap.add_argument(
        "--only", help="comma-separated: e2e,outage,fastagi,ami,ami-stream,decide,store,memory,soak"
    )
    ap.add_argument("--out", default=str(default_lab_dir() / "bench"))
    args = ap.parse_args(argv)
    soak_minutes = float(os.environ.get("BENCH_SOAK_MINUTES", "30"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = set(args.only.split(",")) if args.only else None
    results: dict[str, dict[str, object]] = {}
    lines = []
    for b in benches(args.quick, soak_minutes, out):
        if chosen is not None and b.name not in chosen:
            continue
        print(f"\n=== {b.name}: {' '.join(b.argv[1:])}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(b.argv, capture_output=not b.json_out, text=True, check=False)
        took = time.monotonic() - t0
        try:
            if b.json_out:
                r = json.loads((out / f"{b.name}.json").read_text())
            else:
                print(proc.stdout, end="", flush=True)
                r = _fastagi_parse(proc.stdout)
                (out / f"{b.name}.json").write_text(json.dumps(r, indent=2) + "\n")
            line = b.summary(r)
        except (OSError, ValueError, KeyError) as exc:
            r, line = {"met": False, "error": str(exc)}, f"no result ({exc})"
        r["seconds"] = round(took)
        results[b.name] = r
        lines.append(f"{b.name:<8} {'met ' if r.get('met') else 'MISS'}  {line}  [{took:.0f}s]")
    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    (out / "results.json").write_text(
        json.dumps({"quick": args.quick, "machine": machine, "results": results}, indent=2)
    )
    print(f"\n=== summary ({'quick' if args.quick else 'full'}; {machine})")
    print("\n".join(lines))
    return 0 if all(r.get("met") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
