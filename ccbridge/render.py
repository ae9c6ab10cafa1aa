"""Render each site's Asterisk configuration from the Jinja2 templates in dialplans/."""

from __future__ import annotations

import functools
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ccbridge import variables
from ccbridge.agi_guard import agi_urls, guard_view, route_urls
from ccbridge.config.edge import EDGE_DIR
from ccbridge.config.model import (
    Config,
    Number,
    QueueSettings,
    Site,
    TlsFiles,
    Trunk,
    TrunkKind,
    queue_name,
)
from ccbridge.edge.view import edge_view
from ccbridge.ivr_render import (
    PromptResolver,
    custom_prompts,
    ivr_context,
    prompts_dir,
)
from ccbridge.routing.held import RouteView, caller_patterns, routes_at
from ccbridge.routing.language import LanguageResolver

TEMPLATE_FILES = (
    "pjsip.conf",
    "extensions.conf",
    "ivr.conf",
    "queues.conf",
    "manager.conf",
    "rtp.conf",
    "modules.conf",
    "logger.conf",
    "voicemail.conf",
    "cel.conf",
    "stasis.conf",
)


# The AGI guard's HAProxy config, rendered only when `bridge.agi_guard` is on.
GUARD_FILE = "haproxy.cfg"

# The SIP edge's files (config `edge:`), rendered into OUT/edge/ (EDGE_DIR).
EDGE_CONFIG = "kamailio.cfg"
EDGE_LIST = "dispatcher.list"


def default_template_dir() -> Path:
    """dialplans/ beside the package (a checkout or editable install), or CCBRIDGE_TEMPLATES."""
    env = os.environ.get("CCBRIDGE_TEMPLATES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "dialplans"


@dataclass(frozen=True, slots=True)
class QueueView:
    name: str
    service: str
    language: str
    settings: QueueSettings
    members: tuple[tuple[str, int], ...]  # (endpoint name, penalty)


@dataclass(frozen=True, slots=True)
class FallbackView:
    """Where a number goes when the bridge cannot be asked: a local queue or a remote one."""

    did: str
    queue: str
    trunks: tuple[str, ...]  # empty: the queue is local


def fallback_for(config: Config, site: Site, number: Number) -> FallbackView | None:
    """The static route for ``number`` received at ``site``: the same for every call."""
    country = config.country(number.country)
    preferred = country.default_language if country else None
    candidates = [site.name]
    if number.home_site and number.home_site != site.name:
        candidates.append(number.home_site)
    candidates += [s.name for s in config.sites if s.name not in candidates]
    for name in candidates:
        target = config.site(name)
        offering = target.offering(number.service)
        if offering is None or not offering.languages:
            continue
        lang = preferred if preferred in offering.languages else offering.languages[0]
        trunks = () if name == site.name else config.trunks_between(site.name, name)
        if name != site.name and not trunks:
            continue
        return FallbackView(
            number.did, queue_name(number.service, lang), tuple(t.name for t in trunks)
        )
    return None


def _queues(site: Site) -> list[QueueView]:
    out = []
    for o in site.offerings:
        for lang in o.languages:
            q = queue_name(o.service, lang)
            members = tuple((a.name, a.penalty) for a in site.agents if q in a.queues)
            out.append(QueueView(q, o.service, lang, o.queue, members))
    return out


def _inbound_peers(config: Config, site: Site) -> list[tuple[Trunk, tuple[str, ...]]]:
    """This site's intersite trunks, each with the peer addresses it identifies calls by.

    A peer sends from its main SIP address (and may from an alternate one its trunk here
    ends at): each address is matched by one trunk only, the first in order, so two
    trunks to one peer never claim the same caller. A trunk that ends elsewhere (a NAT,
    an SBC) matches nothing of its own: the far end's address may be a carrier's too.
    """
    out = []
    claimed: set[str] = set()
    for t in config.trunks:
        if t.site != site.name or t.kind is not TrunkKind.INTERSITE or not t.peer_site:
            continue
        peer = config.site(t.peer_site)
        hosts = [peer.sip.host]
        if t.remote in peer.sip_alternates:
            hosts.append(t.remote.host)
        mine = tuple(dict.fromkeys(h for h in hosts if h not in claimed))
        claimed.update(mine)
        out.append((t, mine))
    return out


@functools.lru_cache(maxsize=8)
def _environment(template_dir: Path) -> jinja2.Environment:
    """One environment a template folder for the process's life: Jinja compiles each
    template once (~100 ms of CPU for a site's set, much of it in ``compile()``, one C
    call holding the GIL) and keeps it, recompiling only a file whose mtime changed
    (``auto_reload``, Jinja's default), so an edited template is still picked up. The
    lab renders again on every site restart, in a thread beside an in-process bridge
    whose loop thread that GIL hold stalled (60-69 ms callbacks failed a CI run)."""
    return make_environment(template_dir)


def cached_environment(template_dir: Path | None = None) -> jinja2.Environment:
    """The shared environment of ``template_dir`` (the shipped templates by default)."""
    return _environment((template_dir or default_template_dir()).resolve())


def make_environment(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Asterisk config files, not HTML
    )
    env.globals["v"] = variables
    env.globals["var"] = lambda name: "${" + getattr(variables, name) + "}"
    return env


# FILTER's allowed characters of a route id: '-' to '.' is a range of exactly those two
# (a literal '-' needs an escape the CLI and the config parser treat differently).
HELD_ID_CHARS = "--.0-9_a-z"


@dataclass(frozen=True, slots=True)
class HeldRouteLines:
    """One extension of ccb-held: a route id and the dialplan lines that take it."""

    id: str
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HeldView:
    """What the held-route steps need (routing/held.py): each number's own language, the
    caller-ID patterns that decide a caller's language, and every route a value may name."""

    numbers: tuple[tuple[str, str], ...]  # (did, the language when no other rule decides)
    language: dict[str, str]  # the same as a mapping, did -> language
    callers: tuple[tuple[str, str], ...]  # ("/_+880.", "bn"): caller-ID pattern, language
    routes: tuple[HeldRouteLines, ...]
    id_chars: str = HELD_ID_CHARS


def _route_lines(r: RouteView) -> tuple[str, ...]:
    route = r.route
    if route.kind == variables.ROUTE_QUEUE:
        return (f"Goto(ccb-queue,{route.queue},1)",)
    if route.kind == variables.ROUTE_REMOTE:
        sets = [
            f"{variables.SITE}={route.site}",
            f"{variables.QUEUE}={route.queue}",
            f"{variables.SERVICE}={r.service}",
            f"{variables.LANGUAGE}={r.language}",
            f"{variables.TRUNK_COUNT}={len(route.trunks)}",
            *(f"{variables.trunk_var(i)}={t}" for i, t in enumerate(route.trunks, 1)),
        ]
        return (f"MSet({','.join(sets)})", f"Goto(ccb-dispatch,{route.kind},1)")
    if route.kind == variables.ROUTE_AFTER_HOURS:
        pairs = f"{variables.AFTER_HOURS}={route.action},{variables.SERVICE}={r.service}"
        return (f"MSet({pairs})", f"Goto(ccb-dispatch,{route.kind},1)")
    return (f"Goto(ccb-dispatch,{variables.ROUTE_REJECT},1)",)


def held_view(config: Config, site: Site) -> HeldView:
    lang = LanguageResolver.from_config(config)
    callers = caller_patterns(config)
    numbers = tuple((n.did, lang.did_language(n)) for n in config.numbers if n.site == site.name)
    return HeldView(
        numbers,
        dict(numbers),
        callers,
        tuple(HeldRouteLines(r.id, _route_lines(r)) for r in routes_at(config, site)),
    )


@dataclass(frozen=True, slots=True)
class SurveyView:
    """The satisfaction survey at one site: its queues and the Read()/Playback() args."""

    queues: frozenset[str]  # this site's queues of a surveyed service
    prompt: str
    thanks: str
    timeout: int


def survey_view(config: Config, site: Site) -> SurveyView | None:
    survey = config.survey
    if survey is None:
        return None
    queues = frozenset(q.name for q in _queues(site) if q.service in survey.services)
    if not queues:
        return None
    resolver = PromptResolver(custom_prompts(prompts_dir(config.ivr)), config.ivr.prompts_path)
    return SurveyView(queues, resolver(survey.prompt), resolver(survey.thanks), survey.timeout)


@dataclass(frozen=True, slots=True)
class QueueRecording:
    """One queue's recording step: the value RECORD takes when the bridge set none, and
    the announcement played to the caller of a recorded call before the agent answers."""

    policy: str  # all / none / 25%, for the comment
    sample: str  # a dialplan expression giving RECORD_YES or RECORD_NO
    prompt: str | None


@dataclass(frozen=True, slots=True)
class RecordingView:
    spool: str  # where MixMonitor writes at this site
    queues: dict[str, QueueRecording]


def recording_view(config: Config, site: Site) -> RecordingView | None:
    """The site's recording policy per queue (config `recording:`), rendered so a call
    the bridge did not decide for (held route, static fallback) follows it too."""
    rec = config.recording
    if rec is None:
        return None
    from ccbridge.config.recording import policy_text

    resolver = PromptResolver(custom_prompts(prompts_dir(config.ivr)), config.ivr.prompts_path)
    queues = {}
    for q in _queues(site):
        pct = rec.percent(site.name, q.service)
        if pct >= 100:
            sample = variables.RECORD_YES
        elif pct <= 0:
            sample = variables.RECORD_NO
        else:
            # RAND(0,9999) < percent * 100: the sample to a hundredth of a percent
            threshold = round(pct * 100)
            sample = (
                f"${{IF($[${{RAND(0,9999)}} < {threshold}]?"
                f"{variables.RECORD_YES}:{variables.RECORD_NO})}}"
            )
        prompt = rec.prompt(q.language)
        queues[q.name] = QueueRecording(
            policy_text(pct), sample, resolver.one(prompt) if prompt else None
        )
    return RecordingView(rec.site(site.name).spool, queues)


def site_context(config: Config, site: Site) -> dict[str, object]:
    numbers = [n for n in config.numbers if n.site == site.name]
    fallbacks = [f for n in numbers if (f := fallback_for(config, site, n)) is not None]
    queues = _queues(site)
    default_fallback = fallbacks[0] if fallbacks else None
    if default_fallback is None and queues:
        default_fallback = FallbackView("", queues[0].name, ())
    return {
        "config": config,
        "site": site,
        "bridge": config.bridge,
        "agi_url": agi_urls(config, site)[0],
        # Several bridges (issue 15): the URLs ccb-route tries in order, and the bound.
        "agi_tries": [
            (variables.agi_url_global(i), u) for i, u in enumerate(route_urls(config, site), 1)
        ],
        "agi_budget_ms": round(config.bridge.cluster.budget * 1000),
        "guard": guard_view(config, site),
        "guard_maxconn": max(4096, 2 * config.bridge.max_agi_sessions),
        "numbers": numbers,
        "fallbacks": fallbacks,
        "default_fallback": default_fallback,
        "queues": queues,
        "site_trunks": [t for t in config.trunks if t.site == site.name],
        "inbound_peers": _inbound_peers(config, site),
        "carriers": config.carrier_trunks(site.name),
        # Calls from carriers come from their own sources, or through the SIP edge.
        "carrier_sources": _carrier_sources(config, site),
        "tls_names": TlsFiles,
        "ami_secret": site.ami.secret.reveal(),
        "held": config.routing.held_routes,
        "held_view": held_view(config, site),
        "survey": survey_view(config, site),
        "recording": recording_view(config, site),
        **ivr_context(config, site),
    }


def _carrier_sources(config: Config, site: Site) -> tuple[str, ...]:
    edge = config.edge
    if edge is None or edge.sip.host in site.carrier_sources:
        return site.carrier_sources
    return (*site.carrier_sources, edge.sip.host)


def render_edge(
    config: Config, template_dir: Path | None = None, install_dir: str | None = None
) -> dict[str, str]:
    """File name -> text of the SIP edge's kamailio.cfg and dispatcher.list; {} without
    an edge. ``install_dir`` overrides where kamailio.cfg finds the list (the lab's own)."""
    view = edge_view(config)
    if view is None:
        return {}
    env = cached_environment(template_dir)
    folder = (install_dir or view.settings.install_dir).rstrip("/")
    ctx = {
        "edge": view.settings,
        "view": view,
        "algorithm": view.algorithm,
        "list_file": f"{folder}/{EDGE_LIST}",
        # a call in setup is over by ring_timeout: its htable entries outlive it a minute
        "expire": math.ceil(view.settings.ring_timeout) + 60,
        "site_lost_path": variables.EDGE_SITE_LOST,
    }
    return {name: env.get_template(f"{name}.j2").render(ctx) for name in (EDGE_CONFIG, EDGE_LIST)}


def render_site(config: Config, site: Site, template_dir: Path | None = None) -> dict[str, str]:
    """File name -> rendered text for one site."""
    env = cached_environment(template_dir)
    ctx = site_context(config, site)
    names = TEMPLATE_FILES + ((GUARD_FILE,) if ctx["guard"] is not None else ())
    return {name: env.get_template(f"{name}.j2").render(ctx) for name in names}


def tls_copies(site: Site) -> dict[str, Path]:
    """The site's TLS files to install beside its configs, by name under the configs'
    folder (``keys/site.crt``, ...): the rendered configs name them in ``install_dir``."""
    if site.tls is None:
        return {}
    files = site.tls
    return {
        f"keys/{TlsFiles.CERT_NAME}": Path(files.cert),
        f"keys/{TlsFiles.KEY_NAME}": Path(files.key),
        f"keys/{TlsFiles.CA_NAME}": Path(files.ca),
    }


def render_all(config: Config, out_dir: Path, template_dir: Path | None = None) -> list[Path]:
    """Write out_dir/SITE/*.conf for every site (and SITE/keys/ with its TLS files, to go
    in the site's ``tls.install_dir``); return the files written."""
    written = []
    for site in config.sites:
        d = out_dir / site.name
        d.mkdir(parents=True, exist_ok=True)
        for name, text in render_site(config, site, template_dir).items():
            p = d / name
            p.write_text(text, encoding="utf-8")
            if name == "manager.conf":
                p.chmod(0o600)  # it holds the AMI secret
            written.append(p)
        for name, src in tls_copies(site).items():
            p = d / name
            p.parent.mkdir(mode=0o700, exist_ok=True)
            shutil.copyfile(src, p)
            p.chmod(0o600)  # the key; the others need no secrecy but gain nothing from more
            written.append(p)
    edge = render_edge(config, template_dir)
    if edge:
        d = out_dir / EDGE_DIR
        d.mkdir(parents=True, exist_ok=True)
        for name, text in edge.items():
            (d / name).write_text(text, encoding="utf-8")
            written.append(d / name)
    return written
