"""Load-test IVR callers stay until keyed and queued; a call routed elsewhere fails the run."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ccbridge.lab.dtmf import pcap_for
from ccbridge.loadtest.predict import NO_QUEUE, compare
from ccbridge.loadtest.report import Report
from ccbridge.loadtest.sipp import (
    DTMF_FIRST_MS,
    DTMF_GAP_MS,
    QUEUE_ALLOWANCE_MS,
    dtmf_scenario,
    ivr_stay_ms,
)
from ccbridge.loadtest.stats import Second, Series

PLAN = {"rate": 1, "duration": 12, "ramp": 0, "talk_ms": 1000, "at": "now"}


def report(predicted: Counter[tuple[str, str]], observed: Counter[tuple[str, str]]) -> Report:
    # 12 calls placed, all successful for SIPp (their BYE was answered).
    series = Series(0.0, [Second(t, 1, 1, 0) for t in range(12)])
    return Report(PLAN, series, [], [], compare(predicted, observed))


def test_ivr_calls_that_reached_no_queue_fail_the_run() -> None:
    # The lab run of the issue: 12 IVR calls predicted at bangalore's orders-en, none seen
    # joining it. Before, the summary said "12 successful, 0 failed" and the exit status 0.
    r = report(Counter({("bangalore", "orders-en"): 12}), Counter({NO_QUEUE: 12}))
    assert r.totals["successful"] == 12 and r.totals["failed"] == 0
    assert r.totals["misrouted"] == 12
    assert not r.passed
    line = r.summary_line()
    assert "not where predicted 12" in line and line.endswith("FAIL")
    assert "not where predicted 12: FAIL" in r.markdown(chart_name=None)


def test_calls_in_another_queue_count_once_each() -> None:
    predicted = Counter({("bangalore", "orders-en"): 8, ("dhaka", "orders-bn"): 4})
    observed = Counter(
        {("bangalore", "orders-en"): 6, ("manila", "orders-en"): 2, ("dhaka", "orders-bn"): 4}
    )
    r = report(predicted, observed)
    assert r.totals["misrouted"] == 2 and not r.passed


def test_every_call_where_predicted_passes() -> None:
    both = Counter({("bangalore", "orders-en"): 9, NO_QUEUE: 3})
    r = report(both, Counter(both))
    assert r.totals["misrouted"] == 0 and r.passed
    assert r.summary_line().endswith("PASS")
    nothing = Report(PLAN, Series(0.0, []), [], [], [])
    assert not nothing.passed  # nothing placed proves nothing


def test_an_ivr_caller_stays_for_its_digits_the_queue_and_its_talk_time() -> None:
    # Two digits with the default talk time: before, the caller hung up 1 s after the
    # last digit, while the menu still had it; now the talk starts after the queueing.
    stay = ivr_stay_ms("11", talk_ms=1000)
    assert stay == DTMF_FIRST_MS + DTMF_GAP_MS + QUEUE_ALLOWANCE_MS + 1000
    assert ivr_stay_ms("1", talk_ms=0) > DTMF_FIRST_MS


def test_the_ivr_scenario_keys_each_digit_as_sip_info(tmp_path: Path) -> None:
    path = dtmf_scenario("1*#", tmp_path, talk_ms=1000)
    text = path.read_text()
    # SIP INFO, not RFC 2833: a replayed capture repeats its RTP timestamp and Asterisk
    # drops the second "1" of "11" as a duplicate.
    assert re.findall(r"Signal=(.)", text) == ["1", "*", "#"]  # once each, in order
    assert "play_pcap_audio" not in text
    pauses = [int(p) for p in re.findall(r'<pause milliseconds="(\d+)"/>', text)]
    assert pauses == [DTMF_FIRST_MS, DTMF_GAP_MS, DTMF_GAP_MS, QUEUE_ALLOWANCE_MS + 1000]
    # INFOs take CSeq 2, 3, 4; the BYE comes after them.
    assert re.findall(r"CSeq: (\d+) (INFO|BYE)", text) == [
        ("2", "INFO"),
        ("3", "INFO"),
        ("4", "INFO"),
        ("5", "BYE"),
    ]
    assert pcap_for("#").name == "dtmf_2833_pound.pcap"  # the keys' validation is shared
