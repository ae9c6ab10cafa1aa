"""Users and tokens on both engines: a token checks out until it expires, is revoked or
its user is disabled; only the secret's hash is stored; garbage tokens are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from ccbridge.access.users import (
    TokenProblem,
    UserError,
    add_user,
    check_token,
    issue_token,
    list_users,
    revoke_token,
    set_disabled,
)
from ccbridge.store.schema import api_tokens
from tests.store.conftest import Db

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


async def test_a_tokens_life(migrated: Db) -> None:
    engine = migrated.engine()
    async with engine.begin() as conn:
        await add_user(
            conn,
            "sue",
            kind="user",
            role="supervisor",
            sites=["dhaka"],
            agent=None,
            password_hash=None,
            now=NOW,
        )
        good = await issue_token(conn, "sue", now=NOW, lifetime=timedelta(hours=1), label="t")
        other = await issue_token(conn, "sue", now=NOW, lifetime=timedelta(hours=1), label=None)
        stored = (await conn.execute(select(api_tokens.c.secret_hash))).scalars().all()
    assert all(good.token.split("_", 2)[2] not in h for h in stored)
    async with engine.connect() as conn:
        user, problem, tid = await check_token(conn, good.token, NOW + timedelta(minutes=5))
        assert user is not None and user.sites == ("dhaka",) and problem is None
        assert tid == good.id
        assert (await check_token(conn, good.token, NOW + timedelta(hours=2)))[1] is (
            TokenProblem.EXPIRED
        )
        for bad in ("", "ccb_", "ccb_xyz_abc", f"ccb_{good.id}_wrong", good.token + "x"):
            assert (await check_token(conn, bad, NOW))[0] is None
        assert [u.name for u in await list_users(conn)] == ["sue"]
    async with engine.begin() as conn:
        assert await revoke_token(conn, good.id, NOW) == "sue"
    async with engine.connect() as conn:
        assert (await check_token(conn, good.token, NOW))[1] is TokenProblem.REVOKED
        assert (await check_token(conn, other.token, NOW))[0] is not None
    async with engine.begin() as conn:
        await set_disabled(conn, "sue", True)
    async with engine.connect() as conn:
        assert (await check_token(conn, other.token, NOW))[1] is TokenProblem.DISABLED
    async with engine.begin() as conn:
        with pytest.raises(UserError, match="disabled"):
            await issue_token(conn, "sue", now=NOW, lifetime=timedelta(hours=1), label=None)
