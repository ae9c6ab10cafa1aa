"""Faults on a timeline: parse `AT:KIND[:TARGET][:FOR]` specs, order them, find the active one."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    KILL_SITE = "kill-site"  # SIGKILL the site's Asterisk; started again after FOR
    HANG_SITE = "hang-site"  # SIGSTOP it (a hung PBX); SIGCONT after FOR
    KILL_CARRIER = "kill-carrier"  # stop a carrier/trunk far end (SIPp UAS); back after FOR
    RESTART_BRIDGE = "restart-bridge"  # SIGKILL the bridge and start it again at once
    STOP_BRIDGE = "stop-bridge"  # SIGKILL the bridge; start it again after FOR (an outage)
    DRAIN_SITE = "drain"  # POST /api/v1/sites/SITE/drain; undrain after FOR


# Faults that take a site's PBX away (as opposed to draining it or a carrier).
SITE_DOWN = frozenset({FaultKind.KILL_SITE, FaultKind.HANG_SITE})
NEEDS_TARGET = frozenset(
    {FaultKind.KILL_SITE, FaultKind.HANG_SITE, FaultKind.KILL_CARRIER, FaultKind.DRAIN_SITE}
)
# How long a fault lasts when the spec does not say: long enough for the bridge to notice
# (AMI ping interval + timeout, qualify) and for calls placed meanwhile to show the effect.
DEFAULT_FOR = {
    FaultKind.KILL_SITE: 20.0,
    FaultKind.HANG_SITE: 10.0,
    FaultKind.KILL_CARRIER: 20.0,
    FaultKind.RESTART_BRIDGE: 0.0,
    FaultKind.STOP_BRIDGE: 120.0,
    FaultKind.DRAIN_SITE: 20.0,
}

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


class TimelineError(ValueError):
    pass


def parse_duration(text: str) -> float:
    """Seconds from '90', '90s', '2m', '1m30s', '1h' or '0.5s'."""
    m = _DURATION.match(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise TimelineError(f"not a duration: {text!r} (e.g. 90s, 2m, 1m30s)")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


@dataclass(frozen=True, slots=True)
class Fault:
    """One planned fault: at ``at`` seconds into the run, for ``duration`` seconds."""

    at: float
    kind: FaultKind
    target: str = ""
    duration: float = 0.0

    @property
    def ends(self) -> float:
        return self.at + self.duration

    @property
    def label(self) -> str:
        return f"{self.kind.value}{':' + self.target if self.target else ''}"


def parse_fault(spec: str) -> Fault:
    """A fault from '30s:kill-site:dhaka', '40s:hang-site:dhaka:10s' or '1m:restart-bridge'."""
    parts = spec.split(":")
    if len(parts) < 2:
        raise TimelineError(f"fault {spec!r}: expected AT:KIND[:TARGET][:FOR]")
    at = parse_duration(parts[0])
    try:
        kind = FaultKind(parts[1])
    except ValueError:
        kinds = ", ".join(k.value for k in FaultKind)
        raise TimelineError(f"fault {spec!r}: unknown kind {parts[1]!r} ({kinds})") from None
    rest = parts[2:]
    target = ""
    if kind in NEEDS_TARGET:
        if not rest or not rest[0]:
            raise TimelineError(f"fault {spec!r}: {kind.value} needs a target")
        target, rest = rest[0], rest[1:]
    if len(rest) > 1:
        raise TimelineError(f"fault {spec!r}: too many fields")
    duration = parse_duration(rest[0]) if rest else DEFAULT_FOR[kind]
    return Fault(at, kind, target, duration)


def timeline(faults: Iterable[Fault]) -> tuple[Fault, ...]:
    """Faults in the order they fire; rejects two faults on one target that overlap."""
    ordered = tuple(sorted(faults, key=lambda f: (f.at, f.kind.value, f.target)))
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            same = a.target == b.target and (a.target or a.kind == b.kind)
            if same and b.at < a.ends:
                raise TimelineError(f"faults overlap on {a.target or a.kind.value}: {a} / {b}")
    return ordered


def periodic(
    kinds: Sequence[tuple[FaultKind, str]], every: float, total: float, first: float | None = None
) -> tuple[Fault, ...]:
    """A fault every ``every`` seconds, cycling through ``kinds``, all ending before ``total``."""
    if every <= 0 or not kinds:
        return ()
    out = []
    t = every if first is None else first
    i = 0
    while True:
        kind, target = kinds[i % len(kinds)]
        fault = Fault(t, kind, target, DEFAULT_FOR[kind])
        if fault.ends + 5 > total:
            break
        out.append(fault)
        t += every
        i += 1
    return timeline(out)


def active_at(faults: Sequence[Fault], t: float, grace: float = 0.0) -> Fault | None:
    """The most recent fault whose window [at, ends + grace] contains ``t``."""
    found = None
    for f in faults:
        if f.at <= t <= f.ends + grace:
            found = f
    return found
