"""AMI wire format: parse the byte stream into messages and encode actions (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final, Literal

BANNER_PREFIX: Final = "Asterisk Call Manager"
END_COMMAND: Final = "--END COMMAND--"

MessageKind = Literal["event", "response", "other"]

# Keys whose values never appear in a repr (the fake server parses Login actions too).
_HIDDEN_KEYS: Final = frozenset({"secret", "key"})


class AmiProtocolError(ValueError):
    """The peer broke the AMI framing or a size limit; the connection must be dropped."""


class AmiMessage(Mapping[str, str]):
    """One AMI message: an immutable mapping of its fields, first value per key.

    ``Event: QueueMemberStatus`` gives ``kind == "event"`` and ``name ==
    "QueueMemberStatus"``; ``Response: Success`` gives ``kind == "response"``. Repeated
    keys (``ChanVariable: FROM_DID=``, ``Output: ...``) stay available via :meth:`getall`.
    Lookups are exact first, then case-insensitive (``msg["actionid"]`` works).
    """

    __slots__ = ("_fields", "_first", "_folded", "kind", "name")

    def __init__(self, fields: Iterable[tuple[str, str]]) -> None:
        items = tuple(fields)
        first = dict(items)
        if len(first) != len(items):
            # Repeated keys: dict() kept the last value, the protocol means the first.
            first = {}
            for key, value in items:
                first.setdefault(key, value)
        self._fields = items
        self._first = first
        self._folded: dict[str, str] | None = None
        kind: MessageKind
        if "Event" in first:
            # Checked first: OriginateResponse events also carry a Response key.
            kind, name = "event", first["Event"]
        elif "Response" in first:
            kind, name = "response", first["Response"]
        else:
            kind, name = "other", ""
        self.kind: MessageKind = kind
        self.name: str = name

    def __getitem__(self, key: str) -> str:
        try:
            return self._first[key]
        except KeyError:
            pass
        folded = self._folded
        if folded is None:
            folded = {}
            for k, v in self._fields:
                folded.setdefault(k.lower(), v)
            self._folded = folded
        return folded[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def getall(self, key: str) -> list[str]:
        """Every value of ``key`` in wire order (case-insensitive), ``[]`` if absent."""
        folded = key.lower()
        return [v for k, v in self._fields if k == key or k.lower() == folded]

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """All ``(key, value)`` pairs in wire order, repeats included."""
        return self._fields

    @property
    def action_id(self) -> str | None:
        return self._first.get("ActionID")

    def to_dict(self) -> dict[str, str]:
        """A plain mutable copy, first value per key."""
        return dict(self._first)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={'<hidden>' if k.lower() in _HIDDEN_KEYS else v!r}" for k, v in self._fields
        )
        return f"<AmiMessage {self.kind} {shown}>"


class AmiParser:
    """Incremental AMI stream parser: ``parser.feed(chunk)`` returns the complete messages.

    The stream opens with one banner line, ``Asterisk Call Manager/9.0.0\\r\\n``
    (``expect_banner=False`` parses the client side, which has none), then messages::

        Event: QueueMemberStatus\\r\\n
        Queue: sales-en\\r\\n
        Interface: PJSIP/agent1001\\r\\n
        \\r\\n

    Bare ``\\n`` line ends are accepted. Command output comes two ways: Asterisk 14+
    sends ``Response: Success``, ``Message: Command output follows`` and one
    ``Output: <line>`` per line; Asterisk 13 and older send ``Response: Follows``,
    header lines, raw output lines, then ``--END COMMAND--``. The raw lines are stored
    as ``Output`` fields, so ``msg.getall("Output")`` reads both the same way.
    Colon-less lines elsewhere are skipped and counted in ``skipped_lines``.
    """

    def __init__(
        self,
        *,
        expect_banner: bool = True,
        max_line: int = 64 * 1024,
        max_message: int = 1024 * 1024,
    ) -> None:
        self.banner: str | None = None
        self.skipped_lines = 0
        self._need_banner = expect_banner
        self._max_line = max_line
        self._max_message = max_message
        self._tail = b""
        self._fields: list[tuple[str, str]] = []
        self._size = 0
        self._follows = False  # current message is an old-style "Response: Follows"
        self._in_body = False  # ...and its raw output has started

    @property
    def version(self) -> str | None:
        """The protocol version from the banner (``"9.0.0"``), once seen."""
        if self.banner is None:
            return None
        return self.banner.partition("/")[2].strip() or None

    def feed(self, data: bytes) -> list[AmiMessage]:
        """Consume ``data``; return the messages it completed. Raises AmiProtocolError."""
        buf = self._tail + data if self._tail else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) > self._max_line:
                raise AmiProtocolError(f"line longer than {self._max_line} bytes")
            self._tail = buf
            return []
        tail = buf[cut + 1 :]
        if len(tail) > self._max_line:
            raise AmiProtocolError(f"line longer than {self._max_line} bytes")
        self._tail = tail
        # Only whole lines are decoded, so a UTF-8 sequence is never split.
        text = buf[: cut + 1].decode("utf-8", "replace").replace("\r\n", "\n")[:-1]
        out: list[AmiMessage] = []
        fields = self._fields
        max_line = self._max_line
        for line in text.split("\n"):
            size = len(line)
            if size > max_line:
                raise AmiProtocolError(f"line longer than {max_line} bytes")
            if self._need_banner:
                self._take_banner(line)
                continue
            self._size += size + 2
            if self._size > self._max_message:
                raise AmiProtocolError(f"message larger than {self._max_message} bytes")
            if self._follows:
                if self._follows_line(line, fields):
                    continue
                # An empty line outside the raw body ends the message like any other.
            elif line:
                key, sep, value = line.partition(": ")
                if sep:
                    fields.append((key, value))
                elif line[-1] == ":":
                    fields.append((line[:-1], ""))
                else:
                    self.skipped_lines += 1
                    continue
                if key == "Response" and value == "Follows" and len(fields) == 1:
                    self._follows = True
                continue
            if fields:
                out.append(AmiMessage(fields))
                fields.clear()
            self._size = 0
            self._follows = self._in_body = False
        return out

    def _take_banner(self, line: str) -> None:
        if not line.startswith(BANNER_PREFIX):
            raise AmiProtocolError(f"not an AMI banner: {line[:80]!r}")
        self.banner = line
        self._need_banner = False

    def _follows_line(self, line: str, fields: list[tuple[str, str]]) -> bool:
        """Handle one line of a ``Response: Follows`` message; False if it ends it."""
        if line.endswith(END_COMMAND):
            # Old Asterisk may glue the marker to output that lacks a final newline.
            rest = line[: -len(END_COMMAND)]
            if rest:
                fields.append(("Output", rest))
            self._in_body = True
            self._follows = False  # the blank line after the marker ends the message
            return True
        if not self._in_body:
            if not line:
                return False
            key, sep, value = line.partition(": ")
            if sep and key and " " not in key:
                fields.append((key, value))
                return True
            self._in_body = True
        fields.append(("Output", line))
        return True


def encode_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    """Encode ``(key, value)`` pairs as one message: ``Key: Value\\r\\n``... then ``\\r\\n``.

    Raises ValueError if a key or value holds CR or LF, which would inject lines.
    """
    parts: list[str] = []
    for key, value in fields:
        check_field(key, value)
        parts.append(f"{key}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8")


def check_field(key: str, value: str) -> None:
    """Raise ValueError unless ``key: value`` is one safe header line."""
    if not key or ":" in key or _has_eol(key):
        raise ValueError(f"invalid AMI key {key!r}")
    if _has_eol(value):
        raise ValueError(f"CR/LF in the value of {key!r}")


def action_fields(action: str, fields: Mapping[str, str | Sequence[str]]) -> list[tuple[str, str]]:
    """Flatten an action into pairs; a sequence value repeats its key (``Variable: a=1``)."""
    pairs = [("Action", action)]
    for key, value in fields.items():
        if isinstance(value, str):
            pairs.append((key, value))
        else:
            pairs.extend((key, item) for item in value)
    return pairs


def encode_action(action: str, fields: Mapping[str, str | Sequence[str]]) -> bytes:
    """Encode an action: ``encode_action("QueuePause", {"Interface": "PJSIP/1001",
    "Paused": "true"})`` gives ``Action: QueuePause\\r\\nInterface: PJSIP/1001\\r\\n
    Paused: true\\r\\n\\r\\n``. Raises ValueError on CR/LF in any key or value."""
    return encode_fields(action_fields(action, fields))


def _has_eol(text: str) -> bool:
    return "\r" in text or "\n" in text
