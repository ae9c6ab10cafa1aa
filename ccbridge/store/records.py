"""Records as the writer takes them: one table's column values, checked before they queue.

A record is ``(table, {column: value})`` with only the columns known so far: a call's
row is written first when it arrives and completed by later records with the same key
(see ``write.py``: a value given replaces, a value left out keeps what is there).
Checking happens on the caller's side of the queue, so a bad record is refused at once
with a reason and counted, and never reaches a batch where it could fail good ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, Table

from ccbridge.store.schema import (
    ASSIGNED_ON_WRITE,
    CONFLICT_KEYS,
    TABLES,
    ActivityKind,
    HungUpBy,
    Outcome,
    UtcDateTime,
)


class RecordError(ValueError):
    """A record the store refuses; the message names the table and column."""


@dataclass(frozen=True, slots=True)
class Record:
    table: str
    values: Mapping[str, Any]

    def key(self) -> tuple[Any, ...]:
        return tuple(self.values[c] for c in CONFLICT_KEYS[self.table])


Check = Callable[[Any], str | None]  # None: fine; else why not


def _string(limit: int | None) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return f"expected text, got {type(v).__name__}"
        if limit is not None and len(v) > limit:
            return f"longer than {limit} characters"
        if "\x00" in v:
            return "contains a NUL character"  # PostgreSQL text cannot hold one
        if not v.isascii():
            try:
                v.encode()
            except UnicodeEncodeError:
                return "not valid Unicode text (a lone surrogate)"
        return None

    return check


def _integer(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int):
        return f"expected a whole number, got {type(v).__name__}"
    if not -(2**31) <= v < 2**31:
        return "out of range"
    return None


def _float(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f"expected a number, got {type(v).__name__}"
    if not math.isfinite(v) or v < 0:
        return "expected a finite number of seconds >= 0"
    return None


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"expected true/false, got {type(v).__name__}"


def _instant(v: Any) -> str | None:
    if not isinstance(v, datetime):
        return f"expected a datetime, got {type(v).__name__}"
    if v.tzinfo is None or v.utcoffset() is None:
        return "expected an aware datetime (with a UTC offset)"
    return None


def _flat_text(v: Any) -> bool:
    """True for the common case, a flat list or str->str dict of short ASCII text without
    NUL: valid JSON for both engines and well under the size limit, without serialising
    it (the record ingest's call_events fields and reasons, per record on the loop)."""
    if type(v) is dict:
        parts = [*v, *v.values()]
    elif type(v) is list:
        parts = v
    else:
        return False
    for x in parts:
        if type(x) is not str:
            return False
    joined = "".join(parts)
    return joined.isascii() and "\x00" not in joined and len(joined) < 16384


def _json(v: Any) -> str | None:
    if _flat_text(v):
        return None
    try:
        text = json.dumps(v, allow_nan=False, ensure_ascii=False)
        text.encode()
    except UnicodeEncodeError:
        return "not valid Unicode text (a lone surrogate)"
    except (TypeError, ValueError, RecursionError) as exc:
        return f"not JSON: {exc}"
    if "\\u0000" in text or "\x00" in text:
        return "contains a NUL character"  # PostgreSQL's json cannot hold one
    return "larger than 64 KiB" if len(text) > 65536 else None


def _one_of(values: set[str]) -> Check:
    def check(v: Any) -> str | None:
        # isinstance first: a list or dict is unhashable (found by test_garbage_fuzz)
        if isinstance(v, str) and v in values:
            return None
        return f"expected one of {', '.join(sorted(values))}"

    return check


def _score(v: Any) -> str | None:
    return _integer(v) or (None if 1 <= v <= 5 else "a satisfaction score is 1 to 5")


# Values with a vocabulary of their own, beyond the column's type.
_EXTRA: dict[tuple[str, str], Check] = {
    ("calls", "outcome"): _one_of({o.value for o in Outcome}),
    ("calls", "hung_up_by"): _one_of({h.value for h in HungUpBy}),
    ("calls", "satisfaction"): _score,
    ("calls", "trunk_failovers"): lambda v: _integer(v) or (None if v >= 0 else "negative"),
    ("agent_activity", "kind"): _one_of({k.value for k in ActivityKind}),
    ("legs", "ring_no_answers"): lambda v: _integer(v) or (None if v >= 0 else "negative"),
    ("audit", "result"): _one_of({"ok", "denied", "unauthorized", "failed", "limited"}),
}


@dataclass(frozen=True, slots=True)
class _Column:
    check: Check
    required: bool
    instant: bool


def _columns(table: Table) -> dict[str, _Column]:
    out: dict[str, _Column] = {}
    for col in table.columns:
        if col.autoincrement is True:
            continue  # the database's own row id
        if col.name in ASSIGNED_ON_WRITE.get(table.name, ()):
            continue  # the writer computes it
        t = col.type
        check: Check
        if isinstance(t, UtcDateTime):
            check = _instant
        elif isinstance(t, String):
            check = _string(t.length)
        elif isinstance(t, Boolean):
            check = _boolean
        elif isinstance(t, Integer):
            check = _integer
        elif isinstance(t, Float):
            check = _float
        elif isinstance(t, JSON):
            check = _json
        else:  # pragma: no cover - a column type added to schema.py without a check
            raise TypeError(f"no check for {table.name}.{col.name}: {t!r}")
        extra = _EXTRA.get((table.name, col.name))
        if extra is not None:
            check = extra
        required = not col.nullable or col.name in CONFLICT_KEYS[table.name]
        out[col.name] = _Column(check, required, isinstance(t, UtcDateTime))
    return out


COLUMNS: dict[str, dict[str, _Column]] = {name: _columns(t) for name, t in TABLES.items()}
_REQUIRED: dict[str, tuple[str, ...]] = {
    table: tuple(n for n, c in cols.items() if c.required) for table, cols in COLUMNS.items()
}


def check_record(table: object, values: object) -> Record:
    """The record, checked: RecordError names the first problem (unknown table or
    column, a required column missing or None, a value of the wrong type or range)."""
    if not isinstance(table, str) or table not in COLUMNS:
        raise RecordError(f"unknown table {table!r}")
    if not isinstance(values, Mapping):
        raise RecordError(f"{table}: expected a mapping of columns, got {type(values).__name__}")
    cols = COLUMNS[table]
    for name, value in values.items():
        col = cols.get(name) if isinstance(name, str) else None
        if col is None:
            raise RecordError(f"{table}: unknown column {name!r}")
        if value is None:
            if col.required:
                raise RecordError(f"{table}.{name}: required, got nothing")
            continue
        why = col.check(value)
        if why is not None:
            raise RecordError(f"{table}.{name}: {why}")
    for name in _REQUIRED[table]:
        if name not in values:
            raise RecordError(f"{table}.{name}: required, missing")
    return Record(table, dict(values))


def to_json(record: Record) -> dict[str, Any]:
    """The journal's form of a record: instants as ISO 8601 text."""
    cols = COLUMNS[record.table]
    return {
        "t": record.table,
        "v": {
            k: (v.isoformat() if v is not None and cols[k].instant else v)
            for k, v in record.values.items()
        },
    }


def from_json(obj: Any) -> Record:
    """A journal line's record, checked again (a journal is a file anyone could edit)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("v"), dict):
        raise RecordError("journal line is not a record")
    table = obj.get("t")
    cols = COLUMNS.get(table) if isinstance(table, str) else None
    if cols is None:
        raise RecordError(f"unknown table {table!r}")
    values: dict[str, Any] = {}
    for k, v in obj["v"].items():
        col = cols.get(k)
        if col is not None and col.instant and isinstance(v, str):
            try:
                v = datetime.fromisoformat(v)
            except ValueError:
                raise RecordError(f"{table}.{k}: not an ISO 8601 instant") from None
        values[k] = v
    return check_record(table, values)
