"""argon2id password hashes. Hashing takes tens of milliseconds by design, so the async
functions run it in a thread: the event loop never waits on it."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile

# A hash to verify against when the user does not exist, so an unknown name costs the
# same time as a wrong password and does not reveal which names exist.
_DUMMY = _HASHER.hash("ccbridge-no-such-user")


def hash_password_sync(password: str) -> str:
    return _HASHER.hash(password)


def verify_password_sync(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(hash_password_sync, password)


async def verify_password(stored: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password_sync, stored, password)
