"""What a load test does: rate, ramp, duration, caller groups (DID x country, IVR choices)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ccbridge.config.model import Config
from ccbridge.loadtest.timeline import Fault

# A plausible mobile number per country; other countries get CALLING_CODE + 7000000001.
SAMPLE_CALLERS = {
    "IN": "+919812345678",
    "BD": "+8801712345678",
    "PH": "+639171234567",
    "GB": "+447700900123",
    "PK": "+923001234567",
}
CARRIER_MODES = ("answer", "503", "486", "silent")
MAX_SIPP_DEFAULT = 24


class PlanError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CallerGroup:
    """Calls one SIPp process places: one DID, one caller number, optionally DTMF digits."""

    did: str
    caller: str
    weight: float
    site: str  # the site the carrier delivers the DID to
    digits: str = ""  # keyed into the IVR, one RFC 2833 event per digit
    language: str | None = None  # what those digits choose (for the prediction)
    service: str | None = None

    @property
    def label(self) -> str:
        ivr = f" dtmf {self.digits}" if self.digits else ""
        return f"{self.did} from {self.caller}{ivr}"


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """A whole run; every SIPp process derived from it is bounded in calls and time."""

    rate: float  # calls/s, all groups together, after the ramp
    duration: float  # seconds of calling, ramp included
    groups: tuple[CallerGroup, ...]
    ramp: float = 0.0  # seconds from 0 to ``rate``
    concurrency: int = 500  # open calls at most, all groups together
    talk_ms: int = 1000  # how long callers stay on after the answer
    faults: tuple[Fault, ...] = ()
    carriers: tuple[tuple[str, str], ...] = ()  # (trunk name, mode)
    at: datetime | None = None  # the bridge's (and the prediction's) clock at the start
    out_dir: Path = field(default_factory=lambda: Path("loadtest-report"))
    max_sipp: int = MAX_SIPP_DEFAULT

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration <= 0:
            raise PlanError("rate and duration must be positive")
        if not 0 <= self.ramp <= self.duration:
            raise PlanError("the ramp must fit in the duration")
        if not self.groups:
            raise PlanError("no caller groups: give --did or --ivr")
        if len(self.groups) + len(self.carriers) > self.max_sipp:
            raise PlanError(
                f"{len(self.groups)} caller groups + {len(self.carriers)} carriers exceed "
                f"--max-sipp {self.max_sipp}: fewer DIDs or countries"
            )

    def group_rate(self, group: CallerGroup) -> float:
        total = sum(g.weight for g in self.groups)
        return self.rate * group.weight / total

    def group_calls(self, group: CallerGroup) -> int:
        """Calls the group places: its rate over the run, the ramp counted as half."""
        r = self.group_rate(group)
        return max(1, math.floor(r * (self.duration - self.ramp / 2)))

    def group_limit(self, group: CallerGroup) -> int:
        return max(1, math.ceil(self.concurrency * self.group_rate(group) / self.rate))

    @property
    def expected_calls(self) -> int:
        return sum(self.group_calls(g) for g in self.groups)


def parse_weights(text: str) -> dict[str, float]:
    """'IN=3,BD=1,GB' -> {'IN': 3.0, 'BD': 1.0, 'GB': 1.0}."""
    out: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, w = item.partition("=")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise PlanError(f"weight of {key!r} is not a number: {w!r}") from None
        if weight <= 0:
            raise PlanError(f"weight of {key!r} must be positive")
        out[key.strip()] = weight
    return out


def caller_for(config: Config, country: str) -> str:
    if country in SAMPLE_CALLERS:
        return SAMPLE_CALLERS[country]
    c = config.country(country)
    if c is None:
        raise PlanError(f"unknown country {country!r} in the caller mix")
    return f"+{c.calling_code}7000000001"


def plain_groups(config: Config, dids: list[str], countries: dict[str, float]) -> list[CallerGroup]:
    """Every DID crossed with every country of the caller mix (DIDs weigh the same)."""
    groups = []
    for did in dids:
        number = config.number(did)
        if number is None:
            raise PlanError(f"{did} is not a number of this deployment")
        for country, w in countries.items():
            groups.append(CallerGroup(did, caller_for(config, country), w, number.site))
    return groups


def parse_ivr(config: Config, spec: str, country: str = "GB") -> CallerGroup:
    """'+918000000003:12:bn:orders[=WEIGHT]': dial the DID, key 1 then 2, expect bn orders."""
    body, _, w = spec.partition("=")
    parts = body.split(":")
    if len(parts) != 4:
        raise PlanError(f"--ivr {spec!r}: expected DID:DIGITS:LANGUAGE:SERVICE[=WEIGHT]")
    did, digits, language, service = parts
    number = config.number(did)
    if number is None:
        raise PlanError(f"--ivr {spec!r}: {did} is not a number of this deployment")
    if not digits or any(d not in "0123456789*#" for d in digits):
        raise PlanError(f"--ivr {spec!r}: digits must be 0-9, * or #")
    weight = float(w) if w else 1.0
    return CallerGroup(
        did, caller_for(config, country), weight, number.site, digits, language, service
    )


def default_dids(config: Config) -> list[str]:
    """Numbers routed straight away (no IVR menu first)."""
    return [n.did for n in config.numbers if n.menu is None]
