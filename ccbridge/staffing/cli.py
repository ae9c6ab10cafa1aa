"""`ccbridge staffing`: arguments -> forecast, plan, table, CSV, chart."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from ccbridge.config import ConfigError, load_config
from ccbridge.config.model import Config, Schedule
from ccbridge.routing.schedule import holiday_name
from ccbridge.staffing.csvhistory import HistoryFileError, read_history
from ccbridge.staffing.forecast import Forecast, forecast
from ccbridge.staffing.history import ArrivalHistory, NoHistory
from ccbridge.staffing.plan import Targets, offering_keys, plan
from ccbridge.staffing.report import plan_csv, plan_table, sun_report

EXIT_INPUT = 2
MAX_DAYS = 62  # two months of half hours per queue: a plan, not a data export

EXAMPLES = """examples:
  ccbridge staffing deploy.yaml --history arrivals.csv --from 2026-12-07 --to 2026-12-13
  ccbridge staffing deploy.yaml --history arrivals.csv --from 2026-12-24 --to 2026-12-24 \\
      --volume=+20% --aht 200 --target 90/15 --csv plan.csv --chart plan.png

The history is a CSV of arrivals per local half hour:
  site,service,language,interval_start,calls[,complete][,handled,handle_seconds]
  bangalore,orders,en,2026-11-09T09:30,37,1,35,6650
(interval_start on the site's wall clock; complete=0 for a slot in a coverage gap; a
slot with no row had no calls; handled calls and their total talk + hold + wrap-up
seconds give the AHT per half hour, else --aht). When the records store lands (issue 12) the command
reads the records instead and --history becomes optional.
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
    p.add_argument("--history", required=True, help="arrivals CSV (until the store lands)")
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


def _number(flag: str, raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"{flag}: {raw!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{flag}: {raw!r} is not a finite number")
    return v


def parse_volume(raw: str) -> float:
    """'+20%' -> 1.2, '-10%' -> 0.9."""
    m = re.fullmatch(r"\s*([+-]?)(\d+(?:\.\d+)?)\s*%\s*", raw)
    if not m:
        raise ValueError(f"--volume: {raw!r} is not a change like +20% or -10%")
    pct = float(m.group(2)) * (-1 if m.group(1) == "-" else 1)
    if pct <= -100:
        raise ValueError(f"--volume: {raw!r} would leave no calls at all")
    return 1 + pct / 100


def parse_target(raw: str) -> tuple[float, float]:
    """'80/20' -> (0.8, 20.0)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*", raw)
    if not m:
        raise ValueError(f"--target: {raw!r} is not PERCENT/SECONDS like 80/20")
    pct, secs = float(m.group(1)), float(m.group(2))
    if not 0 < pct <= 100:
        raise ValueError(f"--target: the percentage must be in (0, 100], got {m.group(1)}")
    return pct / 100, secs


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
    return [first + timedelta(days=i) for i in range(n)]


def _calendar(schedule: Schedule) -> Callable[[date], str | None]:
    return lambda d: holiday_name(schedule, d)


def forecasts_for(
    config: Config, history: ArrivalHistory, days: list[date], weeks: int
) -> tuple[list[Forecast], list[str]]:
    """A forecast for every queue the config offers, and a note for each without one."""
    out: list[Forecast] = []
    notes: list[str] = []
    for key in offering_keys(config):
        offering = config.site(key.site).offering(key.service)
        assert offering is not None
        try:
            out.append(
                forecast(history, key, days, weeks=weeks, holidays=_calendar(offering.schedule))
            )
        except NoHistory as exc:
            notes.append(f"no forecast: {exc}")
    return out, notes


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
        history = read_history(args.history)
    except (ValueError, HistoryFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    offered = set(offering_keys(config))
    for key in history.queues():
        if key not in offered:
            print(
                f"warning: {args.history}: {key} is not a queue of the config; ignored",
                file=sys.stderr,
            )
    forecasts, notes = forecasts_for(config, history, days, args.weeks)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    if not forecasts:
        print(
            f"error: {args.history}: no queue of the config has history before "
            f"{days[0]}: nothing to plan from",
            file=sys.stderr,
        )
        return EXIT_INPUT
    rows = plan(config, forecasts, targets)
    sys.stdout.write(
        f"staffing {days[0]}..{days[-1]}: target {targets.service_level:.0%} in "
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
