"""The bridge's last sign of life, kept beside the record journal.

A bridge that is not running sees no site's calls: that is a coverage gap for every
site, from when it stopped until each link is up again. A clean stop writes its instant
here; a running bridge rewrites the file every second, so after a SIGKILL or a crash the
next start knows when the gap began (to within a second).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path


def path_for(journal: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(journal)}.alive")


def read(path: Path) -> datetime | None:
    """The instant last written, or None (first start, or an unreadable file)."""
    try:
        text = path.read_text(encoding="ascii").strip()
        value = float(text)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not 0 < value < 1e11:
        return None
    return datetime.fromtimestamp(value, UTC)


def write(path: Path, at: datetime) -> None:
    """Replace the file atomically (a crash mid-write leaves the old instant)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{at.timestamp():.6f}\n", encoding="ascii")
    os.replace(tmp, path)
