"""Views of the IVR config for dialplans/ivr.conf.j2: menus, lookups, prompts, static routes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ccbridge import variables as v
from ccbridge.agi_guard import lookup_urls
from ccbridge.config.ivr import Destination, DestKind, IvrSettings, Lookup, Menu
from ccbridge.config.model import Config, Site, queue_name

SOUND_EXTENSIONS = frozenset({"wav", "gsm", "ulaw", "alaw", "sln", "sln16", "g722", "g729"})


def menu_context(name: str) -> str:
    return f"ccb-ivr-m-{name}"


def lookup_context(name: str) -> str:
    return f"ccb-ivr-l-{name}"


def default_prompts_dir() -> Path:
    """prompts/ beside dialplans/ in a checkout, or CCBRIDGE_PROMPTS."""
    env = os.environ.get("CCBRIDGE_PROMPTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "prompts"


def prompts_dir(ivr: IvrSettings) -> Path:
    return ivr.prompts_dir or default_prompts_dir()


def sound_names(lang_dir: Path) -> set[str]:
    """Sound names (path without extension) under one language folder, e.g. 'digits/1'."""
    out: set[str] = set()
    if not lang_dir.is_dir():
        return out
    for p in lang_dir.rglob("*"):
        if p.suffix.lstrip(".") in SOUND_EXTENSIONS and p.is_file():
            out.add(p.relative_to(lang_dir).with_suffix("").as_posix())
    return out


def custom_prompts(folder: Path) -> dict[str, set[str]]:
    """Custom recordings, flat per language: FOLDER/<lang>/<name>.<ext> -> {name: {langs}}."""
    out: dict[str, set[str]] = {}
    if not folder.is_dir():
        return out
    for lang_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in lang_dir.iterdir():
            if f.is_file() and f.suffix.lstrip(".") in SOUND_EXTENSIONS:
                out.setdefault(f.stem, set()).add(lang_dir.name)
    return out


class PromptResolver:
    """Prompt names -> a Playback() argument.

    A custom recording is played by absolute path: Asterisk inserts the channel's
    language before the file name (PATH/bn/NAME), then tries PATH/en/NAME, so the
    English recording stands in for a missing translation. Any other name is a core
    sound, which Asterisk looks up the same way under sounds/<lang>/.
    """

    def __init__(self, custom: Mapping[str, set[str]], prompts_path: str) -> None:
        self._custom = custom
        self._path = prompts_path

    def one(self, name: str) -> str:
        return f"{self._path}/{name}" if name in self._custom else name

    def __call__(self, names: Iterable[str]) -> str:
        return "&".join(self.one(n) for n in names)


def destination_lines(d: Destination) -> list[str]:
    """Dialplan applications, one per priority, that send the caller to ``d``."""
    out: list[str] = []
    if d.language:
        out += [f"Set(CHANNEL(language)={d.language})", f"Set({v.IVR_LANGUAGE}={d.language})"]
    route = "Goto(ccb-route,${" + v.DID + "},1)"
    match d.kind:
        case DestKind.MENU:
            out.append(f"Goto({menu_context(str(d.target))},s,1)")
        case DestKind.LOOKUP:
            out.append(f"Goto({lookup_context(str(d.target))},s,1)")
        case DestKind.SERVICE:
            out += [f"Set({v.IVR_SERVICE}={d.target})", route]
        case DestKind.OPERATOR:
            out.append(route)
        case DestKind.VOICEMAIL | DestKind.CALLBACK:
            out += [
                f"Set({v.SERVICE}=${{{v.IVR_SERVICE}}})",
                f"Goto(ccb-after-hours,{d.kind.value},1)",
            ]
        case DestKind.REPEAT:
            out.append("Goto(s,menu)")
        case DestKind.HANGUP:
            out += ["Playback(vm-goodbye)", "Hangup()"]
    return out


@dataclass(frozen=True, slots=True)
class MenuView:
    name: str
    context: str
    greeting: str
    prompts: str
    timeout: int
    retries: int
    options: tuple[tuple[str, tuple[str, ...]], ...]
    invalid: str
    timeout_prompts: str
    final: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LookupView:
    name: str
    context: str
    prompts: str
    max_digits: int
    min_digits: int
    timeout: int
    attempts: int
    answers: tuple[tuple[str, str], ...]  # (answer, prompts); "default" is always there
    say_digits: bool
    then: tuple[str, ...]
    failure: str
    on_failure: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IvrEntryView:
    did: str
    service: str
    menu_context: str


@dataclass(frozen=True, slots=True)
class ChoiceFallbackView:
    """Static route for a (service, language) picked in the IVR when the bridge is down."""

    key: str  # SERVICE-LANG, what ${CCB_IVR_SERVICE}-${CCB_IVR_LANGUAGE} expands to
    queue: str
    language: str
    trunks: tuple[str, ...]  # empty: the queue is at this site


def _menu_view(m: Menu, p: PromptResolver) -> MenuView:
    return MenuView(
        name=m.name,
        context=menu_context(m.name),
        greeting=p(m.greeting),
        prompts=p(m.prompts),
        timeout=m.timeout,
        retries=m.retries,
        options=tuple((k, tuple(destination_lines(d))) for k, d in m.options),
        invalid=p(m.invalid_prompts),
        timeout_prompts=p(m.timeout_prompts),
        final=tuple(destination_lines(m.final)),
    )


def _lookup_view(x: Lookup, p: PromptResolver) -> LookupView:
    answers = [(k, p(ps)) for k, ps in x.answers if k != v.LOOKUP_DEFAULT_ANSWER]
    default = dict(x.answers).get(v.LOOKUP_DEFAULT_ANSWER, x.default_prompts)
    answers.append((v.LOOKUP_DEFAULT_ANSWER, p(default)))
    return LookupView(
        name=x.name,
        context=lookup_context(x.name),
        prompts=p(x.prompts),
        max_digits=x.max_digits,
        min_digits=x.min_digits,
        timeout=x.timeout,
        attempts=x.attempts,
        answers=tuple(answers),
        say_digits=x.say_digits,
        then=tuple(destination_lines(x.then)),
        failure=p(x.failure_prompts),
        on_failure=tuple(destination_lines(x.on_failure)),
    )


def choice_fallbacks(config: Config, site: Site) -> list[ChoiceFallbackView]:
    """For every (service, language) served anywhere: this site's queue, else a trunk."""
    out = []
    for service in config.services:
        for lang in config.languages:
            serving = [s for s in config.sites if lang in _langs(s, service)]
            if not serving:
                continue
            q = queue_name(service, lang)
            if site in serving:
                out.append(ChoiceFallbackView(f"{service}-{lang}", q, lang, ()))
                continue
            for target in serving:
                trunks = config.trunks_between(site.name, target.name)
                if trunks:
                    names = tuple(t.name for t in trunks)
                    out.append(ChoiceFallbackView(f"{service}-{lang}", q, lang, names))
                    break
    return out


def _langs(site: Site, service: str) -> tuple[str, ...]:
    o = site.offering(service)
    return o.languages if o else ()


def ivr_context(config: Config, site: Site) -> dict[str, object]:
    """The names ivr.conf.j2 uses, merged into render.site_context."""
    ivr = config.ivr
    resolver = PromptResolver(custom_prompts(prompts_dir(ivr)), ivr.prompts_path)
    entries = [
        IvrEntryView(n.did, n.service, menu_context(n.menu))
        for n in config.numbers
        if n.site == site.name and n.menu
    ]
    return {
        "ivr_entries": entries,
        "ivr_menus": [_menu_view(m, resolver) for m in ivr.menus],
        "ivr_lookups": [_lookup_view(x, resolver) for x in ivr.lookups],
        "ivr_fallbacks": choice_fallbacks(config, site),
        # Several bridges (issue 15): each URL in turn, within the cluster's budget.
        "lookup_tries": lookup_urls(config, site),
        "lookup_budget_ms": round(config.bridge.cluster.budget * 1000),
    }
