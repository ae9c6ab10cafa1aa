"""Load test timeline: durations, fault specs, ordering, periodic faults, the active fault."""

from __future__ import annotations

import pytest

from ccbridge.loadtest.timeline import (
    DEFAULT_FOR,
    Fault,
    FaultKind,
    TimelineError,
    active_at,
    parse_duration,
    parse_fault,
    periodic,
    timeline,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("2m", 120.0), ("1m30s", 90.0), ("1h", 3600.0), ("0.5s", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "-3s", "1m1h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(TimelineError):
        parse_duration(text)


def test_fault_specs() -> None:
    assert parse_fault("30s:kill-site:dhaka") == Fault(
        30.0, FaultKind.KILL_SITE, "dhaka", DEFAULT_FOR[FaultKind.KILL_SITE]
    )
    assert parse_fault("40s:hang-site:dhaka:10s") == Fault(40.0, FaultKind.HANG_SITE, "dhaka", 10)
    assert parse_fault("1m:restart-bridge") == Fault(60.0, FaultKind.RESTART_BRIDGE, "", 0.0)
    assert parse_fault("2m:drain:manila:20s").ends == 140.0


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("30s", "AT:KIND"),
        ("30s:explode", "unknown kind"),
        ("30s:kill-site", "needs a target"),
        ("30s:drain:dhaka:5s:extra", "too many"),
    ],
)
def test_bad_fault_specs_say_why(spec: str, says: str) -> None:
    with pytest.raises(TimelineError, match=says):
        parse_fault(spec)


def test_timeline_orders_and_refuses_overlaps_on_one_target() -> None:
    a, b = parse_fault("50s:drain:manila:5s"), parse_fault("10s:kill-site:dhaka:20s")
    assert timeline([a, b]) == (b, a)
    with pytest.raises(TimelineError, match="overlap"):
        timeline([b, parse_fault("20s:hang-site:dhaka")])
    # different targets may overlap
    assert len(timeline([b, parse_fault("15s:hang-site:manila")])) == 2


def test_periodic_cycles_kinds_and_ends_before_the_run() -> None:
    kinds = [(FaultKind.RESTART_BRIDGE, ""), (FaultKind.KILL_SITE, "dhaka")]
    got = periodic(kinds, every=60, total=300)
    assert [f.kind for f in got] == [
        FaultKind.RESTART_BRIDGE,
        FaultKind.KILL_SITE,
        FaultKind.RESTART_BRIDGE,
        FaultKind.KILL_SITE,
    ]
    assert [f.at for f in got] == [60, 120, 180, 240]
    assert all(f.ends + 5 <= 300 for f in got)
    assert periodic(kinds, every=0, total=300) == ()


def test_active_fault_is_the_latest_covering_one() -> None:
    faults = timeline([parse_fault("10s:kill-site:dhaka:20s"), parse_fault("15s:drain:manila:5s")])
    assert active_at(faults, 5) is None
    assert active_at(faults, 12) == faults[0]
    assert active_at(faults, 17) == faults[1]
    assert active_at(faults, 31) is None
    assert active_at(faults, 31, grace=2) == faults[0]
