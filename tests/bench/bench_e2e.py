"""End to end: highest calls/s with zero failed calls, ccbridge routing vs a static dialplan.

One lab, one run, the same site (bangalore) and the same target: Answer, Wait(0.2),
Hangup — the dialplan the 300 calls/s floor in asterisk-lab.md was measured with.

* static: ``ccb-inbound`` -> Answer/Wait/Hangup.
* routed: the real route step first — Set(CCB_DID), AGI(agi://bridge/route?site=...)
  answered by a real `ccbridge run` subprocess (its decision, live AMI state, metrics,
  logging) — and a call the bridge did not route (AGISTATUS != SUCCESS or CCB_ROUTE
  empty) is rejected with cause 34, so SIPp counts it failed. Then Answer/Wait/Hangup.

Both contexts are added at run time with `dialplan add extension` (no template changes).
Rates are tried upward, static and routed alternately at each rate, each for
``--seconds``; a variant stops at its first rate with a failed call.

    .venv/bin/python -m tests.bench.bench_e2e [--rates 100,200,300,350,400] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ccbridge import variables as v
from ccbridge.config import load_config
from ccbridge.lab.lock import lab_lock
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.lab.sipp import SCENARIOS
from ccbridge.lab.sites import REPO_ROOT, Lab
from ccbridge.loadtest.bridgectl import BridgeProcess
from ccbridge.loadtest.run import EVERY_SITE_OPEN
from ccbridge.loadtest.sipp import caller_argv
from ccbridge.loadtest.stats import read_stat_file

SITE = "bangalore"
DID = "+918000000001"
CALLER = "+919812345678"
TARGET_RATIO = 0.95
VARIANTS = ("static", "routed")


def dialplan_commands(site: str) -> list[str]:
    """CLI lines adding both variants (no spaces or quotes: the CLI splits and strips them)."""
    route = f"ccb-bench-route-{site}"
    agi = f"AGI(${{CCB_AGI_URL}}?site={site}&lang=&service=)"
    return [
        "dialplan add extension bench-static,1,Answer() into ccb-inbound replace",
        "dialplan add extension bench-static,2,Wait(0.2) into ccb-inbound replace",
        "dialplan add extension bench-static,3,Hangup() into ccb-inbound replace",
        f"dialplan add extension _br+.,1,Goto({route},${{EXTEN:2}},1) into ccb-inbound replace",
        f"dialplan add extension _[+0-9].,1,Set(__{v.DID}=${{EXTEN}}) into {route} replace",
        f"dialplan add extension _[+0-9].,2,Set({v.ROUTE}=) into {route} replace",
        f"dialplan add extension _[+0-9].,3,{agi} into {route} replace",
        f"dialplan add extension _[+0-9].,4,GotoIf($[${{AGISTATUS}}!=SUCCESS]?10) into {route}"
        " replace",
        f"dialplan add extension _[+0-9].,5,GotoIf($[${{LEN(${{{v.ROUTE}}})}}=0]?10) into {route}"
        " replace",
        f"dialplan add extension _[+0-9].,6,Answer() into {route} replace",
        f"dialplan add extension _[+0-9].,7,Wait(0.2) into {route} replace",
        f"dialplan add extension _[+0-9].,8,Hangup() into {route} replace",
        f"dialplan add extension _[+0-9].,10,Hangup(34) into {route} replace",
    ]


@dataclass
class Step:
    variant: str
    rate: float
    calls: int
    successful: int
    failed: int
    response_ms: float | None
    routed: int  # route decisions the bridge logged for these calls (routed variant)
    seconds: float

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.successful == self.calls


def place(target: str, exten: str, rate: float, seconds: float, port: int, out: Path) -> Step:
    calls = int(rate * seconds)
    stat, err = out / f"{exten}-{rate:g}.csv", out / f"{exten}-{rate:g}.err"
    argv = caller_argv(
        scenario=SCENARIOS / "loadtest_far_hangup.xml",
        target=target,
        did=exten,
        caller=CALLER,
        calls=calls,
        rate=rate,
        limit=max(50, int(rate * 3)),
        talk_ms=0,
        port=port,
        max_seconds=seconds + 30,
        stat_file=stat,
        error_file=err,
        recv_timeout_ms=10_000,  # a lost 200 or BYE fails the call within the step
    )
    t0 = time.monotonic()
    subprocess.run(
        argv,
        cwd=out,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=seconds + 45,
        check=False,
        start_new_session=True,
    )
    rows = read_stat_file(stat)
    last = rows[-1] if rows else None
    rts = [r.response_ms for r in rows if r.response_ms > 0]
    return Step(
        "routed" if exten.startswith("br") else "static",
        rate,
        calls,
        last.successful if last else 0,
        last.failed if last else calls,
        round(sum(rts) / len(rts), 2) if rts else None,
        0,
        round(time.monotonic() - t0, 1),
    )


def count_routed(log: Path, offset: int) -> tuple[int, int]:
    """(route decisions for DID logged since ``offset``, new offset)."""
    with open(log, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    needle = f"did={DID}".encode()
    n = sum(1 for line in data.splitlines() if b"msg=routed" in line and needle in line)
    return n, offset + len(data)


def run(
    rates: list[float], seconds: float, max_total: float, variants: tuple[str, ...] = VARIANTS
) -> dict[str, object]:
    ensure_lab_secrets()
    config = load_config(REPO_ROOT / "examples" / "lab.yaml")
    lab = Lab(config)
    site = config.site(SITE)
    steps: list[Step] = []
    with lab_lock(on_wait=lambda: print("e2e: waiting for the lab lock", flush=True)):
        lab.down()
        lab.up()
        bridge = BridgeProcess(lab, EVERY_SITE_OPEN)
        try:
            asyncio.run(bridge.start())
            for cmd in dialplan_commands(SITE):
                out = lab.cli(site, cmd)
                if "Extension" not in out and out.strip():
                    raise RuntimeError(f"{cmd}: {out.strip()}")
            offset = bridge.log_file.stat().st_size
            with tempfile.TemporaryDirectory(prefix="ccb-e2e-") as wd:
                started = time.monotonic()
                alive = {var: var in variants for var in VARIANTS}
                for rate in rates:
                    for variant, exten in (("static", "bench-static"), ("routed", f"br{DID}")):
                        if not alive[variant] or time.monotonic() - started > max_total:
                            continue
                        time.sleep(3)  # the previous step's channels close
                        step = place(str(site.sip), exten, rate, seconds, 6400, Path(wd))
                        if variant == "routed":
                            step.routed, offset = count_routed(bridge.log_file, offset)
                        steps.append(step)
                        print(f"e2e: {json.dumps(asdict(step))}", flush=True)
                        alive[variant] = step.clean
        finally:
            bridge.stop()
            lab.down()
    best = {
        var: max((s.rate for s in steps if s.variant == var and s.clean), default=0.0)
        for var in ("static", "routed")
    }
    ratio = best["routed"] / best["static"] if best["static"] else 0.0
    return {
        "bench": "e2e",
        "site": SITE,
        "seconds_per_step": seconds,
        "steps": [asdict(s) for s in steps],
        "best_static": best["static"],
        "best_routed": best["routed"],
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "met": ratio >= TARGET_RATIO,
        "capped": best["static"] == max(rates),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rates", default="100,200,300,350,400,450,500,600,700,800,1000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-total", type=float, default=600.0, help="seconds for all steps")
    ap.add_argument("--only", choices=VARIANTS, help="one variant (e.g. to find a ceiling)")
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    variants = (args.only,) if args.only else VARIANTS
    rates = [float(r) for r in args.rates.split(",")]
    result = run(rates, args.seconds, args.max_total, variants)
    print(
        f"e2e: static {result['best_static']:g} calls/s, routed {result['best_routed']:g} "
        f"calls/s with 0 failed: ratio {result['ratio']} (target >= {TARGET_RATIO})"
        + (" [the highest rate tried: the real ceiling may be higher]" if result["capped"] else "")
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
