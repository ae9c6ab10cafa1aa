"""Unit tests for the FastAGI codec: header parsing, reply parsing, command encoding."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccbridge.agi import codec
from ccbridge.agi.codec import (
    HANGUP,
    AgiProtocolError,
    AgiReply,
    AgiReplyParser,
    AgiRequest,
    AgiRequestParser,
    parse_reply,
)

# What Asterisk 22 writes for AGI(agi://10.0.0.5/route?site=in&lang=hi,sales,vip).
HEADER = (
    b"agi_network: yes\n"
    b"agi_network_script: route?site=in&lang=hi&site=lk\n"
    b"agi_request: agi://10.0.0.5/route?site=in&lang=hi&site=lk\n"
    b"agi_channel: PJSIP/carrier-in-00000001\n"
    b"agi_language: en\n"
    b"agi_type: PJSIP\n"
    b"agi_uniqueid: 1732265000.1\n"
    b"agi_version: 22.10.1\n"
    b"agi_callerid: 919876543210\n"
    b"agi_calleridname: Asha \xc3\x89\n"
    b"agi_callingpres: 0\n"
    b"agi_dnid: 18005550100\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: from-carrier\n"
    b"agi_extension: 18005550100\n"
    b"agi_priority: 3\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 140230000000000\n"
    b"agi_arg_1: sales\n"
    b"agi_arg_2: vip\n"
    b"\n"
)


@pytest.fixture(autouse=True, scope="module", params=["c", "python"])
def split_step(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test twice: the header's fast path split by the AMI parser's C step
    (ccbridge/ami/_fastparse.c), and in Python alone, as where it could not be built."""
    kept = codec._fill
    if request.param == "python":
        codec._fill = None
    elif kept is None:
        pytest.fail("the C extension ccbridge.ami._fastparse is not built (make venv)")
    yield str(request.param)
    codec._fill = kept


def _check_request(req: AgiRequest) -> None:
    assert req.path == "route"
    assert req.network_script == "route?site=in&lang=hi&site=lk"
    assert dict(req.query) == {"site": "lk", "lang": "hi"}  # last wins
    assert req.args == ("sales", "vip")
    assert req.channel == "PJSIP/carrier-in-00000001"
    assert req.uniqueid == "1732265000.1"
    assert req.callerid == "919876543210"
    assert req.dnid == "18005550100"
    assert req.extension == "18005550100"
    assert req.context == "from-carrier"
    assert req.language == "en"
    assert req.env["agi_calleridname"] == "Asha É"
    assert req.env["agi_accountcode"] == ""
    assert req.env["agi_rdnis"] == "unknown"


def test_header_in_one_piece() -> None:
    parser = AgiRequestParser()
    req = parser.feed(HEADER)
    assert req is not None
    _check_request(req)
    assert parser.done
    assert parser.tail == b""


@pytest.mark.parametrize("cut", range(1, len(HEADER)))
def test_header_split_at_every_byte(cut: int) -> None:
    parser = AgiRequestParser()
    assert parser.feed(HEADER[:cut]) is None
    req = parser.feed(HEADER[cut:])
    assert req is not None
    _check_request(req)


def test_header_byte_by_byte() -> None:
    parser = AgiRequestParser()
    results = [parser.feed(HEADER[i : i + 1]) for i in range(len(HEADER))]
    assert all(r is None for r in results[:-1])
    last = results[-1]
    assert last is not None
    _check_request(last)


def test_sessions_share_the_header_keys_and_repeating_values_not_their_own() -> None:
    """1,000 sessions open at once hold one copy of each key, DID, context and version
    (BENCHMARKS.md section 4): in one read and byte by byte (the checked path) alike."""
    one = AgiRequestParser().feed(HEADER)
    parser = AgiRequestParser()
    two = [parser.feed(HEADER[i : i + 1]) for i in range(len(HEADER))][-1]
    other = HEADER.replace(b"1732265000.1", b"1732265000.2").replace(b"-00000001", b"-00000002")
    three = AgiRequestParser().feed(other)
    assert one is not None and two is not None and three is not None
    _check_request(two)
    for req in (two, three):
        for key in one.env:
            (same,) = (k for k in req.env if k == key)
            assert same is key  # the key itself, not an equal copy
        for key in ("agi_dnid", "agi_context", "agi_version", "agi_language", "agi_priority"):
            assert req.env[key] is one.env[key]
        assert next(k for k in req.query if k == "site") is next(
            k for k in one.query if k == "site"
        )
    # what is the call's own stays its own: nothing else would hold it longer
    assert three.uniqueid == "1732265000.2" and three.uniqueid is not one.uniqueid
    assert three.channel.endswith("-00000002")


def test_header_crlf_tolerated() -> None:
    req = AgiRequestParser().feed(HEADER.replace(b"\n", b"\r\n"))
    assert req is not None
    _check_request(req)


def test_bytes_after_blank_line_are_kept_as_tail() -> None:
    parser = AgiRequestParser()
    req = parser.feed(HEADER + b"HANGUP\n")
    assert req is not None
    assert parser.tail == b"HANGUP\n"
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_no_script_and_leading_slash() -> None:
    bare = AgiRequestParser().feed(b"agi_network: yes\nagi_request: agi://h\n\n")
    assert bare is not None
    assert (bare.path, bare.network_script, dict(bare.query), bare.args) == ("", "", {}, ())
    slashed = AgiRequestParser().feed(b"agi_network_script: /a/b?x=1&y=\n\n")
    assert slashed is not None
    assert slashed.path == "a/b"
    assert dict(slashed.query) == {"x": "1", "y": ""}


def test_args_in_numeric_order() -> None:
    env = {f"agi_arg_{i}": f"v{i}" for i in (10, 2, 1, 3, 4, 5, 6, 7, 8, 9)}
    assert AgiRequest.from_env(env).args == tuple(f"v{i}" for i in range(1, 11))


def test_request_is_immutable() -> None:
    req = AgiRequest.from_env({"agi_channel": "x"})
    with pytest.raises(AttributeError):
        req.path = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        req.env["agi_channel"] = "y"  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\n", "empty header"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not an agi_ header line"),
        (b"agi_network yes\n", "not an agi_ header line"),
        (b"AGI_NETWORK: yes\n", "not an agi_ header line"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", "not an agi_ header line"),
        (b"agi_x: a\x00b\n", "control bytes"),
        (b"agi_x: 1\nagi_x: 2\n\n", "duplicate"),
        (b"agi_x: " + b"a" * 5000, "line longer"),
        (b"agi_x: " + b"a" * 5000 + b"\n", "line longer"),
    ],
)
def test_header_rejects(data: bytes, message: str) -> None:
    parser = AgiRequestParser()
    with pytest.raises(AgiProtocolError, match=message):
        parser.feed(data)
    # A failed parser stays failed: the connection must be dropped, not resumed.
    with pytest.raises(AgiProtocolError):
        parser.feed(b"agi_ok: 1\n\n")


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(AgiProtocolError, ValueError)


def test_megabyte_line_rejected_at_the_limit_not_at_the_end() -> None:
    parser = AgiRequestParser()
    assert parser.feed(b"agi_x: " + b"a" * 4000) is None
    with pytest.raises(AgiProtocolError, match="line longer than 4096"):
        parser.feed(b"a" * 200)


def test_header_size_and_line_count_limits() -> None:
    many = b"".join(b"agi_k%d: v\n" % i for i in range(201)) + b"\n"
    with pytest.raises(AgiProtocolError, match="more than 200 lines"):
        AgiRequestParser().feed(many)
    big = b"".join(b"agi_k%d: %s\n" % (i, b"v" * 1000) for i in range(20)) + b"\n"
    with pytest.raises(AgiProtocolError, match="larger than 16384"):
        AgiRequestParser().feed(big)
    small = AgiRequestParser(max_header_bytes=64, max_lines=3, max_line_bytes=32)
    with pytest.raises(AgiProtocolError, match="longer than 32"):
        small.feed(b"agi_k: " + b"v" * 40 + b"\n")


# --------------------------------------------------------------------------- replies


@pytest.mark.parametrize(
    ("line", "code", "result", "data", "extra"),
    [
        ("200 result=1", 200, 1, "", ""),
        ("200 result=0 (timeout)", 200, 0, "timeout", ""),
        ("200 result=1 (value) endpos=12345", 200, 1, "value", "endpos=12345"),
        ("200 result=0 endpos=8000", 200, 0, "", "endpos=8000"),
        ("200 result=-1", 200, -1, "", ""),
        ("200 result=1 (a) b)", 200, 1, "a) b", ""),
        ("200 result=1 ()", 200, 1, "", ""),
        ("200 result=1 (with space)\r", 200, 1, "with space", ""),
        ("510 Invalid or unknown command", 510, None, "Invalid or unknown command", ""),
        (
            "511 Command Not Permitted on a dead channel or intercept routine",
            511,
            None,
            "Command Not Permitted on a dead channel or intercept routine",
            "",
        ),
        (
            "520 Invalid command syntax.  Proper usage not available.",
            520,
            None,
            "Invalid command syntax.  Proper usage not available.",
            "",
        ),
    ],
)
def test_parse_reply_table(line: str, code: int, result: int | None, data: str, extra: str) -> None:
    reply = parse_reply(line)
    assert (reply.code, reply.result, reply.data, reply.extra) == (code, result, data, extra)
    assert reply.raw == line.rstrip("\r")
    assert reply.ok is (code == 200)
    assert not reply.is_hangup


def test_parse_reply_non_integer_results() -> None:
    digits = parse_reply("200 result=*12#")
    assert (digits.result, digits.result_text) == (None, "*12#")
    empty = parse_reply("200 result= (timeout)")
    assert (empty.result, empty.result_text, empty.data) == (None, "", "timeout")


def test_parse_reply_hangup_is_a_distinct_marker() -> None:
    reply = parse_reply("HANGUP\n")
    assert reply is HANGUP
    assert reply.is_hangup
    assert not reply.ok


@pytest.mark.parametrize(
    "line", ["", "OK", "20 result=1", "200result=1", "200 ok", "200 result=1 (x"]
)
def test_parse_reply_rejects(line: str) -> None:
    with pytest.raises(AgiProtocolError):
        parse_reply(line)


USAGE_REPLY = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b"Usage: SET VARIABLE <variablename> <value>\n"
    b"   Sets a variable to the current channel.\n"
    b"520 End of proper usage.\n"
)


def test_reply_parser_multiline_520_split_everywhere() -> None:
    stream = b"200 result=1\n" + USAGE_REPLY + b"HANGUP\n510 Invalid or unknown command\n"
    for cut in range(len(stream) + 1):
        parser = AgiReplyParser()
        replies = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert [r.code for r in replies] == [200, 520, 0, 510], cut
        usage = replies[1]
        assert usage.data == (
            "Usage: SET VARIABLE <variablename> <value>\n   Sets a variable to the current channel."
        )
        assert usage.raw.startswith("520-Invalid command syntax.")
        assert usage.raw.endswith("520 End of proper usage.")
        assert replies[2] is HANGUP


def test_reply_parser_crlf_and_partial_lines() -> None:
    parser = AgiReplyParser()
    assert parser.feed(b"200 resu") == []
    assert parser.feed(b"lt=1 (x)\r\n200 result=0\r") == [
        AgiReply(code=200, result=1, data="x", raw="200 result=1 (x)", result_text="1")
    ]
    assert [r.raw for r in parser.feed(b"\n")] == ["200 result=0"]


def test_reply_parser_limits_and_sticky_error() -> None:
    parser = AgiReplyParser()
    with pytest.raises(AgiProtocolError, match="longer than 4096"):
        parser.feed(b"2" * 5000)
    with pytest.raises(AgiProtocolError):
        parser.feed(b"200 result=1\n")
    garbage = AgiReplyParser()
    with pytest.raises(AgiProtocolError, match="malformed"):
        garbage.feed(b"\x16\x03\x01 hello\n")


# --------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (codec.set_variable("CCB_ROUTE", "queue-sales"), 'SET VARIABLE CCB_ROUTE "queue-sales"'),
        (codec.set_variable("X", ""), 'SET VARIABLE X ""'),
        (codec.set_variable("X", 'say "hi" C:\\x'), 'SET VARIABLE X "say \\"hi\\" C:\\\\x"'),
        (codec.set_variable("__INHERIT", "1"), 'SET VARIABLE __INHERIT "1"'),
        (codec.set_variable("CDR(userfield)", "a b"), 'SET VARIABLE CDR(userfield) "a b"'),
        (codec.set_variable("HASH(h,k)", "v"), 'SET VARIABLE HASH(h,k) "v"'),
        (codec.get_variable("CALLERID(num)"), "GET VARIABLE CALLERID(num)"),
        (codec.verbose("routing to sales"), 'VERBOSE "routing to sales" 1'),
        (codec.verbose("x", 3), 'VERBOSE "x" 3'),
        (codec.get_data("ivr/menu"), 'GET DATA "ivr/menu"'),
        (codec.get_data("ivr/menu", 5000, 1), 'GET DATA "ivr/menu" 5000 1'),
        (codec.get_data("ivr/menu", max_digits=4), 'GET DATA "ivr/menu" 0 4'),
        (codec.stream_file("welcome"), 'STREAM FILE "welcome" ""'),
        (codec.stream_file("welcome", "12#", 8000), 'STREAM FILE "welcome" "12#" 8000'),
        (codec.exec_app("Answer"), "EXEC Answer"),
        (codec.exec_app("Dial", "PJSIP/100,30"), 'EXEC Dial "PJSIP/100,30"'),
        (codec.exec_app("Dial", ["PJSIP/100", "30", "tT"]), 'EXEC Dial "PJSIP/100,30,tT"'),
    ],
)
def test_encoders(line: str, expected: str) -> None:
    assert line == expected


@pytest.mark.parametrize(
    "name", ["", "1X", "A B", 'X"', "X\n", "F(a)b", "F((a))", "F(a b)", "X;Y", "X-Y"]
)
def test_invalid_variable_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid channel variable name"):
        codec.set_variable(name, "v")


@pytest.mark.parametrize("value", ["a\nSET VARIABLE X 1", "a\r", "a\x00"])
def test_values_with_newlines_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        codec.set_variable("X", value)


def test_other_encoder_validation() -> None:
    with pytest.raises(ValueError, match="level"):
        codec.verbose("x", 5)
    with pytest.raises(ValueError, match="escape digits"):
        codec.stream_file("f", "1a")
    with pytest.raises(ValueError, match="application"):
        codec.exec_app("Dial Foo")
    with pytest.raises(ValueError, match="max_digits"):
        codec.get_data("f", 1000, 0)
    with pytest.raises(ValueError, match="longer than 2046"):
        codec.set_variable("X", "v" * 2100)


def unquote_like_asterisk(line: str) -> list[str]:
    """A Python port of res_agi.c parse_args(), to check quoting round-trips."""
    argv: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and cur is None:
                cur = []
                argv.append("")
            escaped = False
            continue
        if ch in " \t" and not quoted and not escaped:
            if cur is not None:
                argv[-1] = "".join(cur)
            cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if cur is None:
            cur = []
            argv.append("")
        cur.append(ch)
        escaped = False
    if cur is not None:
        argv[-1] = "".join(cur)
    return argv


@pytest.mark.parametrize("value", ["", "plain", 'q"uote', "back\\slash", ' lead "\\" ', "\t"])
def test_quoting_round_trips_through_asterisk_parser(value: str) -> None:
    assert unquote_like_asterisk(codec.set_variable("V", value)) == ["SET", "VARIABLE", "V", value]


_QUERY_CHARS = "ab=&%+2041Ff;é "


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_QUERY_CHARS, max_size=30))
def test_the_query_parser_is_parse_qs_last_value_wins(raw: str) -> None:
    from urllib.parse import parse_qs

    expected = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
    assert codec.parse_query(raw) == expected


def test_common_replies_are_shared_and_equal_to_a_full_parse() -> None:
    for raw in ("200 result=0", "200 result=1"):
        assert codec.parse_reply(raw + "\n") is codec.parse_reply(raw)
        assert codec.parse_reply(raw) == codec._parse_reply(raw)
    assert codec.parse_reply("200 result=1 (x)").data == "x"


# Mostly lines Asterisk could write, sometimes one the checked path refuses or reads
# its own way (no space, CR, control bytes, a bad key, a duplicate).
_GOOD_KEYS = ["agi_arg_1", "agi_arg_2", "agi_arg_3", "agi_x", "agi_y", "agi_z"] * 3
_HEADER_LINE = st.tuples(
    st.sampled_from([*_GOOD_KEYS, "agi_arg_01", "agi_", "agi_A", "agi_a-b", "x_y", "agi_a:b"]),
    st.sampled_from([": "] * 8 + [":", ":  ", " : ", ":\t"]),
    st.one_of(
        st.text(alphabet="ab :\té", max_size=8),
        st.text(alphabet="ab :\t\ré\x01\x7f", max_size=8),
    ),
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(_HEADER_LINE, max_size=4))
def test_the_one_read_fast_path_parses_as_the_checked_path(lines: list[str]) -> None:
    """A whole header in one read takes a fast path (codec._fast_env); a header that
    arrives in two reads is checked line by line: both accept and refuse alike."""
    block = "agi_network: yes\n" + "".join(line + "\n" for line in lines) + "\n"
    assert "\n\n" not in block[:-1]
    data = block.encode()

    def parse(*chunks: bytes) -> AgiRequest | str:
        parser = AgiRequestParser()
        try:
            for chunk in chunks:
                request = parser.feed(chunk)
        except AgiProtocolError:
            return "refused"
        assert request is not None
        return request

    split = len("agi_network: yes\n")
    assert parse(data) == parse(data[:split], data[split:])


def test_the_fast_path_splits_with_the_c_step_where_built(split_step: str) -> None:
    """One read of a header as Asterisk writes it: split by fill when it is there, in
    Python otherwise (a caller name of wider characters too), the same pairs."""
    block = HEADER[: HEADER.index(b"\n\n") + 1]
    fast = codec._fast_env(block, codec.MAX_HEADER_LINES)
    assert fast is not None
    env, arg_keys, filled = fast
    assert filled is (split_step == "c")
    assert arg_keys == 2 and env["agi_calleridname"] == "Asha \u00c9"
    wide = block.replace("Asha \u00c9".encode(), "\u0986\u09b6\u09be".encode())
    wide_fast = codec._fast_env(wide, codec.MAX_HEADER_LINES)
    assert wide_fast is not None and wide_fast[2] is False  # fill's -4: split in Python
    assert wide_fast[0] == {**env, "agi_calleridname": "\u0986\u09b6\u09be"}
