"""FastAGI wire codec: request-header parser, reply parser, command encoders (no I/O)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import methodcaller
from types import MappingProxyType
from typing import Final
from urllib.parse import unquote

__all__ = [
    "HANGUP",
    "MAX_COMMAND_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_LINES",
    "MAX_LINE_BYTES",
    "AgiCommandError",
    "AgiHangup",
    "AgiProtocolError",
    "AgiReply",
    "AgiReplyParser",
    "AgiRequest",
    "AgiRequestParser",
    "exec_app",
    "get_data",
    "get_variable",
    "parse_reply",
    "quote_arg",
    "set_variable",
    "stream_file",
    "validate_variable_name",
    "verbose",
]

# Asterisk's own header lines are short; a callerid name or a long query string is the
# longest legitimate one.  Anything near these limits is not Asterisk talking.
MAX_LINE_BYTES: Final = 4096
MAX_HEADER_BYTES: Final = 16 * 1024
MAX_HEADER_LINES: Final = 200
# res_agi.c reads each command into char buf[AGI_BUF_LEN=2048] with fgets: a longer
# line is split and its remainder runs as a second command, so refuse to send one.
MAX_COMMAND_BYTES: Final = 2046
# A 520 usage block is a few dozen lines; bound it so a peer cannot grow it forever.
MAX_USAGE_LINES: Final = 500


class AgiProtocolError(ValueError):
    """The peer sent bytes that are not FastAGI (bad header, bad reply, limit exceeded)."""


class AgiHangup(Exception):
    """The channel hung up (``HANGUP`` line, ``511`` reply) or Asterisk closed the socket."""


class AgiCommandError(Exception):
    """Asterisk answered a command with something other than ``200`` (510, 520, ...)."""

    def __init__(self, command: str, reply: AgiReply) -> None:
        super().__init__(f"{command.split(' ', 2)[:2]!r} -> {reply.raw!r}")
        self.command = command
        self.reply = reply


# --------------------------------------------------------------------------- request


_KEY_RE: Final = re.compile(rb"agi_[a-z0-9_]+")
# Control bytes other than TAB never appear in a header Asterisk writes; they mean
# binary garbage (a TLS hello, a port scanner) rather than a weird caller name.
_CONTROL_RE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# Control bytes other than TAB are refused anywhere; CR only right before LF.
_BLOCK_RE: Final = re.compile(rb"(?:agi_[a-z0-9_]+:[^\x00-\x08\x0a-\x1f\x7f]*\r?\n)*")
# Asterisk writes "agi_key: value": drop exactly one space, keep the rest verbatim.
_PAIR_RE: Final = re.compile(r"(agi_[a-z0-9_]+): ?([^\r\n]*)\r?\n")
# The fast path (_fast_env) takes a block only without CR and control bytes but TAB,
# every line "agi_key: value"; anything else goes the checked way above.
# (bytes.translate deletes in a C loop at a few instructions a byte; a regex over the
# block costs ten times that.)
_FAST_REFUSED: Final = bytes([*range(0x09), *range(0x0B, 0x20), 0x7F])
_KEY_BYTES: Final = b"abcdefghijklmnopqrstuvwxyz0123456789_\n"
_FAST_SPLIT: Final = methodcaller("split", ": ", 1)
# Header values that repeat from call to call (a DID, the context, the version): held
# once with the keys (interned), not once a session. 1,000 sessions open at once held
# ~1.3 KB each of such copies (BENCHMARKS.md section 4, tenth session).
_REPEATING: Final = frozenset(
    {
        "agi_network",
        "agi_language",
        "agi_type",
        "agi_version",
        "agi_context",
        "agi_extension",
        "agi_priority",
        "agi_dnid",
        "agi_rdnis",
        "agi_enhanced",
        "agi_accountcode",
        "agi_callingpres",
        "agi_callingani2",
        "agi_callington",
        "agi_callingtns",
    }
)
_SHARED_MAX: Final = 64  # characters: a longer value is no DID or context name

# The AMI parser's C step (ami/_fastparse.c) splits "key: value" lines into a dict in one
# call: the header's lines are the same shape. None when the extension was not built.
_fill: Callable[[dict[str, str], str, bool, int], int] | None
try:
    from ccbridge.ami._fastparse import fill as _fill
except ImportError:  # no C compiler at install: the same split in Python
    _fill = None
_NOT_ONE_BYTE: Final = -4  # fill's answer for text of wider characters: the Python split
_REPEATING_KEYS: Final = tuple(sorted(_REPEATING))


@dataclass(frozen=True, slots=True)
class AgiRequest:
    """One FastAGI request: the ``agi_*`` header block Asterisk sends on connect.

    ``path`` is ``agi_network_script`` without the query and without leading ``/``
    (``agi://host/route?site=in`` -> ``route``; Asterisk omits the key for
    ``agi://host``, giving ``""``).  ``query`` is last-wins.  ``args`` are
    ``agi_arg_1..N`` in numeric order.  The convenience properties return the raw
    value, including Asterisk's ``unknown`` placeholder, or ``""`` when absent.
    """

    env: Mapping[str, str]
    args: tuple[str, ...]
    network_script: str
    path: str
    query: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgiRequest:
        """Build a request from already-decoded ``agi_*`` pairs (also handy in tests)."""
        return cls._own(dict(env))

    @classmethod
    def _own(
        cls, env: dict[str, str], arg_keys: int | None = None, filled: bool = False
    ) -> AgiRequest:
        """``from_env`` for a dict nobody else holds (the parser's): no copy.
        ``arg_keys``: how many keys start with ``agi_arg_``, when the caller knows;
        ``filled``: the C split made it (its keys interned already)."""
        env = _shared_values(env) if filled else _shared(env)
        frozen = MappingProxyType(env)
        args = _numbered_args(env) if arg_keys is None else _args_in_order(env, arg_keys)
        script = env.get("agi_network_script", "")
        raw_path, _, raw_query = script.partition("?")
        return cls(
            env=frozen,
            args=args,
            network_script=script,
            path=raw_path.lstrip("/"),
            query=MappingProxyType(parse_query(raw_query)),
        )

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def callerid(self) -> str:
        return self.env.get("agi_callerid", "")

    @property
    def dnid(self) -> str:
        return self.env.get("agi_dnid", "")

    @property
    def extension(self) -> str:
        return self.env.get("agi_extension", "")

    @property
    def context(self) -> str:
        return self.env.get("agi_context", "")

    @property
    def language(self) -> str:
        return self.env.get("agi_language", "")


def _numbered_args(env: Mapping[str, str]) -> tuple[str, ...]:
    """``agi_arg_1..N`` in numeric order."""
    numbered = [
        (int(key[8:]), value)
        for key, value in env.items()
        if key.startswith("agi_arg_") and key[8:].isascii() and key[8:].isdigit()
    ]
    if len(numbered) > 1:
        numbered.sort()
    return tuple([value for _, value in numbered])


def _args_in_order(env: Mapping[str, str], arg_keys: int) -> tuple[str, ...]:
    """``_numbered_args`` without looking at every key when ``agi_arg_1..arg_keys`` are
    all there (as Asterisk writes them); else the same full look."""
    found = []
    for i in range(1, arg_keys + 1):
        value = env.get(f"agi_arg_{i}")
        if value is None:
            return _numbered_args(env)
        found.append(value)
    return tuple(found)


def _fast_env(block: bytes, max_lines: int) -> tuple[dict[str, str], int, bool] | None:
    """The pairs of a complete header block as Asterisk writes it, how many keys start
    with ``agi_arg_``, and whether the C split made them; None when the block needs the
    checked path (which then accepts or refuses it with the precise error). The same
    pairs as that path, with C loops only: a third of the instructions for a 23-line
    header, and with fill (one call for the lines) 15 against 24 us the whole header."""
    if len(block.translate(None, _FAST_REFUSED)) != len(block):
        return None
    text = block.decode("utf-8", errors="replace")
    env: dict[str, str] = {}
    fill = _fill
    # The block ends with "\n"; fill answers the lines split, or below 0: no ": " in a
    # line (-1), more than max_lines (-3), wider characters (-4, split here instead).
    count = _NOT_ONE_BYTE if fill is None else fill(env, text[:-1], False, max_lines)
    filled = False
    if count == _NOT_ONE_BYTE:
        lines = text.split("\n")
        lines.pop()
        if len(lines) > max_lines:
            return None
        try:
            env = dict(map(_FAST_SPLIT, lines))
        except ValueError:  # a line without ": "
            return None
        count = len(lines)
    elif count < 0:
        return None
    else:
        filled = True
    keys = "\n" + "\n".join(env)
    if (
        len(env) != count  # a duplicate
        or keys.count("\nagi_") != len(env)
        or "agi_" in env
        or not keys.isascii()
        or keys.encode().translate(None, _KEY_BYTES)
    ):
        return None  # a key that is not agi_[a-z0-9_]+
    return env, keys.count("\nagi_arg_"), filled


def _shared(env: dict[str, str]) -> dict[str, str]:
    """``env`` with its keys and repeating values interned (CPython frees an interned
    string no one holds: garbage keys do not pile up). One pass: ~2 us a session."""
    return {
        sys.intern(k): sys.intern(x) if k in _REPEATING and len(x) <= _SHARED_MAX else x
        for k, x in env.items()
    }


def _shared_values(env: dict[str, str]) -> dict[str, str]:
    """``_shared`` for a dict the C split filled, whose keys it interned: the repeating
    values alone, in place (the same objects as the checked path's)."""
    for key in _REPEATING_KEYS:
        x = env.get(key)
        if x is not None and len(x) <= _SHARED_MAX:
            env[key] = sys.intern(x)
    return env


def parse_query(raw: str) -> dict[str, str]:
    """``urllib.parse.parse_qs(raw, keep_blank_values=True)``, last value wins.

    The same result for every input (a unit test holds it to parse_qs), at a tenth of
    its cost for the plain ``site=dhaka&lang=&callid=...`` queries the dialplan sends:
    only a field with ``%`` or ``+`` is unquoted.
    """
    out: dict[str, str] = {}
    if not raw:
        return out
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name = unquote(name.replace("+", " "))
            value = unquote(value.replace("+", " "))
        out[sys.intern(name)] = value  # site, lang, callid: once, not once a session
    return out


class AgiRequestParser:
    """Incremental parser for the header block; feed it whatever the socket returned.

    Asterisk writes ``agi_key: value\\n`` lines and then an empty line::

        agi_network: yes
        agi_network_script: route?site=in
        agi_request: agi://10.0.0.5/route?site=in
        agi_channel: PJSIP/carrier-00000001
        agi_callerid: 919876543210
        agi_arg_1: sales

    ``feed`` returns ``None`` until the empty line arrives, then the request once.
    Bytes after the empty line are kept in ``tail``.  Any violation raises
    ``AgiProtocolError``, and so does every later ``feed``.
    """

    __slots__ = (
        "_buf",
        "_checked",
        "_error",
        "_max_header",
        "_max_line",
        "_max_lines",
        "_request",
        "tail",
    )

    def __init__(
        self,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_lines: int = MAX_HEADER_LINES,
    ) -> None:
        self._max_line = max_line_bytes
        self._max_header = max_header_bytes
        self._max_lines = max_lines
        self._buf = bytearray()
        self._checked = 0  # bytes of complete lines already validated
        self._error: str | None = None
        self._request: AgiRequest | None = None
        self.tail = b""

    @property
    def done(self) -> bool:
        return self._request is not None

    def feed(self, data: bytes) -> AgiRequest | None:
        if self._error is not None:
            raise AgiProtocolError(self._error)
        if self._request is not None:
            raise RuntimeError("AgiRequestParser.feed() after the request was complete")
        try:
            return self._feed(data)
        except AgiProtocolError as exc:
            self._error = str(exc)
            raise

    def _feed(self, data: bytes) -> AgiRequest | None:
        # Whole-block regexes instead of a Python loop per line: the header is parsed
        # once per call and this was most of the per-session CPU.
        buf = self._buf
        prev = len(buf)
        buf += data
        if buf[:1] == b"\n" or buf[:2] == b"\r\n":
            raise AgiProtocolError("empty header block")
        head = bytes(buf[:4])
        if head != b"agi_"[: len(head)] and head != b"\r":
            # Reject a TLS hello or an HTTP request on its first bytes, not at a limit.
            raise AgiProtocolError(f"not an agi_ header line: {_preview(bytes(buf))}")
        search = max(prev - 2, 0)
        lf = buf.find(b"\n\n", search)
        crlf = buf.find(b"\n\r\n", search)
        if lf < 0 and crlf < 0:
            if len(buf) > self._max_header:
                raise AgiProtocolError(f"header block larger than {self._max_header} bytes")
            last_nl = buf.rfind(b"\n")
            if len(buf) - last_nl - 1 > self._max_line:
                raise AgiProtocolError(f"header line longer than {self._max_line} bytes")
            if last_nl + 1 > self._checked:
                self._validate(self._checked, last_nl + 1)
                self._checked = last_nl + 1
            return None
        if lf >= 0 and (crlf < 0 or lf < crlf):
            block_end, tail_start = lf + 1, lf + 2
        else:
            block_end, tail_start = crlf + 1, crlf + 3
        if tail_start > self._max_header:
            raise AgiProtocolError(f"header block larger than {self._max_header} bytes")
        if self._checked == 0 and block_end <= self._max_line and tail_start == block_end + 1:
            # The whole block in one read, short enough that no line is over the limit,
            # LF-terminated: the usual case.
            fast = _fast_env(bytes(buf[:block_end]), self._max_lines)
            if fast is not None:
                self.tail = bytes(buf[tail_start:])
                buf.clear()
                self._request = AgiRequest._own(*fast)
                return self._request
        self._validate(self._checked, block_end)
        text = buf[:block_end].decode("utf-8", errors="replace")
        pairs = _PAIR_RE.findall(text)
        env = dict(pairs)
        if len(env) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise AgiProtocolError(f"duplicate header key {key!r}")
                seen.add(key)
        self.tail = bytes(buf[tail_start:])
        buf.clear()
        self._request = AgiRequest._own(env)
        return self._request

    def _validate(self, start: int, end: int) -> None:
        """Check the complete lines in ``buf[start:end]``; explain precisely on failure."""
        buf = self._buf
        if buf.count(b"\n", 0, end) > self._max_lines:
            raise AgiProtocolError(f"header has more than {self._max_lines} lines")
        if _BLOCK_RE.fullmatch(buf, start, end) is None:
            for line in bytes(buf[start:end]).split(b"\n")[:-1]:
                _diagnose(line.removesuffix(b"\r"))
            raise AgiProtocolError("malformed header block")  # not reached: a line failed
        # Cheap guard first: a region shorter than the limit cannot hold a long line.
        if end - start > self._max_line and any(
            len(line.removesuffix(b"\r")) > self._max_line
            for line in bytes(buf[start:end]).split(b"\n")
        ):
            raise AgiProtocolError(f"header line longer than {self._max_line} bytes")


def _diagnose(line: bytes) -> None:
    """Slow path: raise the specific error for one bad header line."""
    key, sep, value = line.partition(b":")
    if not sep or _KEY_RE.fullmatch(key) is None:
        raise AgiProtocolError(f"not an agi_ header line: {_preview(line)}")
    if _CONTROL_RE.search(value) is not None:
        raise AgiProtocolError(f"control bytes in header line: {_preview(line)}")


def _preview(line: bytes, limit: int = 40) -> str:
    return repr(line[:limit]) + ("..." if len(line) > limit else "")


# --------------------------------------------------------------------------- replies


_REPLY_RE: Final = re.compile(r"([0-9]{3})([ -])(.*)", re.DOTALL)
_RESULT_RE: Final = re.compile(r"result=(\S*)(?:\s+(.*))?", re.DOTALL)
_INT_RE: Final = re.compile(r"-?[0-9]+")
_USAGE_END: Final = "520 End of proper usage."


@dataclass(frozen=True, slots=True)
class AgiReply:
    """One reply from Asterisk.

    ``200 result=1 (value) endpos=1234`` -> code 200, result 1, result_text ``"1"``,
    data ``"value"``, extra ``"endpos=1234"``.  ``result`` is ``None`` when the result
    is not an integer (``GET DATA`` can return ``*12#`` or nothing) and for non-200
    codes, whose text goes to ``data``.  ``raw`` is the line(s) as received.
    """

    code: int
    result: int | None
    data: str
    raw: str
    result_text: str = ""
    extra: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def is_hangup(self) -> bool:
        return self.code == 0 and self.raw == "HANGUP"


#: What ``parse_reply("HANGUP")`` returns: Asterisk's unsolicited hangup notice.
HANGUP: Final = AgiReply(code=0, result=None, data="", raw="HANGUP")


def parse_reply(line: str) -> AgiReply:
    """Parse one reply line.

    >>> parse_reply("200 result=0 (timeout)").data
    'timeout'
    >>> parse_reply("510 Invalid or unknown command").code
    510
    >>> parse_reply("HANGUP") is HANGUP
    True
    """
    line = line.rstrip("\r\n")
    known = _COMMON.get(line)
    if known is not None:
        return known
    return _parse_reply(line)


def _parse_reply(line: str) -> AgiReply:
    m = _REPLY_RE.fullmatch(line)
    if m is None:
        raise AgiProtocolError(f"malformed AGI reply: {line[:60]!r}")
    code = int(m.group(1))
    text = m.group(3)
    if code != 200:
        return AgiReply(code=code, result=None, data=text, raw=line)
    r = _RESULT_RE.fullmatch(text)
    if r is None:
        raise AgiProtocolError(f"200 reply without result=: {line[:60]!r}")
    result_text = r.group(1)
    result = int(result_text) if _INT_RE.fullmatch(result_text) else None
    rest = r.group(2) or ""
    data = ""
    if rest.startswith("("):
        # The value is not escaped by Asterisk, so it may itself contain ")": take the
        # last one.  GET VARIABLE's "200 result=1 (a) b)" keeps "a) b".
        close = rest.rfind(")")
        if close < 0:
            raise AgiProtocolError(f"unbalanced '(' in reply: {line[:60]!r}")
        data, rest = rest[1:close], rest[close + 1 :].strip()
    return AgiReply(
        code=code, result=result, data=data, raw=line, result_text=result_text, extra=rest
    )


# The replies of nearly every command (MSet, SET VARIABLE, NOOP), parsed once and shared
# (an AgiReply is immutable): the regexes were a route session's largest cost after the
# header's.
_COMMON: Final = {
    "HANGUP": HANGUP,
    **{raw: _parse_reply(raw) for raw in ("200 result=0", "200 result=1")},
}


class AgiReplyParser:
    """Incremental reply parser: bytes in, complete replies out.

    Handles the multi-line usage reply::

        520-Invalid command syntax.  Proper usage follows:
        Usage: SET VARIABLE <variablename> <value>
        520 End of proper usage.

    which becomes one ``AgiReply(code=520, data=<usage text>)``.
    """

    __slots__ = ("_buf", "_error", "_max_line", "_usage")

    def __init__(self, *, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max_line = max_line_bytes
        self._buf = bytearray()
        self._usage: list[str] | None = None
        self._error: str | None = None

    def feed(self, data: bytes) -> list[AgiReply]:
        if self._error is not None:
            raise AgiProtocolError(self._error)
        try:
            return self._feed(data)
        except AgiProtocolError as exc:
            self._error = str(exc)
            raise

    def _feed(self, data: bytes) -> list[AgiReply]:
        buf = self._buf
        search_from = len(buf)
        buf += data
        out: list[AgiReply] = []
        pos = 0
        while (nl := buf.find(b"\n", search_from)) >= 0:
            raw = bytes(buf[pos:nl])
            pos = search_from = nl + 1
            if len(raw) > self._max_line:
                raise AgiProtocolError(f"reply line longer than {self._max_line} bytes")
            line = raw.decode("utf-8", errors="replace").rstrip("\r")
            reply = self._line(line)
            if reply is not None:
                out.append(reply)
        del buf[:pos]
        if len(buf) > self._max_line:
            raise AgiProtocolError(f"reply line longer than {self._max_line} bytes")
        return out

    def _line(self, line: str) -> AgiReply | None:
        usage = self._usage
        if usage is not None:
            if line.startswith(_USAGE_END):
                self._usage = None
                body = usage[1:]
                return AgiReply(
                    code=520, result=None, data="\n".join(body), raw="\n".join([*usage, line])
                )
            usage.append(line)
            if len(usage) > MAX_USAGE_LINES:
                raise AgiProtocolError(f"520 usage block longer than {MAX_USAGE_LINES} lines")
            return None
        if line.startswith("520-"):
            self._usage = [line]
            return None
        if not line:
            # Never sent by Asterisk; skipping it costs nothing and avoids failing a call.
            return None
        return parse_reply(line)


# --------------------------------------------------------------------------- commands


_VARNAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\([^\s\"\\()]*\))?")
_APP_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DIGITS_RE: Final = re.compile(r"[0-9*#]*")
_FORBIDDEN: Final = ("\n", "\r", "\x00")


def validate_variable_name(name: str) -> str:
    """Return ``name`` if it is a plain variable, ``__INHERITED`` or ``FUNC(args)``."""
    if _VARNAME_RE.fullmatch(name) is None:
        raise ValueError(f"invalid channel variable name: {name!r}")
    return name


def quote_arg(value: str) -> str:
    """Quote one argument the way res_agi.c's ``parse_args`` unquotes it.

    ``say "hi"`` -> ``"say \\"hi\\""``; a backslash is doubled.  CR, LF and NUL are
    refused: a newline would end the command and start another one.
    """
    if any(ch in value for ch in _FORBIDDEN):
        raise ValueError("AGI arguments cannot contain CR, LF or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_length(line: str) -> str:
    if len(line.encode("utf-8")) > MAX_COMMAND_BYTES:
        raise ValueError(f"AGI command longer than {MAX_COMMAND_BYTES} bytes")
    return line


def set_variable(name: str, value: str) -> str:
    """``SET VARIABLE CCB_ROUTE "queue-sales"``  (reply ``200 result=1``)."""
    return _check_length(f"SET VARIABLE {validate_variable_name(name)} {quote_arg(value)}")


def get_variable(name: str) -> str:
    """``GET VARIABLE CALLERID(num)``  (reply ``200 result=1 (919876543210)`` or
    ``200 result=0`` when unset)."""
    return _check_length(f"GET VARIABLE {validate_variable_name(name)}")


def verbose(message: str, level: int = 1) -> str:
    """``VERBOSE "routing to sales" 1``  (level 1-4; reply ``200 result=1``)."""
    if not 1 <= level <= 4:
        raise ValueError("verbose level must be 1..4")
    return _check_length(f"VERBOSE {quote_arg(message)} {level}")


def get_data(filename: str, timeout_ms: int | None = None, max_digits: int | None = None) -> str:
    """``GET DATA "ivr/menu" 5000 1``  (reply ``200 result=2`` or
    ``200 result= (timeout)``; the digits are in ``result_text``)."""
    parts = [f"GET DATA {quote_arg(filename)}"]
    if timeout_ms is not None or max_digits is not None:
        # maxdigits is positional after timeout; 0 means Asterisk's default timeout.
        parts.append(str(timeout_ms if timeout_ms is not None else 0))
    if max_digits is not None:
        if max_digits < 1:
            raise ValueError("max_digits must be >= 1")
        parts.append(str(max_digits))
    return _check_length(" ".join(parts))


def stream_file(filename: str, escape_digits: str = "", offset: int | None = None) -> str:
    """``STREAM FILE "welcome" "12"``  (reply ``200 result=0 endpos=8000``, or the
    ASCII code of the escape digit pressed: ``200 result=49 endpos=4000``)."""
    if _DIGITS_RE.fullmatch(escape_digits) is None:
        raise ValueError(f"invalid escape digits: {escape_digits!r}")
    line = f"STREAM FILE {quote_arg(filename)} {quote_arg(escape_digits)}"
    if offset is not None:
        line += f" {int(offset)}"
    return _check_length(line)


def exec_app(app: str, args: str | Sequence[str] = "") -> str:
    """``EXEC Dial "PJSIP/100@site-a,30"``  (reply ``200 result=<app return>``;
    ``-2`` when the application does not exist)."""
    if _APP_RE.fullmatch(app) is None:
        raise ValueError(f"invalid application name: {app!r}")
    joined = args if isinstance(args, str) else ",".join(args)
    if not joined:
        return f"EXEC {app}"
    return _check_length(f"EXEC {app} {quote_arg(joined)}")
