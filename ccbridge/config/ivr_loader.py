"""Parse the `ivr:` and `self_service:` sections; errors name file, line and key like the rest."""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ccbridge.config.ivr import (
    ACTIONS,
    BreakerSettings,
    Destination,
    DestKind,
    IvrSettings,
    Lookup,
    Menu,
    SelfServiceSettings,
)
from ccbridge.config.model import BridgeSettings, Number
from ccbridge.config.reader import Reader, kind
from ccbridge.config.yamlsrc import LineDict

# A prompt is a sound file name without extension, as Playback() takes it. No '&', ',',
# '$' or spaces: they would split or inject dialplan arguments.
_PROMPT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
_KEY_RE = re.compile(r"^[0-9*#]$")
_ANSWER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_DEST_KEYS = {"menu", "service", "lookup", "action"}


def parse_ivr(
    r: Reader,
    top: LineDict,
    languages: Sequence[str],
    services: Sequence[str],
    numbers: Sequence[Number],
    bridge: BridgeSettings | None,
) -> tuple[IvrSettings, SelfServiceSettings | None]:
    """Both sections, cross-checked with each other and with the numbers' `menu` keys."""
    self_service = None
    if "self_service" in top:
        with r.at("self_service", top):
            self_service = r.collect(lambda: _self_service(r, top["self_service"], bridge))
    ivr = IvrSettings()
    if "ivr" in top:
        with r.at("ivr", top):
            got = r.collect(
                lambda: _ivr(r, top["ivr"], set(languages), set(services), self_service)
            )
            ivr = got or ivr
    names = {m.name for m in ivr.menus}
    nmap = top.get("numbers")
    for n in numbers:
        if n.menu is not None and n.menu not in names and isinstance(nmap, LineDict):
            with r.at("numbers", top), r.at(n.did, nmap), r.at("menu", nmap.get(n.did)):
                r.collect(partial(_raise, r, f"no menu '{n.menu}' in ivr.menus"))
    return ivr, self_service


def _raise(r: Reader, message: str) -> None:
    raise r.fail(message)


def _self_service(r: Reader, v: Any, bridge: BridgeSettings | None) -> SelfServiceSettings:
    d = r.mapping(v, {"url", "timeout", "retries", "retry_backoff", "breaker", "token"}, {"url"})
    url = r.req(d, "url", r.string)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        with r.at("url", d):
            raise r.fail(f"expected an http:// or https:// URL, got '{url}'")
    breaker = BreakerSettings()
    if "breaker" in d:
        with r.at("breaker", d):
            b = r.mapping(d["breaker"], {"failures", "reset_after"})
            breaker = BreakerSettings(
                **r.given(b, {"failures": r.integer(1, 1000), "reset_after": r.number(0.1, 3600)})
            )
    s = SelfServiceSettings(
        url=url,
        breaker=breaker,
        **r.given(
            d,
            {
                "timeout": r.number(0.05, 60),
                "retries": r.integer(0, 5),
                "retry_backoff": r.number(0, 10),
                "token": r.secret,
            },
        ),
    )
    # Asterisk waits on the AGI socket with no timeout of its own, and the bridge cuts a
    # session at agi_session_timeout: every retry must fit before that cut.
    if bridge is not None and s.budget >= bridge.agi_session_timeout:
        raise r.fail(
            f"timeout x (retries + 1) + backoff = {s.budget:g} s must stay under "
            f"bridge.agi_session_timeout ({bridge.agi_session_timeout:g} s), or callers "
            "hear silence until the session is cut"
        )
    return s


def _ivr(
    r: Reader,
    v: Any,
    languages: set[str],
    services: set[str],
    self_service: SelfServiceSettings | None,
) -> IvrSettings:
    d = r.mapping(v, {"menus", "lookups", "prompts_dir", "prompts_path", "sounds_dir"})
    menus_raw = r.get(d, "menus", lambda x: r.mapping(x), LineDict())
    lookups_raw = r.get(d, "lookups", lambda x: r.mapping(x), LineDict())
    names = _Names(set(menus_raw), set(lookups_raw), languages, services)
    lookups: list[Lookup] = []
    with r.at("lookups", d):
        for name, lv in lookups_raw.items():
            with r.at(name, lookups_raw):
                if self_service is None:
                    r.collect(lambda: _raise(r, "a lookup needs a top-level self_service section"))
                got = r.collect(partial(_lookup, r, name, lv, names))
                if got:
                    lookups.append(got)
    menus: list[Menu] = []
    with r.at("menus", d):
        for name, mv in menus_raw.items():
            with r.at(name, menus_raw):
                m = r.collect(partial(_menu, r, name, mv, names))
                if m:
                    menus.append(m)

    def prompts_path(v: Any) -> str:
        s = r.string(v)
        if not s.startswith("/") or not _PROMPT_RE.match(s.strip("/")):
            raise r.fail(f"expected an absolute path without spaces, got '{s}'")
        return s.rstrip("/")

    return IvrSettings(
        menus=tuple(menus),
        lookups=tuple(lookups),
        **r.given(
            d,
            {
                "prompts_dir": lambda x: _dir(r, x),
                "prompts_path": prompts_path,
                "sounds_dir": lambda x: _dir(r, x),
            },
        ),
    )


class _Names:
    """What destinations may refer to."""

    def __init__(
        self, menus: set[str], lookups: set[str], languages: set[str], services: set[str]
    ) -> None:
        self.menus = menus
        self.lookups = lookups
        self.languages = languages
        self.services = services


def _dir(r: Reader, v: Any) -> Path:
    p = Path(r.string(v))
    return p if p.is_absolute() else (r.base_dir / p).resolve()


def parse_prompts(r: Reader, v: Any) -> tuple[str, ...]:
    """One sound name or a list of them, each safe to put into a Playback() argument."""
    items = v if isinstance(v, list) else [v]
    out = []
    for i, x in enumerate(items):
        with r.at(i) if isinstance(v, list) else nullcontext():
            s = r.string(x)
            if not _PROMPT_RE.match(s) or ".." in s.split("/"):
                raise r.fail(
                    f"invalid prompt name '{s}': a sound file name without extension, "
                    "like 'welcome' or 'digits/1'"
                )
            out.append(s)
    return tuple(out)


def _destination(r: Reader, v: Any, names: _Names, *, repeat_ok: bool) -> Destination:
    if isinstance(v, str):
        d = LineDict({"action": v})
    elif isinstance(v, dict):
        d = r.mapping(v, _DEST_KEYS | {"language"})
    else:
        raise r.fail(f"expected a destination (e.g. operator, or {{menu: NAME}}), got {kind(v)}")
    given = sorted(_DEST_KEYS & set(d))
    if len(given) != 1:
        raise r.fail(
            "a destination needs exactly one of menu, service, lookup or action "
            f"(operator, voicemail, callback, repeat, hangup); got {', '.join(given) or 'none'}"
        )
    key = given[0]
    language = r.get(d, "language", r.language, None)
    if language is not None and language not in names.languages:
        with r.at("language", d):
            raise r.fail(f"language '{language}' is not in the top-level languages")
    with r.at(key, d):
        target = r.string(d[key])
        if key == "action":
            try:
                action = DestKind(target)
            except ValueError:
                action = None
            if action not in ACTIONS:
                choices = ", ".join(sorted(a.value for a in ACTIONS))
                raise r.fail(f"unknown action '{target}': use one of {choices}")
            assert action is not None
            if action is DestKind.REPEAT and not repeat_ok:
                raise r.fail("'repeat' only makes sense as a menu option")
            return Destination(action, None, language)
        known = {"menu": names.menus, "service": names.services, "lookup": names.lookups}[key]
        if target not in known:
            where = {"menu": "ivr.menus", "service": "services", "lookup": "ivr.lookups"}[key]
            raise r.fail(f"no {key} '{target}' in {where}")
    return Destination(DestKind(key), target, language)


def _menu(r: Reader, name: str, v: Any, names: _Names) -> Menu:
    r.name(name)
    d = r.mapping(
        v,
        {
            "greeting",
            "prompt",
            "options",
            "timeout",
            "retries",
            "invalid_prompt",
            "timeout_prompt",
            "final",
        },
        {"prompt", "options"},
    )
    options: list[tuple[str, Destination]] = []
    with r.at("options", d):
        o = r.mapping(d["options"])
        if not o:
            raise r.fail("a menu needs at least one option")
        for key, ov in o.items():
            with r.at(key, o):
                if not _KEY_RE.match(key):
                    raise r.fail(f"option keys are single keypad keys 0-9, * or #, got '{key}'")
                options.append((key, _destination(r, ov, names, repeat_ok=True)))
    prompts = lambda x: parse_prompts(r, x)  # noqa: E731
    return Menu(
        name=name,
        prompts=r.req(d, "prompt", prompts),
        options=tuple(options),
        **r.given(
            d,
            {
                "greeting": prompts,
                "timeout": r.integer(1, 60),
                "retries": r.integer(0, 10),
                "invalid_prompt": prompts,
                "timeout_prompt": prompts,
                "final": lambda x: _destination(r, x, names, repeat_ok=False),
            },
            {"invalid_prompt": "invalid_prompts", "timeout_prompt": "timeout_prompts"},
        ),
    )


def _lookup(r: Reader, name: str, v: Any, names: _Names) -> Lookup:
    r.name(name)
    d = r.mapping(
        v,
        {
            "prompt",
            "answers",
            "default",
            "max_digits",
            "min_digits",
            "timeout",
            "attempts",
            "say_digits",
            "then",
            "failure_prompt",
            "on_failure",
        },
        {"prompt", "answers"},
    )
    answers: list[tuple[str, tuple[str, ...]]] = []
    with r.at("answers", d):
        a = r.mapping(d["answers"])
        for key, av in a.items():
            with r.at(key, a):
                if not _ANSWER_RE.match(key):
                    raise r.fail(f"answer '{key}': use lowercase letters, digits, '-' or '_'")
                answers.append((key, parse_prompts(r, av)))
    dest = lambda x: _destination(r, x, names, repeat_ok=False)  # noqa: E731
    prompts = lambda x: parse_prompts(r, x)  # noqa: E731
    lookup = Lookup(
        name=name,
        prompts=r.req(d, "prompt", prompts),
        answers=tuple(answers),
        **r.given(
            d,
            {
                "default": prompts,
                "max_digits": r.integer(1, 64),
                "min_digits": r.integer(1, 64),
                "timeout": r.integer(1, 60),
                "attempts": r.integer(1, 5),
                "say_digits": r.boolean,
                "then": dest,
                "failure_prompt": prompts,
                "on_failure": dest,
            },
            {"default": "default_prompts", "failure_prompt": "failure_prompts"},
        ),
    )
    if lookup.min_digits > lookup.max_digits:
        with r.at("min_digits" if "min_digits" in d else "max_digits", d):
            raise r.fail(f"min_digits {lookup.min_digits} is above max_digits {lookup.max_digits}")
    return lookup
