"""Soak with faults: steady calls through the lab and the bridge, a fault every few minutes.

Runs `ccbridge loadtest` on a variant of the lab config with one more bangalore->dhaka
trunk, first in order, whose far end is a SIPp carrier that answers, and one more agent
at manila (orders-en, orders-tl) and at bangalore (orders-en, orders-hi); the faults cycle
through that carrier dying (in-call trunk failover), a bridge restart (static fallback
while it is down), dhaka killed, manila hung and a drain. Calls the bridge could have
saved must be zero; every failed call is in the report with its cause, and callers who
gave up waiting in a queue no other site offered are counted apart (abandoned in queue).

    .venv/bin/python -m tests.bench.bench_soak --minutes 3        # quick
    .venv/bin/python -m tests.bench.bench_soak --minutes 30       # full
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from ccbridge.lab.sites import REPO_ROOT, default_lab_dir

LAB_YAML = REPO_ROOT / "examples" / "lab.yaml"
FAULTS = "kill-carrier:blr-dac-a,restart-bridge,kill-site:dhaka,hang-site:manila,drain:dhaka"
# Headroom, in the soak's config only: while dhaka is down its callers go to manila's and
# bangalore's orders-en, which manila's only Tagalog agent (and bangalore's Hindi ones)
# also serve; one more agent at each keeps a site loss from becoming abandonment. Each is
# one more SIPp UAS the harness starts per configured contact (70SN: site S, agent N).
EXTRA_AGENTS = {
    "manila": [
        {
            "name": "mnl-agent3",
            "contact": "sip:agent@127.0.0.1:7033",
            "queues": ["orders-en", "orders-tl"],
        },
    ],
    "bangalore": [
        {
            "name": "blr-agent3",
            "contact": "sip:agent@127.0.0.1:7013",
            "queues": ["orders-en", "orders-hi"],
        },
    ],
}


def _absolute_files(node: Any, base: Path) -> Any:
    """Secret `file:` paths are relative to the config's folder: keep them valid elsewhere."""
    if isinstance(node, dict):
        out = {k: _absolute_files(v, base) for k, v in node.items()}
        if isinstance(out.get("file"), str) and not Path(out["file"]).is_absolute():
            out["file"] = str((base / out["file"]).resolve())
        return out
    if isinstance(node, list):
        return [_absolute_files(v, base) for v in node]
    return node


def soak_config(out: Path) -> Path:
    data = _absolute_files(yaml.safe_load(LAB_YAML.read_text()), LAB_YAML.parent)
    trunks = {k: {**t, "order": 2} if k == "blr-dac" else t for k, t in data["trunks"].items()}
    data["trunks"] = {
        "blr-dac-a": {
            "site": "bangalore",
            "kind": "intersite",
            "peer": "dhaka",
            "remote": "127.0.0.1:7201",
            "order": 1,
            "qualify_frequency": 1,
        },
        **trunks,
    }
    for site, extra in EXTRA_AGENTS.items():
        data["sites"][site]["agents"] = [*data["sites"][site]["agents"], *extra]
    path = out / "soak.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(minutes: float, every: str, rate: float, out: Path) -> dict[str, object]:
    out.mkdir(parents=True, exist_ok=True)
    cfg = soak_config(out)
    argv = [
        sys.executable,
        "-m",
        "ccbridge.cli",
        "loadtest",
        "--config",
        str(cfg),
        "--rate",
        str(rate),
        "--duration",
        f"{minutes:g}m",
        "--ramp",
        "10s",
        "--talk-ms",
        "1000",
        "--did",
        "+918000000001",
        "--did",
        "+8809600000001",
        "--did",
        "+6328000001",
        "--countries",
        "IN=2,BD=2,PH=1,GB=1",
        "--carrier",
        "blr-dac-a=answer",
        "--fault-every",
        every,
        "--fault-kinds",
        FAULTS,
        "--out",
        str(out),
    ]
    print("soak: " + " ".join(argv[2:]), flush=True)
    rc = subprocess.run(argv, check=False, timeout=minutes * 60 + 900).returncode
    report = json.loads((out / "report.json").read_text())
    totals = report["totals"]
    return {
        "bench": "soak",
        "minutes": minutes,
        "rate": rate,
        "fault_every": every,
        "faults": [f"{f['kind']}:{f['target']}@{f['started']}" for f in report["faults"]],
        "totals": totals,
        "report": str(out / "report.md"),
        "exit": rc,
        "met": totals["failed_saveable"] == 0 and totals["placed"] > 0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--every", default="", help="fault interval (default: minutes/5, >= 30s)")
    ap.add_argument(
        "--rate", type=float, default=0.8, help="calls/s (the soak: 9 agents, 5 s wrap-up)"
    )
    ap.add_argument("--out", default=str(default_lab_dir() / "bench" / "soak"))
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    every = args.every or f"{max(30, int(args.minutes * 60 / 5))}s"
    r = run(args.minutes, every, args.rate, Path(args.out).resolve())
    t = r["totals"]
    assert isinstance(t, dict)
    print(
        f"soak: {t['placed']} calls over {args.minutes:g} min, {t['failed']} failed "
        f"({t['failed_saveable']} the bridge could have saved, "
        f"{t.get('failed_abandoned_in_queue', 0)} abandoned in queue, "
        f"{t['failed_unsaveable']} not); "
        f"report {r['report']}: {'met' if r['met'] else 'MISSED'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0 if r["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
