"""Failed calls judged over their life: placement from SIPp's files, then saveable or not."""

from __future__ import annotations

import pytest

from ccbridge.loadtest.faults import FaultRecord
from ccbridge.loadtest.placement import (
    BYE_GIVE_UP_S,
    INVITE_GIVE_UP_S,
    CallSpan,
    call_number,
    call_span,
    created_by,
)
from ccbridge.loadtest.report import classify
from ccbridge.loadtest.stats import FailedCall, StatRow, parse_error_log
from ccbridge.loadtest.timeline import Fault, parse_fault

# The 30-minute soak (BENCHMARKS.md §5): the run started at this epoch; dhaka was SIGKILLed
# 720.1 s in and answered AMI again at 740.3 s; g04 (+8809600000001 from an Indian caller,
# delivered to dhaka) logged one failure 755.5 s in, its call number 64 created between
# the stat rows of 723.9 s and 724.9 s.
START = 1795357778.902891
SOAK_ERRORS = (
    "The following events occurred:\n"
    "2026-11-22\t14:42:14.402891\t1795358534.402891: Aborting call on UDP retransmission "
    "timeout for Call-ID '64-25792@127.0.0.1'"
)
DHAKA_KILL = FaultRecord(parse_fault("720s:kill-site:dhaka:20s"), 720.12, 740.30).as_run()
RESTART = FaultRecord(parse_fault("480s:restart-bridge"), 480.49, 480.90).as_run()
TALK_S = 1.0


def rows(*created_at: tuple[float, int]) -> list[StatRow]:
    """-trace_stat rows: (seconds since START, calls created so far)."""
    return [StatRow(START + t, 0.9, n, n, 0, 0, 0.0) for t, n in created_at]


def failure(t: float, call_id: str, cause: str) -> FailedCall:
    return FailedCall(START + t, call_id, cause)


def test_faults_as_run_use_the_recorded_start_and_recovery() -> None:
    assert (DHAKA_KILL.at, DHAKA_KILL.ends) == (720.12, pytest.approx(740.30))
    planned = parse_fault("960s:hang-site:manila:10s")
    assert FaultRecord(planned).as_run() == planned  # never started: the plan
    assert FaultRecord(planned, started=960.2).as_run().ends == 970.0  # not recovered


def test_sipp_timers_and_call_numbers() -> None:
    assert INVITE_GIVE_UP_S == 31.5  # 0.5 + 1 + 2 + 4 + 8 + 16
    assert BYE_GIVE_UP_S == 23.5  # 0.5 + 1 + 2 + 4 + 4 * 4 (T2 caps the doubling)
    assert call_number("64-25792@127.0.0.1") == 64
    assert call_number("a84c0e@host") is None
    r = rows((723.93, 63), (724.94, 64), (725.9, 64))
    assert created_by(r, 64) == START + 724.94
    assert created_by(r, 65) is None


def test_soak30_call_placed_during_its_receiving_sites_kill_is_unsaveable() -> None:
    [fc] = parse_error_log(SOAK_ERRORS)
    span = call_span(fc, rows((723.93, 63), (724.94, 64)), START, TALK_S)
    assert span.failed == pytest.approx(755.5)
    assert span.placed == pytest.approx(724.94) and span.source == "stat"
    fault, saveable, why = classify(span, "dhaka", ["bangalore"], [RESTART, DHAKA_KILL])
    assert (fault, saveable) == (DHAKA_KILL, False)
    assert "receiving site dhaka" in why


def test_soak30_call_without_stat_rows_is_placed_by_its_cause() -> None:
    [fc] = parse_error_log(SOAK_ERRORS)
    span = call_span(fc, [], START, TALK_S)
    # the INVITE (31.5 s) or the BYE (23.5 s after a 1 s talk): no later than 731 s
    assert span.placed == pytest.approx(755.5 - 24.5) and span.source == "cause"
    assert classify(span, "dhaka", ["bangalore"], [DHAKA_KILL])[1] is False


def test_the_old_rule_would_have_counted_it_saveable() -> None:
    # judged by its failure time alone (placed = failed) the call misses the kill
    late = CallSpan(755.5, 755.5)
    assert classify(late, "dhaka", ["bangalore"], [DHAKA_KILL])[1] is True


def test_placed_just_after_the_receiving_site_came_back_is_saveable() -> None:
    fc = failure(772.5, "70-25792@127.0.0.1", "Aborting call on UDP retransmission timeout for")
    span = call_span(fc, rows((740.0, 69), (741.0, 70)), START, TALK_S)
    assert span.placed == pytest.approx(741.0)
    fault, saveable, why = classify(span, "dhaka", ["dhaka"], [DHAKA_KILL])
    assert saveable is True and fault == DHAKA_KILL  # named as the context only
    assert "should have saved" in why


def test_a_failure_during_a_bridge_restart_is_saveable() -> None:
    fc = failure(480.7, "9-1@127.0.0.1", "SIP/2.0 503 Service Unavailable")
    span = call_span(fc, rows((479.9, 8), (480.9, 9)), START, TALK_S)
    assert span.placed == pytest.approx(480.7) and span.source == "none"  # failed first
    fault, saveable, why = classify(span, "bangalore", ["bangalore"], [RESTART, DHAKA_KILL])
    assert (fault, saveable) == (RESTART, True) and "restart-bridge" in why


def test_a_failure_with_no_fault_is_saveable() -> None:
    fc = failure(300.0, "3-1@127.0.0.1", "no answer within the receive timeout (scenario step 4)")
    span = call_span(fc, [], START, TALK_S)
    assert span.placed == pytest.approx(268.0)  # -recv_timeout 32 s
    assert classify(span, "bangalore", ["dhaka"], [RESTART, DHAKA_KILL]) == (
        None,
        True,
        "no fault active: a failure of the system under test",
    )


def test_drains_and_dead_carriers_stay_saveable() -> None:
    drain = parse_fault("1200s:drain:dhaka:20s")
    carrier = parse_fault("240s:kill-carrier:blr-dac-a:20s")
    assert classify(CallSpan(1205, 1210), "dhaka", ["dhaka"], [drain])[:2] == (drain, True)
    assert classify(CallSpan(245, 250), "bangalore", ["dhaka"], [carrier])[:2] == (carrier, True)


def test_a_target_site_going_down_under_a_call_in_progress() -> None:
    faults: list[Fault] = [DHAKA_KILL]
    # placed at bangalore and sent to dhaka before the kill, failed after it: in progress
    fault, saveable, why = classify(CallSpan(715.0, 747.0), "bangalore", ["dhaka"], faults)
    assert (fault, saveable) == (DHAKA_KILL, False) and "in progress at dhaka" in why
    # placed after the kill: the bridge knew dhaka was gone and should have routed around
    assert classify(CallSpan(722.0, 754.0), "bangalore", ["dhaka"], faults)[1] is True
