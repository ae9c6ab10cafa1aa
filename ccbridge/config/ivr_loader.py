"""Parse the `ivr:` and `self_service:` sections; errors name file, line and key like the rest."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ccbridge.config.ivr import (
    ACTIONS,
    DEFAULT_PROMPTS_PATH,
    OPERATOR,
    BreakerSettings,
    Destination,
    DestKind,
    IvrSettings,
    Lookup,
    Menu,
    SelfServiceSettings,
)
from ccbridge.config.loader import _kind, _Reader
from ccbridge.config.model import BridgeSettings, Number
from ccbridge.config.yamlsrc import LineDict

# A prompt is a sound file name without extension, as Playback() takes it. No '&', ',',
# '$' or spaces: they would split or inject dialplan arguments.
_PROMPT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
_KEY_RE = re.compile(r"^[0-9*#]$")
_ANSWER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_DEST_KEYS = {"menu", "service", "lookup", "action"}


def parse_ivr(
    r: _Reader,
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


def _raise(r: _Reader, message: str) -> None:
    raise r.fail(message)


def _self_service(r: _Reader, v: Any, bridge: BridgeSettings | None) -> SelfServiceSettings:
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
                failures=r.get(b, "failures", r.integer(1, 1000), breaker.failures),
                reset_after=r.get(b, "reset_after", r.number(0.1, 3600), breaker.reset_after),
            )
    s = SelfServiceSettings(
        url=url,
        timeout=r.get(d, "timeout", r.number(0.05, 60), 1.0),
        retries=r.get(d, "retries", r.integer(0, 5), 1),
        retry_backoff=r.get(d, "retry_backoff", r.number(0, 10), 0.1),
        breaker=breaker,
        token=r.get(d, "token", r.secret, None),
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
    r: _Reader,
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
    prompts_path = r.get(d, "prompts_path", r.string, DEFAULT_PROMPTS_PATH)
    if not prompts_path.startswith("/") or not _PROMPT_RE.match(prompts_path.strip("/")):
        with r.at("prompts_path", d):
            raise r.fail(f"expected an absolute path without spaces, got '{prompts_path}'")
    return IvrSettings(
        menus=tuple(menus),
        lookups=tuple(lookups),
        prompts_dir=r.get(d, "prompts_dir", lambda x: _dir(r, x), None),
        prompts_path=prompts_path.rstrip("/"),
        sounds_dir=r.get(d, "sounds_dir", lambda x: _dir(r, x), None),
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


def _dir(r: _Reader, v: Any) -> Path:
    p = Path(r.string(v))
    return p if p.is_absolute() else (r.base_dir / p).resolve()


def _prompts(r: _Reader, v: Any) -> tuple[str, ...]:
    items = v if isinstance(v, list) else [v]
    out = []
    for i, x in enumerate(items):
        with r.at(i) if isinstance(v, list) else _same():
            s = r.string(x)
            if not _PROMPT_RE.match(s) or ".." in s.split("/"):
                raise r.fail(
                    f"invalid prompt name '{s}': a sound file name without extension, "
                    "like 'welcome' or 'digits/1'"
                )
            out.append(s)
    return tuple(out)


class _same:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _destination(r: _Reader, v: Any, names: _Names, *, repeat_ok: bool) -> Destination:
    if isinstance(v, str):
        d = LineDict({"action": v})
        d.key_lines = {}
    elif isinstance(v, dict):
        d = r.mapping(v, _DEST_KEYS | {"language"})
    else:
        raise r.fail(f"expected a destination (e.g. operator, or {{menu: NAME}}), got {_kind(v)}")
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
                kind = DestKind(target)
            except ValueError:
                kind = None
            if kind not in ACTIONS:
                choices = ", ".join(sorted(a.value for a in ACTIONS))
                raise r.fail(f"unknown action '{target}': use one of {choices}")
            assert kind is not None
            if kind is DestKind.REPEAT and not repeat_ok:
                raise r.fail("'repeat' only makes sense as a menu option")
            return Destination(kind, None, language)
        known = {"menu": names.menus, "service": names.services, "lookup": names.lookups}[key]
        if target not in known:
            where = {"menu": "ivr.menus", "service": "services", "lookup": "ivr.lookups"}[key]
            raise r.fail(f"no {key} '{target}' in {where}")
    return Destination(DestKind(key), target, language)


def _menu(r: _Reader, name: str, v: Any, names: _Names) -> Menu:
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
    final = r.get(d, "final", lambda x: _destination(r, x, names, repeat_ok=False), OPERATOR)
    return Menu(
        name=name,
        prompts=r.req(d, "prompt", lambda x: _prompts(r, x)),
        options=tuple(options),
        greeting=r.get(d, "greeting", lambda x: _prompts(r, x), ()),
        timeout=r.get(d, "timeout", r.integer(1, 60), 5),
        retries=r.get(d, "retries", r.integer(0, 10), 2),
        invalid_prompts=r.get(d, "invalid_prompt", lambda x: _prompts(r, x), ("please-try-again",)),
        timeout_prompts=r.get(d, "timeout_prompt", lambda x: _prompts(r, x), ()),
        final=final,
    )


def _lookup(r: _Reader, name: str, v: Any, names: _Names) -> Lookup:
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
                answers.append((key, _prompts(r, av)))
    max_digits = r.get(d, "max_digits", r.integer(1, 64), 10)
    min_digits = r.get(d, "min_digits", r.integer(1, 64), 1)
    if min_digits > max_digits:
        with r.at("min_digits", d):
            raise r.fail(f"min_digits {min_digits} is above max_digits {max_digits}")
    dest = lambda x: _destination(r, x, names, repeat_ok=False)  # noqa: E731
    return Lookup(
        name=name,
        prompts=r.req(d, "prompt", lambda x: _prompts(r, x)),
        answers=tuple(answers),
        default_prompts=r.get(d, "default", lambda x: _prompts(r, x), ()),
        max_digits=max_digits,
        min_digits=min_digits,
        timeout=r.get(d, "timeout", r.integer(1, 60), 6),
        attempts=r.get(d, "attempts", r.integer(1, 5), 2),
        say_digits=r.get(d, "say_digits", r.boolean, True),
        then=r.get(d, "then", dest, OPERATOR),
        failure_prompts=r.get(
            d, "failure_prompt", lambda x: _prompts(r, x), ("sorry", "one-moment-please")
        ),
        on_failure=r.get(d, "on_failure", dest, OPERATOR),
    )
