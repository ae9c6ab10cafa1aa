"""One AMI read of many messages is handed on SLICE at a time, the loop running between.

Over a real socket on either loop: a site writes 100 events in one write; the bridge's
protocol must let a callback scheduled during the first event run before the slice after
(a route request waits for one slice, not the whole read), keep every event in wire order
across slices and reads, resume reading after, and drop what is left when the link is lost.
"""

from __future__ import annotations

import asyncio

import pytest

from ccbridge import eventloop
from ccbridge.ami.codec import AmiMessage
from ccbridge.ami.pano import SLICE, Protocol
from ccbridge.config.model import EventLoop
from tests.polling import until

LOOPS = (EventLoop.ASYNCIO, EventLoop.UVLOOP)
EVENTS = 3 * SLICE + 4


class _Manager:  # what panoramisk's Manager is to the protocol when the link closes
    def connection_lost(self, exc: object) -> None:
        pass


def _events(first: int, count: int) -> bytes:
    return b"".join(b"Event: E\r\nSeq: %d\r\n\r\n" % i for i in range(first, first + count))


async def _one_read(site_writes: list[bytes], close_after_first: bool = False) -> list[object]:
    """What the protocol handed on (event Seqs), with ``"turn"`` where a callback that the
    first event scheduled ran; the site writes each of ``site_writes`` in one write."""
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
        transport, proto = await loop.create_connection(
            lambda: Protocol(on_event), "127.0.0.1", port
        )
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
def test_events_keep_their_order_across_slices_and_reads(choice: EventLoop) -> None:
    writes = [_events(0, EVENTS), _events(EVENTS, 5), _events(EVENTS + 5, EVENTS)]
    seen = eventloop.run(_one_read(writes), choice)
    assert [x for x in seen if x != "turn"] == list(range(2 * EVENTS + 5))


def test_a_lost_link_drops_the_rest_of_its_read() -> None:
    seen = eventloop.run(_one_read([_events(0, EVENTS)], close_after_first=True), EventLoop.ASYNCIO)
    events = [x for x in seen if x != "turn"]
    # The first slice was under way when the link was aborted: nothing after it.
    assert events == list(range(len(events))) and len(events) <= SLICE, seen
