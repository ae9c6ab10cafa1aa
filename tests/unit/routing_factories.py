"""Small builders of config and live-state objects for routing tests (no YAML loader)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from ccbridge.config.model import (
    AfterHours,
    AfterHoursAction,
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
    WeeklyRule,
)
from ccbridge.routing.engine import Router
from ccbridge.routing.state import LiveState, QueueLoad, SiteState

DAY = {d: i for i, d in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}
EPOCH = datetime(2025, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp()


def hours(spec: str) -> TimeRange:
    """'09:00-18:00' -> TimeRange."""
    a, b = spec.split("-")
    return TimeRange(time.fromisoformat(a), time.fromisoformat(b))


def schedule(
    rules: Mapping[str, str] | None = None,
    *,
    always: bool = False,
    country: str | None = None,
    subdiv: str | None = None,
    observe: bool = True,
    closed: Iterable[date] = (),
    special: Mapping[date, Iterable[str]] | None = None,
) -> Schedule:
    """schedule({'mon-fri': '09:00-18:00', 'sat,sun': '10:00-14:00'})."""
    weekly = []
    for days_spec, rng in (rules or {}).items():
        days: set[int] = set()
        for part in days_spec.split(","):
            if "-" in part:
                a, b = (DAY[x] for x in part.split("-"))
                i = a
                while True:
                    days.add(i)
                    if i == b:
                        break
                    i = (i + 1) % 7
            else:
                days.add(DAY[part])
        weekly.append(WeeklyRule(frozenset(days), hours(rng)))
    return Schedule(
        weekly=tuple(weekly),
        always_open=always,
        holidays_country=country,
        holidays_subdivision=subdiv,
        observe_holidays=observe,
        closed_dates=frozenset(closed),
        special_hours=tuple((d, tuple(hours(r) for r in rs)) for d, rs in (special or {}).items()),
    )


ALWAYS = schedule(always=True)


def offering(service: str, languages: Iterable[str], sched: Schedule = ALWAYS) -> Offering:
    return Offering(service, tuple(languages), sched, QueueSettings())


def site(
    name: str,
    offerings: Iterable[Offering],
    *,
    tz: str = "UTC",
    country: str = "IN",
    n: int = 1,
) -> Site:
    return Site(
        name=name,
        timezone=tz,
        country=country,
        sip=HostPort(f"127.0.{n}.1", 5060),
        ami=AmiSettings(f"127.0.{n}.1", "ccbridge", SecretValue("x", "test"), port=5038),
        rtp_start=10000 + n * 1000,
        rtp_end=10999 + n * 1000,
        offerings=tuple(offerings),
    )


def full_mesh(names: Iterable[str], per_pair: int = 1) -> tuple[Trunk, ...]:
    names = list(names)
    return tuple(
        Trunk(f"{a}-{b}-{k}", a, TrunkKind.INTERSITE, HostPort("127.0.0.1", 5060), b, order=k)
        for a in names
        for b in names
        if a != b
        for k in range(1, per_pair + 1)
    )


COUNTRIES = (
    Country("IN", "91", "hi"),
    Country("BD", "880", "bn"),
    Country("PK", "92", "ur"),
    Country("PH", "63", "tl"),
    Country("GB", "44", "en"),
)


def config(
    sites: Iterable[Site],
    numbers: Iterable[Number],
    *,
    trunks: Iterable[Trunk] | None = None,
    routing: RoutingSettings | None = None,
    languages: Iterable[str] = ("en", "hi", "bn", "ur", "tl"),
    services: Iterable[str] = ("orders", "returns"),
    countries: Iterable[Country] = COUNTRIES,
) -> Config:
    sites = tuple(sites)
    return Config(
        source="<test>",
        bridge=BridgeSettings(
            HostPort("127.0.0.1", 4573), HostPort("127.0.0.1", 4573), HostPort("127.0.0.1", 8080)
        ),
        sites=sites,
        trunks=tuple(trunks) if trunks is not None else full_mesh(s.name for s in sites),
        numbers=tuple(numbers),
        countries=tuple(countries),
        languages=tuple(languages),
        services=tuple(services),
        routing=routing or RoutingSettings(),
    )


def number(
    did: str, service: str, site_name: str, country: str = "IN", home: str | None = ""
) -> Number:
    """A DID; ``home`` defaults to the receiving site, None for no home site."""
    return Number(
        did, NumberKind.TOLLFREE, country, service, site_name, site_name if home == "" else home
    )


def after_hours(action: str, site_name: str | None = None) -> AfterHours:
    return AfterHours(AfterHoursAction(action), site_name)


def load(
    logged_in: int = 2, available: int = 1, waiting: int = 0, talk: float = 120.0, paused: int = 0
) -> QueueLoad:
    return QueueLoad(
        logged_in=logged_in,
        available=available,
        waiting=waiting,
        paused=paused,
        member_count=logged_in,
        avg_talk=talk,
    )


def live(
    sites: Mapping[str, Mapping[str, QueueLoad]],
    *,
    down: Iterable[str] = (),
    drained: Iterable[str] = (),
    up_since: float = EPOCH - 3600,
    synced: bool = True,
    sticky: Mapping[tuple[str, str], str] | None = None,
    unhealthy: Iterable[str] = (),
) -> LiveState:
    """live({'blr': {'orders-en': load()}}) -> every site up for an hour and synced."""
    down, drained = set(down), set(drained)
    states = {
        name: SiteState(
            name,
            up=name not in down,
            drained=name in drained,
            up_since=None if name in down else up_since,
            synced=synced and name not in down,
            queues=dict(queues),
        )
        for name, queues in sites.items()
    }
    return LiveState(states, synced, dict(sticky or {}), frozenset(unhealthy))


IN_ORDERS, IN_RETURNS, BD_ORDERS, PH_ORDERS = (
    "+918000000001",
    "+918000000002",
    "+8809600000001",
    "+6328000001",
)
LAB_QUEUES = (
    "orders-en",
    "orders-hi",
    "orders-bn",
    "orders-tl",
    "returns-en",
    "returns-hi",
    "returns-bn",
)


def lab(**routing: object) -> Router:
    """A Router over the lab's shape: blr (IN), dac (BD), mnl (PH), after hours to mnl."""
    sites = [
        site(
            "blr",
            [
                offering(
                    "orders", ["en", "hi"], schedule({"mon-sat": "09:00-21:00"}, country="IN")
                ),
                offering("returns", ["en", "hi"], schedule({"mon-fri": "09:00-18:00"})),
            ],
            tz="Asia/Kolkata",
            n=1,
        ),
        site(
            "dac",
            [
                offering(
                    "orders",
                    ["en", "bn"],
                    schedule({"sun-thu": "09:00-18:00", "mon": "22:00-06:00"}, country="BD"),
                ),
                offering("returns", ["bn"], schedule({"sun-thu": "09:00-18:00"})),
            ],
            tz="Asia/Dhaka",
            country="BD",
            n=2,
        ),
        site(
            "mnl",
            [
                offering("orders", ["en", "tl"], schedule(always=True)),
                offering("returns", ["en"], schedule({"mon-fri": "08:00-20:00"})),
            ],
            tz="Asia/Manila",
            country="PH",
            n=3,
        ),
    ]
    settings = RoutingSettings(after_hours=after_hours("site", "mnl"))
    return Router(
        config(
            sites,
            [
                number(IN_ORDERS, "orders", "blr"),
                number(IN_RETURNS, "returns", "blr"),
                number(BD_ORDERS, "orders", "dac", country="BD"),
                number(PH_ORDERS, "orders", "mnl", country="PH", home=None),
            ],
            trunks=full_mesh(["blr", "dac", "mnl"], per_pair=2),
            routing=replace(settings, **routing),  # type: ignore[arg-type]
        )
    )
