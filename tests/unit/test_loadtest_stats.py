"""SIPp output parsing: -trace_stat rows, the error log's causes, per-second merging."""

from __future__ import annotations

from ccbridge.loadtest.stats import (
    StatRow,
    merge,
    parse_error_log,
    parse_stat_csv,
    sipp_duration_ms,
)

HEAD = (
    "StartTime;LastResetTime;CurrentTime;TargetRate;TotalCallCreated;CurrentCall;"
    "SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);ResponseTime1(P);"
)


def row(epoch: float, created: int, ok: int, failed: int, current: int, rt: str) -> str:
    stamp = f"2026-11-22\t13:22:42.0\t{epoch}"
    return f"{stamp};{stamp};{stamp};10;{created};{current};0;{ok};0;{failed};{rt};"


def test_durations() -> None:
    assert sipp_duration_ms("00:00:01:004000") == 1004.0
    assert sipp_duration_ms("01:00:00:000500") == 3_600_000.5
    assert sipp_duration_ms("garbage") == 0.0


def test_stat_rows_and_a_half_written_last_line() -> None:
    text = "\n".join(
        [HEAD, row(100.0, 9, 8, 0, 1, "00:00:00:004500"), row(101.0, 20, 18, 1, 1, "0")]
    )
    rows = parse_stat_csv(text + "\n" + row(102.0, 30, 28, 1, 1, "0")[:40])
    assert rows == [
        StatRow(100.0, 10.0, 9, 8, 0, 1, 4.5),
        StatRow(101.0, 10.0, 20, 18, 1, 1, 0.0),
    ]


def test_error_log_causes_one_per_call() -> None:
    log = (
        "The following events occurred:\n"
        "2026-11-22\t13:22:43.3\t1795353763.3: Aborting call on unexpected message for "
        "Call-Id '1-24949@127.0.0.1': while expecting '100' (index 1), received "
        "'SIP/2.0 503 Service Unavailable\nVia: SIP/2.0/UDP 127.0.0.1\n'"
        "2026-11-22\t13:27:41.2\t1795354061.2: Call-Id: 5-28549@127.0.0.1, receive timeout "
        "on message ccbridge caller:2 without label to jump to (ontimeout attribute): "
        "aborting call"
        "2026-11-22\t13:27:41.3\t1795354061.3: Dead call 5-28549@127.0.0.1 (aborted at "
        "index 2), received 'SIP/2.0 200 OK\n'\n"
        "2026-11-22\t13:27:42.0\t1795354062.0: Aborting call on unexpected message for "
        "Call-Id '1-24949@127.0.0.1': again\n"
    )
    got = parse_error_log(log)
    assert [(f.call_id, f.cause) for f in got] == [
        ("1-24949@127.0.0.1", "SIP/2.0 503 Service Unavailable (while expecting '100')"),
        ("5-28549@127.0.0.1", "no answer within the receive timeout (scenario step 2)"),
    ]
    assert got[0].epoch == 1795353763.3


def test_merge_turns_cumulative_counters_into_seconds_summed_over_processes() -> None:
    a = [StatRow(100.2, 10, 5, 4, 0, 2, 4.0), StatRow(101.2, 10, 10, 9, 1, 0, 2.0)]
    b = [StatRow(100.5, 10, 3, 3, 0, 0, 6.0)]
    s = merge([a, b], start=100.0)
    assert [x.created for x in s.seconds] == [8, 5]
    assert [x.successful for x in s.seconds] == [7, 5]
    assert [x.failed for x in s.seconds] == [0, 1]
    assert s.seconds[0].response_ms == 5.0  # the mean of both processes' period means
    assert s.totals == (13, 12, 1)
    assert merge([], start=0).seconds == []
