"""The YAML reader every section parser uses: typed accessors, key paths, lines, problems."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ccbridge.config.model import WEEKDAYS, HostPort, MissingSecret, SecretValue, TimeRange
from ccbridge.config.yamlsrc import LineDict, Problem

T = TypeVar("T")
D = TypeVar("D")

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_LANG_RE = re.compile(r"^[a-z]{2,3}$")
_TIME_RANGE_RE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


class Invalid(Exception):
    """One problem at the reader's current key path; `Reader.collect` keeps it and goes on."""


@dataclass
class _SecretUses:
    """A secret source pair no source of which gave a value, and where it is used."""

    sources: tuple[str, ...]
    uses: list[tuple[str, int | None]] = field(default_factory=list)


class Reader:
    """Walks the parsed YAML, tracking the key path and the nearest known line."""

    def __init__(self, filename: str, base_dir: Path) -> None:
        self.filename = filename
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        self._path: list[str] = []
        self._lines: list[int] = [0]
        # Secrets that gave nothing, keyed by where they were looked for: sites that share
        # one secret (a YAML anchor) make one message, not one each.
        self._missing: dict[tuple[str, str], _SecretUses] = {}

    # -- paths and errors -------------------------------------------------
    @property
    def path(self) -> str:
        out = ""
        for part in self._path:
            out += part if part.startswith("[") else (f".{part}" if out else part)
        return out

    @property
    def line(self) -> int | None:
        return self._lines[-1] or None

    @contextmanager
    def at(self, key: str | int, container: Any = None) -> Iterator[None]:
        part = f"[{key}]" if isinstance(key, int) else str(key)
        line = self._lines[-1]
        if isinstance(container, LineDict):
            line = container.key_lines.get(str(key), container.line) or line
            # A key YAML read as a number is shown as written (+918000000001, not 918000000001).
            part = container.raw_keys.get(str(key), part)
        self._path.append(part)
        self._lines.append(line)
        try:
            yield
        finally:
            self._path.pop()
            self._lines.pop()

    def fail(self, message: str) -> Invalid:
        self.problems.append(Problem(self.filename, self.line, self.path, message))
        return Invalid(message)

    def collect(self, fn: Callable[[], T]) -> T | None:
        """Run one independent part; on failure keep the problem and go on with the rest."""
        try:
            return fn()
        except Invalid:
            return None

    # -- mappings -----------------------------------------------------------
    def mapping(
        self, value: Any, allowed: set[str] | None = None, required: set[str] | None = None
    ) -> LineDict:
        """A mapping with only ``allowed`` keys (any keys when None) and all ``required`` ones."""
        if not isinstance(value, dict):
            raise self.fail(f"expected a mapping, got {kind(value)}")
        d = value if isinstance(value, LineDict) else LineDict(value)
        for key in d:
            if allowed is not None and key not in allowed:
                with self.at(key, d):
                    hint = closest(key, allowed)
                    raise self.fail(
                        f"unknown key '{key}'" + (f" (did you mean '{hint}'?)" if hint else "")
                    )
        for key in sorted(required or ()):
            if key not in d:
                raise self.fail(f"missing required key '{key}'")
        return d

    def string_key(self, d: LineDict, key: str) -> str:
        """A key that must have been written as a string: phone numbers lose their '+' and
        leading zeros when YAML reads them as integers, so refuse those instead of guessing."""
        raw = d.raw_keys.get(key)
        if raw is not None:
            raise self.fail(
                f'YAML reads {raw} as the number {key}, not as text: write it in quotes, "{raw}"'
            )
        return key

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

    def given(
        self,
        d: LineDict,
        convs: Mapping[str, Callable[[Any], Any]],
        fields: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The keys of ``convs`` that ``d`` sets, converted, by model field name (``fields``
        renames a YAML key): the dataclass defaults fill in the rest, so each default is
        written once, in the model."""
        out: dict[str, Any] = {}
        for key, conv in convs.items():
            if key in d and d[key] is not None:
                with self.at(key, d):
                    out[(fields or {}).get(key, key)] = conv(d[key])
        return out

    # -- scalars ----------------------------------------------------------
    def string(self, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise self.fail(f"expected a string, got {kind(v)}")
        return str(v)

    def name(self, v: Any) -> str:
        s = self.string(v)
        if not NAME_RE.match(s):
            raise self.fail(f"invalid name '{s}': use lowercase letters, digits, '-' or '_'")
        return s

    def integer(self, lo: int, hi: int) -> Callable[[Any], int]:
        def conv(v: Any) -> int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(f"expected a whole number, got {kind(v)}")
            if not lo <= v <= hi:
                raise self.fail(f"{v} is out of range {lo}..{hi}")
            return int(v)

        return conv

    def number(self, lo: float, hi: float) -> Callable[[Any], float]:
        def conv(v: Any) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise self.fail(f"expected a number, got {kind(v)}")
            if not lo <= float(v) <= hi:
                raise self.fail(f"{v} is out of range {lo}..{hi}")
            return float(v)

        return conv

    def boolean(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise self.fail(f"expected true or false, got {kind(v)}")
        return v

    def one_of(self, choices: Mapping[str, T], what: str) -> Callable[[Any], T]:
        """A word from a fixed set (an enum's values), with the choices in the message."""

        def conv(v: Any) -> T:
            s = self.string(v)
            if s not in choices:
                raise self.fail(f"{what} must be one of {', '.join(choices)}, got '{s}'")
            return choices[s]

        return conv

    def list_of(self, v: Any, item: Callable[[Any], T]) -> list[T]:
        if not isinstance(v, list):
            raise self.fail(f"expected a list, got {kind(v)}")
        out = []
        for i, x in enumerate(v):
            with self.at(i):
                out.append(item(x))
        return out

    def str_list(self, item: Callable[[Any], str]) -> Callable[[Any], tuple[str, ...]]:
        return lambda v: tuple(self.list_of(v, item))

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
            hint = closest(s, _zones())
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

    # -- secrets ----------------------------------------------------------
    def secret(self, v: Any) -> SecretValue:
        """{env: VAR, file: PATH}: the variable first, then the file. One that gives nothing
        is noted (see `missing_secrets`), not failed: `check` validates a deployment file
        on a machine without its secrets, and `run` refuses to start without them."""
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
            if os.environ.get(env):
                return SecretValue(os.environ[env], f"env:{env}")
            sources.append(f"env {env} gives nothing (unset or empty)")
        path = ""
        if file:
            p = Path(file)
            p = Path(os.path.normpath(p if p.is_absolute() else (self.base_dir / p)))
            path = str(p)
            try:
                value = p.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                sources.append(f"file {p} gives nothing (no such file)")
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                sources.append(f"file {p} gives nothing ({why})")
            else:
                if value:
                    return SecretValue(value, f"file:{p}")
                sources.append(f"file {p} gives nothing (empty)")
        uses = self._missing.setdefault((env, path), _SecretUses(tuple(sources)))
        uses.uses.append((self.path, self.line))
        return SecretValue("", "unresolved")

    def missing_secrets(self) -> tuple[MissingSecret, ...]:
        return tuple(
            MissingSecret(m.sources, tuple(p for p, _ in m.uses), self.filename, m.uses[0][1])
            for m in self._missing.values()
        )


def missing_secret_problem(m: MissingSecret) -> Problem:
    """One problem per secret, at its first use, naming the other keys that share it."""
    also = f" (also used by {', '.join(m.uses[1:])})" if len(m.uses) > 1 else ""
    return Problem(m.file, m.line, m.uses[0], "secret not found: " + "; ".join(m.sources) + also)


def kind(v: Any) -> str:
    """How a YAML value reads to a person: 'a mapping', 'int 5', 'nothing'."""
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


def closest(word: str, choices: set[str] | frozenset[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return found[0] if found else None
