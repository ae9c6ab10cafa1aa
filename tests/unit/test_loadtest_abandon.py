"""A failed call that waited in the only queue offering its language and was abandoned.

The 30-minute soak (soak30b): dhaka was killed 720.6-740.3 s in and its Bangladeshi callers
went to manila's orders-en, which manila's only Tagalog agent also serves. A Filipino
caller's call to manila's number, placed 730.8 s in and routed correctly to manila
orders-tl, rang 32 s in that queue until SIPp gave up (762.8 s): no agent free, and no
other site offers Tagalog. Counted apart as abandoned in queue, not saveable.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccbridge.config import Config, load_config
from ccbridge.lab.secrets import ensure_lab_secrets
from ccbridge.loadtest.faults import FaultRecord
from ccbridge.loadtest.options import CallerGroup
from ccbridge.loadtest.placement import CallSpan
from ccbridge.loadtest.predict import compare
from ccbridge.loadtest.queuelog import QueueLog, QueueStay, abandoned_in_queue, find_stay
from ccbridge.loadtest.report import FailedCallReport, Report, classify
from ccbridge.loadtest.run import QueueJoins
from ccbridge.loadtest.stats import Second, Series
from ccbridge.loadtest.timeline import parse_fault
from ccbridge.routing.engine import Router
from tests.bench.bench_soak import LAB_YAML, _absolute_files

WEDNESDAY = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
START = 1795364300.0  # any epoch: the run's start
PH_TO_MANILA = CallerGroup("+6328000001", "+639171234567", 1, "manila")
DHAKA_KILL = FaultRecord(parse_fault("720s:kill-site:dhaka:20s"), 720.6, 740.3).as_run()
SPAN = CallSpan(730.8, 762.8, "cause")  # no answer within the receive timeout (32 s)


def _config(tmp: Path, tagalog_at_bangalore: bool = False) -> Config:
    ensure_lab_secrets()
    data: dict[str, Any] = _absolute_files(yaml.safe_load(LAB_YAML.read_text()), LAB_YAML.parent)
    if tagalog_at_bangalore:
        blr = data["sites"]["bangalore"]
        blr["services"]["orders"]["languages"] = ["en", "hi", "tl"]
        blr["agents"][0]["queues"] = [*blr["agents"][0]["queues"], "orders-tl"]
    path = tmp / "lab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return _config(tmp_path_factory.mktemp("lab"))


def _stays(*events: tuple[float, str, dict[str, str]]) -> list[QueueStay]:
    """Events at (seconds since START, site, fields), through the run's AMI observer."""
    log = QueueLog()
    for t, site, fields in events:
        log.on_event(site, fields, START + t)
    return [s.relative(START) for s in log.stays]


def _soak30b_wait(until: str = "QueueCallerAbandon") -> list[QueueStay]:
    join = {
        "Event": "QueueCallerJoin",
        "Queue": "orders-tl",
        "CallerIDNum": "+639171234567",
        "Uniqueid": "1795365000.77",
    }
    end = {"Event": until, "Queue": "orders-tl", "Uniqueid": "1795365000.77"}
    leave = {"Event": "QueueCallerLeave", "Queue": "orders-tl", "Uniqueid": "1795365000.77"}
    return _stays((730.9, "manila", join), (762.8, "manila", end), (762.8, "manila", leave))


def test_the_observer_records_each_stay_and_how_it_ended(lab: Config) -> None:
    joins = QueueJoins(lab)
    joins._on_event("manila", {"Event": "QueueCallerJoin", "Queue": "orders-tl", "Uniqueid": "1"})
    joins._on_event("manila", {"Event": "QueueCallerAbandon", "Uniqueid": "1"})
    joins._on_event("manila", {"Event": "QueueCallerLeave", "Uniqueid": "1"})
    joins._on_event("dhaka", {"Event": "QueueCallerJoin", "Queue": "orders-bn", "Uniqueid": "1"})
    [abandoned, waiting] = joins.queue_log.stays
    assert (abandoned.site, abandoned.queue, abandoned.how) == ("manila", "orders-tl", "abandon")
    assert (waiting.site, waiting.how, waiting.ended) == ("dhaka", None, None)
    assert joins.joins == {("manila", "orders-tl"): 1, ("dhaka", "orders-bn"): 1}
    [answered] = _stays(
        (1, "manila", {"Event": "QueueCallerJoin", "Queue": "orders-en", "Uniqueid": "2"}),
        (3, "manila", {"Event": "AgentConnect", "Queue": "orders-en", "Uniqueid": "2"}),
        (9, "manila", {"Event": "QueueCallerLeave", "Queue": "orders-en", "Uniqueid": "2"}),
    )
    assert (answered.how, answered.ended) == ("connect", 3.0)  # the Leave does not overwrite


def test_soak30b_abandoned_in_the_only_tagalog_queue_is_not_saveable(lab: Config) -> None:
    fault, saveable, _ = classify(SPAN, "manila", ["manila"], [DHAKA_KILL])
    assert (fault, saveable) == (DHAKA_KILL, True)  # the old verdict
    why = abandoned_in_queue(
        Router(lab), lab, PH_TO_MANILA, SPAN, _soak30b_wait(), WEDNESDAY, [DHAKA_KILL]
    )
    assert why == "abandoned in queue (manila/orders-tl, waited 32 s): no agent free"
    # still waiting when SIPp gave up (the abandon not seen): the same verdict
    [joined] = _soak30b_wait()
    joined.ended, joined.how = None, None
    assert (
        abandoned_in_queue(Router(lab), lab, PH_TO_MANILA, SPAN, [joined], WEDNESDAY, [DHAKA_KILL])
        == why
    )

    report = Report(
        plan={"rate": 0.8, "duration": 1800, "ramp": 10, "talk_ms": 1000, "at": "now"},
        series=Series(0.0, [Second(0, 3, 2, 1)]),
        faults=[],
        failed_calls=[
            FailedCallReport(
                SPAN.failed,
                PH_TO_MANILA.label,
                "32-8783@127.0.0.1",
                "no answer",
                "kill-site:dhaka",
                False,
                why,
                placed=SPAN.placed,
                abandoned=True,
            )
        ],
        distribution=compare(Counter(), Counter()),
    )
    t = report.totals
    assert (t["failed_saveable"], t["failed_abandoned_in_queue"], t["failed_unsaveable"]) == (
        0,
        1,
        0,
    )
    md = report.markdown(None)
    assert "no (abandoned in queue)" in md and "manila/orders-tl, waited 32 s" in md
    assert report.as_dict()["failed_calls"][0]["abandoned_in_queue"] is True  # type: ignore[index]


def test_another_site_offering_the_language_keeps_it_saveable(tmp_path: Path) -> None:
    config = _config(tmp_path, tagalog_at_bangalore=True)
    # bangalore, up and open, offered orders-tl: load-aware overflow should have used it
    assert (
        abandoned_in_queue(
            Router(config), config, PH_TO_MANILA, SPAN, _soak30b_wait(), WEDNESDAY, [DHAKA_KILL]
        )
        is None
    )
    # ... unless bangalore itself was down then
    blr_kill = FaultRecord(parse_fault("725s:kill-site:bangalore:20s"), 725.0, 750.0).as_run()
    assert (
        abandoned_in_queue(
            Router(config), config, PH_TO_MANILA, SPAN, _soak30b_wait(), WEDNESDAY, [blr_kill]
        )
        == "abandoned in queue (manila/orders-tl, waited 32 s): no agent free"
    )


def test_no_join_observed_or_not_this_calls_wait_stays_saveable(lab: Config) -> None:
    router = Router(lab)
    faults = [DHAKA_KILL]
    assert abandoned_in_queue(router, lab, PH_TO_MANILA, SPAN, [], WEDNESDAY, faults) is None
    # an agent answered it: another call of the same number
    assert (
        abandoned_in_queue(
            router, lab, PH_TO_MANILA, SPAN, _soak30b_wait("AgentConnect"), WEDNESDAY, faults
        )
        is None
    )
    # joined long before this call was placed, or another number
    [early] = _soak30b_wait()
    early.joined = 700.0
    assert find_stay([early], PH_TO_MANILA.caller, SPAN) is None
    assert find_stay(_soak30b_wait(), "+447700900123", SPAN) is None
    # the site it waited at was hung meanwhile: not a capacity question
    hang = FaultRecord(parse_fault("740s:hang-site:manila:10s"), 740.0, 750.0).as_run()
    assert (
        abandoned_in_queue(
            router, lab, PH_TO_MANILA, SPAN, _soak30b_wait(), WEDNESDAY, [DHAKA_KILL, hang]
        )
        is None
    )
