"""The AMI parser's C step (ccbridge/ami/_fastparse.c): built here, and what it answers
for every block equals the Python lines it stands for (tests/unit/test_ami_codec.py runs
the whole parser both ways)."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccbridge.ami import codec
from ccbridge.ami.codec import AmiMessage

NO_SEPARATOR, MIXED, TOO_MANY, WIDE = -1, -2, -3, -4


def test_the_c_step_is_built() -> None:
    assert codec._fill is not None, (
        "ccbridge/ami/_fastparse.c is not built: `make venv` builds it (gcc, python3-dev)"
    )


def fill(block: str, crlf: bool = True, max_fields: int = 1000) -> tuple[int, dict[str, str]]:
    assert codec._fill is not None
    msg: AmiMessage = dict.__new__(AmiMessage)
    n = codec._fill(msg, block, crlf, max_fields)
    return n, dict(msg)


def reference(block: str, crlf: bool, max_fields: int) -> tuple[int, dict[str, str] | None]:
    """What feed's Python lines make of the block (None: the fields are not compared)."""
    if any(ord(c) > 0xFF for c in block):
        return WIDE, None
    lines = block.split("\r\n" if crlf else "\n")
    if crlf and block.count("\n") != len(lines) - 1:
        return MIXED, None
    if len(lines) > max_fields:
        return TOO_MANY, {}
    pairs = [line.split(": ", 1) for line in lines]
    if any(len(p) != 2 for p in pairs):
        return NO_SEPARATOR, None
    return len(lines), dict(pairs)  # type: ignore[arg-type]


def test_an_event_block() -> None:
    n, got = fill("Event: QueueMemberStatus\r\nQueue: sales-en\r\nStatus: 1")
    assert n == 3
    assert got == {"Event": "QueueMemberStatus", "Queue": "sales-en", "Status": "1"}
    assert list(got) == ["Event", "Queue", "Status"]


def test_values_keep_colons_carriage_returns_and_empty_values() -> None:
    n, got = fill("Event: X\r\nA: b: c\r\nB: \r\nC: x\ry\r\nD: tail\r")
    assert n == 5
    assert got == {"Event": "X", "A": "b: c", "B": "", "C": "x\ry", "D": "tail\r"}


def test_lf_line_ends() -> None:
    assert fill("Event: X\nA: 1\r", crlf=False) == (2, {"Event": "X", "A": "1\r"})


def test_a_repeated_key_keeps_the_last_and_counts_every_line() -> None:
    # feed sees the count differ from the dict's size and keeps every pair in Python
    assert fill("Event: X\r\nA: 1\r\nA: 2") == (3, {"Event": "X", "A": "2"})


@pytest.mark.parametrize(
    ("block", "crlf", "answer"),
    [
        ("Event: X\r\nEmpty:", True, NO_SEPARATOR),  # "Key:" with no space
        ("Event: X\r\nno separator", True, NO_SEPARATOR),
        ("Event: X\r\n", True, NO_SEPARATOR),  # an empty last line
        ("Event: X\nA: 1", True, MIXED),
        ("\nEvent: X", True, MIXED),
        ("Event: \u20ac", True, WIDE),
        ("Event: \U0001f600", False, WIDE),
    ],
)
def test_what_it_leaves_to_python(block: str, crlf: bool, answer: int) -> None:
    assert fill(block, crlf)[0] == answer


def test_too_many_lines_set_nothing() -> None:
    block = "\r\n".join(f"F{i}: v" for i in range(11))
    assert fill(block, max_fields=10) == (TOO_MANY, {})
    assert fill(block, max_fields=11)[0] == 11


def test_keys_are_interned_values_are_not() -> None:
    _, got = fill("Event: X\r\nQueue: sales-en")
    key = next(k for k in got if k == "Queue")
    assert key is sys.intern("Queue")


def test_short_values_are_shared_between_messages_long_ones_are_not() -> None:
    _, one = fill("Event: X\r\nStatus: 1\r\nUniqueid: 1760000000.123456789")
    _, two = fill("Event: X\r\nStatus: 1\r\nUniqueid: 1760000000.123456789")
    assert one == two
    assert one["Status"] is two["Status"]  # up to 16 characters: from the table
    assert one["Uniqueid"] is not two["Uniqueid"]


def test_a_slot_taken_by_another_string_answers_the_right_one() -> None:
    # More distinct keys and values than the tables have slots: every answer is still
    # its own text (a slot is checked by length and bytes, then replaced).
    blocks = [f"Event: E{i}\r\nK{i}: v{i}" for i in range(5000)]
    for i, block in enumerate(blocks):
        assert fill(block) == (2, {"Event": f"E{i}", f"K{i}": f"v{i}"})
    for i, block in enumerate(reversed(blocks)):
        j = len(blocks) - 1 - i
        assert fill(block) == (2, {"Event": f"E{j}", f"K{j}": f"v{j}"})


def test_wrong_arguments_raise_type_error() -> None:
    assert codec._fill is not None
    with pytest.raises(TypeError):
        codec._fill({}, b"Event: X", True, 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        codec._fill([], "Event: X", True, 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        codec._fill({}, "Event: X", True)  # type: ignore[call-arg]


_TEXT = st.text(alphabet=st.sampled_from(list("Ev: \r\n:a\u00e9\u20ac")), max_size=60)
_LINE = st.tuples(
    st.sampled_from(["Event", "Queue", "", "A b", "é"]),
    st.sampled_from([": ", ":", " : ", ""]),
    st.sampled_from(["", "x", "y: z", "\r", "é", "\u20ac"]),
)


@given(
    st.one_of(
        _TEXT,
        st.lists(_LINE, max_size=8).map(lambda lines: "\r\n".join(k + s + v for k, s, v in lines)),
    ),
    st.booleans(),
    st.integers(min_value=0, max_value=9),
)
def test_any_block_answers_as_the_python_lines(block: str, crlf: bool, max_fields: int) -> None:
    n, got = fill(block, crlf, max_fields)
    want, fields = reference(block, crlf, max_fields)
    assert n == want
    if fields is not None:
        assert got == fields
        assert list(got) == list(fields)


def _parse(data: bytes, cuts: list[int], c_step: bool) -> tuple[object, ...]:
    kept = codec._fill
    if not c_step:
        codec._fill = None
    try:
        parser = codec.AmiParser(expect_banner=False, max_line=40, max_message=200)
        got: list[tuple[tuple[str, str], ...]] = []
        points = sorted({c % (len(data) + 1) for c in cuts})
        try:
            for a, b in zip([0, *points], [*points, len(data)], strict=True):
                got += [m.fields for m in parser.feed(data[a:b])]
        except codec.AmiProtocolError as exc:
            return (got, str(exc))
        return (got, parser.dropped, parser.skipped_lines, parser._pending, parser._tail)
    finally:
        codec._fill = kept


_PIECE = st.sampled_from(
    [
        "Event: QueueMemberStatus",
        "Queue: sales-en",
        "Response: Success",
        "Response: Follows",
        "--END COMMAND--",
        "A: b: c",
        "Empty:",
        "no colon",
        "Event: \u00e9\u20ac",
        "X" * 45,
        "",
    ]
)


@given(
    st.lists(st.tuples(_PIECE, st.sampled_from(["\r\n", "\n", "\r\n\r\n", "\n\n"])), max_size=30),
    st.lists(st.integers(min_value=0, max_value=2_000), max_size=6),
)
def test_a_stream_parses_the_same_with_and_without_the_c_step(
    pieces: list[tuple[str, str]], cuts: list[int]
) -> None:
    data = "".join(p + end for p, end in pieces).encode()
    assert _parse(data, cuts, c_step=True) == _parse(data, cuts, c_step=False)
