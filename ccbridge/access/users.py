"""Users, service accounts and their API tokens in the store.

A token reads ``ccb_<id>_<secret>``: ``id`` (12 hex digits) finds the row, ``secret``
(43 characters, 256 random bits) is kept only as its SHA-256 and compared in constant
time. A token is shown once, when it is made; it has an expiry and can be revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ccbridge.store.schema import api_tokens, users

PREFIX = "ccb_"
NAME_MAX = 64


class TokenProblem(StrEnum):
    """Why a token was refused: the audit row says which; the client only gets 401."""

    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DISABLED = "user-disabled"


class UserError(Exception):
    """A user command refused: the message says why."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    kind: str
    role: str
    sites: tuple[str, ...]
    agent: str | None
    disabled: bool
    created_at: datetime
    has_password: bool = False


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # shown once
    id: str
    expires_at: datetime


def _user(row: Any) -> User:
    return User(
        name=row.name,
        kind=row.kind,
        role=row.role,
        sites=tuple(row.sites or ()),
        agent=row.agent,
        disabled=bool(row.disabled),
        created_at=row.created_at,
        has_password=row.password_hash is not None,
    )


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    tid, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or len(tid) != 12 or not all(c in "0123456789abcdef" for c in tid) or not secret:
        return None
    return tid, secret


async def add_user(
    conn: AsyncConnection,
    name: str,
    *,
    kind: str,
    role: str,
    sites: Sequence[str],
    agent: str | None,
    password_hash: str | None,
    now: datetime,
) -> User:
    if await get_user(conn, name) is not None:
        raise UserError(f"user {name!r} already exists")
    await conn.execute(
        users.insert().values(
            name=name,
            kind=kind,
            role=role,
            sites=list(sites),
            agent=agent,
            password_hash=password_hash,
            disabled=False,
            created_at=now,
        )
    )
    got = await get_user(conn, name)
    assert got is not None
    return got


async def get_user(conn: AsyncConnection, name: str) -> User | None:
    row = (await conn.execute(select(users).where(users.c.name == name))).first()
    return _user(row) if row is not None else None


async def password_hash_of(conn: AsyncConnection, name: str) -> tuple[User, str | None] | None:
    row = (await conn.execute(select(users).where(users.c.name == name))).first()
    return (_user(row), row.password_hash) if row is not None else None


async def list_users(conn: AsyncConnection) -> list[User]:
    rows = (await conn.execute(select(users).order_by(users.c.name))).all()
    return [_user(r) for r in rows]


async def set_disabled(conn: AsyncConnection, name: str, disabled: bool) -> None:
    done = await conn.execute(update(users).where(users.c.name == name).values(disabled=disabled))
    if done.rowcount == 0:
        raise UserError(f"no user {name!r}")


async def issue_token(
    conn: AsyncConnection, name: str, *, now: datetime, lifetime: timedelta, label: str | None
) -> IssuedToken:
    user = await get_user(conn, name)
    if user is None:
        raise UserError(f"no user {name!r}")
    if user.disabled:
        raise UserError(f"user {name!r} is disabled")
    tid = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    expires = now + lifetime
    await conn.execute(
        api_tokens.insert().values(
            id=tid,
            user_name=name,
            secret_hash=secret_hash(secret),
            label=label,
            created_at=now,
            expires_at=expires,
            revoked_at=None,
        )
    )
    return IssuedToken(f"{PREFIX}{tid}_{secret}", tid, expires)


async def revoke_token(conn: AsyncConnection, tid: str, now: datetime) -> str:
    """Revoke a token by id; the user it belonged to."""
    row = (await conn.execute(select(api_tokens).where(api_tokens.c.id == tid))).first()
    if row is None:
        raise UserError(f"no token {tid!r}")
    await conn.execute(
        update(api_tokens)
        .where(api_tokens.c.id == tid, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return str(row.user_name)


async def tokens_of(conn: AsyncConnection, name: str) -> list[dict[str, Any]]:
    rows = (
        await conn.execute(
            select(
                api_tokens.c.id,
                api_tokens.c.label,
                api_tokens.c.created_at,
                api_tokens.c.expires_at,
                api_tokens.c.revoked_at,
            )
            .where(api_tokens.c.user_name == name)
            .order_by(api_tokens.c.created_at)
        )
    ).mappings()
    return [dict(r) for r in rows]


async def check_token(
    conn: AsyncConnection, token: str, now: datetime
) -> tuple[User | None, TokenProblem | None, str | None]:
    """(the user, None, token id) for a good token; (None, why, token id or None) else."""
    parts = split_token(token)
    if parts is None:
        return None, TokenProblem.MALFORMED, None
    tid, secret = parts
    row = (
        await conn.execute(
            select(
                users,
                api_tokens.c.secret_hash,
                api_tokens.c.expires_at,
                api_tokens.c.revoked_at,
            )
            .join(users, users.c.name == api_tokens.c.user_name)
            .where(api_tokens.c.id == tid)
        )
    ).first()
    if row is None or not hmac.compare_digest(row.secret_hash, secret_hash(secret)):
        return None, TokenProblem.UNKNOWN, tid
    if row.revoked_at is not None:
        return None, TokenProblem.REVOKED, tid
    if row.expires_at <= now:
        return None, TokenProblem.EXPIRED, tid
    if row.disabled:
        return None, TokenProblem.DISABLED, tid
    return _user(row), None, tid
