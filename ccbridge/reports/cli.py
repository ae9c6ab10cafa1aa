"""`ccbridge report intervals|agents CONFIG`: a report as a terminal table, CSV or a chart;
`ccbridge records erase|purge|rollup CONFIG`: data-protection erasure, retention and the
interval and agent reports' rollup by hand."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ccbridge.config.model import Config
    from ccbridge.reports.build import Report
    from ccbridge.reports.query import ReportQuery

EXIT_INPUT = 2
EXIT_DB = 1

# The terminal table's columns (CSV has them all): (column, heading, format)
_INTERVAL_TABLE = (
    ("interval_start", "interval", "t"),
    ("queue", "queue", "s"),
    ("offered", "offer", "d"),
    ("answered", "ans", "d"),
    ("abandoned", "aband", "d"),
    ("short_abandons", "short", "d"),
    ("service_level", "SL", "%"),
    ("service_level_with_abandons", "SL+ab", "%"),
    ("asa_s", "ASA", "f"),
    ("aht_s", "AHT", "f"),
    ("longest_wait_s", "maxwait", "f"),
    ("overflowed_in", "ovf_in", "d"),
    ("overflowed_out", "ovf_out", "d"),
    ("after_hours", "AH", "d"),
    ("fallback_routed", "fallbk", "d"),
    ("satisfaction_avg", "CSAT", "2"),
)
_AGENT_TABLE = (
    ("interval_start", "interval", "t"),
    ("agent", "agent", "s"),
    ("offered", "offer", "d"),
    ("answered", "ans", "d"),
    ("ring_no_answer", "RNA", "d"),
    ("talk_s", "talk", "f"),
    ("hold_s", "hold", "f"),
    ("wrapup_s", "wrap", "f"),
    ("login_s", "login", "f"),
    ("pause_s", "pause", "f"),
    ("occupancy", "occ", "%"),
    ("aht_s", "AHT", "f"),
    ("satisfaction_avg", "CSAT", "2"),
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="interval or agent report from the call record (terminal, CSV or chart)",
        description="Figures and formulas: docs/reports.md. Buckets are each site's local "
        "time; '*' marks an interval a coverage gap touches (incomplete).",
    )
    p.add_argument("kind", choices=["intervals", "agents"])
    p.add_argument("config")
    p.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD or ISO instant")
    p.add_argument("--to", dest="end", required=True, help="YYYY-MM-DD (inclusive) or instant")
    p.add_argument("--site", action="append", help="repeat for several; default every site")
    p.add_argument("--step", default="60", choices=["15", "30", "60", "day"])
    p.add_argument("--service")
    p.add_argument("--language")
    p.add_argument("--queue")
    p.add_argument("--agent")
    p.add_argument("--by", choices=["queue", "site"], help="intervals: one row per site")
    p.add_argument("--csv", help="write every column as CSV to this file ('-': stdout)")
    p.add_argument("--chart", help="intervals: draw offered and service level to FILE.png")
    p.set_defaults(func=cmd_report)

    r = sub.add_parser("records", help="the call record: erase a caller's number, purge, roll up")
    rs = r.add_subparsers(dest="action", required=True)
    e = rs.add_parser("erase", help="remove a caller's number from every record")
    e.add_argument("config")
    e.add_argument("--number", required=True)
    e.set_defaults(func=cmd_records)
    g = rs.add_parser("purge", help="purge records older than records.retention_days now")
    g.add_argument("config")
    g.set_defaults(func=cmd_records)
    u = rs.add_parser(
        "rollup",
        help="roll every closed day not yet rolled into the reports' rollups now",
        description="What the bridge's rollup job does every records.rollup_interval, "
        "without its per-round bound; once between several bridges (docs/reports.md).",
    )
    u.add_argument("config")
    u.set_defaults(func=cmd_records)


def _params(args: argparse.Namespace) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"from": [args.start], "to": [args.end], "step": [args.step]}
    for name in ("service", "language", "queue", "agent", "by"):
        v = getattr(args, name)
        if v is not None:
            out[name] = [v]
    if args.site:
        out["site"] = list(args.site)
    return out


def _cell(v: Any, fmt: str) -> str:
    if v is None:
        return "-"
    if fmt == "t":
        return str(v)[:16].replace("T", " ")
    if fmt == "%":
        return f"{v * 100:.1f}"
    if fmt == "f":
        return f"{v:.0f}"
    if fmt == "2":
        return f"{v:.2f}"
    return str(v)


def table(report: Report, agents: bool) -> str:
    spec = _AGENT_TABLE if agents else _INTERVAL_TABLE
    out: list[str] = []
    for site in dict.fromkeys(r["site"] for r in report.rows):
        rows = [r for r in report.rows if r["site"] == site]
        cells = [[h for _, h, _ in spec]]
        for r in rows:
            line = [_cell(r[c], f) for c, _, f in spec]
            if r["incomplete"]:
                line[0] += "*"
            if not agents and r["queue"] is None and r["service"] is not None:
                line[1] = f"({r['service']}-{r['language']})"
            cells.append(line)
        widths = [max(len(row[i]) for row in cells) for i in range(len(spec))]
        out.append(f"{site}")
        for row in cells:
            out.append(
                "  ".join(
                    c.rjust(w) if i > 1 else c.ljust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
        out.append("")
    return "\n".join(out)


def cmd_report(args: argparse.Namespace) -> int:
    from ccbridge.cli import _load
    from ccbridge.reports.csvout import to_csv
    from ccbridge.reports.query import QueryError, parse_report_query

    config = _load(args.config)
    agents = args.kind == "agents"
    if args.chart and agents:
        print("error: --chart draws the interval report", file=sys.stderr)
        return EXIT_INPUT
    try:
        q = parse_report_query(
            _params(args),
            sites=[s.name for s in config.sites],
            services=config.services,
            languages=config.languages,
            agents=agents,
        )
    except QueryError as exc:
        print(f"error: --{exc.field}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    got = asyncio.run(_fetch(config, q, agents, bool(args.chart)))
    if isinstance(got, int):
        return got
    report, chart = got
    if args.csv == "-":
        sys.stdout.write(to_csv(report.columns, report.rows))
    else:
        sys.stdout.write(table(report, agents))
        if args.csv:
            try:
                Path(args.csv).write_text(to_csv(report.columns, report.rows), encoding="utf-8")
            except OSError as exc:
                print(f"error: cannot write {args.csv}: {exc.strerror}", file=sys.stderr)
                return 1
            print(f"wrote {args.csv}")
    if chart is not None:
        from ccbridge.reports.chart import draw

        try:
            draw(
                chart.rows, Path(args.chart), f"offered and service level, {args.start}..{args.end}"
            )
        except ImportError:
            print("error: --chart needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"error: cannot write {args.chart}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"wrote {args.chart}", file=sys.stderr if args.csv == "-" else sys.stdout)
    return 0


async def _fetch(
    config: Config, q: ReportQuery, agents: bool, chart: bool
) -> tuple[Report, Report | None] | int:
    """The report (and the by-site one the chart draws), or an exit status."""
    from sqlalchemy.exc import DBAPIError

    from ccbridge.reports.build import agent_report, interval_report
    from ccbridge.reports.intervals import IntervalError
    from ccbridge.store.engine import make_engine
    from ccbridge.store.migrate import SchemaError, check_schema

    engine = make_engine(config.store)
    now = datetime.now(UTC)
    try:
        await check_schema(engine)
        report = await (agent_report if agents else interval_report)(engine, config, q, now)
        by_site = None
        if chart:
            by_site = await interval_report(engine, config, replace(q, by="site"), now)
        return report, by_site
    except (IntervalError, SchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (OSError, DBAPIError) as exc:
        print(f"error: cannot read the record database: {exc}", file=sys.stderr)
        return EXIT_DB
    finally:
        await engine.dispose()


def cmd_records(args: argparse.Namespace) -> int:
    from ccbridge.cli import _load

    config = _load(args.config)
    return asyncio.run(_records(config, args.action, getattr(args, "number", None)))


async def _records(config: Config, action: str, number: str | None) -> int:
    from sqlalchemy.exc import DBAPIError

    from ccbridge.access.audit import cli_actor, erase_audit_details
    from ccbridge.store.engine import make_engine
    from ccbridge.store.migrate import SchemaError, check_schema
    from ccbridge.store.retention import erase_number, purge_all

    engine = make_engine(config.store)
    deleter = None
    if config.recording is not None:
        from ccbridge.recording.part import make_storage, object_deleter

        deleter = object_deleter(make_storage(config.recording))
    try:
        await check_schema(engine)
        if action == "rollup":
            return await _rollup(engine, config)
        if action == "erase":
            assert number is not None
            if sum(ch.isdigit() for ch in number) < 5:
                print("error: --number: give the whole phone number", file=sys.stderr)
                return EXIT_INPUT
            done = await erase_number(engine, number, deleter)
            audit_rows = await erase_audit_details(engine, number, done.calls)
            print(
                f"erased the number from {done.calls} calls and {done.events} call events "
                f"(kept as 'erased'), deleted {done.recordings} recordings, and erased it "
                f"from the details of {audit_rows} audit rows "
                "(the audit chain still verifies)"
            )
        else:
            days = config.records.retention_days
            audit_days = config.records.audit_retention_days
            if days == 0 and audit_days == 0:
                print("records.retention_days and audit_retention_days are 0: kept for ever")
                return 0
            gone = await purge_all(
                engine, datetime.now(UTC), days, audit_days, cli_actor(), deleter
            )
            print(
                f"purged records older than {days} days and audit rows older than "
                f"{audit_days} days (0: kept): " + _counts(gone)
            )
        return 0
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (OSError, DBAPIError) as exc:
        print(f"error: cannot use the record database: {exc}", file=sys.stderr)
        return EXIT_DB
    finally:
        await engine.dispose()


async def _rollup(engine: AsyncEngine, config: Config) -> int:
    from ccbridge.access.audit import cli_actor
    from ccbridge.reports.rollup import roll_round

    # every=0: a bridge's recent round does not skip this one; its lock (PostgreSQL) does.
    got = await roll_round(engine, config, datetime.now(UTC), cli_actor(), 0, None)
    if not got.ran:
        print("another bridge is rolling up now: nothing done, try again in a minute")
        return EXIT_DB
    per = ", ".join(f"{n} {site}" for site, n in sorted(got.rolled.days.items()))
    print(
        f"rolled {got.rolled.total} site-days into the interval and agent rollups"
        + (f": {per}" if per else "")
    )
    return 0


def _counts(gone: dict[str, int]) -> str:
    return ", ".join(f"{n} {t}" for t, n in gone.items())
