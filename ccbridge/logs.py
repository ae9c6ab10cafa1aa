"""Structured logging for the bridge: key=value lines or JSON, caller numbers masked."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_DIGITS = re.compile(r"\d")


def mask_number(number: str | None) -> str:
    """The one masker of phone numbers for logs, everywhere in the bridge.

    Keeps the first two and last two digits, enough to tell countries and calls apart
    while debugging, and every non-digit: '+918000000001' -> '+91********01'. Four
    digits or fewer (an extension) are all masked; Asterisk's placeholders 'unknown' and
    'anonymous' have no digit and stay as they are.
    """
    if not number:
        return ""
    # Most numbers are ASCII digits with or without a leading "+": slices, no loop over
    # the characters (the general path below was ~1.5 % of the bridge's CPU at 1,000
    # routed calls/s, one masked caller a call's log line; BENCHMARKS §12).
    body = number[1:] if number[0] == "+" else number
    if body.isascii() and body.isdigit():
        sign = number[: len(number) - len(body)]
        if len(body) <= 4:
            return sign + "*" * len(body)
        return sign + body[:2] + "*" * (len(body) - 4) + body[-2:]
    return _mask_any(number)


def _mask_any(number: str) -> str:
    """``mask_number`` for any text: spaces, dashes, non-ASCII digits."""
    digits = [i for i, ch in enumerate(number) if ch.isdigit()]
    if len(digits) <= 4:
        return _DIGITS.sub("*", number)
    keep = set(digits[:2] + digits[-2:])
    return "".join(ch if (i in keep or not ch.isdigit()) else "*" for i, ch in enumerate(number))


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=info logger=ccbridge.agi msg="..." key=value` on one line."""

    # The last second's stamp: the bridge logs a line a routed call, and strftime was a
    # tenth of the line's cost (BENCHMARKS §12, tenth session). One tuple, replaced whole.
    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        last = self._second
        if last[0] != second:
            last = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = last
        fields: dict[str, Any] = {
            "ts": f"{last[1]}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "ctx", {}))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join([f"{k}={_quote(v)}" for k, v in fields.items()])


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "ctx", {}))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return json.dumps(fields, default=str)


def _quote(v: Any) -> str:
    s = v if type(v) is str else str(v)
    # Four C-level searches, not a generator over the four characters: a log line has
    # a dozen fields (BENCHMARKS §12, tenth session).
    if not s or " " in s or '"' in s or "=" in s or "\n" in s:
        return json.dumps(s)
    return s


def setup(level: str = "INFO", fmt: str = "kv") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # What no formatter of ours prints, not gathered for every record: the caller's
    # frame (a stack walk), the thread's and the process's names (the logging docs'
    # "Optimization"). The bridge logs a line a routed call.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # panoramisk logs every reconnect attempt with a traceback; the wrapper logs its own.
    logging.getLogger("panoramisk").setLevel(logging.CRITICAL)


def ctx(**fields: Any) -> dict[str, Any]:
    """`log.info("msg", extra=ctx(site="dhaka"))` adds key=value fields to the line."""
    return {"ctx": fields}
