"""Parse what SIPp writes (-trace_stat CSV, -trace_err log) and merge it into per-second series.

A `-trace_stat` row, `;`-separated, starts with
``2026-11-22\t13:22:42.093959\t1795353762.093959;...`` (date, time, POSIX seconds) and
carries periodic (P) and cumulative (C) counters; durations read ``HH:MM:SS:micro``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StatRow:
    """One -trace_stat line: a SIPp process's counters at ``epoch``."""

    epoch: float
    target_rate: float
    created: int  # cumulative
    successful: int  # cumulative
    failed: int  # cumulative
    current: int  # calls open now
    response_ms: float  # mean INVITE->200 over the period (0 when none measured)


@dataclass(frozen=True, slots=True)
class FailedCall:
    """A call SIPp aborted, as its error log tells it."""

    epoch: float
    call_id: str
    cause: str


def sipp_duration_ms(text: str) -> float:
    """'00:00:01:004000' (hours, minutes, seconds, microseconds) -> 1004.0 ms."""
    parts = text.strip().split(":")
    if len(parts) != 4:
        return 0.0
    try:
        h, m, s, us = (int(p) for p in parts)
    except ValueError:
        return 0.0
    return ((h * 60 + m) * 60 + s) * 1000 + us / 1000


def _epoch(stamp: str) -> float:
    # 'DATE\tTIME\tEPOCH': the last tab-separated field is POSIX seconds.
    return float(stamp.split("\t")[-1])


def parse_stat_csv(text: str) -> list[StatRow]:
    """Rows of a -trace_stat file; a half-written last line (SIPp still running) is skipped."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    head = lines[0].rstrip(";").split(";")
    col = {name: i for i, name in enumerate(head)}
    need = ("CurrentTime", "TotalCallCreated", "SuccessfulCall(C)", "FailedCall(C)")
    if any(n not in col for n in need):
        raise ValueError(f"not a SIPp -trace_stat file (columns {head[:6]}...)")
    rows = []
    for line in lines[1:]:
        f = line.rstrip(";").split(";")
        if len(f) < len(head):
            continue
        try:
            rows.append(
                StatRow(
                    epoch=_epoch(f[col["CurrentTime"]]),
                    target_rate=float(f[col["TargetRate"]]) if "TargetRate" in col else 0.0,
                    created=int(f[col["TotalCallCreated"]]),
                    successful=int(f[col["SuccessfulCall(C)"]]),
                    failed=int(f[col["FailedCall(C)"]]),
                    current=int(f[col["CurrentCall"]]) if "CurrentCall" in col else 0,
                    response_ms=sipp_duration_ms(f[col["ResponseTime1(P)"]])
                    if "ResponseTime1(P)" in col
                    else 0.0,
                )
            )
        except (ValueError, IndexError):
            continue
    return rows


def read_stat_file(path: Path) -> list[StatRow]:
    try:
        return parse_stat_csv(path.read_text(errors="replace"))
    except OSError:
        return []


# Entries start with 'DATE\tTIME\tEPOCH: ' and are not always newline-terminated.
_ENTRY = re.compile(r"\d{4}-\d\d-\d\d\t\d\d:\d\d:\d\d\.\d+\t(?P<epoch>\d+(?:\.\d+)?): ")
_CALL_ID = re.compile(r"Call-I[dD][: ]+'?(?P<id>[^',\s]+)'?")
_RECEIVED = re.compile(r"received '(?P<first>[^\r\n']*)")
_EXPECTING = re.compile(r"while expecting '([^']+)'")
_TIMEOUT = re.compile(r"receive timeout on message [^:]*:(?P<index>\d+)")


def parse_error_log(text: str) -> list[FailedCall]:
    """Aborted calls from a -trace_err log, one per Call-ID, each with its cause.

    ``...\t1795353763.31: Aborting call on unexpected message for Call-Id '1-24949@127.0.0.1':
    while expecting '100' (index 1), received 'SIP/2.0 503 Service Unavailable`` gives
    ``SIP/2.0 503 Service Unavailable (while expecting '100')``; ``Call-Id: 5-1@127.0.0.1,
    receive timeout on message ccbridge caller:2 ...`` gives ``no answer within the receive
    timeout (scenario step 2)``. "Dead call" lines (messages for calls already over) are
    not failures.
    """
    marks = list(_ENTRY.finditer(text))
    out: dict[str, FailedCall] = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        msg = text[m.end() : end]
        if msg.startswith("Dead call"):
            continue
        cid = _CALL_ID.search(msg)
        if cid is None or cid.group("id") in out:
            continue
        got, timeout = _RECEIVED.search(msg), _TIMEOUT.search(msg)
        if got is not None:
            cause = got.group("first").strip()
            if (exp := _EXPECTING.search(msg)) is not None:
                cause += f" (while expecting '{exp.group(1)}')"
        elif timeout is not None:
            cause = f"no answer within the receive timeout (scenario step {timeout['index']})"
        else:
            cause = _CALL_ID.sub("", msg.splitlines()[0] if msg else "").strip(" ,:")
        out[cid.group("id")] = FailedCall(float(m.group("epoch")), cid.group("id"), cause[:200])
    return sorted(out.values(), key=lambda f: f.epoch)


@dataclass
class Second:
    """Everything that happened in one second of the run, summed over SIPp processes."""

    t: int
    created: int = 0
    successful: int = 0
    failed: int = 0
    current: int = 0
    rt_weighted: float = 0.0  # sum of the processes' period means
    rt_samples: int = 0

    @property
    def response_ms(self) -> float | None:
        return self.rt_weighted / self.rt_samples if self.rt_samples else None


@dataclass
class Series:
    """Per-second totals from several -trace_stat files on one time axis (0 = run start)."""

    start: float
    seconds: list[Second] = field(default_factory=list)

    @property
    def totals(self) -> tuple[int, int, int]:
        return (
            sum(s.created for s in self.seconds),
            sum(s.successful for s in self.seconds),
            sum(s.failed for s in self.seconds),
        )


def merge(files: Iterable[Sequence[StatRow]], start: float) -> Series:
    """Turn each process's cumulative counters into per-second increments and sum them."""
    buckets: dict[int, Second] = {}
    for rows in files:
        prev_c = prev_s = prev_f = 0
        current: dict[int, int] = {}  # a process's open calls at the end of each second
        for r in rows:
            t = max(0, int(r.epoch - start))
            b = buckets.setdefault(t, Second(t))
            dc, ds, df = r.created - prev_c, r.successful - prev_s, r.failed - prev_f
            b.created += max(0, dc)
            b.successful += max(0, ds)
            b.failed += max(0, df)
            current[t] = r.current
            if r.response_ms > 0:  # the period's mean over calls answered in it
                b.rt_weighted += r.response_ms
                b.rt_samples += 1
            prev_c, prev_s, prev_f = r.created, r.successful, r.failed
        for t, n in current.items():
            buckets[t].current += n
    if not buckets:
        return Series(start)
    last = max(buckets)
    return Series(start, [buckets.get(t, Second(t)) for t in range(last + 1)])
