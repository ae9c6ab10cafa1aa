"""Garbage and odd histories: the CSV reader and the forecast never fail any other way
than with their own clear errors, and never produce a negative or non-finite figure."""

from __future__ import annotations

import math
import tempfile
from datetime import date, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ccbridge.staffing.csvhistory import HistoryFileError, read_history
from ccbridge.staffing.forecast import forecast
from ccbridge.staffing.history import MemoryHistory, NoHistory, Observation, QueueKey
from ccbridge.staffing.slots import SLOTS_PER_DAY, Slot

KEY = QueueKey("dhaka", "orders", "bn")
HEADER = "site,service,language,interval_start,calls,complete\n"
GOOD = "dhaka,orders,bn,2026-10-12T22:00,3,1\n"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_csv_reader_on_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "h.csv"
        p.write_bytes(data)
        try:
            h = read_history(p)
        except HistoryFileError as exc:
            assert str(exc).startswith(str(p))
        else:
            assert all(o.count >= 0 for k in h.queues() for o in h.arrivals(k, date.min, date.max))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.integers(min_value=0, max_value=2))
def test_csv_reader_on_mutated_rows(junk: str, where: int) -> None:
    lines = [HEADER, GOOD, GOOD.replace("22:00", "22:30")]
    lines[where] = lines[where][: len(junk) % 40] + junk + "\n"
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "h.csv"
        p.write_text("".join(lines), encoding="utf-8", errors="surrogatepass")
        try:
            read_history(p)
        except HistoryFileError as exc:
            assert str(exc).startswith(str(p))


FIRST = date(2026, 9, 7)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.integers(0, 8 * 7 - 1), st.integers(0, SLOTS_PER_DAY - 1)),
        st.tuples(st.integers(0, 10_000), st.booleans()),
        max_size=200,
    ),
    st.integers(1, 10),
    st.integers(0, 30),
    st.sampled_from(["profile", "last_week", "mean"]),
)
def test_forecast_of_any_history_is_finite_and_not_negative(
    cells: dict[tuple[int, int], tuple[int, bool]], weeks: int, ahead: int, method: str
) -> None:
    rows = [
        (KEY, Observation(Slot(FIRST + timedelta(days=d), i), n, ok))
        for (d, i), (n, ok) in cells.items()
    ]
    hist = MemoryHistory(rows, {KEY: (FIRST, FIRST + timedelta(days=55))})
    target = [FIRST + timedelta(days=56 + ahead)]
    try:
        fc = forecast(hist, KEY, target, weeks=weeks, method=method)  # type: ignore[arg-type]
    except NoHistory as exc:
        assert "nothing to forecast from" in str(exc)
        return
    assert len(fc.slots) == SLOTS_PER_DAY
    for f in fc.slots:
        assert f.calls is None or (math.isfinite(f.calls) and f.calls >= 0)
