"""argon2id password hashes. Hashing takes tens of milliseconds by design, so the async
functions run it in a thread: the event loop never waits on it.

The hasher, and the hash verified against for unknown users, are made on first use, not
at import: argon2's low-memory profile hashes in 64 MiB, and made at import it raised
every bridge's start to a 105 MB high-water mark and ~1 s of CPU (BENCHMARKS.md §4,
eleventh session) whether or not anyone ever logged in with a password."""

from __future__ import annotations

import asyncio
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher


@cache
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile


@cache
def _dummy() -> str:
    """A hash to verify against when the user does not exist, so an unknown name costs
    the same time as a wrong password and does not reveal which names exist."""
    return _hasher().hash("ccbridge-no-such-user")


def hash_password_sync(password: str) -> str:
    return _hasher().hash(password)


def verify_password_sync(stored: str | None, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    try:
        return _hasher().verify(stored or _dummy(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password_sync, password)


async def verify_password(stored: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password_sync, stored, password)
