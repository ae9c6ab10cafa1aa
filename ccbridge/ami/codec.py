"""AMI wire format: parse the byte stream into messages and encode actions (no I/O)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, Literal, NoReturn

BANNER_PREFIX: Final = "Asterisk Call Manager"
END_COMMAND: Final = "--END COMMAND--"

MessageKind = Literal["event", "response", "other"]

_SEP: Final = itertools.repeat(": ")  # arguments for map(str.split, lines, _SEP, _ONE)
_ONE: Final = itertools.repeat(1)

# Keys whose values never appear in a repr (the fake server parses Login actions too).
_HIDDEN_KEYS: Final = frozenset({"secret", "key"})
# Keys that start a message: one of them twice in a block means a blank line was lost and
# two messages ran together.
_STARTS: Final = frozenset({"Event", "Response"})

# The C step of feed (ami/_fastparse.c), when the extension was built; its answers
# other than a line count.
_Fill = Callable[[dict[str, str], str, bool, int], int]
_fill: _Fill | None
try:
    from ccbridge.ami._fastparse import fill as _fill
except ImportError:  # no C compiler at install: the same parse in Python
    _fill = None
_NO_SEPARATOR: Final = -1
_MIXED: Final = -2
_TOO_MANY: Final = -3  # and -4: characters over one byte, left to the Python lines

_dict_new = dict.__new__
_dict_update = dict.update
_dict_clear = dict.clear
_dict_get = dict.get


class AmiProtocolError(ValueError):
    """The peer broke the AMI framing or a size limit; the connection must be dropped."""


class AmiMessage(dict[str, str]):
    """One AMI message: a read-only mapping of its fields, first value per key.

    ``Event: QueueMemberStatus`` gives ``kind == "event"`` and ``name ==
    "QueueMemberStatus"``; ``Response: Success`` gives ``kind == "response"``. Repeated
    keys (``ChanVariable: FROM_DID=``, ``Output: ...``) stay available via :meth:`getall`.

    It is a ``dict`` underneath so that ``get``, ``in`` and ``[]`` run at C speed: every
    subscriber of an event reads this one object (no copies), a dozen lookups per event.
    Those are exact-case, as Asterisk writes its keys; ``msg["actionid"]`` (a miss) and
    :meth:`getall` fall back to a case-insensitive match. Every mutator raises TypeError:
    one event is shared by the reducer, the KPIs and the agent mirror.
    """

    __slots__ = ("_pairs",)

    # (key, value) pairs in wire order, only set when a key repeats: otherwise the dict's
    # insertion order is the wire order, and not keeping ~30 small lists per event halves
    # the parse cost (allocation and garbage collection).
    _pairs: Sequence[Sequence[str]]

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        pairs = tuple(fields)
        _dict_update(self, pairs)
        if len(self) != len(pairs):
            _dict_clear(self)
            _dict_update(self, _first_values(pairs))
            self._pairs = pairs

    def _keep_first(self, pairs: Sequence[Sequence[str]]) -> None:
        """``pairs`` had a repeated key: keep the first value of each, and all pairs."""
        _dict_clear(self)
        _dict_update(self, _first_values(pairs))
        self._pairs = pairs

    @property
    def kind(self) -> MessageKind:
        # Event is checked first: OriginateResponse events also carry a Response key.
        if "Event" in self:
            return "event"
        return "response" if "Response" in self else "other"

    @property
    def name(self) -> str:
        """The event's name, or the response's status (``Success``), or ``""``."""
        return self.get("Event") or self.get("Response") or ""

    def __missing__(self, key: str) -> str:
        folded = key.lower()
        for k, v in self._wire():
            if k.lower() == folded:
                return v
        raise KeyError(key)

    def getall(self, key: str) -> list[str]:
        """Every value of ``key`` in wire order (case-insensitive), ``[]`` if absent."""
        global _last_getall
        # The same question of the same event again: every subscriber that wants an
        # event's call ID (screen pop, live calls, records) asks it for its ChanVariable
        # in turn, and a message never changes, so the last answer stands (the scan was
        # 17 % of the in-process AMI ingest's CPU, BENCHMARKS §12, ninth session).
        last = _last_getall
        if last[0] is self and last[1] == key:
            return list(last[2])
        folded = key.lower()
        if _SEEN_KEYS.issuperset(self):
            # Every key of this message was seen before, so the ones that fold to the
            # key asked are among those seen that do: each looked up at C speed instead
            # of a scan of every field in Python (~20,000 -> ~10,000 instructions a
            # question of an event of 27 fields, callgrind; BENCHMARKS §12, eleventh
            # session). Two of them here, or one that repeats: the scan, for wire order.
            found = [
                v for k in _KEYS_OF_FOLD.get(folded, ()) if (v := _dict_get(self, k)) is not None
            ]
            if not found or (
                len(found) == 1 and getattr(self, "_pairs", None) is None
            ):  # none, or one key that does not repeat: the answer
                _last_getall = (self, key, tuple(found))
                return found
        else:
            _see_keys(self)
        if key.isascii():
            # Only a key of the same length can fold to an ASCII key (the one character
            # whose lower case is longer, U+0130, is not ASCII): the length check spares a
            # lower() of every other key. Subscribers ask each event for its ChanVariable,
            # usually absent: with _wire's getattr, 2.25 -> 1.56 us an event of 25 fields.
            n = len(key)
            found = [
                v for k, v in self._wire() if len(k) == n and (k == key or k.lower() == folded)
            ]
        else:
            found = [v for k, v in self._wire() if k == key or k.lower() == folded]
        # One tuple, replaced whole: a reader on another thread sees an old or a new
        # answer, never a mix. It keeps the last message alive until the next question.
        _last_getall = (self, key, tuple(found))
        return found

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """All ``(key, value)`` pairs in wire order, repeats included."""
        return tuple((k, v) for k, v in self._wire())

    @property
    def has_repeats(self) -> bool:
        """True if some key occurs more than once (then ``getall`` matters)."""
        try:
            self._pairs  # noqa: B018 (set only when a key repeats)
        except AttributeError:
            return False
        return True

    def _wire(self) -> Iterable[Sequence[str]]:
        # getattr's default, not try/except: most messages have no _pairs, and raising
        # and catching AttributeError in Python cost more than the scan after it.
        pairs: Sequence[Sequence[str]] | None = getattr(self, "_pairs", None)
        return self.items() if pairs is None else pairs

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def to_dict(self) -> dict[str, str]:
        """A plain mutable copy, first value per key."""
        return dict(self)

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("an AmiMessage is read-only (it is shared by every subscriber)")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __copy__(self) -> AmiMessage:
        return self  # immutable

    def __deepcopy__(self, memo: object) -> AmiMessage:
        return self

    def __reduce__(self) -> tuple[type[AmiMessage], tuple[tuple[tuple[str, str], ...]]]:
        return (type(self), (self.fields,))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={'<hidden>' if k.lower() in _HIDDEN_KEYS else v!r}" for k, v in self._wire()
        )
        return f"<AmiMessage {self.kind} {shown}>"


# AmiMessage.getall's last answer: (message, key, values).
_last_getall: tuple[AmiMessage | None, str, tuple[str, ...]] = (None, "", ())

# The keys getall has seen (Asterisk sends a few hundred names), and for each lower-case
# form the keys seen that fold to it, a tuple replaced whole: a reader on another thread
# never iterates one that grows. A key is in _SEEN_KEYS only once it is in its fold's
# tuple; the lock keeps two threads adding keys of one fold from losing one. Past
# _SEEN_MAX keys, messages with new ones are scanned as before.
_SEEN_KEYS: set[str] = set()
_KEYS_OF_FOLD: dict[str, tuple[str, ...]] = {}
_SEEN_MAX: Final = 4096
_SEE_LOCK: Final = threading.Lock()


def _see_keys(message: AmiMessage) -> None:
    with _SEE_LOCK:
        for key in message:
            if key not in _SEEN_KEYS and len(_SEEN_KEYS) < _SEEN_MAX:
                folded = key.lower()
                _KEYS_OF_FOLD[folded] = (*_KEYS_OF_FOLD.get(folded, ()), key)
                _SEEN_KEYS.add(key)


def _first_values(pairs: Iterable[Sequence[str]]) -> dict[str, str]:
    # dict(pairs) keeps the last of a repeated key; the protocol means the first.
    first: dict[str, str] = {}
    for key, value in pairs:
        first.setdefault(key, value)
    return first


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

    Limits: a line over ``max_line`` or a message over ``max_message`` bytes raises
    AmiProtocolError (the framing is lost: drop the connection). An event with more than
    ``max_fields`` fields, or a block holding two ``Event``/``Response`` keys (a lost
    blank line ran two messages together), is dropped and counted in ``dropped``: the
    stream itself is still in step.
    """

    def __init__(
        self,
        *,
        expect_banner: bool = True,
        max_line: int = 64 * 1024,
        max_message: int = 1024 * 1024,
        max_fields: int = 1000,
    ) -> None:
        self.banner: str | None = None
        self.skipped_lines = 0
        self.dropped = 0
        self._max_fields = max_fields
        self._need_banner = expect_banner
        self._max_line = max_line
        self._max_message = max_message
        self._tail = b""  # an incomplete line, undecoded
        self._pending = ""  # complete lines of an incomplete message
        # State of the line-by-line path, used for the rare messages the fast path refuses.
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
        max_line, max_message, max_fields = self._max_line, self._max_message, self._max_fields
        if len(buf) - cut - 1 > max_line:
            raise AmiProtocolError(f"line longer than {max_line} bytes")
        if cut < 0:
            self._tail = buf
            return []
        self._tail = buf[cut + 1 :]
        # Only whole lines are decoded, so a UTF-8 sequence is never split.
        text = buf[: cut + 1].decode("utf-8", "replace")
        if self._need_banner:
            line, _, text = text.partition("\n")
            self._take_banner(line.removesuffix("\r"))
        if self._pending:
            text = self._pending + text
        # Split on the stream's own line end: replacing every CR LF by LF first cost more
        # than the rest of the split. Only a text that mixes the two is normalised. With a
        # CR, the text is taken for CR LF (as Asterisk writes) and each block checked for
        # a bare LF below, one count each: counting CR LF over the whole text first cost
        # about as much as the split.
        eol = "\n"
        if "\r" in text:
            eol = "\r\n"
        blocks = text.split(eol + eol)
        pending = blocks.pop()
        unchecked = eol == "\r\n"
        if unchecked and (self._fields or pending.count("\n") != pending.count("\r\n")):
            # Old command output still open, or a bare LF in the tail: the whole text.
            unchecked = False
            if text.count("\n") != text.count("\r\n"):
                text = text.replace("\r\n", "\n")
                eol = "\n"
                blocks = text.split("\n\n")
                pending = blocks.pop()
        self._keep_pending(pending)
        out: list[AmiMessage] = []
        if self._fields:  # old command output still open: line by line
            self._careful(blocks, eol, out)
            return out
        new, update, fill, crlf = _dict_new, _dict_update, _fill, eol == "\r\n"
        limit = min(max_line, max_message)  # a block within both cannot break either
        blocks_left = iter(blocks)
        for block in blocks_left:
            # Every event starts "Event: ". Anything else (a reply, old command output, a
            # blank line too many) takes the careful path, and the rest of the chunk
            # too if that left old command output open.
            if block[:1] != "E":
                if unchecked and block.count("\n") != block.count("\r\n"):
                    self._mixed([block, *blocks_left], out)
                    break
                self._careful((block,), eol, out)
                if self._fields:  # old command output left open: the rest line by line
                    rest = list(blocks_left)
                    if unchecked and any(b.count("\n") != b.count("\r\n") for b in rest):
                        self._mixed(rest, out)
                    else:
                        self._careful(rest, eol, out)
                    break
                continue
            msg: AmiMessage
            if fill is not None and len(block) <= limit:
                # The C step: the lines below in one call, at ~half their CPU. What it
                # leaves (a bare LF, a line with no ": ", too many lines, characters
                # over one byte) goes where the lines below send it.
                msg = new(AmiMessage)
                n = fill(msg, block, crlf, max_fields)
                if n >= 0:
                    if n == len(msg):
                        out.append(msg)
                    else:  # a repeated key: keep every pair
                        self._repeated(msg, block.split(eol), out)
                    continue
                if n == _MIXED:
                    self._mixed([block, *blocks_left], out)
                    break
                if n == _NO_SEPARATOR:
                    self._slow_block(block, eol, out)
                    continue
                if n == _TOO_MANY:
                    self.dropped += 1
                    continue
                # -4: characters over one byte, the Python lines below
            lines = block.split(eol)
            if unchecked and block.count("\n") != len(lines) - 1:
                self._mixed([block, *blocks_left], out)
                break
            if len(block) > limit:
                self._check_block(block, lines)
            if len(lines) > max_fields:
                self.dropped += 1  # no event has that many: not worth a dict
                continue
            msg = new(AmiMessage)
            try:
                # Each item is one [key, value] list: what dict.update takes at C speed.
                update(msg, map(str.split, lines, _SEP, _ONE))  # type: ignore[arg-type]
            except ValueError:  # a line without ": "
                self._slow_block(block, eol, out)
                continue
            if len(msg) != len(lines):  # a repeated key: keep every pair
                self._repeated(msg, lines, out)
                continue
            out.append(msg)
        return out

    def _keep_pending(self, pending: str) -> None:
        """Keep the complete lines of an incomplete message, within the size limits."""
        if len(pending) > self._max_line:
            if len(pending) > self._max_message:
                raise AmiProtocolError(f"message larger than {self._max_message} bytes")
            if max(map(len, pending.split("\n"))) > self._max_line:
                raise AmiProtocolError(f"line longer than {self._max_line} bytes")
        self._pending = pending

    def _mixed(self, blocks: list[str], out: list[AmiMessage]) -> None:
        """A bare LF in a CR LF text, in the first of ``blocks`` (the rest of the text but
        its tail): from there on the text is normalised to LF and split again, as a text
        that mixes the two is (the blocks before had no bare LF: they split the same)."""
        sep = "\r\n\r\n"
        rest = (sep.join(blocks) + sep + self._pending).replace("\r\n", "\n")
        blocks = rest.split("\n\n")
        self._keep_pending(blocks.pop())
        self._careful(blocks, "\n", out)

    def _check_block(self, block: str, lines: list[str]) -> None:
        """Raise AmiProtocolError if ``block`` breaks the message or line size limit."""
        if len(block) > self._max_message:
            raise AmiProtocolError(f"message larger than {self._max_message} bytes")
        if max(map(len, lines)) > self._max_line:
            raise AmiProtocolError(f"line longer than {self._max_line} bytes")

    def _repeated(self, msg: AmiMessage, lines: list[str], out: list[AmiMessage]) -> None:
        """A block with a repeated key: every pair kept, unless it is two messages that a
        lost blank line ran together (dropped)."""
        pairs = [line.split(": ", 1) for line in lines]
        if sum(1 for key, _ in pairs if key in _STARTS) > 1:
            self.dropped += 1
            return
        msg._keep_first(pairs)
        out.append(msg)

    def _careful(self, blocks: Iterable[str], eol: str, out: list[AmiMessage]) -> None:
        """feed's loop for blocks that are no event: replies, old command output (which
        may span blank lines), extra blank lines."""
        new, update = _dict_new, _dict_update
        for block in blocks:
            if self._fields or block.startswith("Response: Follows"):
                self._slow_block(block, eol, out)
                continue
            if not block or block[0] in "\r\n":
                block = block.lstrip("\r\n")  # extra blank lines between messages
                if not block:
                    continue
            lines = block.split(eol)
            if len(block) > min(self._max_line, self._max_message):
                self._check_block(block, lines)
            if len(lines) > self._max_fields:
                self.dropped += 1
                continue
            msg: AmiMessage = new(AmiMessage)
            try:
                update(msg, map(str.split, lines, _SEP, _ONE))  # type: ignore[arg-type]
            except ValueError:
                self._slow_block(block, eol, out)
                continue
            if len(msg) != len(lines):
                self._repeated(msg, lines, out)
                continue
            out.append(msg)

    def _take_banner(self, line: str) -> None:
        if not line.startswith(BANNER_PREFIX):
            raise AmiProtocolError(f"not an AMI banner: {line[:80]!r}")
        self.banner = line
        self._need_banner = False

    def _slow_block(self, block: str, eol: str, out: list[AmiMessage]) -> None:
        """``_slow`` for a block split from a text whose line end is ``eol``."""
        self._slow(block if eol == "\n" else block.replace("\r\n", "\n"), out)

    def _slow(self, block: str, out: list[AmiMessage]) -> None:
        """Line by line, for old command output and odd lines; the blank line that ended
        ``block`` is fed too, as inside command output it is part of the output."""
        fields = self._fields
        for line in [*block.split("\n"), ""]:
            if len(line) > self._max_line:
                raise AmiProtocolError(f"line longer than {self._max_line} bytes")
            self._size += len(line) + 1
            if self._size > self._max_message:
                raise AmiProtocolError(f"message larger than {self._max_message} bytes")
            if self._follows:
                if self._follows_line(line, fields):
                    continue
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
