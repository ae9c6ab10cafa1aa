"""A 2-minute bridge outage across a site's closing time: calls routed as the bridge would
have routed them, with held routes (routing.held_routes) vs today's static fallback.

Two `ccbridge loadtest` runs on the lab, the same plan, one config each: held routes on
(the default) and off (``enabled: false``: the dialplan as before, static fallback only).
The bridge's clock starts at 15:28 UTC on a Wednesday, two minutes before Bangalore's
orders close (21:00 IST); the bridge is killed 30 s in and started again 2 minutes later,
so Bangalore closes 90 s into the outage. Callers from India, Bangladesh and Britain dial
the three numbers that route without an IVR. The harness predicts every call placed during
the outage with the routing engine at its second (what the bridge would have decided) and
compares it with the queue the caller joined: the report's "while the bridge was down".

    .venv/bin/python -m tests.bench.bench_outage              # both runs, about 9 minutes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from ccbridge.lab.sites import default_lab_dir
from tests.bench.bench_soak import EXTRA_AGENTS, LAB_YAML, _absolute_files

AT = "2026-11-25T15:28:00+00:00"  # Bangalore's orders close at 15:30 UTC (21:00 IST)
OUTAGE = "30s:stop-bridge:2m"


def outage_config(out: Path, held: bool) -> Path:
    data = _absolute_files(yaml.safe_load(LAB_YAML.read_text()), LAB_YAML.parent)
    # Headroom: after Bangalore closes its callers go to manila (see bench_soak).
    for site, extra in EXTRA_AGENTS.items():
        data["sites"][site]["agents"] = [*data["sites"][site]["agents"], *extra]
    data["routing"]["held_routes"] = {"enabled": held}
    path = out / f"outage-{'held' if held else 'static'}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_one(out: Path, held: bool, rate: float, seconds: int) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "ccbridge.cli",
        "loadtest",
        "--config",
        str(outage_config(out, held)),
        "--rate",
        str(rate),
        "--duration",
        f"{seconds}s",
        "--talk-ms",
        "1000",
        "--did",
        "+918000000001",
        "--did",
        "+8809600000001",
        "--did",
        "+6328000001",
        "--countries",
        "IN=2,BD=1,GB=1",
        "--at",
        AT,
        "--fault",
        OUTAGE,
        "--no-chart",
        "--out",
        str(out),
    ]
    print("outage: " + " ".join(argv[2:]), flush=True)
    rc = subprocess.run(argv, check=False, timeout=seconds + 900).returncode
    report = json.loads((out / "report.json").read_text())
    [outage] = report["bridge_outages"]
    return {
        "held_routes": held,
        "calls_during_outage": outage["calls"],
        "as_bridge_would": outage["as_bridge_would"],
        "share": outage["share"],
        "totals": report["totals"],
        "fault": report["faults"][0],
        "report": str(out / "report.md"),
        "exit": rc,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rate", type=float, default=0.6, help="calls/s (9 agents, 5 s wrap-up)")
    ap.add_argument("--seconds", type=int, default=180, help="of calling, the outage inside")
    ap.add_argument("--out", default=str(default_lab_dir() / "bench" / "outage"))
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    runs = [
        run_one(out / name, held, args.rate, args.seconds)
        for name, held in (("held", True), ("static", False))
    ]
    result = {"bench": "outage", "at": AT, "fault": OUTAGE, "rate": args.rate, "runs": runs}
    for r in runs:
        t = r["totals"]
        assert isinstance(t, dict)
        print(
            f"outage: held routes {'on ' if r['held_routes'] else 'off'}: "
            f"{r['as_bridge_would']} of {r['calls_during_outage']} calls placed during the "
            f"outage routed as the bridge would have (share {r['share']}); run: "
            f"{t['placed']} placed, {t['failed']} failed; report {r['report']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    held, static = (r["share"] or 0 for r in runs)
    return 0 if isinstance(held, float | int) and held > static else 1


if __name__ == "__main__":
    sys.exit(main())
