"""ccbridge's AGI codec against pyst2, an independent implementation of the same protocol.

pyst2 is the classic Python AGI library (its stdin `AGI` class; its FastAGI module does not
import on Python 3). Where both handle an input they must agree; where pyst2 gets it wrong
(an unescaped quote in a value) the test shows why ccbridge has its own codec.
"""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator

import pytest
from asterisk.agi import AGI

from ccbridge.agi import codec

HEADER = (
    "agi_network: yes\n"
    "agi_network_script: route?site=bangalore&lang=bn\n"
    "agi_request: agi://127.0.0.1:4573/route?site=bangalore&lang=bn\n"
    "agi_channel: PJSIP/carrier-in-00000001\n"
    "agi_language: en\n"
    "agi_type: PJSIP\n"
    "agi_uniqueid: bangalore-1795352380.4\n"
    "agi_version: 22.10.1\n"
    "agi_callerid: +8801712345678\n"
    "agi_calleridname: unknown\n"
    "agi_callingpres: 0\n"
    "agi_dnid: +918000000001\n"
    "agi_rdnis: unknown\n"
    "agi_context: ccb-route\n"
    "agi_extension: +918000000001\n"
    "agi_priority: 4\n"
    "agi_enhanced: 0.0\n"
    "agi_accountcode: \n"
    "agi_threadid: 140251234567\n"
    "agi_arg_1: first\n"
    "agi_arg_2: second arg\n"
    "\n"
)


@pytest.fixture
def pyst2_agi() -> Iterator[type[AGI]]:
    # pyst2's AGI installs a SIGHUP handler: put the old one back afterwards.
    old = signal.getsignal(signal.SIGHUP)
    yield AGI
    signal.signal(signal.SIGHUP, old)


def make(agi_cls: type[AGI], stdin_text: str) -> tuple[AGI, io.StringIO]:
    out = io.StringIO()
    agi = agi_cls(stdin=io.StringIO(stdin_text), stdout=out, stderr=io.StringIO())
    return agi, out


def asterisk_args(line: str) -> list[str]:
    """Split a command line the way res_agi.c's parse_args does: quotes group, backslash
    escapes the next character."""
    args: list[str] = []
    cur: list[str] = []
    quoted = escaped = started = False
    for ch in line.rstrip("\n"):
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = started = True
        elif ch == '"':
            quoted = not quoted
            started = True
        elif ch == " " and not quoted:
            if started:
                args.append("".join(cur))
            cur, started = [], False
        else:
            cur.append(ch)
            started = True
    if started:
        args.append("".join(cur))
    return args


def test_both_read_the_same_request_header(pyst2_agi: type[AGI]) -> None:
    agi, _ = make(pyst2_agi, HEADER)
    parser = codec.AgiRequestParser()
    request = parser.feed(HEADER.encode())
    assert request is not None
    assert dict(request.env) == agi.env
    assert request.args == ("first", "second arg")
    assert request.path == "route" and request.query["lang"] == "bn"


@pytest.mark.parametrize("value", ["queue", "orders-bn", "blr-dac,blr-mnl", "", "two words"])
def test_set_variable_means_the_same_to_asterisk(pyst2_agi: type[AGI], value: str) -> None:
    agi, out = make(pyst2_agi, HEADER + "200 result=1\n")
    agi.set_variable("CCB_QUEUE", value)
    theirs = asterisk_args(out.getvalue())
    ours = asterisk_args(codec.set_variable("CCB_QUEUE", value))
    assert ours == theirs == ["SET", "VARIABLE", "CCB_QUEUE", value]


def test_a_quote_in_a_value_survives_only_with_ccbridges_escaping(pyst2_agi: type[AGI]) -> None:
    value = 'say "hello"'
    agi, out = make(pyst2_agi, HEADER + "200 result=1\n")
    agi.set_variable("CCB_X", value)
    assert asterisk_args(codec.set_variable("CCB_X", value))[3] == value
    assert asterisk_args(out.getvalue())[3] != value  # pyst2 does not escape quotes


@pytest.mark.parametrize(
    ("line", "result", "data"),
    [
        ("200 result=1", "1", ""),
        ("200 result=0 (timeout)", "0", "timeout"),
        ("200 result=1 (orders-bn)", "1", "orders-bn"),
    ],
)
def test_both_read_the_same_reply(pyst2_agi: type[AGI], line: str, result: str, data: str) -> None:
    agi, _ = make(pyst2_agi, HEADER + line + "\n")
    theirs = agi.execute("NOOP")
    ours = codec.parse_reply(line)
    assert theirs["result"] == (result, data)
    assert (str(ours.result), ours.data) == (result, data)


def test_minus_one_is_an_error_to_both(pyst2_agi: type[AGI]) -> None:
    from asterisk.agi import AGIAppError

    agi, _ = make(pyst2_agi, HEADER + "200 result=-1\n")
    with pytest.raises(AGIAppError):
        agi.execute("NOOP")
    assert codec.parse_reply("200 result=-1").result == -1
