"""Load a deployment YAML file into frozen Config objects; errors name file, line and key."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ccbridge.config.model import (
    WEEKDAYS,
    AfterHours,
    AfterHoursAction,
    Agent,
    AmiSettings,
    BridgeSettings,
    Config,
    Country,
    HostPort,
    Number,
    NumberKind,
    Offering,
    QueueSettings,
    RoutingSettings,
    Schedule,
    SecretValue,
    Site,
    TimeRange,
    Trunk,
    TrunkKind,
    Watchdog,
    WeeklyRule,
    queue_name,
)
from ccbridge.config.yamlsrc import ConfigError, LineDict, Problem, read_yaml

T = TypeVar("T")
D = TypeVar("D")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_DID_RE = re.compile(r"^\+?[0-9]{3,20}$")
_LANG_RE = re.compile(r"^[a-z]{2,3}$")
_TIME_RANGE_RE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_QUEUE_STRATEGIES = frozenset(
    {
        "ringall",
        "leastrecent",
        "fewestcalls",
        "random",
        "rrmemory",
        "linear",
        "wrandom",
        "rrordered",
    }
)


class _Fail(Exception):
    """Internal: one problem at the current key path; collected by the section reader."""


class _Reader:
    """Walks the parsed YAML, tracking the key path and the nearest known line."""

    def __init__(self, filename: str, base_dir: Path, resolve_secrets: bool) -> None:
        self.filename = filename
        self.base_dir = base_dir
        self.resolve_secrets = resolve_secrets
        self.problems: list[Problem] = []
        self._path: list[str] = []
        self._lines: list[int] = [0]

    # -- paths and errors -------------------------------------------------
    @property
    def path(self) -> str:
        out = ""
        for part in self._path:
            out += part if part.startswith("[") else (f".{part}" if out else part)
        return out

    @contextmanager
    def at(self, key: str | int, container: Any = None) -> Iterator[None]:
        part = f"[{key}]" if isinstance(key, int) else str(key)
        line = self._lines[-1]
        if isinstance(container, LineDict):
            line = container.key_lines.get(str(key), container.line) or line
        self._path.append(part)
        self._lines.append(line)
        try:
            yield
        finally:
            self._path.pop()
            self._lines.pop()

    def fail(self, message: str) -> _Fail:
        self.problems.append(Problem(self.filename, self._lines[-1] or None, self.path, message))
        return _Fail(message)

    def collect(self, fn: Callable[[], T]) -> T | None:
        """Run one independent part; on failure keep the problem and go on with the rest."""
        try:
            return fn()
        except _Fail:
            return None

    # -- typed accessors --------------------------------------------------
    def mapping(
        self, value: Any, allowed: set[str] | None = None, required: set[str] | None = None
    ) -> LineDict:
        """A mapping with only ``allowed`` keys (any keys when None) and all ``required`` ones."""
        if not isinstance(value, dict):
            raise self.fail(f"expected a mapping, got {_kind(value)}")
        d = value if isinstance(value, LineDict) else LineDict(value)
        if not hasattr(d, "key_lines"):
            d.key_lines = {}
        for key in d:
            if allowed is not None and key not in allowed:
                with self.at(key, d):
                    hint = _closest(key, allowed)
                    raise self.fail(
                        f"unknown key '{key}'" + (f" (did you mean '{hint}'?)" if hint else "")
                    )
        for key in sorted(required or ()):
            if key not in d:
                raise self.fail(f"missing required key '{key}'")
        return d

    def get(self, d: LineDict, key: str, conv: Callable[[Any], T], default: D) -> T | D:
        if key not in d or d[key] is None:
            return default
        with self.at(key, d):
            return conv(d[key])

    def req(self, d: LineDict, key: str, conv: Callable[[Any], T]) -> T:
        if key not in d or d[key] is None:
            raise self.fail(f"missing required key '{key}'")
        with self.at(key, d):
            return conv(d[key])

    def string(self, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise self.fail(f"expected a string, got {_kind(v)}")
        return str(v)

    def name(self, v: Any) -> str:
        s = self.string(v)
        if not _NAME_RE.match(s):
            raise self.fail(f"invalid name '{s}': use lowercase letters, digits, '-' or '_'")
        return s

    def integer(self, lo: int, hi: int) -> Callable[[Any], int]:
        def conv(v: Any) -> int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(f"expected a whole number, got {_kind(v)}")
            if not lo <= v <= hi:
                raise self.fail(f"{v} is out of range {lo}..{hi}")
            return int(v)

        return conv

    def number(self, lo: float, hi: float) -> Callable[[Any], float]:
        def conv(v: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise self.fail(f"expected a number, got {_kind(v)}")
            if not lo <= float(v) <= hi:
                raise self.fail(f"{v} is out of range {lo}..{hi}")
            return float(v)

        return conv

    def boolean(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise self.fail(f"expected true or false, got {_kind(v)}")
        return v

    def str_list(self, item: Callable[[Any], str]) -> Callable[[Any], tuple[str, ...]]:
        return lambda v: tuple(_list(self, v, item))

    def host_port(self, default_port: int | None = None) -> Callable[[Any], HostPort]:
        def conv(v: Any) -> HostPort:
            s = self.string(v)
            host, sep, port_s = s.rpartition(":")
            if not sep:
                if default_port is None:
                    raise self.fail(f"expected HOST:PORT, got '{s}'")
                host, port_s = s, str(default_port)
            if not host:
                raise self.fail(f"missing host in '{s}'")
            if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
                raise self.fail(f"invalid port in '{s}'")
            return HostPort(host, int(port_s))

        return conv

    def ip(self, v: Any) -> str:
        s = self.string(v)
        try:
            ipaddress.ip_network(s, strict=False)
        except ValueError:
            raise self.fail(f"not an IP address or network: '{s}'") from None
        return s

    def timezone(self, v: Any) -> str:
        s = self.string(v)
        try:
            ZoneInfo(s)
        except (ZoneInfoNotFoundError, ValueError):
            hint = _closest(s, _zones())
            raise self.fail(
                f"unknown time zone '{s}'" + (f" (did you mean '{hint}'?)" if hint else "")
            ) from None
        return s

    def country_code(self, v: Any) -> str:
        s = self.string(v)
        if not re.fullmatch(r"[A-Z]{2}", s):
            raise self.fail(f"expected an ISO 3166 two-letter country code, got '{s}'")
        return s

    def language(self, v: Any) -> str:
        s = self.string(v)
        if not _LANG_RE.match(s):
            raise self.fail(f"expected a language code like 'en' or 'bn', got '{s}'")
        return s

    def a_date(self, v: Any) -> date:
        if isinstance(v, datetime):
            return v.date()
        if isinstance(v, date):
            return v
        try:
            return date.fromisoformat(self.string(v))
        except ValueError:
            raise self.fail(f"expected a date YYYY-MM-DD, got '{v}'") from None

    def a_datetime(self, v: Any) -> datetime:
        try:
            dt = v if isinstance(v, datetime) else datetime.fromisoformat(self.string(v))
        except ValueError:
            raise self.fail(f"expected an ISO 8601 time with offset, got '{v}'") from None
        if dt.tzinfo is None:
            raise self.fail("the time needs an offset or 'Z' (e.g. 2026-12-25T03:00:00Z)")
        return dt

    def time_range(self, v: Any) -> TimeRange:
        s = self.string(v).strip()
        m = _TIME_RANGE_RE.match(s)
        if not m:
            raise self.fail(f"expected a time range HH:MM-HH:MM, got '{s}'")
        h1, m1, h2, m2 = (int(x) for x in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise self.fail(f"invalid time in '{s}'")
        end = time(0, 0) if h2 == 24 else time(h2, m2)
        rng = TimeRange(time(h1, m1), end)
        if rng.start == rng.end and not (h1 == 0 and m1 == 0 and h2 == 24):
            raise self.fail(f"empty time range '{s}'")
        return rng

    def days(self, v: Any) -> frozenset[int]:
        s = self.string(v).strip().lower()
        if s in ("daily", "all", "mon-sun", "*"):
            return frozenset(range(7))
        out: set[int] = set()
        for part in s.split(","):
            part = part.strip()
            lo, _, hi = part.partition("-")
            if lo not in WEEKDAYS or (hi and hi not in WEEKDAYS):
                raise self.fail(
                    f"invalid days '{s}': use mon..sun, ranges like mon-fri or sun-thu, or daily"
                )
            a = WEEKDAYS.index(lo)
            b = WEEKDAYS.index(hi) if hi else a
            i = a
            while True:
                out.add(i)
                if i == b:
                    break
                i = (i + 1) % 7
        return frozenset(out)

    def secret(self, v: Any) -> SecretValue:
        if isinstance(v, str):
            raise self.fail(
                "secrets must not be written in the config: use {env: VAR} or {file: PATH}"
            )
        d = self.mapping(v, {"env", "file"})
        env = self.get(d, "env", self.string, "")
        file = self.get(d, "file", self.string, "")
        if not env and not file:
            raise self.fail("a secret needs 'env', 'file' or both")
        sources = []
        if env:
            sources.append(f"env {env}")
            if os.environ.get(env):
                return SecretValue(os.environ[env], f"env:{env}")
        if file:
            p = Path(file)
            p = p if p.is_absolute() else (self.base_dir / p)
            sources.append(f"file {p}")
            if p.is_file():
                value = p.read_text(encoding="utf-8").strip()
                if value:
                    return SecretValue(value, f"file:{p}")
        if not self.resolve_secrets:
            return SecretValue("", "unresolved")
        raise self.fail("secret not found: " + " and ".join(sources) + " give nothing")


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return f"{type(v).__name__} {v!r}"


_ZONES: set[str] | None = None


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones()
    return _ZONES


def _closest(word: str, choices: set[str] | frozenset[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return found[0] if found else None


# -- sections ---------------------------------------------------------------


def _bridge(r: _Reader, v: Any) -> BridgeSettings:
    from ccbridge.config.guard_loader import parse_agi_guard, parse_watchdog  # imports this

    d = r.mapping(
        v,
        {
            "agi_listen",
            "agi_url_host",
            "http_listen",
            "api_token",
            "clock",
            "max_agi_sessions",
            "agi_session_timeout",
            "log_level",
            "agi_guard",
            "watchdog",
        },
        {"agi_listen", "http_listen"},
    )
    agi = r.req(d, "agi_listen", r.host_port())
    level = r.get(d, "log_level", r.string, "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        with r.at("log_level", d):
            raise r.fail(f"unknown log level '{level}'")
    return BridgeSettings(
        agi_listen=agi,
        agi_url_host=r.get(d, "agi_url_host", r.host_port(), agi),
        http_listen=r.req(d, "http_listen", r.host_port()),
        api_token=r.get(d, "api_token", r.secret, None),
        fixed_clock=r.get(d, "clock", r.a_datetime, None),
        max_agi_sessions=r.get(d, "max_agi_sessions", r.integer(1, 100_000), 1000),
        agi_session_timeout=r.get(d, "agi_session_timeout", r.number(0.1, 600), 5.0),
        log_level=level,
        # Collected apart: a problem in one is reported with the other's.
        agi_guard=r.collect(lambda: r.get(d, "agi_guard", partial(parse_agi_guard, r), None)),
        watchdog=r.collect(lambda: r.get(d, "watchdog", partial(parse_watchdog, r), Watchdog()))
        or Watchdog(),
    )


def _schedule(r: _Reader, v: Any, site_extra: dict[str, Any]) -> Schedule:
    base = dict(site_extra)
    if v == "always":
        # A 24/7 line stays open on national holidays unless `holidays` says otherwise.
        base.setdefault("observe_holidays", False)
        return Schedule(weekly=(), always_open=True, **base)
    items = v if isinstance(v, list) else [v]
    rules: list[WeeklyRule] = []
    for i, item in enumerate(items):
        with r.at(i) if isinstance(v, list) else _null():
            if not isinstance(item, dict):
                raise r.fail(f"expected 'always' or a mapping of days to hours, got {_kind(item)}")
            d = item if isinstance(item, LineDict) else LineDict(item)
            for days_s, hours in d.items():
                with r.at(days_s, d):
                    days = r.days(days_s)
                    ranges = hours if isinstance(hours, list) else [hours]
                    for j, h in enumerate(ranges):
                        with r.at(j) if isinstance(hours, list) else _null():
                            rules.append(WeeklyRule(days, r.time_range(h)))
    return Schedule(weekly=tuple(rules), **base)


@contextmanager
def _null() -> Iterator[None]:
    yield


def _queue_settings(r: _Reader, v: Any) -> QueueSettings:
    d = r.mapping(v, set(QueueSettings.__dataclass_fields__))
    q = QueueSettings()
    strategy = r.get(d, "strategy", r.string, q.strategy)
    if strategy not in _QUEUE_STRATEGIES:
        with r.at("strategy", d):
            raise r.fail(f"unknown queue strategy '{strategy}'")
    return QueueSettings(
        strategy=strategy,
        timeout=r.get(d, "timeout", r.integer(1, 600), q.timeout),
        retry=r.get(d, "retry", r.integer(0, 600), q.retry),
        maxlen=r.get(d, "maxlen", r.integer(0, 100_000), q.maxlen),
        wrapuptime=r.get(d, "wrapuptime", r.integer(0, 3600), q.wrapuptime),
        servicelevel=r.get(d, "servicelevel", r.integer(1, 3600), q.servicelevel),
        max_wait=r.get(d, "max_wait", r.integer(1, 86_400), q.max_wait),
        announce_position=r.get(d, "announce_position", r.boolean, q.announce_position),
        announce_frequency=r.get(d, "announce_frequency", r.integer(0, 3600), q.announce_frequency),
        joinempty=r.get(d, "joinempty", r.string, q.joinempty),
        leavewhenempty=r.get(d, "leavewhenempty", r.string, q.leavewhenempty),
    )


def _site(r: _Reader, name: str, v: Any, languages: set[str], services: set[str]) -> Site:
    d = r.mapping(
        v,
        {
            "timezone",
            "country",
            "sip",
            "ami",
            "rtp",
            "services",
            "holidays",
            "closed_dates",
            "special_hours",
            "carrier_sources",
            "agents",
        },
        {"timezone", "country", "sip", "ami", "rtp", "services"},
    )
    tz = r.req(d, "timezone", r.timezone)
    country = r.req(d, "country", r.country_code)
    sip = r.req(d, "sip", r.host_port(5060))
    with r.at("ami", d):
        a = r.mapping(
            d["ami"],
            {
                "host",
                "port",
                "username",
                "secret",
                "ping_interval",
                "ping_timeout",
                "action_timeout",
                "permit",
            },
            {"username", "secret"},
        )
        ami = AmiSettings(
            host=r.get(a, "host", r.string, sip.host),
            port=r.get(a, "port", r.integer(1, 65535), 5038),
            username=r.req(a, "username", r.string),
            secret=r.req(a, "secret", r.secret),
            ping_interval=r.get(a, "ping_interval", r.number(0.1, 60), 1.0),
            ping_timeout=r.get(a, "ping_timeout", r.number(0.1, 60), 2.0),
            action_timeout=r.get(a, "action_timeout", r.number(0.1, 120), 5.0),
            permit=r.get(a, "permit", r.str_list(r.ip), ("127.0.0.0/8",)),
        )
    with r.at("rtp", d):
        rtp = d["rtp"]
        if not (isinstance(rtp, list) and len(rtp) == 2):
            raise r.fail("expected [first_port, last_port]")
        lo, hi = (r.integer(1024, 65535)(x) for x in rtp)
        if hi <= lo:
            raise r.fail("the last RTP port must be above the first")

    extra: dict[str, Any] = {"holidays_country": country}
    if "holidays" in d:
        with r.at("holidays", d):
            if d["holidays"] is False:
                extra["observe_holidays"] = False
            else:
                h = r.mapping(d["holidays"], {"country", "subdivision", "observe"})
                extra["holidays_country"] = r.get(h, "country", r.country_code, country)
                extra["holidays_subdivision"] = r.get(h, "subdivision", r.string, None)
                extra["observe_holidays"] = r.get(h, "observe", r.boolean, True)
    if extra.get("observe_holidays", True):
        hc = extra["holidays_country"]
        sub = extra.get("holidays_subdivision")
        with r.at("holidays" if "holidays" in d else "country", d):
            _check_holiday_calendar(r, hc, sub)
    extra["closed_dates"] = frozenset(r.get(d, "closed_dates", lambda v: _list(r, v, r.a_date), ()))
    if "special_hours" in d:
        with r.at("special_hours", d):
            sh = r.mapping(d["special_hours"])
            specials = []
            for k, hv in sh.items():
                with r.at(k, sh):
                    day = r.a_date(k)
                    ranges = hv if isinstance(hv, list) else [hv]
                    specials.append((day, tuple(r.time_range(x) for x in ranges)))
            extra["special_hours"] = tuple(sorted(specials))

    offerings: list[Offering] = []
    with r.at("services", d):
        svc = r.mapping(d["services"], services)
        for sname, sv in svc.items():
            with r.at(sname, svc):
                o = r.mapping(sv, {"languages", "hours", "queue"}, {"languages", "hours"})
                langs = r.req(o, "languages", r.str_list(r.language))
                for i, lang in enumerate(langs):
                    if lang not in languages:
                        with r.at("languages", o), r.at(i):
                            raise r.fail(f"language '{lang}' is not in the top-level languages")
                with r.at("hours", o):
                    sched = _schedule(r, o["hours"], extra)
                queue = r.get(o, "queue", lambda v: _queue_settings(r, v), QueueSettings())
                offerings.append(Offering(sname, langs, sched, queue))
    queues = {queue_name(o.service, lang) for o in offerings for lang in o.languages}
    agents = r.get(d, "agents", lambda v: _agents(r, v, queues), ())
    return Site(
        name=name,
        timezone=tz,
        country=country,
        sip=sip,
        ami=ami,
        rtp_start=lo,
        rtp_end=hi,
        offerings=tuple(offerings),
        carrier_sources=r.get(d, "carrier_sources", r.str_list(r.ip), ()),
        agents=agents,
    )


def _check_holiday_calendar(r: _Reader, country: str, subdivision: str | None) -> None:
    """Refuse a country the `holidays` package has no calendar for: it would fail at routing."""
    import holidays

    supported = holidays.list_supported_countries()
    if country not in supported:
        raise r.fail(
            f"no national holiday calendar for '{country}': "
            "set `holidays: false` or `holidays: {country: XX}` with a supported country"
        )
    if subdivision is not None and subdivision not in supported[country]:
        raise r.fail(f"'{subdivision}' is not a subdivision of {country} in the holiday calendar")


def _agents(r: _Reader, v: Any, queues: set[str]) -> tuple[Agent, ...]:
    def one(x: Any) -> Agent:
        a = r.mapping(x, {"name", "contact", "queues", "penalty"}, {"name", "contact", "queues"})
        qs = r.req(a, "queues", r.str_list(r.string))
        for i, q in enumerate(qs):
            if q not in queues:
                with r.at("queues", a), r.at(i):
                    raise r.fail(
                        f"no queue '{q}' at this site (it has {', '.join(sorted(queues))})"
                    )
        contact = r.req(a, "contact", r.string)
        if not contact.startswith("sip:"):
            with r.at("contact", a):
                raise r.fail("an agent contact is a SIP URI like sip:agent@127.0.0.1:7011")
        return Agent(
            name=r.req(a, "name", r.name),
            contact=contact,
            queues=qs,
            penalty=r.get(a, "penalty", r.integer(0, 1000), 0),
        )

    return tuple(_list(r, v, one))


def _list(r: _Reader, v: Any, item: Callable[[Any], T]) -> list[T]:
    if not isinstance(v, list):
        raise r.fail(f"expected a list, got {_kind(v)}")
    out = []
    for i, x in enumerate(v):
        with r.at(i):
            out.append(item(x))
    return out


def _trunk(r: _Reader, name: str, v: Any, sites: set[str]) -> Trunk:
    r.name(name)
    d = r.mapping(
        v,
        {"site", "kind", "peer", "remote", "order", "weight", "qualify_frequency", "countries"},
        {"site", "kind", "remote"},
    )
    site = r.req(d, "site", r.string)
    if site not in sites:
        with r.at("site", d):
            raise r.fail(f"unknown site '{site}'")
    kind_s = r.req(d, "kind", r.string)
    try:
        kind = TrunkKind(kind_s)
    except ValueError:
        with r.at("kind", d):
            raise r.fail(f"kind must be 'intersite' or 'carrier', got '{kind_s}'") from None
    peer = r.get(d, "peer", r.string, None)
    if kind is TrunkKind.INTERSITE:
        if peer is None:
            raise r.fail("an intersite trunk needs 'peer': the site it reaches")
        if peer not in sites or peer == site:
            with r.at("peer", d):
                raise r.fail(f"peer must be another configured site, got '{peer}'")
    return Trunk(
        name=name,
        site=site,
        kind=kind,
        remote=r.req(d, "remote", r.host_port(5060)),
        peer_site=peer,
        order=r.get(d, "order", r.integer(1, 1000), 1),
        weight=r.get(d, "weight", r.integer(0, 1000), 1),
        qualify_frequency=r.get(d, "qualify_frequency", r.integer(0, 3600), 5),
        countries=r.get(d, "countries", r.str_list(r.country_code), ()),
    )


def _number(
    r: _Reader,
    did: str,
    v: Any,
    declared: set[str],
    sites: dict[str, Site],
    countries: set[str],
    services: set[str],
) -> Number:
    if not _DID_RE.match(did):
        raise r.fail(f"'{did}' is not a phone number in E.164 form like +918000000001")
    d = r.mapping(
        v,
        {"kind", "country", "service", "site", "home_site", "caller_id_for", "menu"},
        {"kind", "country", "service", "site"},
    )
    kind_s = r.req(d, "kind", r.string)
    try:
        kind = NumberKind(kind_s)
    except ValueError:
        with r.at("kind", d):
            raise r.fail(f"kind must be 'local' or 'tollfree', got '{kind_s}'") from None
    country = r.req(d, "country", r.country_code)
    if country not in countries:
        with r.at("country", d):
            raise r.fail(f"country '{country}' is not in the top-level countries")
    service = r.req(d, "service", r.string)
    if service not in services:
        with r.at("service", d):
            raise r.fail(f"unknown service '{service}'")
    site = r.req(d, "site", r.string)
    home = r.get(d, "home_site", r.string, None)
    for key, value in (("site", site), ("home_site", home)):
        if value is not None and value not in declared:
            with r.at(key, d):
                raise r.fail(f"unknown site '{value}'")
    # A site that failed validation has its own error already: don't pile on.
    if home is not None and home in sites and sites[home].offering(service) is None:
        with r.at("home_site", d):
            raise r.fail(f"site '{home}' does not serve '{service}'")
    return Number(
        did=did,
        kind=kind,
        country=country,
        service=service,
        site=site,
        home_site=home,
        caller_id_for=r.get(d, "caller_id_for", r.str_list(r.country_code), ()),
        menu=r.get(d, "menu", r.name, None),  # checked against ivr.menus in ivr_loader
    )


def _routing(r: _Reader, v: Any, sites: set[str]) -> RoutingSettings:
    d = r.mapping(v, set(RoutingSettings.__dataclass_fields__))
    dflt = RoutingSettings()
    after = dflt.after_hours
    if "after_hours" in d:
        with r.at("after_hours", d):
            a = r.mapping(d["after_hours"], {"action", "site"}, {"action"})
            action_s = r.req(a, "action", r.string)
            try:
                action = AfterHoursAction(action_s)
            except ValueError:
                with r.at("action", a):
                    choices = ", ".join(x.value for x in AfterHoursAction)
                    raise r.fail(f"action must be one of {choices}") from None
            site = r.get(a, "site", r.string, None)
            if action is AfterHoursAction.SITE and (site is None or site not in sites):
                raise r.fail("after_hours action 'site' needs 'site': a configured site")
            after = AfterHours(action, site)
    return RoutingSettings(
        home_max_ewt=r.get(d, "home_max_ewt", r.number(0, 86_400), dflt.home_max_ewt),
        home_max_waiting=r.get(d, "home_max_waiting", r.integer(0, 100_000), dflt.home_max_waiting),
        hysteresis=r.get(d, "hysteresis", r.number(0, 86_400), dflt.hysteresis),
        ewt_weight=r.get(d, "ewt_weight", r.number(0, 1000), dflt.ewt_weight),
        waiting_weight=r.get(d, "waiting_weight", r.number(0, 1000), dflt.waiting_weight),
        site_holdoff=r.get(d, "site_holdoff", r.number(0, 3600), dflt.site_holdoff),
        after_hours=after,
    )


_TOP = {
    "bridge",
    "languages",
    "services",
    "countries",
    "routing",
    "sites",
    "trunks",
    "numbers",
    "ami_defaults",
    "ivr",
    "self_service",
}


def load_config(path: str | os.PathLike[str], *, resolve_secrets: bool = True) -> Config:
    """Read and validate a deployment file; raise ConfigError listing every problem found."""
    p = Path(path)
    filename = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(filename, None, "", f"cannot read: {exc.strerror}")]) from None
    return parse_config(text, filename, p.resolve().parent, resolve_secrets=resolve_secrets)


def parse_config(
    text: str, filename: str, base_dir: Path, *, resolve_secrets: bool = True
) -> Config:
    raw = read_yaml(text, filename)
    r = _Reader(filename, base_dir, resolve_secrets)
    try:
        top = r.mapping(raw, _TOP, {"bridge", "languages", "services", "countries", "sites"})
    except _Fail:
        raise ConfigError(r.problems) from None

    bridge = r.collect(lambda: r.req(top, "bridge", lambda v: _bridge(r, v)))
    languages = r.collect(lambda: r.req(top, "languages", r.str_list(r.language))) or ()
    services = r.collect(lambda: r.req(top, "services", r.str_list(r.name))) or ()
    countries: list[Country] = []
    with r.at("countries", top):
        cmap = r.collect(lambda: r.mapping(top["countries"]))
        for code, cv in (cmap or {}).items():
            with r.at(code, cmap):

                def country(code: str = code, cv: Any = cv) -> Country:
                    r.country_code(code)
                    c = r.mapping(cv, {"calling_code", "default_language"}, set(_COUNTRY_REQ))
                    cc = r.req(c, "calling_code", r.string)
                    if not cc.isdigit():
                        with r.at("calling_code", c):
                            raise r.fail(f"calling code must be digits, got '{cc}'")
                    lang = r.req(c, "default_language", r.language)
                    if lang not in languages:
                        with r.at("default_language", c):
                            raise r.fail(f"language '{lang}' is not in the top-level languages")
                    return Country(code, cc, lang)

                got = r.collect(country)
                if got:
                    countries.append(got)

    sites: dict[str, Site] = {}
    with r.at("sites", top):
        smap = r.collect(lambda: r.mapping(top["sites"]))
        for sname, sv in (smap or {}).items():
            with r.at(sname, smap):
                ok = r.collect(partial(r.name, sname))
                site = (
                    r.collect(partial(_site, r, sname, sv, set(languages), set(services)))
                    if ok
                    else None
                )
                if site:
                    sites[sname] = site
        if smap is not None and not smap:
            r.fail("at least one site is needed")

    trunks: list[Trunk] = []
    if "trunks" in top:
        with r.at("trunks", top):
            tmap = r.collect(lambda: r.mapping(top["trunks"]))
            for tname, tv in (tmap or {}).items():
                with r.at(tname, tmap):
                    t = r.collect(partial(_trunk, r, str(tname), tv, set(smap or {})))
                    if t:
                        trunks.append(t)

    numbers: list[Number] = []
    if "numbers" in top:
        with r.at("numbers", top):
            nmap = r.collect(lambda: r.mapping(top["numbers"]))
            codes = {c.code for c in countries}
            for did, nv in (nmap or {}).items():
                with r.at(did, nmap):
                    n = r.collect(
                        partial(
                            _number, r, str(did), nv, set(smap or {}), sites, codes, set(services)
                        )
                    )
                    if n:
                        numbers.append(n)

    routing = (
        r.collect(lambda: r.get(top, "routing", lambda v: _routing(r, v, set(smap or {})), None))
        or RoutingSettings()
    )
    from ccbridge.config.ivr_loader import parse_ivr  # it imports this module

    ivr, self_service = parse_ivr(r, top, languages, services, numbers, bridge)
    if bridge is not None:
        from ccbridge.config.guard_loader import check_guard  # it imports this module

        budget = self_service.budget if self_service else None
        check_guard(r, top, bridge, tuple(sites.values()), budget)
    if r.problems or bridge is None:
        raise ConfigError(r.problems)
    return Config(
        source=filename,
        bridge=bridge,
        sites=tuple(sites.values()),
        trunks=tuple(trunks),
        numbers=tuple(numbers),
        countries=tuple(countries),
        languages=tuple(languages),
        services=tuple(services),
        routing=routing,
        ivr=ivr,
        self_service=self_service,
    )


_COUNTRY_REQ = ("calling_code", "default_language")
