"""Erlang C against the published test vector, hand-worked cases, an independent oracle
for hundreds of agents, properties, and bad input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccbridge.staffing.erlang import (
    Performance,
    Requirement,
    Unreachable,
    Unstable,
    asa,
    erlang_b,
    occupancy,
    performance,
    probability_of_waiting,
    required_agents,
    rostered_agents,
    service_level,
    traffic_intensity,
)


def test_published_vector_100_calls_in_30_minutes_aht_180_target_80_20() -> None:
    a = traffic_intensity(100, 1800, 180)
    assert a == 10.0  # 100 x 180 / 1800
    req = required_agents(a, 180, 20, 0.80)
    assert isinstance(req, Requirement)
    assert req.agents == 14
    assert req.bound_by == "service_level"
    p = req.performance
    assert round(p.p_wait, 4) == 0.1741
    assert round(p.service_level, 3) == 0.888
    assert round(p.asa_s, 1) == 7.8
    assert round(p.occupancy, 3) == 0.714
    assert rostered_agents(14, 0.30) == 20  # 14 / 0.7 = 20 exactly, not 21
    # one agent fewer misses the target: 13 agents give 79.6 %
    sl13 = service_level(13, a, 180, 20)
    assert isinstance(sl13, float) and 0.795 < sl13 < 0.80


def test_a_case_worked_by_hand_two_agents_one_erlang() -> None:
    # B1 = 1*1/(1+1) = 1/2; B2 = (1/2)/(2 + 1/2) = 1/5
    assert erlang_b(2, 1.0) == pytest.approx(0.2, abs=1e-15)
    # C = N*B / (N - A(1-B)) = 0.4 / (2 - 0.8) = 1/3
    assert probability_of_waiting(2, 1.0) == pytest.approx(1 / 3, abs=1e-15)
    # ASA = C * AHT / (N - A) = (1/3) * 300 / 1 = 100 s
    assert asa(2, 1.0, 300) == pytest.approx(100.0, abs=1e-12)
    # SL(t) = 1 - C exp(-(N - A) t / AHT); t = AHT ln 2 halves the tail: 1 - 1/6
    assert service_level(2, 1.0, 300, 300 * math.log(2)) == pytest.approx(5 / 6, abs=1e-12)
    assert service_level(2, 1.0, 300, 0) == pytest.approx(2 / 3, abs=1e-12)
    assert occupancy(2, 1.0) == 0.5
    assert erlang_b(0, 3.0) == 1.0  # no servers: every call blocked


def _erlang_c_oracle(n: int, a: float) -> float:
    """The textbook sum form, in logs: A^k/k! overflows a float past about 170 agents."""
    log_terms = [k * math.log(a) - math.lgamma(k + 1) for k in range(n)]
    log_last = n * math.log(a) - math.lgamma(n + 1) + math.log(n / (n - a))
    top = max([*log_terms, log_last])
    total = sum(math.exp(x - top) for x in log_terms) + math.exp(log_last - top)
    return math.exp(log_last - top) / total


@pytest.mark.parametrize(("n", "a"), [(14, 10.0), (120, 100.0), (510, 500.0), (900, 880.5)])
def test_erlang_c_matches_an_independent_oracle_for_hundreds_of_agents(n: int, a: float) -> None:
    c = probability_of_waiting(n, a)
    assert isinstance(c, float)
    assert c == pytest.approx(_erlang_c_oracle(n, a), rel=1e-9)


def test_large_centre_requirement_is_finite_and_minimal() -> None:
    a = traffic_intensity(5000, 1800, 180)  # 500 Erlangs
    req = required_agents(a, 180, 20, 0.8)
    assert isinstance(req, Requirement)
    assert req.agents == 510
    below = service_level(509, a, 180, 20)
    assert isinstance(below, float) and below < 0.8 <= req.performance.service_level


def test_max_occupancy_binds_at_low_volume() -> None:
    # 10 Erlangs: 14 agents meet 80/20 at 71 % occupancy; capped at 60 % it takes 17
    req = required_agents(10.0, 180, 20, 0.8, max_occupancy=0.6)
    assert isinstance(req, Requirement)
    assert (req.agents, req.bound_by) == (17, "max_occupancy")
    assert req.performance.occupancy == pytest.approx(10 / 17)
    assert 10 / 16 > 0.6


def test_no_traffic_needs_no_agents() -> None:
    req = required_agents(0.0, 180, 20, 0.8)
    assert isinstance(req, Requirement)
    assert (req.agents, req.bound_by) == (0, "no_traffic")
    assert probability_of_waiting(0, 0.0) == 0.0
    assert performance(3, 0.0, 180, 20) == Performance(3, 0.0, 0.0, 1.0, 20.0, 0.0, 0.0)


def test_at_or_under_the_intensity_the_queue_is_unstable_and_says_so() -> None:
    for n in (0, 5, 10):
        for result in (
            probability_of_waiting(n, 10.0),
            service_level(n, 10.0, 180, 20),
            asa(n, 10.0, 180),
            occupancy(n, 10.0),
            performance(n, 10.0, 180, 20),
        ):
            assert result == Unstable(n, 10.0)
    assert "grows without bound" in Unstable(10, 10.0).message


def test_a_target_the_agent_cap_cannot_meet_says_so() -> None:
    res = required_agents(10.0, 180, 20, 0.8, max_agents=12)
    assert isinstance(res, Unreachable)
    assert res.max_agents == 12
    assert res.best_service_level == pytest.approx(0.6401580, abs=1e-6)  # 12 agents
    assert "not reachable with up to 12 agents" in res.message
    # a cap under the intensity: nothing is even stable
    res = required_agents(10.0, 180, 20, 0.8, max_agents=9)
    assert isinstance(res, Unreachable) and res.best_service_level == 0.0


@given(
    a=st.floats(min_value=0.01, max_value=300.0, allow_nan=False),
    extra=st.integers(min_value=1, max_value=60),
    aht=st.floats(min_value=5.0, max_value=1200.0),
    t=st.floats(min_value=0.0, max_value=120.0),
)
def test_more_agents_never_lower_service_level_nor_raise_asa(
    a: float, extra: int, aht: float, t: float
) -> None:
    n = math.floor(a) + extra
    p1 = performance(n, a, aht, t)
    p2 = performance(n + 1, a, aht, t)
    assert isinstance(p1, Performance) and isinstance(p2, Performance)
    assert p2.service_level >= p1.service_level - 1e-12
    assert p2.asa_s <= p1.asa_s + 1e-9
    assert p2.p_wait <= p1.p_wait + 1e-12
    assert 0.0 <= p1.p_wait <= 1.0 and 0.0 <= p1.service_level <= 1.0


@given(
    a=st.floats(min_value=0.0, max_value=300.0, allow_nan=False),
    n=st.integers(min_value=0, max_value=300),
)
def test_unstable_exactly_when_agents_do_not_exceed_the_intensity(a: float, n: int) -> None:
    result = performance(n, a, 180, 20)
    if a > 0 and n <= a:
        assert result == Unstable(n, a)
    else:
        assert isinstance(result, Performance)


@given(
    a=st.floats(min_value=0.01, max_value=200.0),
    target=st.floats(min_value=0.05, max_value=0.99),
    t=st.floats(min_value=0.0, max_value=60.0),
    max_occ=st.floats(min_value=0.3, max_value=1.0),
)
def test_required_agents_is_the_fewest_that_meet_both_constraints(
    a: float, target: float, t: float, max_occ: float
) -> None:
    req = required_agents(a, 180, t, target, max_occupancy=max_occ)
    assert isinstance(req, Requirement)
    p = req.performance
    assert p.service_level >= target and p.occupancy <= max_occ
    fewer = performance(req.agents - 1, a, 180, t)
    assert isinstance(fewer, Unstable) or (
        fewer.service_level < target or fewer.occupancy > max_occ
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: traffic_intensity(-1, 1800, 180), "calls must not be negative"),
        (lambda: traffic_intensity(10, 0, 180), "interval_s must be greater than zero"),
        (lambda: traffic_intensity(10, 1800, -5), "aht_s must be greater than zero"),
        (lambda: traffic_intensity(float("nan"), 1800, 180), "calls must be a finite number"),
        (lambda: traffic_intensity(10, float("inf"), 180), "interval_s must be a finite"),
        (lambda: traffic_intensity("10", 1800, 180), "calls must be a number"),  # type: ignore[arg-type]
        (lambda: erlang_b(-1, 1.0), "agents must not be negative"),
        (lambda: erlang_b(2.5, 1.0), "agents must be a whole number"),  # type: ignore[arg-type]
        (lambda: erlang_b(True, 1.0), "agents must be a whole number"),
        (lambda: probability_of_waiting(3, float("nan")), "intensity must be a finite"),
        (lambda: service_level(3, 1.0, 180, -1), "threshold_s must not be negative"),
        (lambda: required_agents(1.0, 180, 20, 0.0), "target service level must be in (0, 1]"),
        (lambda: required_agents(1.0, 180, 20, 1.5), "target service level must be in (0, 1]"),
        (lambda: required_agents(1.0, 180, 20, 0.8, max_occupancy=0), "max_occupancy must be"),
        (lambda: rostered_agents(14, 1.0), "shrinkage must be in [0, 1)"),
        (lambda: rostered_agents(14, -0.1), "shrinkage must be in [0, 1)"),
    ],
)
def test_bad_input_is_a_clear_value_error(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=re_escape(message)):
        call()


def re_escape(s: str) -> str:
    import re

    return re.escape(s)


def test_rostered_rounds_up_a_fraction_of_an_agent() -> None:
    assert rostered_agents(14, 0.0) == 14
    assert rostered_agents(15, 0.3) == 22  # 21.43 -> 22
    assert rostered_agents(7, 0.3) == 10  # 7 / 0.7 = 10 exactly
    assert rostered_agents(0, 0.5) == 0


@given(
    a=st.floats(min_value=0.01, max_value=200.0),
    cap=st.integers(min_value=0, max_value=260),
    target=st.floats(min_value=0.5, max_value=0.99),
)
def test_unreachable_exactly_when_the_cap_is_under_the_requirement(
    a: float, cap: int, target: float
) -> None:
    free = required_agents(a, 180, 20, target)
    capped = required_agents(a, 180, 20, target, max_agents=cap)
    assert isinstance(free, Requirement)
    if cap >= free.agents:
        assert capped == free
    else:
        assert isinstance(capped, Unreachable)
        assert capped.best_service_level < target
