"""Command line: argument parsing only; the work is done by the modules it calls."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ccbridge.config import Config, ConfigError, load_config

EXIT_CONFIG = 2
DEFAULT_LAB_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "lab.yaml"


def _load(path: str, *, resolve_secrets: bool = True) -> Config:
    try:
        return load_config(path, resolve_secrets=resolve_secrets)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_check(args: argparse.Namespace) -> int:
    from ccbridge.checks import check_deployment, deployment_warnings
    from ccbridge.config.reader import missing_secret_problem

    # Secrets are the deployment's, not the file's: an admin checking the file on a
    # laptop has none, so they are warnings unless --secrets asks for them.
    config = _load(args.config, resolve_secrets=args.secrets)
    warnings = [str(missing_secret_problem(m)) for m in config.missing_secrets]
    warnings += deployment_warnings(config)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    problems = check_deployment(config)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return EXIT_CONFIG
    print(
        f"{args.config}: ok: {len(config.sites)} sites, {len(config.numbers)} numbers, "
        f"{len(config.trunks)} trunks, services {', '.join(config.services)}"
        + (f"; {len(warnings)} warnings" if warnings else "")
    )
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from ccbridge.deploy.commands import render_sites, verify_renders
    from ccbridge.render import render_all

    config = _load(args.config)
    templates = Path(args.templates) if args.templates else None
    if not (args.out or args.verify or args.static):
        print("error: --out is needed (or --verify)", file=sys.stderr)
        return EXIT_CONFIG
    # Rendered with a source map: a template error names its file and line, no traceback.
    renders = render_sites(config, templates)
    if renders is None:
        return EXIT_CONFIG
    if args.verify or args.static:
        code = verify_renders(config, renders, static_only=args.static, verbose=args.verbose)
        if code != 0 or not args.out:
            return code
    written = render_all(config, Path(args.out), templates)
    for p in written:
        print(p)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ccbridge import gcsetup, malloc

    malloc.tune()  # before any thread: they share one malloc arena
    gcsetup.tune()  # before the deployment file is parsed (full collections made rare)
    from ccbridge import logs, loopdebug
    from ccbridge.app import run_bridge
    from ccbridge.cluster import for_this_process

    config = _load(args.config)
    logs.setup(args.log_level or config.bridge.log_level, args.log_format)
    try:
        # Several bridges on one file: this process's identity and listeners (issue 15).
        config = for_this_process(config, os.environ)
        slow_ms = args.slow_callback_ms or loopdebug.env_threshold_ms()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return run_bridge(config, slow_callback_ms=slow_ms)


def cmd_supervise(args: argparse.Namespace) -> int:
    from ccbridge import logs
    from ccbridge.supervise import supervise

    config = _load(args.config)
    logs.setup(args.log_level or config.bridge.log_level, args.log_format)
    child = [sys.executable, "-m", "ccbridge.cli", "run", args.config]
    child += ["--log-format", args.log_format]
    if args.log_level:
        child += ["--log-level", args.log_level]
    pid_file = Path(args.pid_file) if args.pid_file else None
    return supervise(child, config.bridge.watchdog, pid_file)


def cmd_preview(args: argparse.Namespace) -> int:
    from ccbridge.preview import preview

    config = _load(args.config, resolve_secrets=False)
    try:
        result = preview(
            config,
            did=args.did,
            caller=args.caller,
            at=args.at,
            language=args.lang,
            state_file=args.state,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(result, indent=2))
    return 0


def _status_line(name: str, st: dict[str, object]) -> str:
    line = f"{name:<12} pid={st['pid']} sip={st['sip']} ami={'ok' if st['ami'] else 'DOWN'}"
    return line + (f" agi_guard_pid={st['guard']}" if st.get("guard") else "")


def cmd_lab(args: argparse.Namespace) -> int:
    from ccbridge import logs
    from ccbridge.lab.rootfs import LabError
    from ccbridge.lab.secrets import ensure_lab_secrets
    from ccbridge.lab.sites import Lab
    from ccbridge.lab.tls import enable_lab_tls

    logs.setup("INFO")
    ensure_lab_secrets()
    config = _load(args.config)
    if not any(s.tls for s in config.sites):
        config = enable_lab_tls(config)  # the lab's TLS pair, as the integration tests run it
    lab = Lab(config)
    try:
        if args.action == "prepare":
            took = lab.prepare()
            how = f"built in {took:.0f}s" if took else "cached"
            print(f"lab root ready ({how}): {lab.root}")
        elif args.action == "up":
            t = lab.up()
            print(
                f"lab up: {len(config.sites)} sites; root build {t['build']:.1f}s, "
                f"sites answering AMI after {t['start']:.1f}s"
            )
            for name, st in lab.status().items():
                print("  " + _status_line(name, st))
        elif args.action == "down":
            lab.down()
            print("lab down")
        elif args.action == "status":
            status = lab.status()
            for name, st in status.items():
                print(_status_line(name, st))
            return 0 if all(st["ami"] for st in status.values()) else 1
        elif args.action == "demo":
            from ccbridge.lab.demo import run_demo

            return run_demo(lab, calls=args.calls, keep_running=not args.once)
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


def _positive_ms(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number of milliseconds: {raw!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccbridge", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="validate a deployment file")
    c.add_argument("config")
    c.add_argument(
        "--secrets",
        action="store_true",
        help="require every secret to be readable here (default: warn about missing ones)",
    )
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("render", help="render each site's Asterisk configs")
    r.add_argument("config")
    r.add_argument("--out", help="output folder: one subfolder per site")
    r.add_argument("--templates", help="template folder (default: dialplans/)")
    r.add_argument(
        "--verify",
        action="store_true",
        help="check the render statically and load it into a scratch Asterisk; exit 2 on errors "
        "(with --out: write only a render that passes)",
    )
    r.add_argument("--static", action="store_true", help="--verify without the scratch Asterisk")
    r.add_argument("-v", "--verbose", action="store_true", help="list every warning")
    r.set_defaults(func=cmd_render)

    from ccbridge.deploy.parsers import add_parsers as add_deploy

    add_deploy(sub)

    run = sub.add_parser("run", help="run the bridge")
    run.add_argument("config")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument(
        "--log-format", choices=["kv", "json"], default=os.environ.get("CCBRIDGE_LOG_FORMAT", "kv")
    )
    run.add_argument(
        "--slow-callback-ms",
        type=_positive_ms,
        help="log every event-loop callback that runs longer than this (asyncio debug "
        "mode; default: $CCBRIDGE_LOOP_DEBUG_MS, else off)",
    )
    run.set_defaults(func=cmd_run)

    sv = sub.add_parser(
        "supervise",
        help="run the bridge; restart it when it exits or its heartbeat stops (bridge.watchdog)",
    )
    sv.add_argument("config")
    sv.add_argument("--pid-file", help="write the running bridge's pid here")
    sv.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sv.add_argument(
        "--log-format", choices=["kv", "json"], default=os.environ.get("CCBRIDGE_LOG_FORMAT", "kv")
    )
    sv.set_defaults(func=cmd_supervise)

    pv = sub.add_parser("preview", help="print the routing decision for a call, as JSON")
    pv.add_argument("config")
    pv.add_argument("--did", required=True, help="the number dialled, e.g. +918000000001")
    pv.add_argument("--caller", default="", help="the caller's number, e.g. +8801712345678")
    pv.add_argument("--at", help="the instant, ISO 8601 with offset (default: now)")
    pv.add_argument("--lang", help="a language chosen in the IVR")
    pv.add_argument("--state", help="a JSON file of live state (sites up/down, queue load)")
    pv.set_defaults(func=cmd_preview)

    lab = sub.add_parser("lab", help="the local multi-site Asterisk lab")
    lab.add_argument("action", choices=["prepare", "up", "down", "status", "demo"])
    lab.add_argument("--config", default=str(DEFAULT_LAB_CONFIG))
    lab.add_argument("--calls", type=int, default=6, help="demo: how many calls to place")
    lab.add_argument("--once", action="store_true", help="demo: stop after the calls")
    lab.set_defaults(func=cmd_lab)

    from ccbridge.loadtest.cli import add_parser as add_loadtest
    from ccbridge.store.cli import add_parser as add_db

    add_loadtest(sub, str(DEFAULT_LAB_CONFIG))
    add_db(sub)

    from ccbridge.access.cli import add_parser as add_access

    add_access(sub)

    from ccbridge.staffing.cli import add_parser as add_staffing

    add_staffing(sub)

    from ccbridge.reports.cli import add_parser as add_report

    add_report(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
