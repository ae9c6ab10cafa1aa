"""Frozen typed configuration objects: the validated shape of a deployment YAML file."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ccbridge.config.access_loader import AccessSettings, TlsSettings
    from ccbridge.config.deploy import DeploySettings
    from ccbridge.config.edge import EdgeSettings
    from ccbridge.config.ivr import IvrSettings, SelfServiceSettings
    from ccbridge.config.recording import RecordingSettings
    from ccbridge.config.records import RecordsSettings
    from ccbridge.config.screenpop import ScreenPopSettings
    from ccbridge.config.store import StoreSettings
    from ccbridge.config.survey import SurveySettings

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
AMI_PORT = 5038
AMI_TLS_PORT = 5039
KEYS_DIR = "/etc/asterisk/keys"


class SecretValue:
    """A resolved secret; its repr never shows the value."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self._source = source

    def reveal(self) -> str:
        return self._value

    @property
    def source(self) -> str:
        return self._source

    def __repr__(self) -> str:
        return f"SecretValue(<hidden>, source={self._source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class MissingSecret:
    """A secret none of whose sources gave a value here, and every key that uses it."""

    sources: tuple[str, ...]  # each source and why it gave nothing
    uses: tuple[str, ...]  # key paths, in file order
    file: str
    line: int | None  # of the first use


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Opening hours within one shift; ``end <= start`` means the shift runs past midnight."""

    start: time
    end: time

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


@dataclass(frozen=True, slots=True)
class WeeklyRule:
    """Open on ``days`` (0=Monday) from ``hours.start``; an overnight range ends the next day."""

    days: frozenset[int]
    hours: TimeRange


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a service is open at a site, in that site's time zone."""

    weekly: tuple[WeeklyRule, ...]
    always_open: bool = False
    holidays_country: str | None = None
    holidays_subdivision: str | None = None
    observe_holidays: bool = True
    closed_dates: frozenset[date] = frozenset()
    special_hours: tuple[tuple[date, tuple[TimeRange, ...]], ...] = ()

    def special_for(self, day: date) -> tuple[TimeRange, ...] | None:
        for d, ranges in self.special_hours:
            if d == day:
                return ranges
        return None


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Asterisk queue options rendered into queues.conf."""

    strategy: str = "rrmemory"
    timeout: int = 15
    retry: int = 2
    maxlen: int = 0
    wrapuptime: int = 5
    servicelevel: int = 20
    max_wait: int = 300
    announce_position: bool = True
    announce_frequency: int = 0
    joinempty: str = "yes"
    leavewhenempty: str = "no"


@dataclass(frozen=True, slots=True)
class Offering:
    """A service a site serves: its languages, hours and queue options."""

    service: str
    languages: tuple[str, ...]
    schedule: Schedule
    queue: QueueSettings


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A site's certificate and key, and the CA that signed every site's (PEM files).

    ``cert``, ``key`` and ``ca`` are where the config was read (checked there: present,
    the key matching the certificate); ``ccbridge render`` copies them beside the site's
    configs, which name them under ``install_dir``, where the site's Asterisk reads them.
    """

    cert: str
    key: str
    ca: str
    install_dir: str = KEYS_DIR

    CERT_NAME: ClassVar[str] = "site.crt"
    KEY_NAME: ClassVar[str] = "site.key"
    CA_NAME: ClassVar[str] = "ca.crt"

    def installed(self, name: str) -> str:
        """Where the site's Asterisk finds one of the copies (CERT_NAME, KEY_NAME, CA_NAME)."""
        return f"{self.install_dir.rstrip('/')}/{name}"


@dataclass(frozen=True, slots=True)
class AmiTls:
    """`sites.X.ami.tls`: the bridge's AMI link to this site runs over TLS on ``port``,
    verifying the site's certificate with ``ca`` (never falling back to plain text)."""

    ca: str
    port: int = AMI_TLS_PORT


@dataclass(frozen=True, slots=True)
class AmiSettings:
    host: str
    username: str
    secret: SecretValue
    port: int = AMI_PORT
    ping_interval: float = 1.0
    ping_timeout: float = 2.0
    action_timeout: float = 5.0
    reconnect_min: float = 0.5
    reconnect_max: float = 10.0
    # Networks manager.conf lets log in (the bridge's address must be in one of them).
    permit: tuple[str, ...] = ("127.0.0.0/8",)
    tls: AmiTls | None = None  # None: plain AMI on ``port``

    @property
    def link_port(self) -> int:
        """The port the bridge's link connects to: the TLS listener's when TLS is on."""
        return self.tls.port if self.tls is not None else self.port


@dataclass(frozen=True, slots=True)
class Agent:
    """A statically configured queue member (the lab's SIPp agents, or real phones)."""

    name: str
    contact: str
    queues: tuple[str, ...]
    penalty: int = 0


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    timezone: str
    country: str
    sip: HostPort
    ami: AmiSettings
    rtp_start: int
    rtp_end: int
    offerings: tuple[Offering, ...]
    # More addresses this site's Asterisk listens on for SIP (one transport each): a
    # second network path that another site's second intersite trunk can end at.
    sip_alternates: tuple[HostPort, ...] = ()
    carrier_sources: tuple[str, ...] = ()
    agents: tuple[Agent, ...] = ()
    tls: TlsFiles | None = None  # the site's certificate: AMI over TLS, SIP over TLS
    sip_tls: HostPort | None = None  # the PJSIP TLS transport (set when ``tls`` is)

    @property
    def sip_addresses(self) -> tuple[HostPort, ...]:
        return (self.sip, *self.sip_alternates)

    def offering(self, service: str) -> Offering | None:
        for o in self.offerings:
            if o.service == service:
                return o
        return None


def queue_name(service: str, language: str) -> str:
    """The Asterisk queue for a service in a language, the same at every site."""
    return f"{service}-{language}"


class TrunkKind(StrEnum):
    INTERSITE = "intersite"
    CARRIER = "carrier"


class CarrierPrivacy(StrEnum):
    """What a carrier trunk gets when the caller ID is marked private (presentation
    restricted), in pjsip's terms `trust_id_outbound`."""

    WITHHOLD = "withhold"  # no identity at all: the carrier sees an anonymous call
    ASSERT = "assert"  # P-Asserted-Identity plus `Privacy: id`: the carrier must hide it


@dataclass(frozen=True, slots=True)
class Trunk:
    name: str
    site: str
    kind: TrunkKind
    remote: HostPort
    peer_site: str | None = None
    order: int = 1
    weight: int = 1
    qualify_frequency: int = 5
    countries: tuple[str, ...] = ()
    # Carrier trunks only: the caller ID in a P-Asserted-Identity (RFC 3325) and/or a
    # Remote-Party-ID header, which many carriers need to accept or bill a call.
    pai: bool = False
    rpid: bool = False
    privacy: CarrierPrivacy = CarrierPrivacy.WITHHOLD
    # Intersite trunks only: SIP over TLS to the peer's TLS transport, media as SRTP
    # (SDES keys, which travel in the SDP and so need the TLS signalling).
    tls: bool = False


class NumberKind(StrEnum):
    LOCAL = "local"
    TOLLFREE = "tollfree"


@dataclass(frozen=True, slots=True)
class Number:
    did: str
    kind: NumberKind
    country: str
    service: str
    site: str
    home_site: str | None = None
    caller_id_for: tuple[str, ...] = ()
    menu: str | None = None  # an IVR menu in `ivr.menus` answers the number first


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    calling_code: str
    default_language: str


class AfterHoursAction(StrEnum):
    VOICEMAIL = "voicemail"
    CALLBACK = "callback"
    CLOSED = "closed"
    SITE = "site"


@dataclass(frozen=True, slots=True)
class AfterHours:
    action: AfterHoursAction = AfterHoursAction.CLOSED
    site: str | None = None


@dataclass(frozen=True, slots=True)
class HeldRouteSettings:
    """Routes the bridge keeps in each site's dialplan globals so the dialplan can route
    without asking it."""

    enabled: bool = True  # write the tables; the dialplan's held steps are rendered only then
    # Route from a fresh held route without the FastAGI round trip (calls with no IVR
    # choice of another service). On by default: measured (BENCHMARKS.md §1, issue 18) the
    # held path costs the PBX what a static dialplan does; the guarded FastAGI step ~40 % more.
    use_without_bridge: bool = True
    fresh_age: float = 5.0  # seconds: a heartbeat younger than this counts as a live bridge
    max_age: float = 300.0  # seconds: the last table still routes while the bridge is silent
    min_interval: float = 0.25  # seconds between two recomputations of a site's table (slots)
    refresh: float = 1.0  # seconds: heartbeat and recomputation on the timer


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    home_max_ewt: float = 60.0
    home_max_waiting: int = 5
    hysteresis: float = 15.0
    ewt_weight: float = 1.0
    waiting_weight: float = 5.0
    site_holdoff: float = 10.0
    after_hours: AfterHours = field(default_factory=AfterHours)
    held_routes: HeldRouteSettings = field(default_factory=HeldRouteSettings)


# The self-service lookup waits on an HTTP backend: its guard listener allows the lookup's
# own worst case (SelfServiceSettings.budget) plus this margin.
LOOKUP_GUARD_MARGIN = 1.0


@dataclass(frozen=True, slots=True)
class AgiGuard:
    """`bridge.agi_guard`: each site's Asterisk asks a proxy on its own host, not the bridge.

    The proxy (HAProxy in TCP mode; `ccbridge render` writes its haproxy.cfg) ends a
    FastAGI session the bridge leaves silent for ``route_timeout`` seconds, and health
    checks take a hung bridge out of service: Asterisk then takes the static fallback at
    once. Asterisk itself waits for a FastAGI reply forever.
    """

    port: int = 4580  # the route listener, on each site's SIP address
    lookup_port: int = 4581  # the self-service listener (its own, longer timeout)
    route_timeout: float = 1.0  # silence from the bridge that ends a route session
    lookup_timeout: float | None = None  # None: the self-service budget + the margin
    connect_timeout: float = 0.5  # the proxy's connect to a bridge
    check_interval: float = 0.5  # health check period; 2 failures mark a bridge down
    servers: tuple[HostPort, ...] = ()  # the bridges' FastAGI ports; () = agi_url_host


@dataclass(frozen=True, slots=True)
class Watchdog:
    """`bridge.watchdog`: how `ccbridge supervise` judges the bridge's heartbeat."""

    timeout: float = 1.0  # no WATCHDOG=1 this long after READY=1: SIGKILL and restart
    start_timeout: float = 30.0  # no READY=1 this long after the start: the same
    restart_delay: float = 0.2  # pause before a restart; doubles while starts fail
    max_restart_delay: float = 10.0
    stop_timeout: float = 10.0  # SIGTERM to SIGKILL when the supervisor itself stops


class EventLoop(StrEnum):
    """`bridge.event_loop`: the loop ``ccbridge run`` serves on (ccbridge/eventloop.py)."""

    ASYNCIO = "asyncio"  # the default (BENCHMARKS §12: uvloop is not yet shown better)
    UVLOOP = "uvloop"  # uvloop, or asyncio's with a warning when it does not import
    AUTO = "auto"  # uvloop when it imports, else asyncio's


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    agi_listen: HostPort
    agi_url_host: HostPort
    http_listen: HostPort
    api_token: SecretValue | None = None
    fixed_clock: datetime | None = None
    max_agi_sessions: int = 1000
    agi_session_timeout: float = 5.0
    log_level: str = "INFO"
    event_loop: EventLoop = EventLoop.ASYNCIO  # ccbridge/eventloop.py
    agi_guard: AgiGuard | None = None  # None: Asterisk dials the bridge directly
    # Networks FastAGI is accepted from besides the sites' own addresses (FastAGI has no
    # authentication or encryption in Asterisk: anything else is dropped and counted).
    agi_allow: tuple[str, ...] = ()
    watchdog: Watchdog = field(default_factory=Watchdog)
    tls: TlsSettings | None = None  # HTTPS for the API when set
    cluster: ClusterSettings = field(default_factory=lambda: ClusterSettings())

    @property
    def guard_servers(self) -> tuple[HostPort, ...]:
        """The FastAGI ports the guard forwards to: its own list, else every bridge."""
        if self.agi_guard is not None and self.agi_guard.servers:
            return self.agi_guard.servers
        return self.cluster.servers or (self.agi_url_host,)

    @property
    def agi_servers(self) -> tuple[HostPort, ...]:
        """Every bridge's FastAGI address, in the order a site's dialplan tries them."""
        return self.cluster.servers or (self.agi_url_host,)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """`bridge.cluster`: several bridges on one deployment file (issue 15).

    Without the guard, each site's dialplan tries ``servers`` in order within the call
    (or, with ``srv``, one ``hagi://`` URL whose SRV records list them), starting no new
    try ``budget`` seconds after the first; with the guard on, the guard balances over
    them and the dialplan asks the guard up to ``tries`` times within the budget (as it
    asks the one hagi:// URL: a session a bridge dropped or left silent is asked again).
    """

    identity: str | None = None  # None: $CCBRIDGE_BRIDGE_ID, else hostname:http port
    servers: tuple[HostPort, ...] = ()  # every bridge's FastAGI address; () = agi_url_host
    srv: str | None = None  # hagi://SRV/route: Asterisk looks up _agi._tcp.SRV
    budget: float = 2.5  # seconds after the first try when no new try starts
    tries: int = 2  # asks of the guard (with several servers) or of the SRV URL per call
    heartbeat: float = 1.0  # seconds between heartbeat rows in the store
    alive_after: float = 5.0  # a bridge not seen this long is not alive


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    bridge: BridgeSettings
    sites: tuple[Site, ...]
    trunks: tuple[Trunk, ...]
    numbers: tuple[Number, ...]
    countries: tuple[Country, ...]
    languages: tuple[str, ...]
    services: tuple[str, ...]
    routing: RoutingSettings
    ivr: IvrSettings = field(default_factory=lambda: _no_ivr())
    self_service: SelfServiceSettings | None = None
    store: StoreSettings = field(default_factory=lambda: _default_store())
    survey: SurveySettings | None = None  # None: no service asks for a score
    records: RecordsSettings = field(default_factory=lambda: _default_records())
    access: AccessSettings = field(default_factory=lambda: _default_access())
    deploy: DeploySettings = field(default_factory=lambda: _default_deploy())
    recording: RecordingSettings | None = None  # None: nothing is recorded
    screen_pop: ScreenPopSettings = field(default_factory=lambda: _default_screen_pop())
    edge: EdgeSettings | None = None  # None: carriers send calls to the sites directly
    # Secrets that gave nothing where the file was read (only when loaded without
    # requiring them, e.g. by `ccbridge check` on an admin's laptop).
    missing_secrets: tuple[MissingSecret, ...] = ()

    def lookup_guard_timeout(self) -> float:
        """The silence the guard allows a self-service lookup: the configured one, or the
        lookup's worst case plus a margin."""
        guard = self.bridge.agi_guard
        if guard is not None and guard.lookup_timeout is not None:
            return guard.lookup_timeout
        route = guard.route_timeout if guard is not None else 0.0
        if self.self_service is None:
            return max(route, LOOKUP_GUARD_MARGIN)
        return max(route, self.self_service.budget + LOOKUP_GUARD_MARGIN)

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    def number(self, did: str) -> Number | None:
        for n in self.numbers:
            if n.did == did:
                return n
        return None

    def country(self, code: str) -> Country | None:
        for c in self.countries:
            if c.code == code:
                return c
        return None

    def trunks_between(self, site: str, peer: str) -> tuple[Trunk, ...]:
        """Inter-site trunks from ``site`` to ``peer`` in configured order."""
        found = [
            t
            for t in self.trunks
            if t.site == site and t.kind is TrunkKind.INTERSITE and t.peer_site == peer
        ]
        return tuple(sorted(found, key=lambda t: (t.order, -t.weight, t.name)))

    def carrier_trunks(self, site: str) -> tuple[Trunk, ...]:
        found = [t for t in self.trunks if t.site == site and t.kind is TrunkKind.CARRIER]
        return tuple(sorted(found, key=lambda t: (t.order, -t.weight, t.name)))


def _default_access() -> AccessSettings:
    from ccbridge.config.access_loader import AccessSettings  # imports the reader

    return AccessSettings()


def _default_store() -> StoreSettings:
    from ccbridge.config.store import StoreSettings  # store.py imports this module

    return StoreSettings()


def _default_records() -> RecordsSettings:
    from ccbridge.config.records import RecordsSettings  # kept beside the store's section

    return RecordsSettings()


def _default_screen_pop() -> ScreenPopSettings:
    from ccbridge.config.screenpop import ScreenPopSettings  # imports the reader

    return ScreenPopSettings()


def _default_deploy() -> DeploySettings:
    from ccbridge.config.deploy import DeploySettings

    return DeploySettings()


def _no_ivr() -> IvrSettings:
    from ccbridge.config.ivr import IvrSettings  # ivr.py imports this module

    return IvrSettings()
