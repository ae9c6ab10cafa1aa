"""The FastAGI server's socket closer (ccbridge/agi/_closer.c): built here; every
descriptor handed to it is closed once, by its thread or (queue full) by the caller; bad
input is refused before anything is closed; a forked child gets a closer of its own; and
the server's sessions end through it (tests/unit/test_agi_server.py plays them whole)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from ccbridge.agi import transport
from tests.polling import until
from tests.unit.test_agi_server import normal_session, route_two_vars, running


def test_the_closer_is_built_and_the_transport_uses_it() -> None:
    assert transport._close_later is not None, (
        "ccbridge/agi/_closer.c is not built: `make venv` builds it (gcc, python3-dev)"
    )


def _eof_within(sock: socket.socket, seconds: float = 2.0) -> bytes:
    sock.settimeout(seconds)
    return sock.recv(16)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_handed_descriptor_is_closed_by_the_thread_and_the_peer_sees_eof() -> None:
    from ccbridge.agi._closer import close_later, closed

    before = closed()
    ours, peer = socket.socketpair()
    ours.sendall(b"last words")
    fd = ours.detach()
    assert close_later(fd) is True
    assert _eof_within(peer) == b"last words"  # what was written still arrives
    assert _eof_within(peer) == b""  # then the end
    peer.close()
    deadline = time.monotonic() + 2
    while closed() == before and time.monotonic() < deadline:
        time.sleep(0.001)
    assert closed() == before + 1


def test_thousands_of_descriptors_are_each_closed_once_and_none_leaks() -> None:
    from ccbridge.agi._closer import close_later, closed

    baseline = _open_fds()
    before = closed()
    peers = []
    handed = 0
    for _ in range(5):  # 5 x 1,000 pairs: under the queue's 4,096 and over it in sum
        pairs = [socket.socketpair() for _ in range(1_000)]
        for ours, peer in pairs:
            handed += close_later(ours.detach())  # True: the thread's; False: closed here
            peers.append(peer)
        for peer in peers[-1_000:]:
            assert _eof_within(peer) == b""
    for peer in peers:
        peer.close()
    deadline = time.monotonic() + 5
    while closed() - before < handed and time.monotonic() < deadline:
        time.sleep(0.005)
    assert closed() - before == handed and handed > 0
    assert _open_fds() == baseline


@pytest.mark.parametrize(
    ("fd", "error"),
    [(-1, ValueError), (2**40, (ValueError, OverflowError)), ("3", TypeError), (None, TypeError)],
)
def test_bad_descriptors_are_refused_and_nothing_is_closed(fd: object, error: object) -> None:
    from ccbridge.agi._closer import close_later

    ours, peer = socket.socketpair()
    try:
        with pytest.raises(error):  # type: ignore[call-overload]
            close_later(fd)  # type: ignore[arg-type]
        ours.sendall(b"still open")
        assert _eof_within(peer) == b"still open"
    finally:
        ours.close()
        peer.close()


def test_a_forked_child_closes_through_a_closer_of_its_own() -> None:
    from ccbridge.agi._closer import close_later

    first, other = socket.socketpair()
    close_later(first.detach())  # the parent's thread is running
    other.close()
    ours, peer = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the child: its copy of ``ours`` through its own thread, then exit
        code = 1
        try:
            peer.close()
            code = 0 if close_later(ours.detach()) else 2
            time.sleep(0.2)  # the child's thread closes it before the child exits
        finally:
            os._exit(code)
    ours.close()  # the parent's copy
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _eof_within(peer) == b""  # both copies closed: the child's by its own thread
    peer.close()


async def test_the_servers_sessions_end_through_the_closer() -> None:
    from ccbridge.agi._closer import closed

    async with running({"/route": route_two_vars}) as (server, ends):
        before = closed()
        for _ in range(20):
            await normal_session(server.port)  # each ends with the server's close (EOF)
        await until(lambda: closed() - before >= 20, 2, "20 sockets closed by the thread")
        assert closed() - before == 20
        assert len(await ends.wait(20)) == 20


async def test_without_the_extension_the_server_closes_on_its_own_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ccbridge.agi._closer import closed

    monkeypatch.setattr(transport, "_close_later", None)  # as where it was not built
    async with running({"/route": route_two_vars}) as (server, ends):
        before = closed()
        for _ in range(3):
            await normal_session(server.port)  # the EOF: closed in the loop's thread
        assert len(await ends.wait(3)) == 3
        assert closed() == before
