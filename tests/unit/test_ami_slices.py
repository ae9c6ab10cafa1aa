"""One AMI read is parsed and handed on for at most Protocol.budget a loop turn (checked
every SLICE messages and PARSE_BYTES bytes), the loop running between; a usual read is
handed on in one go.

Over a real socket on either loop: a site writes 100 events in one write; the bridge's
protocol must let a callback scheduled during the first event run before the slice after
(a route request waits for one slice, not the whole read), keep every event in wire order
across slices and reads, resume reading after, and drop what is left when the link is lost.
A TLS layer hands on all it decrypted as one read (megabytes after a 30 s SIGSTOP): such a
read must not hold the loop past the slow-callback gate either.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from ccbridge import eventloop, loopdebug
from ccbridge.ami.codec import AmiMessage
from ccbridge.ami.pano import BUDGET, PARSE_BYTES, SLICE, Protocol
from ccbridge.config.model import EventLoop
from tests.polling import until

LOOPS = (EventLoop.ASYNCIO, EventLoop.UVLOOP)
EVENTS = 3 * SLICE + 4


class _Manager:  # what panoramisk's Manager is to the protocol when the link closes
    def connection_lost(self, exc: object) -> None:
        pass


# ~600 bytes in 20 fields, as a queue event (QueueMemberStatus has 20, AgentConnect 37).
_FIELDS = b"".join(b"Field%02d: value of field %02d\r\n" % (i, i) for i in range(18))


def _events(first: int, count: int, fields: bytes = b"") -> bytes:
    return b"".join(
        b"Event: E\r\nSeq: %d\r\n%s\r\n" % (i, fields) for i in range(first, first + count)
    )


async def _one_read(
    site_writes: list[bytes], close_after_first: bool = False, budget: float = 0.0
) -> list[object]:
    """What the protocol handed on (event Seqs), with ``"turn"`` where a callback that the
    first event scheduled ran; the site writes each of ``site_writes`` in one write. The
    protocol's budget is 0 unless given: a turn after every slice."""
    loop = asyncio.get_running_loop()
    seen: list[object] = []
    holder: list[asyncio.Transport] = []

    def on_event(event: AmiMessage) -> None:
        seen.append(int(event["Seq"]))
        if len(seen) == 1:
            loop.call_soon(seen.append, "turn")  # the loop's next turn, e.g. a route request
            if close_after_first:
                holder[0].abort()

    written = asyncio.Event()

    async def site(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/9.0.0\r\n")
        for data in site_writes:
            writer.write(data)
            await writer.drain()
        written.set()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(site, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:

        def protocol() -> Protocol:
            made = Protocol(on_event)
            made.budget = budget
            return made

        transport, proto = await loop.create_connection(protocol, "127.0.0.1", port)
        holder.append(transport)
        proto.factory = _Manager()  # connection_made resets it
        if close_after_first:
            await asyncio.wait_for(proto.gone, 5)
        else:
            total = sum(data.count(b"Event: ") for data in site_writes)
            await until(lambda: len(seen) == total + 1, 5, "every event")
            assert transport.is_reading(), "reading stays paused after the backlog"
            transport.close()
            await proto.gone
    finally:
        server.close()
        await server.wait_closed()
    return seen


@pytest.mark.parametrize("choice", LOOPS)
def test_a_read_of_many_events_gives_the_loop_a_turn_after_each_slice(choice: EventLoop) -> None:
    seen = eventloop.run(_one_read([_events(0, EVENTS)]), choice)
    turn = seen.index("turn")
    # The read may come in pieces; in one piece (the usual case) the turn comes after
    # exactly one slice. Never later than a slice: that is the bound.
    assert 1 <= turn <= SLICE, seen
    assert [x for x in seen if x != "turn"] == list(range(EVENTS))


@pytest.mark.parametrize("choice", LOOPS)
def test_a_usual_read_is_handed_on_in_one_go(choice: EventLoop) -> None:
    # With the default budget (4 ms) a read of 100 events (~1 ms) is not cut: a count of
    # SLICE a turn made the bridge fall behind busy sites under load (BENCHMARKS §4).
    seen = eventloop.run(_one_read([_events(0, EVENTS)], budget=BUDGET), choice)
    assert seen.index("turn") > SLICE, seen
    assert [x for x in seen if x != "turn"] == list(range(EVENTS))


@pytest.mark.parametrize("choice", LOOPS)
def test_events_keep_their_order_across_slices_and_reads(choice: EventLoop) -> None:
    writes = [_events(0, EVENTS), _events(EVENTS, 5), _events(EVENTS + 5, EVENTS)]
    seen = eventloop.run(_one_read(writes), choice)
    assert [x for x in seen if x != "turn"] == list(range(2 * EVENTS + 5))


def test_a_lost_link_drops_the_rest_of_its_read() -> None:
    seen = eventloop.run(_one_read([_events(0, EVENTS)], close_after_first=True), EventLoop.ASYNCIO)
    events = [x for x in seen if x != "turn"]
    # The first slice was under way when the link was aborted: nothing after it.
    assert events == list(range(len(events))) and len(events) <= SLICE, seen


async def _banner_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A site that says its banner and nothing else (the test hands reads on itself)."""
    writer.write(b"Asterisk Call Manager/9.0.0\r\n")
    await writer.drain()
    await reader.read()
    writer.close()


async def _one_huge_read(size: int) -> tuple[list[int], list[str], int]:
    """The events handed on after one ``data_received`` of ``size`` bytes (as a TLS layer
    calls it), the gate's reports, and how many were handed on before the loop's next turn."""
    loop = asyncio.get_running_loop()
    seen: list[int] = []
    first_turn: list[int] = []
    reading: list[bool] = []  # at the next turn: megabytes wait, so reading is paused
    count = size // len(_events(0, 1, _FIELDS))
    data = _events(0, count, _FIELDS)

    server = await asyncio.start_server(_banner_only, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    found = loopdebug.report_slow_callbacks(loop, 50)
    gc.disable()  # a collection of the test's own objects is not what the gate is after here
    try:
        transport, proto = await loop.create_connection(
            lambda: Protocol(lambda event: seen.append(int(event["Seq"]))), "127.0.0.1", port
        )
        proto.factory = _Manager()
        await until(lambda: proto.version is not None, 5, "the banner")
        loop.call_soon(proto.data_received, data)  # as the TLS layer's read callback does
        loop.call_soon(lambda: first_turn.append(len(seen)))
        loop.call_soon(lambda: reading.append(transport.is_reading()))
        await until(lambda: len(seen) == count, 10, "every event")
        assert transport.is_reading()
        transport.close()
        await proto.gone
    finally:
        gc.enable()
        loopdebug.stop_reporting(loop, found)
        server.close()
        await server.wait_closed()
    assert reading == [False], "reading is paused while megabytes wait"
    return seen, found.lines, first_turn[0]


def test_a_read_of_megabytes_is_parsed_a_piece_a_turn_within_the_gate() -> None:
    size = 8 * 1024 * 1024  # ~14,000 events: ~80 ms of parsing in one go, quiet
    seen, slow, before_turn = eventloop.run(_one_huge_read(size), EventLoop.ASYNCIO)
    assert seen == list(range(len(seen))) and len(seen) > size // 1000
    assert before_turn < len(seen)  # the loop had turns while the read was worked through
    assert slow == []
    assert size // 100 > PARSE_BYTES  # a read of 100 bounds and more: the bound is at work


async def _two_links_one_turn(budget: float) -> tuple[list[tuple[int, int]], int]:
    """Two sites' links each handed a read of EVENTS events in the same loop turn: what
    both handed on ((link, Seq) in order), and how many of them before a callback that the
    first event scheduled ran."""
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, int]] = []
    before_turn: list[int] = []
    reading: list[bool] = []

    server = await asyncio.start_server(_banner_only, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    links: list[tuple[asyncio.BaseTransport, Protocol]] = []
    try:
        for n in range(2):

            def protocol(n: int = n) -> Protocol:
                def on_event(event: AmiMessage) -> None:
                    seen.append((n, int(event["Seq"])))
                    if len(seen) == 1:  # the loop's next turn, e.g. a route request
                        loop.call_soon(lambda: before_turn.append(len(seen)))
                        # A short rest waits a turn without pausing reading (epoll_ctl).
                        loop.call_soon(lambda: reading.extend(t.is_reading() for t, _ in links))

                made = Protocol(on_event)
                made.budget = budget
                return made

            transport, proto = await loop.create_connection(protocol, "127.0.0.1", port)
            proto.factory = _Manager()
            await until(lambda proto=proto: proto.version is not None, 5, "the banner")
            links.append((transport, proto))
        for _, proto in links:  # both reads ready in one turn, as after one select
            loop.call_soon(proto.data_received, _events(0, EVENTS))
        await until(lambda: len(seen) == 2 * EVENTS, 5, "every event of both links")
        for transport, proto in links:
            assert transport.is_reading()  # type: ignore[attr-defined]
            transport.close()
            await proto.gone
    finally:
        server.close()
        await server.wait_closed()
    assert reading == [True, True]
    return seen, before_turn[0]


@pytest.mark.parametrize("choice", LOOPS)
def test_links_with_reads_in_one_turn_share_one_budget(choice: EventLoop) -> None:
    # Each link bounded alone, 20 sites' reads of one tick held a turn for their sum:
    # the budget is per turn over all links. With it spent (0), the first link does one
    # slice and the second waits for the next turn, then takes its share in its turn.
    seen, before_turn = eventloop.run(_two_links_one_turn(0.0), choice)
    assert 1 <= before_turn <= SLICE, seen[: before_turn + 1]
    for n in range(2):
        assert [s for link, s in seen if link == n] == list(range(EVENTS))
    # Neither link waits for the other's whole read: the second starts before the first ends.
    assert seen.index((1, 0)) < seen.index((0, EVENTS - 1))
