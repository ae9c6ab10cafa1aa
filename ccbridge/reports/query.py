"""The reports' and call list's query parameters: parsed and checked, never trusted.

Pure: parameters in (name -> the values given, as a query string gives them), a typed
query or a ``QueryError`` naming the parameter out. Every limit that bounds the work a
query can ask for is here: page size, report length, the number of values.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from ccbridge.reports.intervals import MAX_BUCKETS, SLOT_S, Step, day_range
from ccbridge.store.schema import Outcome

MAX_PAGE = 1000  # calls per page: the largest answer one request can cost
DEFAULT_PAGE = 100
MAX_TEXT = 80  # any single value longer than this is garbage (names are shorter)
DEFAULT_SPAN = timedelta(days=1)  # the call list's range when none is given
FORMATS = ("json", "csv")


class QueryError(ValueError):
    """A parameter that cannot be used; ``field`` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


Params = Mapping[str, Sequence[str]]


@dataclass(frozen=True, slots=True)
class Period:
    """A report range: whole local days (each site's own midnights) or two instants."""

    first: date | None = None
    last: date | None = None  # inclusive
    start: datetime | None = None
    end: datetime | None = None

    def utc(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """[start, end) in UTC for a site in ``zone``, on quarter hours."""
        if self.first is not None and self.last is not None:
            return day_range(self.first, self.last, zone)
        assert self.start is not None and self.end is not None
        return _floor(self.start), _ceil(self.end)


@dataclass(frozen=True, slots=True)
class ReportQuery:
    period: Period
    sites: tuple[str, ...]  # never empty: the caller fills in every site when none given
    step: Step
    service: str | None = None
    language: str | None = None
    queue: str | None = None
    agent: str | None = None
    by: str = "queue"  # interval report: "queue" (site, service, language, queue) or "site"
    format: str = "json"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after this call (keyset paging, bounded per page)."""

    arrived_at: datetime
    call_id: str

    def encode(self) -> str:
        raw = json.dumps([self.arrived_at.isoformat(), self.call_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class CallQuery:
    start: datetime
    end: datetime
    sites: tuple[str, ...] = ()
    queue: str | None = None
    service: str | None = None
    outcomes: tuple[Outcome, ...] = ()
    agent: str | None = None
    caller: str | None = None
    limit: int = DEFAULT_PAGE
    after: Cursor | None = None
    format: str = "json"


def _floor(t: datetime) -> datetime:
    s = int(t.timestamp())
    return datetime.fromtimestamp(s - s % SLOT_S, UTC)


def _ceil(t: datetime) -> datetime:
    s = -(-int(t.timestamp() // 1) // SLOT_S) * SLOT_S
    return datetime.fromtimestamp(s, UTC)


def _one(params: Params, name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise QueryError(name, f"'{name}' given {len(values)} times: give it once")
    return _text(name, values[0])


def _text(name: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise QueryError(name, f"'{name}' is longer than {MAX_TEXT} characters")
    if not value.isprintable():
        raise QueryError(name, f"'{name}' contains control characters")
    return value


def _show(value: str) -> str:
    return repr(value[:40])


def _names(params: Params, name: str, known: Collection[str] | None) -> tuple[str, ...]:
    """Repeated or comma-separated names (``site=a&site=b``, ``site=a,b``)."""
    out: list[str] = []
    for raw in params.get(name, ()):
        for part in _text(name, raw).split(","):
            part = part.strip()
            if not part:
                raise QueryError(name, f"'{name}' has an empty name")
            if known is not None and part not in known:
                raise QueryError(
                    name, f"unknown {name} {_show(part)}: one of {', '.join(sorted(known))}"
                )
            if part not in out:
                out.append(part)
    if len(out) > 64:
        raise QueryError(name, f"more than 64 values for '{name}'")
    return tuple(out)


def _when(name: str, text: str) -> date | datetime:
    """A date (YYYY-MM-DD) or an instant with its offset (ISO 8601)."""
    if len(text) == 10:
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(
            name, f"'{name}' is neither a date (YYYY-MM-DD) nor an ISO 8601 instant: {_show(text)}"
        ) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise QueryError(name, f"'{name}' needs a UTC offset or Z: {_show(text)}")
    try:
        inside = datetime(1971, 1, 1, tzinfo=UTC) <= at <= datetime(9000, 1, 1, tzinfo=UTC)
    except OverflowError:  # year 1 with a positive offset is before datetime.min in UTC
        inside = False
    if not inside:
        raise QueryError(name, f"'{name}' is out of range: {_show(text)}")
    return at


def _format(params: Params, accept: str | None) -> str:
    fmt = _one(params, "format")
    if fmt is None:
        return "csv" if accept is not None and "text/csv" in accept else "json"
    if fmt not in FORMATS:
        raise QueryError("format", "'format' must be json or csv")
    return fmt


def _check_names(params: Params, allowed: Collection[str]) -> None:
    for name in params:
        if name not in allowed:
            raise QueryError(
                name[:40] or "?",
                f"unknown parameter {_show(name)}: use {', '.join(sorted(allowed))}",
            )


REPORT_PARAMS = frozenset(
    {"from", "to", "site", "step", "service", "language", "queue", "agent", "by", "format"}
)
CALL_PARAMS = frozenset(
    {
        "from",
        "to",
        "site",
        "queue",
        "service",
        "outcome",
        "agent",
        "caller",
        "limit",
        "after",
        "format",
    }
)


def parse_period(params: Params) -> Period:
    f, t = _one(params, "from"), _one(params, "to")
    if f is None or t is None:
        raise QueryError("from" if f is None else "to", "'from' and 'to' are required")
    start, end = _when("from", f), _when("to", t)
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise QueryError("to", "'from' and 'to' must both be dates or both be instants")
    if isinstance(start, datetime) and isinstance(end, datetime):
        if end <= start:
            raise QueryError("to", "'to' is not after 'from': the range is reversed or empty")
        if end - start > timedelta(seconds=MAX_BUCKETS * SLOT_S):
            raise QueryError("to", "the range is longer than a year")
        return Period(start=start, end=end)
    assert isinstance(start, date) and isinstance(end, date)
    if end < start:
        raise QueryError("to", "'to' is before 'from': the range is reversed")
    if (end - start).days >= 366:
        raise QueryError("to", "the range is longer than a year")
    return Period(first=start, last=end)


def parse_report_query(
    params: Params,
    *,
    sites: Collection[str],
    services: Collection[str],
    languages: Collection[str],
    accept: str | None = None,
    agents: bool = False,
) -> ReportQuery:
    """An interval report's (or with ``agents``, the agent report's) parameters."""
    _check_names(params, REPORT_PARAMS)
    period = parse_period(params)
    step_s = _one(params, "step") or "60"
    try:
        step = Step(step_s)
    except ValueError:
        raise QueryError("step", "'step' must be 15, 30, 60 (minutes) or day") from None
    chosen = _names(params, "site", sites) or tuple(sites)
    service = _one(params, "service")
    if service is not None and service not in services:
        raise QueryError("service", f"unknown service {_show(service)}")
    language = _one(params, "language")
    if language is not None and language not in languages:
        raise QueryError("language", f"unknown language {_show(language)}")
    by = _one(params, "by") or "queue"
    if by not in ("queue", "site"):
        raise QueryError("by", "'by' must be queue or site")
    if agents and (service or language or _one(params, "queue") or by != "queue"):
        raise QueryError("service", "the agent report takes from, to, site, step, agent")
    if not agents and _one(params, "agent") is not None:
        raise QueryError("agent", "the interval report has no agent filter: see /reports/agents")
    return ReportQuery(
        period=period,
        sites=chosen,
        step=step,
        service=service,
        language=language,
        queue=_one(params, "queue"),
        agent=_one(params, "agent"),
        by=by,
        format=_format(params, accept),
    )


def _cursor(text: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at_s, call_id = json.loads(raw)
        at = datetime.fromisoformat(at_s)
        if not isinstance(call_id, str) or at.tzinfo is None:
            raise ValueError("bad cursor")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise QueryError("after", "'after' is not a cursor this API gave") from None
    return Cursor(at, call_id)


def parse_call_query(
    params: Params, *, sites: Collection[str], now: datetime, accept: str | None = None
) -> CallQuery:
    """The call list's parameters; without ``from``/``to`` the last day up to ``now``."""
    _check_names(params, CALL_PARAMS)
    if "from" in params or "to" in params:
        period = parse_period(params)
        if period.start is None:
            # Dates in a call list are UTC days: a list spans sites and has no one zone.
            assert period.first is not None and period.last is not None
            start, end = day_range(period.first, period.last, ZoneInfo("UTC"))
        else:
            assert period.end is not None
            start, end = period.start, period.end
    else:
        start, end = now - DEFAULT_SPAN, now
    limit_s = _one(params, "limit")
    limit = DEFAULT_PAGE
    if limit_s is not None:
        if not limit_s.isdigit() or not 1 <= int(limit_s) <= MAX_PAGE:
            raise QueryError("limit", f"'limit' must be a whole number 1..{MAX_PAGE}")
        limit = int(limit_s)
    outcomes: list[Outcome] = []
    for name in _names(params, "outcome", {o.value for o in Outcome}):
        outcomes.append(Outcome(name))
    after = _one(params, "after")
    caller = _one(params, "caller")
    if caller is not None and not any(ch.isdigit() for ch in caller):
        raise QueryError("caller", "'caller' is a phone number: it needs digits")
    return CallQuery(
        start=start,
        end=end,
        sites=_names(params, "site", sites),
        queue=_one(params, "queue"),
        service=_one(params, "service"),
        outcomes=tuple(outcomes),
        agent=_one(params, "agent"),
        caller=caller,
        limit=limit,
        after=_cursor(after) if after is not None else None,
        format=_format(params, accept),
    )
