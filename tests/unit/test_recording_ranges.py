"""Range headers for playback (recording/ranges.py): the forms browsers send, and garbage
refused with a stable id (never another exception, never a range outside the file)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccbridge.recording.ranges import ByteRange, RangeError, parse_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "want"),
    [
        (None, None),
        ("bytes=0-499", ByteRange(0, 499)),
        ("bytes=500-", ByteRange(500, 999)),
        ("bytes=-100", ByteRange(900, 999)),
        ("bytes=-5000", ByteRange(0, 999)),  # a suffix longer than the file: all of it
        ("bytes=990-5000", ByteRange(990, 999)),  # clamped to the end
        ("bytes=999-999", ByteRange(999, 999)),
        (" bytes = 10 - 20 ", ByteRange(10, 20)),
    ],
)
def test_the_forms_players_send(header: str | None, want: ByteRange | None) -> None:
    assert parse_range(header, SIZE) == want


def test_content_range_and_length() -> None:
    r = parse_range("bytes=10-19", SIZE)
    assert r is not None and r.length == 10 and r.content_range(SIZE) == "bytes 10-19/1000"


@pytest.mark.parametrize(
    ("header", "error_id"),
    [
        ("", "invalid-range"),
        ("bytes=", "invalid-range"),
        ("bytes=-", "invalid-range"),
        ("items=0-1", "invalid-range"),
        ("bytes=a-b", "invalid-range"),
        ("bytes=0-1,5-6", "invalid-range"),
        ("bytes=20-10", "invalid-range"),
        ("bytes=0x10-20", "invalid-range"),
        ("bytes=1e3-", "invalid-range"),
        ("bytes=99999999999999999999-", "invalid-range"),  # 20 digits: not a byte offset
        ("bytes=" + "1" * 300, "invalid-range"),
        ("bytes=\x00-1", "invalid-range"),
        ("bytes=1000-", "range-not-satisfiable"),
        ("bytes=5000-6000", "range-not-satisfiable"),
        ("bytes=-0", "range-not-satisfiable"),
    ],
)
def test_garbage_is_refused_with_a_stable_id(header: str, error_id: str) -> None:
    with pytest.raises(RangeError) as exc:
        parse_range(header, SIZE)
    assert exc.value.error_id == error_id and str(exc.value)


def test_an_empty_recording_has_no_satisfiable_range() -> None:
    for header in ("bytes=0-", "bytes=-1"):
        with pytest.raises(RangeError) as exc:
            parse_range(header, 0)
        assert exc.value.error_id == "range-not-satisfiable"


@settings(max_examples=500, deadline=None)
@given(
    header=st.text(max_size=60) | st.from_regex(r"bytes=[0-9]{0,6}-[0-9]{0,6}"),
    size=st.integers(0, 10**6),
)
def test_any_header_gives_a_range_inside_the_file_or_a_range_error(header: str, size: int) -> None:
    try:
        r = parse_range(header, size)
    except RangeError as exc:
        assert exc.error_id in ("invalid-range", "range-not-satisfiable")
        return
    assert r is not None and 0 <= r.start <= r.end < size
