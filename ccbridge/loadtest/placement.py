"""When a failed call was placed: from its SIPp Call-ID and -trace_stat rows, or its cause.

SIPp's error log gives the moment a call FAILED. What a fault did to the call depends on
the whole time it existed, from the INVITE to the failure, so the classifier needs the
moment it was PLACED as well. Two sound upper bounds on that moment:

- The Call-ID. SIPp names calls ``%u-%p@%s`` (call number, pid, IP), numbering outgoing
  calls 1, 2, ... as it creates them, and its -trace_stat rows (one a second, ``-fd 1``)
  count the calls created so far: call N was placed no later than the first row whose
  TotalCallCreated reaches N.
- The cause. A call cannot fail sooner after its INVITE than the SIPp timer behind its
  cause: a receive timeout is ``-recv_timeout`` after the last message received; a UDP
  retransmission timeout gives up on an INVITE 31.5 s after sending it (T1 500 ms doubled,
  5 retransmissions) or on a BYE at least 23.5 s after sending it (500 ms doubling up to
  T2 4 s, 7 retransmissions in SIPp 3.7; 9, so 31.5 s, in 3.6), and the BYE follows the
  answer by the talk time. A response (503, 486, ...) is close to the INVITE: no bound.

The tighter (earlier) of the two is used. Being an upper bound, ``placed`` may be later
than the real placement, never earlier: [placed, failed] lies within the call's real
life, so a fault overlapping that interval certainly overlapped the call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ccbridge.loadtest.sipp import RECV_TIMEOUT_MS
from ccbridge.loadtest.stats import FailedCall, StatRow

RETRANS_T1_S = 0.5  # the caller scenarios' retrans="500"
SIPP_T2_S = 4.0  # SIPp's default T2: non-INVITE retransmissions stop doubling there
INVITE_RETRANS = 5  # SIPp's default -max_invite_retrans
NON_INVITE_RETRANS = 7  # SIPp 3.7's default for non-INVITE (3.6.1: 9, a longer wait)

_CALL_NUMBER = re.compile(r"^(\d+)-")


def give_up_s(retransmissions: int, t1: float = RETRANS_T1_S, cap: float | None = None) -> float:
    """Seconds from sending a request until SIPp gives up after ``retransmissions``.

    The first wait is T1; each retransmission doubles it (up to ``cap`` for non-INVITE
    requests); the call fails when the wait after the last retransmission runs out.
    """
    total, wait = 0.0, t1
    for _ in range(retransmissions + 1):
        total += wait
        wait *= 2
        if cap is not None:
            wait = min(wait, cap)
    return total


INVITE_GIVE_UP_S = give_up_s(INVITE_RETRANS)  # 31.5
BYE_GIVE_UP_S = give_up_s(NON_INVITE_RETRANS, cap=SIPP_T2_S)  # 23.5


@dataclass(frozen=True, slots=True)
class CallSpan:
    """A failed call's life in seconds since the run started.

    ``placed`` is the latest moment the call can have been placed (see the module's
    docstring); ``source`` says what bounded it: "stat", "cause" or "none" (the failure
    time itself, e.g. for a response-code failure with no stat row).
    """

    placed: float
    failed: float
    source: str = "none"


def call_number(call_id: str) -> int | None:
    """The call number of a SIPp Call-ID in the default ``%u-%p@%s`` form."""
    m = _CALL_NUMBER.match(call_id)
    return int(m.group(1)) if m else None


def created_by(rows: Sequence[StatRow], number: int) -> float | None:
    """Epoch of the first -trace_stat row counting ``number`` calls created, if any."""
    for r in rows:
        if r.created >= number:
            return r.epoch
    return None


def setup_floor_s(cause: str, talk_s: float, recv_timeout_s: float) -> float:
    """The least time a call failing with ``cause`` can have lasted since its INVITE."""
    if "UDP retransmission timeout" in cause:
        # the INVITE or the BYE went unanswered: SIPp's log does not say which
        return min(INVITE_GIVE_UP_S, talk_s + BYE_GIVE_UP_S)
    if "receive timeout" in cause:
        return recv_timeout_s
    return 0.0


def call_span(
    failure: FailedCall,
    rows: Sequence[StatRow],
    start: float,
    talk_s: float,
    recv_timeout_s: float = RECV_TIMEOUT_MS / 1000,
) -> CallSpan:
    """From placement (the latest it can have been) to failure, for one failed call."""
    failed = failure.epoch - start
    bounds = {
        "none": failed,
        "cause": failed - setup_floor_s(failure.cause, talk_s, recv_timeout_s),
    }
    n = call_number(failure.call_id)
    stat = created_by(rows, n) if n is not None else None
    if stat is not None:
        bounds["stat"] = stat - start
    source = min(bounds, key=lambda k: bounds[k])
    return CallSpan(bounds[source], failed, source)
