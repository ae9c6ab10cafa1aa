"""SIPp's per-call trace (``-trace_calldebug``): which aborted calls had been answered.

The fixture is two real SIPp 3.6.1 dumps: a call to a port nobody answers (aborted at its
receive timeout, never answered) and a call answered, whose far end then died (its BYE
unanswered: aborted after the answer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccbridge.lab.sipp import aborted_calls

DUMP = (Path(__file__).parent / "fixtures" / "sipp_calldebug.log").read_text()


def test_answered_and_unanswered_aborted_calls_are_told_apart() -> None:
    calls = aborted_calls(DUMP)
    assert len(calls) == 2
    assert sorted(calls.values()) == [False, True]
    (answered,) = [c for c, a in calls.items() if a]
    assert answered.startswith("1-") and answered.endswith("@127.0.0.1")


def test_a_200_to_the_bye_is_not_an_answer() -> None:
    only_bye = DUMP.replace("CSeq: 1 INVITE", "CSeq: 2 BYE")
    assert not any(aborted_calls(only_bye).values())


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "no dump here\n",
        "Call debugging information for call \n",  # no Call-ID
        "Call debugging information for call abc",  # cut before its history
        "\x00\xff" * 100,
        "Call debugging information for call a\nb:\nSIP/2.0 200 OK\nCSeq: 1 INVITE\n",
    ],
)
def test_text_that_is_not_a_dump_gives_no_calls(garbage: str) -> None:
    assert aborted_calls(garbage) == {}
