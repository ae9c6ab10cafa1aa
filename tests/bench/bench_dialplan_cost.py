"""What dialplan steps cost Asterisk per call: CPU ms per call of the site's Asterisk for
Answer/Wait/Hangup alone and with a few extra steps of each kind before it, the bridge
connected over AMI as in production (its session makes Asterisk build call events).

Used to design the held-route path (issue 18): each variant adds ``--n`` copies of one
step; (variant - static) / n is that step's cost. Variants take turns in rounds, so a
busy neighbour on this shared machine hits them alike; the median of the rounds counts.

    .venv/bin/python -m tests.bench.bench_dialplan_cost [--rate 100] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ccbridge.config import load_config
from ccbridge.lab.lock import lab_lock
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sipp import SCENARIOS
from ccbridge.lab.sites import REPO_ROOT, Lab
from ccbridge.loadtest.bridgectl import BridgeProcess
from ccbridge.loadtest.run import EVERY_SITE_OPEN
from ccbridge.loadtest.sipp import caller_argv
from ccbridge.loadtest.stats import read_stat_file
from tests.bench.bench_e2e import SippCpu, cpu_seconds

SITE = "bangalore"
CALLER = "+919812345678"
# One step of each kind (no spaces: the CLI splits on them). The global is set below.
STEPS = {
    "static": "",
    "noop": "NoOp(x)",
    "set": "Set(CCBX=1)",
    "goto": "Goto(${CONTEXT},${EXTEN},$[${PRIORITY}+1])",
    "expr": "GotoIf($[${EPOCH}-0${FILTER(0-9,${CCBT_HB})}<=5&${EPOCH}<0${CUT(CCBT_V,_,1)}]?n)",
    "lookup": "Set(CCBX=${FILTER(a-z0-9_-,${CUT(CCBT_V,_,2)})})",
    "userevent": "UserEvent(CcbBenchCost,Did:1,Lang:hi,Site:bangalore)",
    "mset6": "MSet(A1=1,A2=2,A3=3,A4=4,A5=5,A6=6)",
}


def commands(n: int) -> list[str]:
    out = []
    for name, step in STEPS.items():
        ctx, prio = f"ccb-cost-{name}", 1
        out.append(f"dialplan add extension cost{name},1,Goto({ctx},s,1) into ccb-inbound replace")
        if step:
            for _ in range(n):
                out.append(f"dialplan add extension s,{prio},{step} into {ctx} replace")
                prio += 1
        for app in ("Answer()", "Wait(0.2)", "Hangup()"):
            out.append(f"dialplan add extension s,{prio},{app} into {ctx} replace")
            prio += 1
    return out


def step(lab: Lab, target: str, name: str, rate: float, seconds: float, wd: Path) -> float:
    """Asterisk CPU ms per call for one variant at ``rate``; raises on a failed call."""
    pid = lab.pid(lab.config.site(SITE))
    assert pid is not None
    calls = int(rate * seconds)
    stat, err = wd / f"{name}.csv", wd / f"{name}.err"
    argv = caller_argv(
        scenario=SCENARIOS / "loadtest_far_hangup.xml",
        target=target,
        did=f"cost{name}",
        caller=CALLER,
        calls=calls,
        rate=rate,
        limit=max(50, int(rate * 3)),
        talk_ms=0,
        port=6450,
        max_seconds=seconds + 30,
        stat_file=stat,
        error_file=err,
        recv_timeout_ms=10_000,
    )
    before = cpu_seconds(pid)
    with SippCpu(str(wd)):
        subprocess.run(argv, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    used = cpu_seconds(pid) - before
    rows = read_stat_file(stat)
    ok = rows[-1].successful if rows else 0
    if ok != calls:
        raise RuntimeError(f"{name}: {ok} of {calls} calls succeeded")
    return 1000 * used / calls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=20, help="copies of the step per call")
    args = ap.parse_args(argv)
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    lab = Lab(config)
    site = config.site(SITE)
    got: dict[str, list[float]] = {name: [] for name in STEPS}
    with lab_lock(on_wait=lambda: print("cost: waiting for the lab lock", flush=True)):
        lab.down()
        lab.up()
        bridge = BridgeProcess(lab, EVERY_SITE_OPEN)
        try:
            asyncio.run(bridge.start())
            lab.cli(site, "dialplan set global CCBT_HB 1")
            lab.cli(site, "dialplan set global CCBT_V 9999999999_queue-bangalore-orders-hi")
            for cmd in commands(args.n):
                lab.cli(site, cmd)
            with tempfile.TemporaryDirectory(prefix="ccb-cost-") as wd:
                names = list(STEPS)
                for r in range(args.rounds):
                    # a different order each round: a neighbour's burst hits a different one
                    for name in names[r % len(names) :] + names[: r % len(names)]:
                        time.sleep(2)
                        got[name].append(
                            step(lab, str(site.sip), name, args.rate, args.seconds, Path(wd))
                        )
                        print(f"cost: round {r} {name} {got[name][-1]:.3f} ms/call", flush=True)
        finally:
            bridge.stop()
            lab.down()
    base = statistics.median(got["static"])
    summary = {
        name: {
            "median_ms": round(statistics.median(vals), 3),
            "spread_ms": [round(min(vals), 3), round(max(vals), 3)],
            "per_step_us": round(1000 * (statistics.median(vals) - base) / args.n, 1),
        }
        for name, vals in got.items()
    }
    print(json.dumps({"rate": args.rate, "n": args.n, "rounds": args.rounds, **summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
