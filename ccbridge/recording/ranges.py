"""HTTP Range headers for playback (RFC 9110 §14): one byte range, or a clear refusal.

``bytes=0-499``, ``bytes=500-`` and ``bytes=-500`` (the last 500) are what browsers send
to seek in audio; several ranges in one request are refused (a player never needs them,
and multipart answers would only widen the surface). Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")
MAX_HEADER = 200


class RangeError(Exception):
    """A Range header refused: ``error_id`` is ``invalid-range`` (not a single byte range)
    or ``range-not-satisfiable`` (outside the recording); both answer 416."""

    def __init__(self, error_id: str, message: str) -> None:
        super().__init__(message)
        self.error_id = error_id


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range asked for, clamped to ``size``; None when there is no Range header (the
    whole file). Raises RangeError for anything else than one satisfiable byte range."""
    if header is None:
        return None
    text = header.strip()
    if len(text) > MAX_HEADER:
        raise RangeError("invalid-range", "Range header too long")
    if "," in text:
        raise RangeError("invalid-range", "only one byte range per request is served")
    m = _SPEC.fullmatch(text.replace(" ", ""))
    if m is None:
        raise RangeError("invalid-range", "Range must be bytes=START-END, START- or -SUFFIX")
    first, last = m.group(1), m.group(2)
    if not first and not last:
        raise RangeError("invalid-range", "Range needs a start or a suffix length")
    if not first:  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeError("range-not-satisfiable", f"suffix of {n} bytes of a {size}-byte file")
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        raise RangeError("invalid-range", f"range end {end} before its start {start}")
    if start >= size:
        raise RangeError("range-not-satisfiable", f"start {start} past the end ({size} bytes)")
    return ByteRange(start, min(end, size - 1))
