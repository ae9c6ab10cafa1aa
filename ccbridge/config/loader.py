"""Load a deployment YAML file into frozen Config objects; errors name file, line and key."""

from __future__ import annotations

import dataclasses
import os
import re
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

from ccbridge.config.access_loader import AccessSettings, parse_access, parse_tls
from ccbridge.config.deploy import DeploySettings, parse_deploy
from ccbridge.config.edge import parse_edge
from ccbridge.config.guard_loader import (
    check_guard,
    parse_agi_guard,
    parse_cluster,
    parse_watchdog,
)
from ccbridge.config.ivr_loader import parse_ivr
from ccbridge.config.model import (
    AMI_PORT,
    AfterHours,
    AfterHoursAction,
    Agent,
    AmiSettings,
    BridgeSettings,
    CarrierPrivacy,
    ClusterSettings,
    Config,
    Country,
    EventLoop,
    HeldRouteSettings,
    Number,
    NumberKind,
    Offering,
    QueueSettings,
    RoutingSettings,
    Schedule,
    Site,
    Trunk,
    TrunkKind,
    Watchdog,
    WeeklyRule,
    queue_name,
)
from ccbridge.config.reader import Invalid, Reader, kind, missing_secret_problem
from ccbridge.config.recording import parse_recording
from ccbridge.config.records import RecordsSettings, parse_records
from ccbridge.config.screenpop import ScreenPopSettings, parse_screen_pop
from ccbridge.config.store import StoreSettings, parse_store
from ccbridge.config.survey import parse_survey
from ccbridge.config.tls_loader import parse_ami_tls, parse_site_tls
from ccbridge.config.yamlsrc import ConfigError, LineDict, Problem, read_yaml

_DID_RE = re.compile(r"^\+?[0-9]{3,20}$")
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
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


# -- sections ---------------------------------------------------------------


def _bridge(r: Reader, v: Any) -> BridgeSettings:
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
            "event_loop",
            "agi_guard",
            "watchdog",
            "agi_allow",
            "tls",
            "cluster",
        },
        {"agi_listen", "http_listen"},
    )
    agi = r.req(d, "agi_listen", r.host_port())

    def level(v: Any) -> str:
        s = r.string(v).upper()
        if s not in _LOG_LEVELS:
            raise r.fail(f"unknown log level '{s}'")
        return s

    # Collected apart: a problem in one is reported along with the other's.
    guard = r.collect(lambda: r.get(d, "agi_guard", partial(parse_agi_guard, r), None))
    watchdog = r.collect(lambda: r.get(d, "watchdog", partial(parse_watchdog, r), Watchdog()))
    tls = r.collect(lambda: r.get(d, "tls", partial(parse_tls, r), None))
    cluster = r.collect(
        lambda: r.get(d, "cluster", partial(parse_cluster, r, guard_on=guard is not None), None)
    )
    return BridgeSettings(
        agi_listen=agi,
        agi_url_host=r.get(d, "agi_url_host", r.host_port(), agi),
        http_listen=r.req(d, "http_listen", r.host_port()),
        **r.given(
            d,
            {
                "api_token": r.secret,
                "clock": r.a_datetime,
                "max_agi_sessions": r.integer(1, 100_000),
                "agi_session_timeout": r.number(0.1, 600),
                "log_level": level,
                "event_loop": r.one_of({e.value: e for e in EventLoop}, "event loop"),
                "agi_allow": r.str_list(r.ip),
            },
            {"clock": "fixed_clock"},
        ),
        agi_guard=guard,
        watchdog=watchdog or Watchdog(),
        tls=tls,
        cluster=cluster or ClusterSettings(),
    )


def _schedule(r: Reader, v: Any, site_extra: dict[str, Any]) -> Schedule:
    base = dict(site_extra)
    if v == "always":
        # A 24/7 line stays open on national holidays unless `holidays` says otherwise.
        base.setdefault("observe_holidays", False)
        return Schedule(weekly=(), always_open=True, **base)
    items = v if isinstance(v, list) else [v]
    rules: list[WeeklyRule] = []
    for i, item in enumerate(items):
        with r.at(i) if isinstance(v, list) else nullcontext():
            if not isinstance(item, dict):
                raise r.fail(f"expected 'always' or a mapping of days to hours, got {kind(item)}")
            d = item if isinstance(item, LineDict) else LineDict(item)
            for days_s, hours in d.items():
                with r.at(days_s, d):
                    days = r.days(days_s)
                    ranges = hours if isinstance(hours, list) else [hours]
                    for j, h in enumerate(ranges):
                        with r.at(j) if isinstance(hours, list) else nullcontext():
                            rules.append(WeeklyRule(days, r.time_range(h)))
    return Schedule(weekly=tuple(rules), **base)


def _queue_settings(r: Reader, v: Any) -> QueueSettings:
    d = r.mapping(v, set(QueueSettings.__dataclass_fields__))

    def strategy(v: Any) -> str:
        s = r.string(v)
        if s not in _QUEUE_STRATEGIES:
            raise r.fail(f"unknown queue strategy '{s}'")
        return s

    return QueueSettings(
        **r.given(
            d,
            {
                "strategy": strategy,
                "timeout": r.integer(1, 600),
                "retry": r.integer(0, 600),
                "maxlen": r.integer(0, 100_000),
                "wrapuptime": r.integer(0, 3600),
                "servicelevel": r.integer(1, 3600),
                "max_wait": r.integer(1, 86_400),
                "announce_position": r.boolean,
                "announce_frequency": r.integer(0, 3600),
                "joinempty": r.string,
                "leavewhenempty": r.string,
            },
        )
    )


def _site(r: Reader, name: str, v: Any, languages: set[str], services: set[str]) -> Site:
    d = r.mapping(
        v,
        {
            "timezone",
            "country",
            "sip",
            "sip_alternates",
            "ami",
            "rtp",
            "services",
            "holidays",
            "closed_dates",
            "special_hours",
            "carrier_sources",
            "agents",
            "tls",
        },
        {"timezone", "country", "sip", "ami", "rtp", "services"},
    )
    tz = r.req(d, "timezone", r.timezone)
    country = r.req(d, "country", r.country_code)
    sip = r.req(d, "sip", r.host_port(5060))
    tls = r.get(d, "tls", partial(parse_site_tls, r, sip=sip), None)
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
                "tls",
            },
            {"username", "secret"},
        )
        plain_port = r.get(a, "port", r.integer(1, 65535), AMI_PORT)
        site_files = tls[0] if tls else None
        ami_tls = r.get(
            a, "tls", partial(parse_ami_tls, r, site_tls=site_files, plain_port=plain_port), None
        )
        ami = AmiSettings(
            tls=ami_tls,
            host=r.get(a, "host", r.string, sip.host),
            username=r.req(a, "username", r.string),
            secret=r.req(a, "secret", r.secret),
            **r.given(
                a,
                {
                    "port": r.integer(1, 65535),
                    "ping_interval": r.number(0.1, 60),
                    "ping_timeout": r.number(0.1, 60),
                    "action_timeout": r.number(0.1, 120),
                    "permit": r.str_list(r.ip),
                },
            ),
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
                extra |= r.given(
                    h,
                    {"subdivision": r.string, "observe": r.boolean},
                    {"subdivision": "holidays_subdivision", "observe": "observe_holidays"},
                )
    if extra.get("observe_holidays", True):
        hc = extra["holidays_country"]
        sub = extra.get("holidays_subdivision")
        with r.at("holidays" if "holidays" in d else "country", d):
            _check_holiday_calendar(r, hc, sub)
    extra |= r.given(d, {"closed_dates": lambda v: frozenset(r.list_of(v, r.a_date))})
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
    alternates = r.get(d, "sip_alternates", lambda v: tuple(r.list_of(v, r.host_port(5060))), ())
    if sip in alternates:
        with r.at("sip_alternates", d):
            raise r.fail(f"{sip} is already the site's main SIP address")
    return Site(
        name=name,
        timezone=tz,
        country=country,
        sip=sip,
        ami=ami,
        rtp_start=lo,
        rtp_end=hi,
        offerings=tuple(offerings),
        **r.given(
            d,
            {
                "sip_alternates": lambda v: alternates,
                "carrier_sources": r.str_list(r.ip),
                "agents": lambda v: _agents(r, v, queues),
            },
        ),
        tls=tls[0] if tls else None,
        sip_tls=tls[1] if tls else None,
    )


def _check_holiday_calendar(r: Reader, country: str, subdivision: str | None) -> None:
    """Refuse a country the `holidays` package has no calendar for: it would fail at routing."""
    from ccbridge.routing import holidaycal

    if not holidaycal.supported(country):
        raise r.fail(
            f"no national holiday calendar for '{country}': "
            "set `holidays: false` or `holidays: {country: XX}` with a supported country"
        )
    if subdivision is not None and subdivision not in holidaycal.subdivisions(country):
        raise r.fail(f"'{subdivision}' is not a subdivision of {country} in the holiday calendar")


def _agents(r: Reader, v: Any, queues: set[str]) -> tuple[Agent, ...]:
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
            **r.given(a, {"penalty": r.integer(0, 1000)}),
        )

    return tuple(r.list_of(v, one))


_CARRIER_ONLY = ("pai", "rpid", "privacy")


def _trunk(r: Reader, name: str, v: Any, sites: set[str]) -> Trunk:
    r.name(name)
    d = r.mapping(
        v,
        {
            "site",
            "kind",
            "peer",
            "remote",
            "order",
            "weight",
            "qualify_frequency",
            "countries",
            "tls",
            *_CARRIER_ONLY,
        },
        {"site", "kind", "remote"},
    )
    site = r.req(d, "site", r.string)
    if site not in sites:
        with r.at("site", d):
            raise r.fail(f"unknown site '{site}'")
    kind_ = r.req(d, "kind", r.one_of({k.value: k for k in TrunkKind}, "kind"))
    peer = r.get(d, "peer", r.string, None)
    if kind_ is TrunkKind.INTERSITE:
        if peer is None:
            raise r.fail("an intersite trunk needs 'peer': the site it reaches")
        if peer not in sites or peer == site:
            with r.at("peer", d):
                raise r.fail(f"peer must be another configured site, got '{peer}'")
        for key in _CARRIER_ONLY:
            if key in d:
                with r.at(key, d):
                    raise r.fail(f"'{key}' is for carrier trunks: sites pass identity on as is")
    elif "tls" in d:
        with r.at("tls", d):
            raise r.fail("'tls' is for intersite trunks (TLS and SRTP between sites)")
    return Trunk(
        name=name,
        site=site,
        kind=kind_,
        remote=r.req(d, "remote", r.host_port(5060)),
        peer_site=peer,
        **r.given(
            d,
            {
                "order": r.integer(1, 1000),
                "weight": r.integer(0, 1000),
                "qualify_frequency": r.integer(0, 3600),
                "countries": r.str_list(r.country_code),
                "pai": r.boolean,
                "rpid": r.boolean,
                "privacy": r.one_of({p.value: p for p in CarrierPrivacy}, "privacy"),
                "tls": r.boolean,
            },
        ),
    )


def _number(
    r: Reader,
    nmap: LineDict,
    did: str,
    declared: set[str],
    sites: dict[str, Site],
    countries: set[str],
    services: set[str],
) -> Number:
    r.string_key(nmap, did)
    if not _DID_RE.match(did):
        raise r.fail(f"'{did}' is not a phone number in E.164 form like +918000000001")
    d = r.mapping(
        nmap[did],
        {"kind", "country", "service", "site", "home_site", "caller_id_for", "menu"},
        {"kind", "country", "service", "site"},
    )
    kind_ = r.req(d, "kind", r.one_of({k.value: k for k in NumberKind}, "kind"))
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
        kind=kind_,
        country=country,
        service=service,
        site=site,
        home_site=home,
        **r.given(
            d,
            # `menu` is checked against ivr.menus in ivr_loader
            {"caller_id_for": r.str_list(r.country_code), "menu": r.name},
        ),
    )


def _routing(r: Reader, v: Any, sites: set[str]) -> RoutingSettings:
    d = r.mapping(v, set(RoutingSettings.__dataclass_fields__))

    def after_hours(v: Any) -> AfterHours:
        a = r.mapping(v, {"action", "site"}, {"action"})
        action = r.req(a, "action", r.one_of({x.value: x for x in AfterHoursAction}, "action"))
        site = r.get(a, "site", r.string, None)
        if action is AfterHoursAction.SITE and (site is None or site not in sites):
            raise r.fail("after_hours action 'site' needs 'site': a configured site")
        return AfterHours(action, site)

    return RoutingSettings(
        **r.given(
            d,
            {
                "home_max_ewt": r.number(0, 86_400),
                "home_max_waiting": r.integer(0, 100_000),
                "hysteresis": r.number(0, 86_400),
                "ewt_weight": r.number(0, 1000),
                "waiting_weight": r.number(0, 1000),
                "site_holdoff": r.number(0, 3600),
                "after_hours": after_hours,
                "held_routes": partial(_held_routes, r),
            },
        )
    )


def _held_routes(r: Reader, v: Any) -> HeldRouteSettings:
    h = r.mapping(v, set(HeldRouteSettings.__dataclass_fields__))
    out = HeldRouteSettings(
        **r.given(
            h,
            {
                "enabled": r.boolean,
                "use_without_bridge": r.boolean,
                "fresh_age": r.number(1, 3600),
                "max_age": r.number(1, 86_400),
                "min_interval": r.number(0.05, 60),
                "refresh": r.number(0.1, 60),
            },
        )
    )
    # The heartbeat is written every `refresh` s: a fresh_age at or below it (plus a
    # write's round trip) would call a live bridge stale between two heartbeats.
    if out.fresh_age < 2 * out.refresh:
        with r.at("fresh_age", h):
            raise r.fail(f"must be at least twice refresh ({out.refresh:g}s)")
    if out.max_age < out.fresh_age:
        with r.at("max_age", h):
            raise r.fail(f"must be at least fresh_age ({out.fresh_age:g}s)")
    return out


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
    "store",
    "survey",
    "records",
    "recording",
    "access",
    "deploy",
    "screen_pop",
    "edge",
}


def load_config(path: str | os.PathLike[str], *, resolve_secrets: bool = True) -> Config:
    """Read and validate a deployment file; raise ConfigError listing every problem found.

    With ``resolve_secrets`` a secret that gives nothing is a problem; without, the
    Config lists it in ``missing_secrets`` (a deployment file checked away from its
    secrets)."""
    p = Path(path)
    filename = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(filename, None, "", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        line = p.read_bytes().count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [Problem(filename, line, "", f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x}")]
        ) from None
    return parse_config(text, filename, p.resolve().parent, resolve_secrets=resolve_secrets)


def parse_config(
    text: str, filename: str, base_dir: Path, *, resolve_secrets: bool = True
) -> Config:
    raw = read_yaml(text, filename)
    r = Reader(filename, base_dir)
    try:
        top = r.mapping(raw, _TOP, {"bridge", "languages", "services", "countries", "sites"})
    except Invalid:
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

    if trunks:
        _check_tls_trunks(r, top, trunks, sites)

    numbers: list[Number] = []
    if "numbers" in top:
        with r.at("numbers", top):
            nmap = r.collect(lambda: r.mapping(top["numbers"])) or LineDict()
            codes = {c.code for c in countries}
            for did in nmap:
                with r.at(did, nmap):
                    n = r.collect(
                        partial(_number, r, nmap, did, set(smap or {}), sites, codes, set(services))
                    )
                    if n:
                        numbers.append(n)

    routing = (
        r.collect(lambda: r.get(top, "routing", lambda v: _routing(r, v, set(smap or {})), None))
        or RoutingSettings()
    )
    ivr, self_service = parse_ivr(r, top, languages, services, numbers, bridge)
    if bridge is not None:
        budget = self_service.budget if self_service else None
        check_guard(r, top, bridge, tuple(sites.values()), budget)
    if "store" in top:
        with r.at("store", top):
            store = r.collect(lambda: parse_store(r, top["store"]))
    else:
        store = dataclasses.replace(parse_store(r, {}), enabled=False)
    records = None
    if "records" in top:
        with r.at("records", top):
            records = r.collect(lambda: parse_records(r, top["records"]))
    access = AccessSettings()
    if "access" in top:
        with r.at("access", top):
            access = r.collect(lambda: parse_access(r, top["access"], set(smap or {}))) or access
    deploy = DeploySettings()
    if "deploy" in top:
        with r.at("deploy", top):
            deploy = r.collect(lambda: parse_deploy(r, top["deploy"], set(smap or {}))) or deploy
    survey = None
    if "survey" in top:
        with r.at("survey", top):
            survey = r.collect(lambda: parse_survey(r, top["survey"], services))
    recording = None
    if "recording" in top:
        with r.at("recording", top):
            recording = r.collect(
                lambda: parse_recording(
                    r, top["recording"], tuple(services), set(smap or {}), set(languages)
                )
            )
            if recording is not None and (store is None or not store.enabled):
                # The index is in the record store: without one a recording would reach
                # storage with nothing to find it by (and retention would never see it).
                r.collect(lambda: _fail(r, "recording needs a store: section (its index)"))
    screen_pop = None
    if "screen_pop" in top:
        with r.at("screen_pop", top):
            screen_pop = r.collect(lambda: parse_screen_pop(r, top["screen_pop"]))
    edge = None
    if "edge" in top:
        with r.at("edge", top):
            edge = r.collect(lambda: parse_edge(r, top["edge"], sites))
    missing = r.missing_secrets()
    if resolve_secrets:
        r.problems += [missing_secret_problem(m) for m in missing]
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
        store=store or StoreSettings(),
        records=records or RecordsSettings(),
        access=access,
        deploy=deploy,
        screen_pop=screen_pop or ScreenPopSettings(),
        survey=survey,
        recording=recording,
        edge=edge,
        missing_secrets=missing,
    )


_COUNTRY_REQ = ("calling_code", "default_language")


def _check_tls_trunks(
    r: Reader, top: LineDict, trunks: list[Trunk], sites: dict[str, Site]
) -> None:
    """A TLS trunk needs a certificate at both ends and must end at the peer's TLS
    transport: one to a UDP address would fail every call (no TLS listener there)."""
    tmap = top["trunks"]
    for t in trunks:
        if not t.tls or t.peer_site is None:
            continue
        here, peer = sites.get(t.site), sites.get(t.peer_site)
        if here is None or peer is None:
            continue  # the site has its own error
        with r.at("trunks", top), r.at(t.name, tmap):
            tdict = tmap[t.name]
            for end in (here, peer):
                if end.tls is None:
                    with r.at("tls", tdict):
                        r.fail(f"site {end.name} has no `tls` (certificate, key, CA) for it")
            if peer.sip_tls is not None and t.remote in peer.sip_addresses:
                with r.at("remote", tdict):
                    r.fail(
                        f"{t.remote} is {peer.name}'s UDP SIP address; a TLS trunk ends at "
                        f"its TLS transport {peer.sip_tls}"
                    )


def _fail(r: Reader, message: str) -> None:
    raise r.fail(message)
