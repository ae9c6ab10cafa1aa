"""Frozen typed IVR and self-service configuration: menus, lookups, the lookup backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ccbridge.config.model import SecretValue

DEFAULT_PROMPTS_PATH = "/var/lib/asterisk/sounds/ccbridge"


class DestKind(StrEnum):
    """Where a menu option, a timeout or a lookup sends the caller."""

    MENU = "menu"  # a sub-menu (target: its name)
    SERVICE = "service"  # route to a service queue (target: the service)
    LOOKUP = "lookup"  # self-service lookup (target: its name)
    OPERATOR = "operator"  # route to the service chosen so far (the number's by default)
    VOICEMAIL = "voicemail"
    CALLBACK = "callback"
    REPEAT = "repeat"  # play the current menu again
    HANGUP = "hangup"


# Destinations that are a bare word in YAML: `"0": operator`.
ACTIONS = frozenset(
    {DestKind.OPERATOR, DestKind.VOICEMAIL, DestKind.CALLBACK, DestKind.REPEAT, DestKind.HANGUP}
)


@dataclass(frozen=True, slots=True)
class Destination:
    kind: DestKind
    target: str | None = None
    language: str | None = None  # set CHANNEL(language) and CCB_IVR_LANGUAGE first


OPERATOR = Destination(DestKind.OPERATOR)


@dataclass(frozen=True, slots=True)
class Menu:
    """One DTMF menu: prompts, single-key options, and what happens on bad or no input."""

    name: str
    prompts: tuple[str, ...]
    options: tuple[tuple[str, Destination], ...]
    greeting: tuple[str, ...] = ()  # played once, before the first prompt
    timeout: int = 5  # seconds to wait for a key after the prompt
    retries: int = 2  # replays after an invalid key or a timeout, then `final`
    invalid_prompts: tuple[str, ...] = ("please-try-again",)
    timeout_prompts: tuple[str, ...] = ()
    final: Destination = OPERATOR


@dataclass(frozen=True, slots=True)
class Lookup:
    """Self-service: collect digits, ask the bridge, read the answer back."""

    name: str
    prompts: tuple[str, ...]  # asks for the digits
    answers: tuple[tuple[str, tuple[str, ...]], ...]  # backend answer -> prompts to play
    default_prompts: tuple[str, ...] = ()  # for an answer not listed
    max_digits: int = 10
    min_digits: int = 1
    timeout: int = 6  # seconds to wait for the digits
    attempts: int = 2  # Read() attempts when nothing was entered
    say_digits: bool = True  # read back the backend's `say` field with SayDigits
    then: Destination = OPERATOR  # after the answer was read back
    failure_prompts: tuple[str, ...] = ("sorry", "one-moment-please")
    on_failure: Destination = OPERATOR  # backend down or slow: offer an agent


@dataclass(frozen=True, slots=True)
class IvrSettings:
    menus: tuple[Menu, ...] = ()
    lookups: tuple[Lookup, ...] = ()
    prompts_dir: Path | None = None  # custom recordings PROMPTS/<lang>/<name>.<ext>; None: repo's
    prompts_path: str = DEFAULT_PROMPTS_PATH  # the same folder as Asterisk sees it
    sounds_dir: Path | None = None  # Asterisk's sounds/ for `ccbridge check`; None: the lab's

    def menu(self, name: str) -> Menu | None:
        return next((m for m in self.menus if m.name == name), None)

    def lookup(self, name: str) -> Lookup | None:
        return next((x for x in self.lookups if x.name == name), None)


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failures: int = 5  # consecutive failures that open the breaker
    reset_after: float = 30.0  # seconds open before one trial request


@dataclass(frozen=True, slots=True)
class SelfServiceSettings:
    """The HTTP backend the `lookup` FastAGI handler asks."""

    url: str
    timeout: float = 1.0  # per attempt
    retries: int = 1
    retry_backoff: float = 0.1
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    token: SecretValue | None = None  # sent as a bearer token when set

    @property
    def budget(self) -> float:
        """The longest a lookup can take: every attempt timing out, plus the pauses."""
        return self.timeout * (self.retries + 1) + self.retry_backoff * self.retries
