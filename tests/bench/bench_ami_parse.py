"""Bench: AMI stream parsing, panoramisk 1.4's protocol vs ccbridge's AmiParser, in events/s.

Run: ``.venv/bin/python -m tests.bench.bench_ami_parse [--calls N] [--seconds S]``.
``generate_stream()`` builds a recorded-looking Asterisk 22 AMI stream for a contact centre
(QueueMemberStatus, QueueCallerJoin/Leave, AgentConnect/Complete); other benches import it.
Each agent is a member of ``QUEUES_PER_AGENT`` fixed queues (``home_queues``), and a call
goes to one of its agent's queues, as in a real centre.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from ccbridge.ami.codec import AmiMessage, AmiParser
from ccbridge.ami.pano import Protocol

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
SERVICES = ("sales", "support", "billing", "claims")
# fmt: off
LANGUAGES = (  # 4 services x 50 languages = 200 queues
    "en", "hi", "ta", "fr", "de", "es", "ar", "zh", "ja", "pt", "it", "nl", "pl", "ru",
    "tr", "ko", "th", "vi", "id", "bn", "sw", "ms", "ur", "fa", "he", "el", "cs", "ro",
    "hu", "sv", "da", "fi", "no", "uk", "bg", "hr", "sr", "sk", "sl", "lt", "lv", "et",
    "is", "ga", "cy", "mt", "tl", "mr", "te", "kn"
)
# fmt: on
CHUNK = 64 * 1024  # what one socket read typically hands data_received under load
QUEUES_PER_AGENT = 2


def _snapshot(prefix: str, channel: str, state: str, num: str, name: str, uid: str) -> str:
    """The channel snapshot block Asterisk puts in queue and agent events."""
    desc = {"4": "Ring", "6": "Up", "5": "Ringing"}[state]
    return (
        f"{prefix}Channel: {channel}\r\n{prefix}ChannelState: {state}\r\n"
        f"{prefix}ChannelStateDesc: {desc}\r\n{prefix}CallerIDNum: {num}\r\n"
        f"{prefix}CallerIDName: {name}\r\n{prefix}ConnectedLineNum: <unknown>\r\n"
        f"{prefix}ConnectedLineName: <unknown>\r\n{prefix}Language: en\r\n"
        f"{prefix}AccountCode: \r\n{prefix}Context: ccb-queue\r\n{prefix}Exten: s\r\n"
        f"{prefix}Priority: 4\r\n{prefix}Uniqueid: {uid}\r\n{prefix}Linkedid: {uid}\r\n"
    )


def _member_status(queue: str, agent: int, status: int, in_call: int, now: int) -> str:
    return (
        f"Event: QueueMemberStatus\r\nPrivilege: agent,all\r\nQueue: {queue}\r\n"
        f"MemberName: Agent {agent}\r\nInterface: PJSIP/agent{agent}\r\n"
        f"StateInterface: PJSIP/agent{agent}\r\nMembership: static\r\nPenalty: 0\r\n"
        f"CallsTaken: {agent % 37}\r\nLastCall: {now - 60}\r\nLastPause: 0\r\n"
        f"LoginTime: {now - 3600}\r\nInCall: {in_call}\r\nStatus: {status}\r\nPaused: 0\r\n"
        f"PausedReason: \r\nRinginuse: 0\r\nWrapuptime: 5\r\n\r\n"
    )


def queue_names(queues: int = 200) -> list[str]:
    names = [f"{svc}-{lang}" for svc in SERVICES for lang in LANGUAGES]
    return (names * (queues // len(names) + 1))[:queues]


def home_queues(agent: int, queues: int) -> list[int]:
    """Indexes of the queues agent number ``agent`` (0-based) is a member of."""
    return [(agent * 7 + j * 101) % queues for j in range(QUEUES_PER_AGENT)]


def memberships(agents: int, queues: int = 200) -> list[tuple[str, int]]:
    """(queue, agent extension) for every membership, as a QueueStatus reply lists them."""
    names = queue_names(queues)
    return [(names[q], 1000 + a) for a in range(agents) for q in home_queues(a, queues)]


def generate_stream(
    calls: int = 20_000, agents: int = 1_000, queues: int = 200, seed: int = 7
) -> tuple[bytes, int]:
    """A banner then ``calls`` queue calls, 7 events each, over ``agents`` agents in
    ``queues`` queues; returns ``(stream, event_count)``. Deterministic for a seed."""
    parts = [event for call in iter_calls(calls, agents, queues, seed) for event in call]
    return BANNER + "".join(parts).encode(), calls * 7


def iter_calls(
    calls: int, agents: int = 1_000, queues: int = 200, seed: int = 7
) -> Iterator[tuple[str, ...]]:
    """The 7 events of each call in turn, as wire text (generate_stream's, lazily)."""
    rng = random.Random(seed)
    names = queue_names(queues)
    now = 1_760_000_000
    for call in range(calls):
        index = rng.randrange(agents)
        queue = names[rng.choice(home_queues(index, queues))]
        agent = 1000 + index
        uid = f"{now + call}.{call}"
        caller = f"+9198{rng.randrange(10**8):08d}"
        chan = f"PJSIP/carrier-in-{call:08x}"
        agent_chan = f"PJSIP/agent{agent}-{call:08x}"
        who = _snapshot("", chan, "6", caller, "Caller", uid)
        dest = _snapshot("Dest", agent_chan, "6", str(agent), f"Agent {agent}", f"{uid}1")
        hold, talk = rng.randrange(1, 120), rng.randrange(20, 600)
        yield (
            f"Event: QueueCallerJoin\r\nPrivilege: agent,all\r\n{who}Queue: {queue}\r\n"
            f"Position: 1\r\nCount: {rng.randrange(1, 9)}\r\n\r\n",
            _member_status(queue, agent, 6, 0, now),
            f"Event: AgentConnect\r\nPrivilege: agent,all\r\n{who}{dest}Queue: {queue}\r\n"
            f"MemberName: Agent {agent}\r\nInterface: PJSIP/agent{agent}\r\n"
            f"RingTime: {rng.randrange(1, 15)}\r\nHoldTime: {hold}\r\n\r\n",
            f"Event: QueueCallerLeave\r\nPrivilege: agent,all\r\n{who}Queue: {queue}\r\n"
            f"Count: {rng.randrange(0, 8)}\r\nPosition: 1\r\n\r\n",
            _member_status(queue, agent, 2, 1, now),
            f"Event: AgentComplete\r\nPrivilege: agent,all\r\n{who}{dest}Queue: {queue}\r\n"
            f"MemberName: Agent {agent}\r\nInterface: PJSIP/agent{agent}\r\n"
            f"HoldTime: {hold}\r\nTalkTime: {talk}\r\n"
            f"Reason: {rng.choice(('caller', 'agent', 'transfer'))}\r\n\r\n",
            _member_status(queue, agent, 1, 0, now),
        )


def chunks_of(stream: bytes, size: int = CHUNK) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


class _CountingFactory:
    """Stands in for panoramisk's Manager: counts what the protocol dispatches."""

    save_stream = None
    forgetable_actions = ("ping", "login")

    def __init__(self) -> None:
        self.count = 0
        self.awaiting_actions: list[Any] = []

    def dispatch(self, message: Any) -> list[str]:
        self.count += 1
        return []


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def panoramisk_protocol() -> tuple[Any, _CountingFactory]:
    """panoramisk's own AMIProtocol on a transport that goes nowhere."""
    proto = AMIProtocol()
    proto.connection_made(_NullTransport())
    factory = _CountingFactory()
    proto.factory = factory
    proto.log = logging.getLogger("bench.ami")
    proto.encoding = "utf8"
    return proto, factory


def ccbridge_protocol(on_event: Callable[[AmiMessage], None]) -> Protocol:
    """What SiteLink runs per connection, on a transport that goes nowhere. Needs a
    running event loop (its futures), as in SiteLink."""
    proto = Protocol(on_event)
    # One read handed on whole, as before slicing: these benches time parse and dispatch
    # in a plain loop over chunks, with no event loop turn to hand on the rest.
    proto.slice = proto.parse_bytes = sys.maxsize
    proto.budget = float("inf")
    proto.connection_made(_NullTransport())
    proto.factory = _CountingFactory()
    proto.log = logging.getLogger("bench.ami")
    return proto


def run_panoramisk_protocol(chunks: list[bytes]) -> int:
    """panoramisk's own path: AMIProtocol.data_received -> Message -> handle_message."""
    proto, factory = panoramisk_protocol()
    for chunk in chunks:
        proto.data_received(chunk)
    return factory.count


def run_panoramisk_bare(chunks: list[bytes]) -> int:
    """The cheapest faithful panoramisk parse: its split on blank lines + Message.from_line."""
    count, tail = 0, ""
    for chunk in chunks:
        blocks = (tail + chunk.decode("utf8", "ignore")).split("\r\n\r\n")
        tail = blocks.pop()
        for block in blocks:
            if Message.from_line(block.strip()) is not None:
                count += 1
    return count


def run_ccbridge_parser(chunks: list[bytes]) -> int:
    """ccbridge's AmiParser alone."""
    parser, count = AmiParser(), 0
    for chunk in chunks:
        count += len(parser.feed(chunk))
    return count


def run_ccbridge_protocol(chunks: list[bytes]) -> int:
    """What SiteLink runs: AmiParser, each event handed on as parsed (no subscribers)."""
    count = 0

    def sink(event: AmiMessage) -> None:
        nonlocal count
        count += 1

    proto = ccbridge_protocol(sink)
    for chunk in chunks:
        proto.data_received(chunk)
    return count


def measure(run: Callable[[list[bytes]], int], chunks: list[bytes], seconds: float) -> float:
    """Best events/s over repeated runs lasting about ``seconds`` (at least one run)."""
    best, spent = 0.0, 0.0
    while spent < seconds or best == 0.0:
        started = time.perf_counter()
        events = run(chunks)
        took = time.perf_counter() - started
        spent += took
        best = max(best, events / took)
    return best


def main() -> None:
    asyncio.run(_main())


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="calls (7 events each)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()

    started = time.perf_counter()
    stream, events = generate_stream(args.calls)
    chunks = chunks_of(stream)
    print(
        f"stream: {events} events, {len(stream) / 1e6:.1f} MB, {len(chunks)} chunks of "
        f"{CHUNK // 1024} KiB (generated in {time.perf_counter() - started:.1f}s)"
    )
    runs = {
        "panoramisk bare (split + Message.from_line)": run_panoramisk_bare,
        "panoramisk AMIProtocol.data_received": run_panoramisk_protocol,
        "ccbridge AmiParser.feed": run_ccbridge_parser,
        "ccbridge SiteLink protocol (AmiParser, events handed on)": run_ccbridge_protocol,
    }
    for name, run in runs.items():
        got = run(chunks)
        if got != events:
            raise SystemExit(f"{name}: parsed {got} events, expected {events}")
    rates = {name: measure(run, chunks, args.seconds) for name, run in runs.items()}
    width = max(map(len, rates))
    for name, rate in rates.items():
        print(f"{name:<{width}}  {rate:>12,.0f} events/s")
    base = rates["panoramisk bare (split + Message.from_line)"]
    ours = rates["ccbridge AmiParser.feed"]
    print(f"ratio AmiParser / panoramisk bare: {ours / base:.2f}x")


if __name__ == "__main__":
    main()
