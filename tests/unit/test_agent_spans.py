"""The agent report's login and pause spans (pure): the state a range opens with is the
last change before it in time order, spans are clipped to the range, and a span spreads
over buckets in whole microseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from ccbridge.reports.agentroll import spread, state_spans, us


class Row(NamedTuple):
    agent: str
    queue: str
    kind: str
    at: datetime


T = datetime(2026, 11, 27, 10, tzinfo=UTC)  # the range starts at 10:00


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def test_the_last_change_before_the_range_decides_in_time_order() -> None:
    # Yesterday in and out, this morning in again: logged in at 10:00. The last change
    # per kind is what agent_states gives; replayed by kind (login before logout) it
    # read "logged out".
    rows = [
        Row("a", "q1", "login", h(-3)),
        Row("a", "q1", "logout", h(-17)),
        Row("a", "q1", "pause", h(-2)),
        Row("a", "q1", "unpause", h(-18)),
        # b logged out after its last login: not logged in until it logs in at 10:30
        Row("b", "q1", "login", h(-20)),
        Row("b", "q1", "logout", h(-19)),
        Row("b", "q1", "login", h(0.5)),
    ]
    got = state_spans(rows, us(T), us(h(1)))
    assert got["a"] == [(us(T), us(h(1)), True)]  # paused since 08:00
    assert got["b"] == [(us(h(0.5)), us(h(1)), False)]


def test_paused_only_when_paused_in_every_queue_and_clipped_to_the_end() -> None:
    rows = [
        Row("a", "q1", "login", h(0)),
        Row("a", "q2", "login", h(0)),
        Row("a", "q1", "pause", h(0.25)),
        Row("a", "q2", "pause", h(0.5)),
        Row("a", "q2", "logout", h(3)),  # after the range's end (now): not counted
    ]
    got = state_spans(rows, us(T), us(h(1)))
    assert got["a"] == [
        (us(T), us(h(0.25)), False),
        (us(h(0.25)), us(h(0.5)), False),
        (us(h(0.5)), us(h(1)), True),
    ]


def test_a_span_spreads_over_buckets_in_microseconds() -> None:
    bounds = [0, 900_000_000, 1_800_000_000, 2_700_000_000]
    assert list(spread(899_999_999, 1_800_000_001, bounds)) == [(0, 1), (1, 900_000_000), (2, 1)]
    assert list(spread(-5, 3_000_000_000, bounds)) == [
        (0, 900_000_000),
        (1, 900_000_000),
        (2, 900_000_000),
    ]
    assert list(spread(10, 10, bounds)) == []
    assert us(datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC)) == 1_000_001
