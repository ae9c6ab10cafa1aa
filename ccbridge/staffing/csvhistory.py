"""Arrivals history from a CSV file: the staffing command's input until the store lands."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from ccbridge.staffing.history import MemoryHistory, Observation, QueueKey
from ccbridge.staffing.slots import SLOT_MINUTES, slot_of

__all__ = ["COLUMNS", "HistoryFileError", "read_history"]

COLUMNS = ("site", "service", "language", "interval_start", "calls")
OPTIONAL = ("complete", "handled", "handle_seconds")
_TRUE = {"1", "true", "yes", ""}
_FALSE = {"0", "false", "no"}
MAX_ROWS = 5_000_000  # about 10 years of half hours for 50 queues: more is not a history


class HistoryFileError(ValueError):
    """A history file that cannot be read: the message names the file and line."""


def read_history(path: str | Path) -> MemoryHistory:
    """Read ``site,service,language,interval_start,calls[,complete]`` rows.

    ``interval_start`` is the slot's start on the site's local wall clock, without an
    offset (``2026-11-09T09:30``): a slot is a local half hour, so both passes of a
    repeated autumn half hour are one row (two rows are added up). ``complete`` is 0
    for a slot that touched a coverage gap. A slot with no row had no calls.
    """
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            return MemoryHistory(_rows(str(p), fh))
    except OSError as exc:
        raise HistoryFileError(f"{p}: cannot read the history: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise HistoryFileError(f"{p}: not a UTF-8 text file") from None


def _rows(name: str, lines: Iterable[str]) -> Iterable[tuple[QueueKey, Observation]]:
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise HistoryFileError(
            f"{name}: empty file (expected a header: {','.join(COLUMNS)})"
        ) from None
    except csv.Error as exc:
        raise HistoryFileError(f"{name}:1: {exc}") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise HistoryFileError(
            f"{name}:1: missing column(s) {', '.join(missing)} "
            f"(expected {','.join(COLUMNS)}[,complete][,handled,handle_seconds])"
        )
    unknown = [h for h in header if h not in COLUMNS + OPTIONAL]
    if unknown:
        raise HistoryFileError(f"{name}:1: unknown column(s) {', '.join(unknown)}")
    col = {h: i for i, h in enumerate(header)}
    try:
        for n, row in enumerate(reader, start=2):
            if n > MAX_ROWS:
                raise HistoryFileError(f"{name}:{n}: more than {MAX_ROWS} rows")
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise HistoryFileError(
                    f"{name}:{n}: {len(row)} fields where the header has {len(header)}"
                )
            yield _row(name, n, {h: row[i].strip() for h, i in col.items()})
    except csv.Error as exc:
        raise HistoryFileError(f"{name}:{reader.line_num}: {exc}") from None


def _row(name: str, n: int, f: dict[str, str]) -> tuple[QueueKey, Observation]:
    where = f"{name}:{n}"
    for c in ("site", "service", "language"):
        if not f[c]:
            raise HistoryFileError(f"{where}: empty {c}")
    try:
        start = datetime.fromisoformat(f["interval_start"])
    except ValueError:
        raise HistoryFileError(
            f"{where}: interval_start {f['interval_start']!r} is not a local date and time "
            "like 2026-11-09T09:30"
        ) from None
    if start.tzinfo is not None:
        raise HistoryFileError(
            f"{where}: interval_start {f['interval_start']!r} has an offset; give the "
            "site's local wall-clock time without one"
        )
    if start.minute % SLOT_MINUTES or start.second or start.microsecond:
        raise HistoryFileError(
            f"{where}: interval_start {f['interval_start']!r} is not the start of a "
            f"{SLOT_MINUTES}-minute slot"
        )
    try:
        calls = int(f["calls"])
    except ValueError:
        raise HistoryFileError(f"{where}: calls {f['calls']!r} is not a whole number") from None
    if calls < 0:
        raise HistoryFileError(f"{where}: calls must not be negative, got {calls}")
    flag = f.get("complete", "").lower()
    if flag not in _TRUE | _FALSE:
        raise HistoryFileError(f"{where}: complete {flag!r} is not 1/0, true/false or yes/no")
    handled, handle_s = _handled(where, f)
    key = QueueKey(f["site"], f["service"], f["language"])
    return key, Observation(slot_of(start), calls, flag in _TRUE, handled, handle_s)


def _handled(where: str, f: dict[str, str]) -> tuple[int, float]:
    raw_n, raw_s = f.get("handled", ""), f.get("handle_seconds", "")
    if not raw_n and not raw_s:
        return 0, 0.0
    try:
        n = int(raw_n)
    except ValueError:
        raise HistoryFileError(f"{where}: handled {raw_n!r} is not a whole number") from None
    try:
        secs = float(raw_s)
    except ValueError:
        raise HistoryFileError(f"{where}: handle_seconds {raw_s!r} is not a number") from None
    if n < 0 or not 0 <= secs < float("inf"):
        raise HistoryFileError(
            f"{where}: handled and handle_seconds must be finite and not negative"
        )
    if secs > 0 and n == 0:
        raise HistoryFileError(f"{where}: handle_seconds {raw_s} for no handled call")
    return n, secs
