"""`ccbridge staffing`: arguments -> forecast, plan, table, CSV, chart."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from ccbridge.config import ConfigError, load_config
from ccbridge.config.model import Config
from ccbridge.staffing.csvhistory import HistoryFileError, read_history
from ccbridge.staffing.history import NoHistory
from ccbridge.staffing.plan import Targets, offering_keys
from ccbridge.staffing.planning import (
    MAX_DAYS,
    PlanResult,
    check_weeks,
    make_plan,
    parse_target,
    parse_volume,
    plan_days,
)
from ccbridge.staffing.planning import (
    number as _number,
)
from ccbridge.staffing.report import plan_csv, plan_table, sun_report

EXIT_INPUT = 2

EXAMPLES = """examples:
  ccbridge staffing deploy.yaml --from 2026-12-07 --to 2026-12-13
  ccbridge staffing deploy.yaml --from 2026-12-24 --to 2026-12-24 \\
      --volume=+20% --aht 200 --target 90/15 --csv plan.csv --chart plan.png
  ccbridge staffing deploy.yaml --history arrivals.csv --from 2026-12-07 --to 2026-12-13

The history is a CSV of arrivals per local half hour:
  site,service,language,interval_start,calls[,complete][,handled,handle_seconds]
  bangalore,orders,en,2026-11-09T09:30,37,1,35,6650
(interval_start on the site's wall clock; complete=0 for a slot in a coverage gap; a
slot with no row had no calls; handled calls and their total talk + hold + wrap-up
seconds give the AHT per half hour, else --aht).

Without --history the command reads the call records in the config's store (`ccbridge
db upgrade CONFIG` creates it; the bridge writes it): arrivals per local half hour at
the site that queued each call, handle times, coverage gaps. Slots of the planned dates
that the records already hold show their recorded calls beside the forecast
("rec"; a "*" marks a slot that touched a coverage gap: a lower bound).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "staffing",
        help="forecast demand and the agents each site needs per half hour (Erlang C)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config")
    p.add_argument("--from", dest="first", required=True, help="first local date, YYYY-MM-DD")
    p.add_argument("--to", dest="last", required=True, help="last local date (inclusive)")
    p.add_argument(
        "--history",
        help="read arrivals from this CSV instead of the records store (config's store:)",
    )
    p.add_argument("--weeks", type=int, default=8, help="weeks of history in the profile")
    p.add_argument(
        "--volume", default="+0%", help="what-if: change the forecast, e.g. +20%% or --volume=-10%%"
    )
    p.add_argument(
        "--aht",
        help="average handle time in seconds, everywhere (default: the history's where it "
        "records handled calls, else 180)",
    )
    p.add_argument("--target", default="80/20", help="service level: PERCENT/SECONDS")
    p.add_argument("--max-occupancy", default="85", help="percent, default 85")
    p.add_argument("--shrinkage", default="30", help="percent of rostered time lost, default 30")
    p.add_argument("--csv", help="write every slot to this CSV file")
    p.add_argument("--chart", help="write a heatmap per site to this PNG file")
    p.add_argument("--all-slots", action="store_true", help="print closed slots too")
    p.set_defaults(func=cmd_staffing)


def targets_from(args: argparse.Namespace) -> Targets:
    sl, threshold = parse_target(args.target)
    return Targets(
        aht_s=180.0 if args.aht is None else _number("--aht", args.aht),
        aht_from_history=args.aht is None,
        threshold_s=threshold,
        service_level=sl,
        max_occupancy=_number("--max-occupancy", args.max_occupancy) / 100,
        shrinkage=_number("--shrinkage", args.shrinkage) / 100,
        volume=parse_volume(args.volume),
    )


def _dates(args: argparse.Namespace) -> list[date]:
    try:
        first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    except ValueError as exc:
        raise ValueError(f"--from/--to: {exc} (expected YYYY-MM-DD)") from None
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    n = (last - first).days + 1
    if n > MAX_DAYS:
        raise ValueError(f"--from/--to span {n} days; at most {MAX_DAYS}")
    return plan_days(first, last)


def _from_store(config: Config, days: list[date], targets: Targets, weeks: int) -> PlanResult:
    """The plan from the config's records store; StoreUnusable when it cannot be read."""
    from sqlalchemy.exc import DBAPIError

    from ccbridge.staffing.storehistory import plan_from_store
    from ccbridge.store.engine import make_engine, sqlite_path
    from ccbridge.store.migrate import SchemaError, check_schema

    where = _where(config)
    path = sqlite_path(config.store)
    if path is not None and not path.exists():
        raise StoreUnusable(
            f"{where}: no such database file: the records store is empty (run `ccbridge db "
            "upgrade CONFIG`, and the bridge to record calls) or give --history CSV"
        )

    async def run() -> PlanResult:
        engine = make_engine(config.store)
        try:
            await check_schema(engine)
            return await plan_from_store(
                engine, config, days, targets, now=datetime.now(UTC), weeks=weeks
            )
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except SchemaError as exc:
        raise StoreUnusable(f"{where}: {exc}") from None
    except (OSError, TimeoutError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StoreUnusable(f"{where}: cannot reach the database: {why}") from None
    except DBAPIError as exc:
        first = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
        raise StoreUnusable(f"{where}: cannot use the database: {first}") from None


def _where(config: Config) -> str:
    from sqlalchemy.engine import make_url

    return make_url(config.store.url).render_as_string(hide_password=True)


class StoreUnusable(Exception):
    """The records store cannot be read: the message says which and why."""


def cmd_staffing(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, resolve_secrets=False)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_INPUT
    try:
        targets = targets_from(args)
        days = _dates(args)
        if args.weeks < 1:
            raise ValueError(f"--weeks must be at least 1, got {args.weeks}")
        try:
            check_weeks(args.weeks)
        except ValueError as exc:
            raise ValueError(f"--{exc}") from None
        history = read_history(args.history) if args.history else None
    except (ValueError, HistoryFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    source = args.history or f"the records store ({_where(config)})"
    try:
        if history is not None:
            offered = set(offering_keys(config))
            for key in history.queues():
                if key not in offered:
                    print(
                        f"warning: {args.history}: {key} is not a queue of the config; ignored",
                        file=sys.stderr,
                    )
            result = make_plan(config, history, days, targets, args.weeks)
        else:
            result = _from_store(config, days, targets, args.weeks)
    except NoHistory as exc:
        hint = "" if history is not None else " (the bridge records calls with store: on)"
        print(f"error: {source}: {exc}{hint}", file=sys.stderr)
        return EXIT_INPUT
    except StoreUnusable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"warning: {note}", file=sys.stderr)
    rows = result.rows
    sys.stdout.write(
        f"staffing {days[0]}..{days[-1]} from {source}: target {targets.service_level:.0%} in "
        f"{targets.threshold_s:g} s, AHT "
        f"{'from the history, else ' if targets.aht_from_history else ''}{targets.aht_s:g} s, "
        "max occupancy "
        f"{targets.max_occupancy:.0%}, shrinkage {targets.shrinkage:.0%}, volume "
        f"x{targets.volume:g}; staffed = configured queue members\n\n"
    )
    sys.stdout.write(plan_table(rows, all_slots=args.all_slots))
    text, _, _ = sun_report(config, days[0], rows, targets)
    sys.stdout.write("\n" + text)
    if args.csv:
        try:
            Path(args.csv).write_text(plan_csv(rows), encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {args.csv}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"wrote {args.csv}")
    if args.chart:
        from ccbridge.staffing.chart import draw

        try:
            draw(rows, Path(args.chart))
        except ImportError:
            print("error: --chart needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"error: cannot write {args.chart}: {exc.strerror}", file=sys.stderr)
            return 1
        print(f"wrote {args.chart}")
    return 0
