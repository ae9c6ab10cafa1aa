"""Erlang C: waiting probability, service level, ASA and the agents a target needs (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "Performance",
    "Requirement",
    "Unreachable",
    "Unstable",
    "asa",
    "erlang_b",
    "occupancy",
    "performance",
    "probability_of_waiting",
    "required_agents",
    "rostered_agents",
    "service_level",
    "traffic_intensity",
]

# Formulas (management-plane.md, "Erlang C"): A = calls x AHT / interval; Erlang B by the
# recursion B0 = 1, Bk = A*Bk-1 / (k + A*Bk-1), which stays in [0, 1] at every step and so
# never overflows (the textbook form with A^N / N! does past about 170 agents);
# C = N*B / (N - A*(1 - B)) for N > A; SL(t) = 1 - C*exp(-(N - A)*t/AHT);
# ASA = C*AHT/(N - A); occupancy = A/N; rostered = ceil(N / (1 - shrinkage)).

DEFAULT_MAX_AGENTS = 10_000
# Rostered = N / (1 - shrinkage) is often a whole number that binary floats miss by one
# ulp (14 / 0.7 = 20.000000000000004): round it this far before the ceiling.
_CEIL_DIGITS = 9


@dataclass(frozen=True, slots=True)
class Unstable:
    """N <= A: calls arrive faster than the agents can answer them; the queue grows
    without bound, so no waiting probability, service level or ASA exists."""

    agents: int
    intensity: float

    @property
    def message(self) -> str:
        return (
            f"unstable: {self.agents} agents for {self.intensity:.2f} Erlangs of traffic "
            "(the queue grows without bound; more agents than Erlangs are needed)"
        )


@dataclass(frozen=True, slots=True)
class Performance:
    """What N agents give for A Erlangs of traffic."""

    agents: int
    intensity: float
    p_wait: float  # Erlang C: share of calls that wait at all
    service_level: float  # share answered within threshold_s
    threshold_s: float
    asa_s: float  # average speed of answer over all calls
    occupancy: float  # A / N


@dataclass(frozen=True, slots=True)
class Requirement:
    """The fewest agents that meet the target, and what they give."""

    agents: int
    performance: Performance
    # which constraint decided: 'service_level' or 'max_occupancy' (or 'no_traffic')
    bound_by: str


@dataclass(frozen=True, slots=True)
class Unreachable:
    """No number of agents up to max_agents meets the target."""

    max_agents: int
    intensity: float
    target: float
    best_service_level: float  # what max_agents would give (0 when even they are unstable)

    @property
    def message(self) -> str:
        return (
            f"target service level {self.target:.1%} not reachable with up to "
            f"{self.max_agents} agents for {self.intensity:.2f} Erlangs "
            f"(best: {self.best_service_level:.1%})"
        )


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    v = _finite(name, value)
    if v < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return v


def _positive(name: str, value: float) -> float:
    v = _finite(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value!r}")
    return v


def _agents(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"agents must be a whole number, got {value!r}")
    if value < 0:
        raise ValueError(f"agents must not be negative, got {value!r}")
    return value


def _share(name: str, value: float, *, zero_ok: bool, one_ok: bool) -> float:
    v = _finite(name, value)
    low_ok = v >= 0 if zero_ok else v > 0
    high_ok = v <= 1 if one_ok else v < 1
    if not (low_ok and high_ok):
        lo = "[0" if zero_ok else "(0"
        hi = "1]" if one_ok else "1)"
        raise ValueError(f"{name} must be in {lo}, {hi}, got {value!r}")
    return v


def traffic_intensity(calls: float, interval_s: float, aht_s: float) -> float:
    """Offered load in Erlangs: ``calls`` arriving over ``interval_s`` seconds, each
    holding an agent ``aht_s`` seconds on average."""
    c = _non_negative("calls", calls)
    i = _positive("interval_s", interval_s)
    h = _positive("aht_s", aht_s)
    return c * h / i


def erlang_b(agents: int, intensity: float) -> float:
    """Blocking probability of ``agents`` servers offered ``intensity`` Erlangs (no queue)."""
    n = _agents(agents)
    a = _non_negative("intensity", intensity)
    b = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
    return b


def _c_from_b(n: int, a: float, b: float) -> float:
    return n * b / (n - a * (1.0 - b))


def probability_of_waiting(agents: int, intensity: float) -> float | Unstable:
    """Erlang C: the share of calls that find every agent busy and wait."""
    n = _agents(agents)
    a = _non_negative("intensity", intensity)
    if a == 0:
        return 0.0  # no traffic: nobody waits, whatever the agents
    if n <= a:
        return Unstable(n, a)
    return _c_from_b(n, a, erlang_b(n, a))


def service_level(
    agents: int, intensity: float, aht_s: float, threshold_s: float
) -> float | Unstable:
    """The share of calls answered within ``threshold_s`` seconds."""
    return _perf(agents, intensity, aht_s, threshold_s, "service_level")


def asa(agents: int, intensity: float, aht_s: float) -> float | Unstable:
    """Average speed of answer in seconds, over all calls (those that do not wait too)."""
    return _perf(agents, intensity, aht_s, 0.0, "asa_s")


def occupancy(agents: int, intensity: float) -> float | Unstable:
    """The share of their time the agents spend on calls: A / N."""
    n = _agents(agents)
    a = _non_negative("intensity", intensity)
    if a == 0:
        return 0.0
    if n <= a:
        return Unstable(n, a)
    return a / n


def _perf(n: int, a: float, aht_s: float, t: float, field: str) -> float | Unstable:
    p = performance(n, a, aht_s, t)
    return p if isinstance(p, Unstable) else float(getattr(p, field))


def _from_c(n: int, a: float, c: float, aht: float, t: float) -> Performance:
    if a == 0:
        return Performance(n, 0.0, 0.0, 1.0, t, 0.0, 0.0)
    sl = 1.0 - c * math.exp(-(n - a) * t / aht)
    return Performance(n, a, c, sl, t, c * aht / (n - a), a / n)


def performance(
    agents: int, intensity: float, aht_s: float, threshold_s: float
) -> Performance | Unstable:
    """Every figure for ``agents`` agents at ``intensity`` Erlangs."""
    n = _agents(agents)
    a = _non_negative("intensity", intensity)
    aht = _positive("aht_s", aht_s)
    t = _non_negative("threshold_s", threshold_s)
    c = probability_of_waiting(n, a)
    if isinstance(c, Unstable):
        return c
    return _from_c(n, a, c, aht, t)


def required_agents(
    intensity: float,
    aht_s: float,
    threshold_s: float,
    target: float,
    *,
    max_occupancy: float = 1.0,
    max_agents: int = DEFAULT_MAX_AGENTS,
) -> Requirement | Unreachable:
    """The fewest agents whose service level at ``threshold_s`` reaches ``target`` (a
    share, 0.8 for 80/20) and whose occupancy stays at or under ``max_occupancy``."""
    a = _non_negative("intensity", intensity)
    aht = _positive("aht_s", aht_s)
    t = _non_negative("threshold_s", threshold_s)
    goal = _share("target service level", target, zero_ok=False, one_ok=True)
    max_occ = _share("max_occupancy", max_occupancy, zero_ok=False, one_ok=True)
    cap = _agents(max_agents)
    if a == 0:
        return Requirement(0, Performance(0, 0.0, 0.0, 1.0, t, 0.0, 0.0), "no_traffic")
    # One Erlang B step per agent: the search costs O(N) in all, not O(N^2).
    b = 1.0
    best = 0.0
    for n in range(1, cap + 1):
        b = a * b / (n + a * b)
        if n <= a:
            continue
        perf = _from_c(n, a, _c_from_b(n, a, b), aht, t)
        best = perf.service_level
        sl_ok = perf.service_level >= goal
        occ_ok = perf.occupancy <= max_occ
        if sl_ok and occ_ok:
            # Which constraint bound: had the occupancy cap been off, would fewer do?
            prev_sl = _sl_at(n - 1, a, aht, t)
            bound = "max_occupancy" if prev_sl is not None and prev_sl >= goal else "service_level"
            return Requirement(n, perf, bound)
    return Unreachable(cap, a, goal, best)


def _sl_at(n: int, a: float, aht: float, t: float) -> float | None:
    if n <= a:
        return None
    p = performance(n, a, aht, t)
    return None if isinstance(p, Unstable) else p.service_level


def rostered_agents(agents: int, shrinkage: float) -> int:
    """Agents to put on the roster so that ``agents`` are on the phones when ``shrinkage``
    (breaks, training, absence; a share in [0, 1)) of rostered time is lost."""
    n = _agents(agents)
    s = _share("shrinkage", shrinkage, zero_ok=True, one_ok=False)
    return math.ceil(round(n / (1.0 - s), _CEIL_DIGITS))
