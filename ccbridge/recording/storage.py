"""Central storage of encrypted recordings: a small interface, and a directory the bridge owns.

Every method blocks (file or network I/O): callers run them in a thread, never on the
event loop. An object store (S3 and the like) fits the same four methods: ``put`` of a
finished local file under a key, ``size``, ``open`` for reading ranges, ``delete``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

_KEY = re.compile(r"[A-Za-z0-9+._@-]{1,100}/[A-Za-z0-9+._@-]{1,150}")


class StorageError(OSError):
    """Central storage refused a write or a read (full, unwritable, unreachable)."""


class Storage(Protocol):
    """Where recordings end up; keys are ``folder/name`` made by recording.naming."""

    def put(self, key: str, src: Path) -> None:
        """Store ``src``'s bytes under ``key`` atomically: after a crash the key holds the
        whole file or nothing. Storing the same key again replaces it with equal bytes."""
        ...

    def size(self, key: str) -> int | None:
        """The stored object's size, None when there is none."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A seekable reader of the stored bytes (FileNotFoundError when there is none)."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the object; False when there was none."""
        ...

    def describe(self) -> str: ...


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or ".." in key:
        raise ValueError(f"not a storage key: {key[:80]!r}")
    return key


class DirectoryStorage:
    """A folder, one sub-folder per call: written to a temporary file, fsynced, renamed."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"directory {self.root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, src: Path) -> None:
        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".incoming-")
            try:
                with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                    while block := inp.read(1 << 20):
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dir_fd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise StorageError(exc.errno, f"cannot store {key}: {exc.strerror or exc}") from exc

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the call's folder, once its last recording is gone
        return True
