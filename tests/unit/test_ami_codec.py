"""AMI codec: stream parsing (any split, banners, repeats, command output, limits), encoding."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccbridge.ami import codec
from ccbridge.ami.codec import (
    AmiMessage,
    AmiParser,
    AmiProtocolError,
    encode_action,
    encode_fields,
)

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
LOGIN_OK = b"Response: Success\r\nActionID: a1\r\nMessage: Authentication accepted\r\n\r\n"
MEMBER_STATUS = (
    b"Event: QueueMemberStatus\r\n"
    b"Privilege: agent,all\r\n"
    b"Queue: sales-en\r\n"
    b"MemberName: Agent 1001\r\n"
    b"Interface: PJSIP/agent1001\r\n"
    b"Status: 1\r\n"
    b"Paused: 0\r\n"
    b"\r\n"
)
STREAM = BANNER + LOGIN_OK + MEMBER_STATUS


@pytest.fixture(autouse=True, scope="module", params=["c", "python"])
def parse_step(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test twice: with feed's C step (ccbridge/ami/_fastparse.c), and in Python
    alone, as on a machine where the extension could not be built."""
    kept = codec._fill
    if request.param == "python":
        codec._fill = None
    yield str(request.param)
    codec._fill = kept


def parse_all(data: bytes, **kwargs: object) -> list[AmiMessage]:
    return AmiParser(**kwargs).feed(data)  # type: ignore[arg-type]


def test_banner_then_messages() -> None:
    parser = AmiParser()
    messages = parser.feed(STREAM)
    assert parser.banner == "Asterisk Call Manager/9.0.0"
    assert parser.version == "9.0.0"
    assert [(m.kind, m.name) for m in messages] == [
        ("response", "Success"),
        ("event", "QueueMemberStatus"),
    ]
    assert messages[0].action_id == "a1"
    assert messages[1]["Interface"] == "PJSIP/agent1001"
    assert messages[1].to_dict()["Status"] == "1"


def test_split_at_every_byte_gives_the_same_messages() -> None:
    whole = [m.fields for m in parse_all(STREAM)]
    for cut in range(1, len(STREAM)):
        parser = AmiParser()
        got = parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:])
        assert [m.fields for m in got] == whole, cut


def test_one_byte_at_a_time() -> None:
    parser = AmiParser()
    got: list[AmiMessage] = []
    for i in range(len(STREAM)):
        got.extend(parser.feed(STREAM[i : i + 1]))
    assert [m.name for m in got] == ["Success", "QueueMemberStatus"]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    parser = AmiParser()
    got = [m for chunk in chunks for m in parser.feed(chunk)]
    assert [m.fields for m in got] == [m.fields for m in parse_all(STREAM)]


RICH = (
    BANNER
    + b"\r\n"
    + MEMBER_STATUS
    + b"Response: Follows\r\nPrivilege: Command\r\nActionID: c9\r\n"
    + b"line one: with colon\n\n\nline after two blanks\n--END COMMAND--\r\n\r\n"
    + b"Event: Newchannel\r\nChanVariable: A=1\r\nChanVariable: B=2\r\n\r\n"
    + b"Event: Hangup\r\nodd line\r\nEmpty:\r\n\r\n\r\n"
    + LOGIN_OK.replace(b"\r\n", b"\n")
)


@given(st.lists(st.integers(min_value=0, max_value=len(RICH)), max_size=20))
def test_rich_stream_any_chunking(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [RICH[a:b] for a, b in zip([0, *points], [*points, len(RICH)], strict=True)]
    parser = AmiParser()
    got = [m for chunk in chunks for m in parser.feed(chunk)]
    assert [m.name for m in got] == [
        "QueueMemberStatus",
        "Follows",
        "Newchannel",
        "Hangup",
        "Success",
    ]
    assert got[1].getall("Output") == [
        "line one: with colon",
        "",
        "",
        "line after two blanks",
    ]
    assert got[2].getall("ChanVariable") == ["A=1", "B=2"]
    assert got[3].fields == (("Event", "Hangup"), ("Empty", ""))
    assert parser.skipped_lines == 1


def test_parsed_and_constructed_messages_agree() -> None:
    (parsed,) = AmiParser(expect_banner=False).feed(MEMBER_STATUS)
    built = AmiMessage(parsed.fields)
    assert built == parsed
    assert built.fields == parsed.fields
    assert not parsed.has_repeats
    assert (built.kind, built.name) == (parsed.kind, parsed.name)


def test_bare_lf_line_ends() -> None:
    data = STREAM.replace(b"\r\n", b"\n")
    assert [m.fields for m in parse_all(data)] == [m.fields for m in parse_all(STREAM)]


def test_not_an_ami_banner_is_rejected() -> None:
    with pytest.raises(AmiProtocolError, match="banner"):
        AmiParser().feed(b"HTTP/1.1 400 Bad Request\r\n\r\n")


def test_proxy_banner_accepted_and_client_side_has_none() -> None:
    assert AmiParser().feed(b"Asterisk Call Manager Proxy/1.0\r\n") == []
    (action,) = AmiParser(expect_banner=False).feed(b"Action: Ping\r\nActionID: 7\r\n\r\n")
    assert action.kind == "other"
    assert action["Action"] == "Ping"


def test_repeated_keys_keep_every_value_and_first_wins() -> None:
    data = (
        b"Event: Newchannel\r\nChannel: PJSIP/a-00000001\r\n"
        b"ChanVariable: FROM_DID=\r\nChanVariable: SIPURI=sip:42@10.0.0.1:5060\r\n\r\n"
    )
    (msg,) = AmiParser(expect_banner=False).feed(data)
    assert msg["ChanVariable"] == "FROM_DID="
    assert msg.getall("ChanVariable") == ["FROM_DID=", "SIPURI=sip:42@10.0.0.1:5060"]
    assert msg.getall("chanvariable") == msg.getall("ChanVariable")
    assert msg.getall("Missing") == []
    assert len(msg) == 3


def test_getall_folds_case_on_keys_of_any_length_and_script() -> None:
    # getall skips keys of another length than an ASCII key: a key whose lower case is
    # that ASCII key is as long (the Kelvin sign folds to "k"); a non-ASCII key (whose
    # lower case may be longer, U+0130) is compared the long way.
    data = (
        "Event: X\r\nChannel: a\r\nCHANNEL: b\r\n\u212aind: kelvin\r\n"
        "Chan: short\r\n\u0130d: dotted\r\n\r\n"
    ).encode()
    (msg,) = AmiParser(expect_banner=False).feed(data)
    assert msg.getall("channel") == ["a", "b"]
    assert msg.getall("Kind") == ["kelvin"]
    assert msg.getall("chan") == ["short"]
    assert msg.getall("\u0130D") == ["dotted"]
    assert msg.getall("i\u0307d") == ["dotted"]  # what U+0130 folds to: two characters


def test_lookup_falls_back_to_case_insensitive() -> None:
    (msg,) = parse_all(STREAM)[:1]
    assert msg["actionid"] == "a1"
    # get() and `in` stay exact-case: they are the event path's dict-speed lookups.
    assert "ActionID" in msg and "ACTIONID" not in msg
    assert msg.get("ActionID") == "a1"
    assert msg.get("nope") is None
    with pytest.raises(KeyError):
        msg["nope"]


def test_a_message_is_read_only_and_shared_not_copied() -> None:
    (msg,) = AmiParser(expect_banner=False).feed(MEMBER_STATUS)
    mutations = [
        lambda: msg.__setitem__("Queue", "x"),
        lambda: msg.__delitem__("Queue"),
        lambda: msg.update({"Queue": "x"}),
        lambda: msg.setdefault("New", "x"),
        lambda: msg.pop("Queue"),
        lambda: msg.popitem(),
        lambda: msg.clear(),
    ]
    for mutate in mutations:
        with pytest.raises(TypeError, match="read-only"):
            mutate()
    with pytest.raises(TypeError, match="read-only"):
        msg |= {"Queue": "x"}
    assert msg["Queue"] == "sales-en" and len(msg) == 7
    assert copy.copy(msg) is msg and copy.deepcopy(msg) is msg
    assert pickle.loads(pickle.dumps(msg)) == msg
    plain = msg.to_dict()
    plain["Queue"] = "changed"
    assert msg["Queue"] == "sales-en"


def test_an_event_with_too_many_fields_is_dropped_and_counted() -> None:
    parser = AmiParser(expect_banner=False)
    huge = b"Event: Bloat\r\n" + b"".join(b"F%d: v\r\n" % i for i in range(10_000)) + b"\r\n"
    got = parser.feed(huge + MEMBER_STATUS)
    assert [m.name for m in got] == ["QueueMemberStatus"]
    assert parser.dropped == 1


def test_a_lost_blank_line_drops_the_glued_block_and_the_stream_goes_on() -> None:
    parser = AmiParser(expect_banner=False)
    glued = MEMBER_STATUS[:-2] + b"Event: Hangup\r\nChannel: PJSIP/x\r\n\r\n"
    got = parser.feed(glued + MEMBER_STATUS)
    assert [m.name for m in got] == ["QueueMemberStatus"]
    assert got[0]["Queue"] == "sales-en"
    assert parser.dropped == 1


def test_values_keep_colons_and_empty_values() -> None:
    data = b"Event: DialBegin\r\nDestChannel: PJSIP/trunk: x\r\nCallerIDName: \r\nEmpty:\r\n\r\n"
    (msg,) = AmiParser(expect_banner=False).feed(data)
    assert msg["DestChannel"] == "PJSIP/trunk: x"
    assert msg["CallerIDName"] == ""
    assert msg["Empty"] == ""


def test_originate_response_event_is_an_event() -> None:
    data = b"Event: OriginateResponse\r\nResponse: Success\r\nChannel: Local/1@x\r\n\r\n"
    (msg,) = AmiParser(expect_banner=False).feed(data)
    assert (msg.kind, msg.name) == ("event", "OriginateResponse")


def test_command_output_asterisk_22_style() -> None:
    data = (
        b"Response: Success\r\nActionID: c1\r\nMessage: Command output follows\r\n"
        b"Output: Asterisk 22.1.0 built by root\r\nOutput: \r\nOutput: uptime: 5 s\r\n\r\n"
    )
    (msg,) = AmiParser(expect_banner=False).feed(data)
    assert msg.getall("Output") == ["Asterisk 22.1.0 built by root", "", "uptime: 5 s"]


def test_command_output_old_follows_style_with_blank_and_colon_lines() -> None:
    data = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: c2\r\n"
        b"Channel              Location             State   Application(Data)\n"
        b"\n"
        b"Local/1@dial: x      IVR_603@default:1    Up      AppDial((Outgoing Line))\n"
        b"1 calls processed\n"
        b"--END COMMAND--\r\n\r\n"
        b"Event: FullyBooted\r\n\r\n"
    )
    msg, booted = AmiParser(expect_banner=False).feed(data)
    assert msg["ActionID"] == "c2"
    assert msg["Privilege"] == "Command"
    assert msg.getall("Output") == [
        "Channel              Location             State   Application(Data)",
        "",
        "Local/1@dial: x      IVR_603@default:1    Up      AppDial((Outgoing Line))",
        "1 calls processed",
    ]
    assert booted.name == "FullyBooted"


def test_follows_marker_glued_to_last_output_line() -> None:
    data = b"Response: Follows\r\nPrivilege: Command\r\nNo such command--END COMMAND--\r\n\r\n"
    (msg,) = AmiParser(expect_banner=False).feed(data)
    assert msg.getall("Output") == ["No such command"]


def test_follows_without_body_ends_at_blank_line() -> None:
    data = b"Response: Follows\r\nMessage: x\r\n\r\nEvent: Hangup\r\n\r\n"
    first, second = AmiParser(expect_banner=False).feed(data)
    assert first["Message"] == "x"
    assert second.name == "Hangup"


def test_colonless_line_outside_command_output_is_skipped_and_counted() -> None:
    parser = AmiParser(expect_banner=False)
    (msg,) = parser.feed(b"Event: Hangup\r\ngarbage\r\nCause: 16\r\n\r\n")
    assert dict(msg) == {"Event": "Hangup", "Cause": "16"}
    assert parser.skipped_lines == 1


def test_extra_blank_lines_between_messages_are_ignored() -> None:
    got = AmiParser(expect_banner=False).feed(b"\r\n\r\nEvent: A\r\n\r\n\r\n\r\nEvent: B\r\n\r\n")
    assert [m.name for m in got] == ["A", "B"]


def test_utf8_split_across_chunks() -> None:
    data = "Event: Newchannel\r\nCallerIDName: José Ñandú\r\n\r\n".encode()
    cut = data.index("é".encode()) + 1
    parser = AmiParser(expect_banner=False)
    got = parser.feed(data[:cut]) + parser.feed(data[cut:])
    assert got[0]["CallerIDName"] == "José Ñandú"


def test_line_limit_on_a_complete_line() -> None:
    with pytest.raises(AmiProtocolError, match="line"):
        AmiParser(expect_banner=False, max_line=32).feed(b"Event: " + b"x" * 64 + b"\r\n")


def test_line_limit_on_an_unterminated_line() -> None:
    parser = AmiParser(expect_banner=False, max_line=32)
    assert parser.feed(b"Event: " + b"x" * 20) == []
    with pytest.raises(AmiProtocolError, match="line"):
        parser.feed(b"y" * 20)


def test_message_size_limit() -> None:
    parser = AmiParser(expect_banner=False, max_message=100)
    with pytest.raises(AmiProtocolError, match="message"):
        parser.feed(b"Event: X\r\n" + b"Key: value-value\r\n" * 10 + b"\r\n")


def test_size_limit_resets_per_message() -> None:
    one = b"Event: X\r\nKey: value\r\n\r\n"
    got = AmiParser(expect_banner=False, max_message=len(one) + 2).feed(one * 50)
    assert len(got) == 50


def test_secret_hidden_in_repr() -> None:
    (msg,) = AmiParser(expect_banner=False).feed(
        b"Action: Login\r\nUsername: ccb\r\nSecret: hunter2\r\n\r\n"
    )
    assert "hunter2" not in repr(msg)
    assert msg["Secret"] == "hunter2"


def test_encode_action_with_repeated_values_round_trips() -> None:
    wire = encode_action(
        "Originate",
        {"Channel": "PJSIP/1001", "Variable": ["A=1", "B=2"], "Async": "true"},
    )
    assert wire == (
        b"Action: Originate\r\nChannel: PJSIP/1001\r\nVariable: A=1\r\nVariable: B=2\r\n"
        b"Async: true\r\n\r\n"
    )
    (msg,) = AmiParser(expect_banner=False).feed(wire)
    assert msg.getall("Variable") == ["A=1", "B=2"]


@pytest.mark.parametrize("bad", ["x\r\nAction: Hangup", "x\nEvil: 1", "x\r"])
def test_encode_rejects_cr_lf_in_values(bad: str) -> None:
    with pytest.raises(ValueError, match="CR/LF"):
        encode_action("QueuePause", {"Interface": bad})


@pytest.mark.parametrize("bad", ["", "A: B", "A\nB"])
def test_encode_rejects_bad_keys(bad: str) -> None:
    with pytest.raises(ValueError, match="key"):
        encode_fields([(bad, "v")])


_FIELD = st.tuples(
    st.sampled_from(["Event", "Queue", "Interface", "Status", "Uniqueid"]),
    st.sampled_from(["QueueMemberStatus", "sales-en", "PJSIP/agent1001", "1", "x: y", ""]),
)


@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(_FIELD, st.sampled_from(["\r\n", "\n"])), min_size=1, max_size=5),
            st.sampled_from(["\r\n", "\n"]),
        ),
        max_size=6,
    ),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_mixed_line_ends_any_chunking(
    events: list[tuple[list[tuple[tuple[str, str], str]], str]], cuts: list[int]
) -> None:
    """Bare LFs anywhere in a CR LF stream (each block is checked for one, the text split
    again from there) give the same fields as a clean stream, however it is chunked."""
    text = "".join(
        "".join(f"{k}: {v}{end}" for (k, v), end in lines) + blank for lines, blank in events
    )
    data = BANNER + text.encode()
    points = sorted({c % (len(data) + 1) for c in cuts})
    parser = AmiParser()
    got = []
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        got += [m.fields for m in parser.feed(data[a:b])]
    # A block with two Event keys is two messages a lost blank line glued: dropped.
    expected = [
        fields
        for fields in (tuple(kv for kv, _ in lines) for lines, _ in events)
        if sum(1 for k, _ in fields if k == "Event") <= 1
    ]
    assert got == expected


def test_getall_asked_again_answers_the_same_and_never_another_messages_answer() -> None:
    # Subscribers ask one event for its ChanVariable in turn: the second question is
    # answered from the first (a message never changes), a copy each time.
    parser = AmiParser(expect_banner=False)
    one, two = parser.feed(
        b"Event: AgentConnect\r\nChanVariable: CCB_CALLID=a\r\nchanvariable: X=1\r\n\r\n"
        b"Event: AgentConnect\r\nChanVariable: CCB_CALLID=b\r\n\r\n"
    )
    first = one.getall("ChanVariable")
    assert first == ["CCB_CALLID=a", "X=1"]
    first.append("changed by a subscriber")
    assert one.getall("ChanVariable") == ["CCB_CALLID=a", "X=1"]
    assert one.getall("CHANVARIABLE") == ["CCB_CALLID=a", "X=1"]  # another key: scanned
    assert one.getall("Event") == ["AgentConnect"]
    assert two.getall("ChanVariable") == ["CCB_CALLID=b"]
    assert one.getall("ChanVariable") == ["CCB_CALLID=a", "X=1"]
    assert one.getall("Missing") == [] and one.getall("Missing") == []


def _scanned(msg: AmiMessage, key: str) -> list[str]:
    """What getall answers by definition: every pair whose key folds to ``key``'s."""
    return [v for k, v in msg.fields if k.lower() == key.lower()]


# A few names in several cases (and one whose lower case is another's: the Kelvin sign).
_KEY_NAMES = st.sampled_from(
    ["ChanVariable", "chanvariable", "CHANVARIABLE", "Channel", "Kind", "\u212aind", "Queue"]
)


@given(
    st.lists(st.tuples(_KEY_NAMES, st.sampled_from(["", "a", "CCB_CALLID=x"])), max_size=6),
    st.lists(_KEY_NAMES, min_size=1, max_size=4),
)
def test_getall_from_the_keys_seen_answers_as_the_scan_does(
    pairs: list[tuple[str, str]], asked: list[str]
) -> None:
    # A message whose keys were all seen before is answered from the keys seen that fold
    # to the key asked (ChanVariable absent: no scan of every field); with repeats, two
    # cases of one name or a key never seen, by the scan. Each answer is the scan's.
    msg = AmiMessage([("Event", "AgentConnect"), *pairs])
    again = AmiMessage([("Event", "AgentConnect"), *pairs])
    for key in asked:
        assert msg.getall(key) == _scanned(msg, key)  # seen now, if not before
        assert again.getall(key) == _scanned(again, key)  # another message: keys seen


def test_getall_scans_a_message_with_a_key_past_the_ones_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ccbridge.ami import codec

    monkeypatch.setattr(codec, "_SEEN_KEYS", set())
    monkeypatch.setattr(codec, "_KEYS_OF_FOLD", {})
    monkeypatch.setattr(codec, "_SEEN_MAX", 2)
    one = AmiMessage([("Event", "X"), ("Queue", "q"), ("chanvariable", "CCB_CALLID=a")])
    assert one.getall("ChanVariable") == ["CCB_CALLID=a"]  # scanned; two keys kept
    assert sorted(codec._SEEN_KEYS) == ["Event", "Queue"]
    two = AmiMessage([("Event", "X"), ("ChanVariable", "CCB_CALLID=b")])
    assert two.getall("CHANVARIABLE") == ["CCB_CALLID=b"]  # a key never kept: scanned
    three = AmiMessage([("Event", "X"), ("Queue", "q")])
    assert three.getall("chanvariable") == []  # every key kept: none folds to it
    assert three.getall("QUEUE") == ["q"]
