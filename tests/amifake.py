"""An in-process fake Asterisk AMI server for tests, speaking the wire via ccbridge's codec.

It answers Login, Ping, scripted list actions (QueueStatus, QueueSummary, ...) and
scripted single replies, pushes events, and can misbehave on demand: ``hang()`` stops
reading and answering (a SIGSTOPped Asterisk), ``mute(action)`` drops one action's
replies, ``hold(action)`` keeps them until ``release()`` (a slow sync), ``cut()`` drops
every connection, ``stop()`` closes the listener (connections
refused) and ``start()`` brings it back on the same port. ``push_raw(data)`` writes any
bytes (garbage, broken framing); ``await stream(chunks)`` writes a long stream at the
pace the client reads it (flow control), never holding more than one chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping

from ccbridge.ami.codec import AmiMessage, AmiParser, AmiProtocolError, encode_fields

Fields = Mapping[str, str]


class FakeAmi:
    """A scriptable AMI server on 127.0.0.1; ``port`` is fixed by the first ``start()``."""

    def __init__(
        self,
        username: str = "ccbridge",
        secret: str = "s3cret",
        version: str = "9.0.0",
        *,
        tls: ssl.SSLContext | None = None,  # serve AMI over TLS with this server context
    ) -> None:
        self.tls = tls
        self.username = username
        self.secret = secret
        self.version = version
        self.port = 0
        self.lists: dict[str, tuple[list[Fields], str | None]] = {}  # action -> events, end
        self.replies: dict[str, Fields] = {}  # action -> extra fields of a Success reply
        # Global dialplan variables, as Setvar and Getvar with no Channel keep and read them.
        self.globals: dict[str, str] = {}
        self.received: list[AmiMessage] = []
        self.logins_ok = 0
        self.login_times: list[float] = []
        self.logins_failed = 0
        self.connections = 0
        self.hung = False
        self._muted: set[str] = set()
        self._holding: set[str] = set()
        self._held: list[tuple[asyncio.StreamWriter, AmiMessage]] = []
        self._server: asyncio.Server | None = None
        self._writers: dict[asyncio.StreamWriter, bool] = {}  # writer -> logged in
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Refuse new connections and drop the current ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.cut()

    async def close(self) -> None:
        await self.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)

    async def cut(self) -> None:
        """Drop every client connection abruptly (RST), as a crash would."""
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.sleep(0)

    def hang(self, hung: bool = True) -> None:
        """Keep connections open but stop reading and answering, like a SIGSTOPped process."""
        self.hung = hung

    def mute(self, action: str) -> None:
        """Never answer ``action`` (the link stays healthy otherwise)."""
        self._muted.add(action.lower())

    def hold(self, action: str) -> None:
        """Keep the replies to ``action`` until ``release()``."""
        self._holding.add(action.lower())

    def release(self) -> None:
        """Answer the held actions now, and every one from now on at once."""
        self._holding.clear()
        held, self._held = self._held, []
        for writer, action in held:
            if not writer.is_closing():
                self._reply(writer, action)

    def push_event(self, name: str, fields: Fields | None = None) -> None:
        """Send ``Event: name`` to every logged-in client (nothing while hung)."""
        if self.hung:
            return
        data = encode_fields([("Event", name), *(fields or {}).items()])
        for writer, logged_in in self._writers.items():
            if logged_in and not writer.is_closing():
                writer.write(data)

    def push_raw(self, data: bytes) -> None:
        """Write ``data`` as is to every logged-in client (nothing while hung)."""
        if self.hung:
            return
        for writer, logged_in in self._writers.items():
            if logged_in and not writer.is_closing():
                writer.write(data)

    async def stream(self, chunks: Iterable[bytes]) -> int:
        """Write ``chunks`` to the one logged-in client, waiting for it to read each
        (``drain``), so a stream of any length costs one chunk of memory here; returns
        the bytes written."""
        (writer,) = [w for w, logged_in in self._writers.items() if logged_in]
        sent = 0
        for chunk in chunks:
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()
        return sent

    def script_list(self, action: str, complete: str | None, events: Iterable[Fields]) -> None:
        """Answer ``action`` with EventList: start, ``events``, then ``complete`` (with
        ``complete=None`` the list never ends, to leave an action half-answered)."""
        self.lists[action.lower()] = (list(events), complete)

    def actions_named(self, name: str) -> list[AmiMessage]:
        return [m for m in self.received if m.get("Action", "").lower() == name.lower()]

    @property
    def client_count(self) -> int:
        return len(self._writers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self._writers[writer] = False
        writer.write(f"Asterisk Call Manager/{self.version}\r\n".encode())
        parser = AmiParser(expect_banner=False)
        try:
            while True:
                if self.hung:
                    # Not reading leaves the client's bytes in the kernel, as with SIGSTOP.
                    await asyncio.sleep(0.01)
                    continue
                data = await reader.read(65536)
                if not data:
                    break
                for action in parser.feed(data):
                    if not self.hung:
                        self._answer(writer, action)
        except (ConnectionError, AmiProtocolError):
            pass
        finally:
            self._writers.pop(writer, None)
            self._tasks.discard(task)
            writer.transport.abort()

    def _answer(self, writer: asyncio.StreamWriter, action: AmiMessage) -> None:
        self.received.append(action)
        key = action.get("Action", "").lower()
        if key in self._muted:
            return
        if key in self._holding:
            self._held.append((writer, action))
            return
        self._reply(writer, action)

    def _reply(self, writer: asyncio.StreamWriter, action: AmiMessage) -> None:
        key = action.get("Action", "").lower()
        ids = [("ActionID", action["ActionID"])] if "ActionID" in action else []
        out: list[tuple[str, str]]
        if key == "login":
            self.login_times.append(time.monotonic())
            if action.get("Username") == self.username and action.get("Secret") == self.secret:
                self.logins_ok += 1
                self._writers[writer] = True
                out = [("Response", "Success"), *ids, ("Message", "Authentication accepted")]
                writer.write(encode_fields(out))
                # Real Asterisk follows a login with FullyBooted (panoramisk hooks it).
                out = [("Event", "FullyBooted"), ("Privilege", "system,all")]
                out.append(("Status", "Fully Booted"))
            else:
                self.logins_failed += 1
                out = [("Response", "Error"), *ids, ("Message", "Authentication failed")]
        elif not self._writers.get(writer):
            out = [("Response", "Error"), *ids, ("Message", "Permission denied")]
        elif key == "ping":
            stamp = f"{time.time():.6f}"
            out = [("Response", "Success"), *ids, ("Ping", "Pong"), ("Timestamp", stamp)]
        elif key in self.lists:
            writer.write(self._list_reply(key, ids))
            return
        elif key in self.replies:
            out = [("Response", "Success"), *ids, *self.replies[key].items()]
        elif key == "setvar" and "Channel" not in action:
            self.globals[action.get("Variable", "")] = action.get("Value", "")
            out = [("Response", "Success"), *ids, ("Message", "Variable Set")]
        elif key == "getvar" and "Channel" not in action:
            name = action.get("Variable", "")
            out = [("Response", "Success"), *ids, ("Variable", name)]
            out.append(("Value", self.globals.get(name, "")))
        elif key == "queueadd":
            out = [("Response", "Success"), *ids, ("Message", "Added interface to queue")]
        else:
            out = [("Response", "Error"), *ids, ("Message", "Invalid/unknown command")]
        writer.write(encode_fields(out))

    def _list_reply(self, key: str, ids: list[tuple[str, str]]) -> bytes:
        events, complete = self.lists[key]
        start = [("Response", "Success"), *ids, ("EventList", "start")]
        start.append(("Message", "Queue status will follow"))
        chunks = [encode_fields(start)]
        chunks.extend(encode_fields([*event.items(), *ids]) for event in events)
        if complete is not None:
            end = [("Event", complete), *ids, ("EventList", "Complete")]
            end.append(("ListItems", str(len(events))))
            chunks.append(encode_fields(end))
        return b"".join(chunks)


@contextlib.asynccontextmanager
async def running_fake(
    username: str = "ccbridge", secret: str = "s3cret"
) -> AsyncIterator[FakeAmi]:
    fake = FakeAmi(username, secret)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
