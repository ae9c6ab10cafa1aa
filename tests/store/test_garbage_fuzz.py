"""Generated garbage through RecordWriter.put on both engines: put never raises, every
record it refuses is counted, and every record it accepts the database takes (a record the
check lets through but the database refuses would be retried or split, so the check must
be at least as strict as either engine)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccbridge.store.records import COLUMNS
from ccbridge.store.writer import RecordWriter
from tests.polling import until
from tests.store.conftest import Db

instants = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([timezone(timedelta(hours=5, minutes=30)), UTC]),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),  # any code point, lone surrogates and NUL included
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=70),
    st.datetimes(),  # naive
    instants,
    json_values,
    st.binary(max_size=8),
)


@st.composite
def records(draw: st.DrawFn) -> tuple[Any, Any]:
    table = draw(st.sampled_from([*COLUMNS, "nonsense", None]))
    names = list(COLUMNS.get(table, {})) if isinstance(table, str) else []
    values: dict[Any, Any] = {}
    for name in draw(st.lists(st.sampled_from(names), unique=True)) if names else []:
        values[name] = draw(anything)
    # Mostly plausible keys, so that many records pass and reach the database.
    if table in COLUMNS and draw(st.booleans()):
        for key in ("call_id", "entry_site", "site", "linkedid", "event_key", "name"):
            if key in COLUMNS[table]:
                values[key] = draw(st.text(min_size=1, max_size=10, alphabet="abc123"))
        for key in ("arrived_at", "at", "started_at"):
            if key in COLUMNS[table]:
                values[key] = draw(instants)
    if draw(st.integers(0, 20)) == 0:
        values[draw(st.text(max_size=5))] = 1  # an unknown column
    return table, values


def _generated(n: int) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []

    @settings(
        max_examples=n,
        database=None,
        derandomize=True,  # the same records on every run: a failure is reproducible
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(records())
    def collect(rec: tuple[Any, Any]) -> None:
        out.append(rec)

    collect()
    return out


async def test_generated_garbage_is_counted_and_what_passes_is_written(migrated: Db) -> None:
    generated = _generated(1000)
    writer = RecordWriter(migrated.engine(), migrated.tmp / "fuzz.journal", batch_size=50)
    await writer.start()
    try:
        accepted = sum(writer.put(t, v) for t, v in generated)
        await until(lambda: writer.status().caught_up, 60, "the accepted records written")
        st_ = writer.status()
        # Every refusal happened at put(): none by the database, none dropped.
        assert st_.rejected == len(generated) - accepted
        assert st_.unwritten == 0 and st_.written == accepted
        assert st_.db_reachable in (True, None)
        assert 20 <= accepted < len(generated)  # both sides exercised
    finally:
        await writer.stop()
