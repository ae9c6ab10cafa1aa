"""`ccbridge loadtest` arguments -> a LoadPlan and a run, under the lab's lock."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import datetime
from pathlib import Path
from types import FrameType

from ccbridge.config.model import Config
from ccbridge.loadtest.options import (
    CARRIER_MODES,
    MAX_SIPP_DEFAULT,
    LoadPlan,
    PlanError,
    default_dids,
    parse_ivr,
    parse_weights,
    plain_groups,
)
from ccbridge.loadtest.timeline import (
    FaultKind,
    TimelineError,
    parse_duration,
    parse_fault,
    periodic,
    timeline,
)

EXAMPLES = """examples:
  ccbridge loadtest --rate 20 --duration 60 --countries IN=3,BD=1,GB=1
  ccbridge loadtest --rate 10 --duration 3m --fault 30s:kill-site:dhaka \\
      --fault 90s:restart-bridge --fault 2m:drain:manila:20s
  ccbridge loadtest --ivr +918000000003:11:en:orders --rate 0.2 --duration 30
  ccbridge loadtest --target 192.0.2.10:5060 --did +918000000001 --rate 50 --duration 60
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], default: str) -> None:
    p = sub.add_parser(
        "loadtest",
        help="SIPp load with faults on a timeline; JSON, Markdown and PNG report",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default=default)
    p.add_argument("--rate", type=float, default=10.0, help="calls/s after the ramp")
    p.add_argument("--duration", default="30s", help="how long to place calls, e.g. 90s, 30m")
    p.add_argument("--ramp", default="0", help="seconds from 0 to --rate")
    p.add_argument("--concurrency", type=int, default=500, help="open calls at most")
    p.add_argument("--talk-ms", type=int, default=1000, help="callers stay this long")
    p.add_argument("--did", action="append", default=[], help="a number to call (repeat)")
    p.add_argument("--countries", default="IN=2,BD=1,PH=1,GB=1", help="caller mix by country")
    p.add_argument(
        "--ivr", action="append", default=[], help="DID:DIGITS:LANG:SERVICE[=WEIGHT] (repeat)"
    )
    p.add_argument(
        "--carrier",
        action="append",
        default=[],
        help=f"TRUNK=MODE: a SIPp far end at the trunk's address ({'|'.join(CARRIER_MODES)})",
    )
    p.add_argument("--fault", action="append", default=[], help="AT:KIND[:TARGET][:FOR]")
    p.add_argument("--fault-every", help="soak: one fault every DURATION, cycling --fault-kinds")
    p.add_argument(
        "--fault-kinds",
        default="restart-bridge,kill-site:dhaka,drain:manila",
        help="KIND[:TARGET],... for --fault-every",
    )
    p.add_argument("--at", help="the bridge's clock at the start, ISO 8601 with offset")
    p.add_argument("--out", help="report folder (default loadtest-report/TIMESTAMP)")
    p.add_argument("--target", help="HOST:PORT of any Asterisk: calls only, no lab or bridge")
    p.add_argument("--max-sipp", type=int, default=MAX_SIPP_DEFAULT)
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--lock-timeout", type=float, default=1800.0, help="seconds to wait for the lab")
    p.set_defaults(func=cmd_loadtest)


def build_plan(config: Config, args: argparse.Namespace) -> LoadPlan:
    from ccbridge.loadtest.run import out_dir_default

    duration = parse_duration(args.duration)
    groups = plain_groups(config, args.did or default_dids(config), parse_weights(args.countries))
    if args.ivr and not args.did:
        groups = []  # only IVR callers asked for
    groups += [parse_ivr(config, spec) for spec in args.ivr]
    faults = [parse_fault(s) for s in args.fault]
    if args.fault_every:
        kinds = []
        for item in filter(None, args.fault_kinds.split(",")):
            kind, _, target = item.partition(":")
            kinds.append((FaultKind(kind), target))
        faults += periodic(kinds, parse_duration(args.fault_every), duration)
    carriers = []
    for spec in args.carrier:
        name, _, mode = spec.partition("=")
        if mode not in CARRIER_MODES:
            raise PlanError(f"--carrier {spec!r}: mode must be one of {', '.join(CARRIER_MODES)}")
        carriers.append((name, mode))
    at = datetime.fromisoformat(args.at) if args.at else None
    if at is not None and at.tzinfo is None:
        raise PlanError("--at needs an offset or Z")
    return LoadPlan(
        rate=args.rate,
        duration=duration,
        ramp=parse_duration(args.ramp),
        groups=tuple(groups),
        concurrency=args.concurrency,
        talk_ms=args.talk_ms,
        faults=timeline(faults),
        carriers=tuple(carriers),
        at=at,
        # Absolute: SIPp processes run in their own folders and write stat files here.
        out_dir=(Path(args.out) if args.out else out_dir_default()).resolve(),
        max_sipp=args.max_sipp,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the run like Ctrl-C: every SIPp group killed


def cmd_loadtest(args: argparse.Namespace) -> int:
    from ccbridge import logs
    from ccbridge.config import load_config
    from ccbridge.lab.lock import LabBusy, lab_lock
    from ccbridge.lab.secrets import ensure_lab_secrets
    from ccbridge.lab.sites import Lab
    from ccbridge.loadtest.run import Setup, run

    logs.setup("WARNING")
    if args.target is None:
        ensure_lab_secrets()
    config = load_config(args.config)
    try:
        plan = build_plan(config, args)
    except (PlanError, TimelineError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    setup = Setup(config, plan, None if args.target else Lab(config), target=args.target)
    try:
        if args.target:
            report = asyncio.run(run(setup))
        else:
            with lab_lock(args.lock_timeout, on_wait=lambda: print("waiting for the lab lock")):
                report = asyncio.run(run(setup))
    except LabBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    paths = report.write(plan.out_dir, chart=not args.no_chart)
    print(f"{report.summary_line()}; report: {', '.join(map(str, paths.values()))}")
    return 0 if report.passed else 1
