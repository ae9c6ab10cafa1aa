"""Access service: who a bearer token or a password is, and reading the audit trail.

The HTTP layer asks it; it knows nothing of HTTP. Failures are ``AccessDenied`` with a
stable id the HTTP layer maps to 401, 429 or 503 (``ccbridge/http/access.py``).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ccbridge.access.audit import AuditEvent, AuditTrail, utc_now
from ccbridge.access.passwords import verify_password
from ccbridge.access.ratelimit import FailureLimiter
from ccbridge.access.roles import Principal, Role, SiteAgents, expand
from ccbridge.access.users import (
    IssuedToken,
    TokenProblem,
    User,
    check_token,
    issue_token,
    password_hash_of,
)
from ccbridge.config.access_loader import AccessSettings
from ccbridge.config.model import Config, SecretValue
from ccbridge.store import audit as audit_store

log = logging.getLogger("ccbridge.access")

BOOTSTRAP = "bootstrap"


class AccessDenied(Exception):
    """error_id: missing-token, malformed-token, invalid-token, rate-limited,
    auth-unavailable, bad-login."""

    def __init__(self, error_id: str, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.retry_after = retry_after


class AccessService:
    def __init__(
        self,
        *,
        settings: AccessSettings,
        sites: Sequence[str],
        site_agents: SiteAgents,
        bootstrap: SecretValue | None,
        engine: AsyncEngine | None,
        trail: AuditTrail | None,
        now: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.roles: Mapping[str, Role] = settings.roles
        self.sites = tuple(sites)
        self.site_agents = site_agents
        self.agents = tuple(a for s in self.sites for a in site_agents.by_site.get(s, ()))
        self._bootstrap = bootstrap
        self.engine = engine
        self.trail = trail
        self.now = now
        self.monotonic = monotonic
        self.limiter = FailureLimiter(settings.max_failures, settings.failure_window)

    @classmethod
    def from_config(
        cls, config: Config, engine: AsyncEngine | None, trail: AuditTrail | None
    ) -> AccessService:
        return cls(
            settings=config.access,
            sites=[s.name for s in config.sites],
            site_agents=SiteAgents({s.name: tuple(a.name for a in s.agents) for s in config.sites}),
            bootstrap=config.bridge.api_token,
            engine=engine,
            trail=trail,
        )

    # -- audit ------------------------------------------------------------
    def audit(self, event: AuditEvent) -> None:
        if self.trail is not None:
            self.trail.record(event)
        else:
            log.info(
                "audit (no store): %s %s %s %s",
                event.actor,
                event.action,
                event.object or "-",
                event.result,
            )

    # -- who is asking ------------------------------------------------------
    def principal(self, user: User, token_id: str | None) -> Principal:
        role = self.roles.get(user.role)
        # A role the config no longer defines grants nothing (every call answers 403).
        acl = expand(role, user.sites, self.site_agents) if role is not None else ()
        return Principal(
            name=user.name,
            role=user.role,
            acl=acl,
            agent=user.agent,
            sites=user.sites,
            token_id=token_id,
            kind=user.kind,
        )

    def _limited(self, source: str) -> None:
        wait = self.limiter.retry_after(source, self.monotonic())
        if wait > 0:
            raise AccessDenied(
                "rate-limited", f"too many failed attempts from {source}", retry_after=wait
            )

    async def authenticate(self, header: str | None, source: str) -> Principal:
        """The principal of an ``Authorization`` header value; AccessDenied otherwise.
        Failed uses of a token are audited and count toward the address's limit."""
        if not header:
            raise AccessDenied("missing-token", "this call needs Authorization: Bearer <token>")
        scheme, _, given = header.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given or len(given) > 512:
            self._fail(source, "malformed", None)
            raise AccessDenied("malformed-token", "expected Authorization: Bearer <token>")
        # No limit check before the lookup: a valid token from an address that failed
        # logins still works (a whole office may share one address); failures count.
        boot = self._bootstrap.reveal() if self._bootstrap is not None else ""
        if boot and hmac.compare_digest(given.encode(), boot.encode()):
            return Principal(BOOTSTRAP, "admin", ("ccb.#",), kind="bootstrap")
        if self.engine is None:
            self._fail(source, TokenProblem.UNKNOWN.value, None)
            raise AccessDenied("invalid-token", "unknown, expired or revoked token")
        try:
            async with self.engine.connect() as conn:
                user, problem, tid = await check_token(conn, given, self.now())
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("cannot check a token: the store is unavailable: %s", type(exc).__name__)
            raise AccessDenied("auth-unavailable", "the user store is unavailable") from None
        if user is None:
            self._fail(source, (problem or TokenProblem.UNKNOWN).value, tid)
            self._limited(source)  # a guessing address is told to wait
            raise AccessDenied("invalid-token", "unknown, expired or revoked token")
        return self.principal(user, tid)

    def _fail(self, source: str, why: str, token_id: str | None) -> None:
        self.limiter.failed(source, self.monotonic())
        details: dict[str, Any] = {"why": why}
        if token_id is not None:
            details["token_id"] = token_id  # the public part only, never the secret
        self.audit(
            AuditEvent(
                actor="anonymous",
                source=source,
                action="token.use",
                result="unauthorized",
                status=401,
                details=details,
            )
        )

    async def login(self, name: str, password: str, source: str) -> IssuedToken:
        """A token for a user's password (lifetime ``login_hours``); audited either way."""
        try:
            self._limited(source)
        except AccessDenied:
            self.audit(
                AuditEvent(
                    actor=name[:64] or "anonymous",
                    source=source,
                    action="login",
                    result="limited",
                    status=429,
                )
            )
            raise
        if self.engine is None:
            raise AccessDenied("auth-unavailable", "no user store")
        try:
            async with self.engine.connect() as conn:
                found = await password_hash_of(conn, name)
        except (SQLAlchemyError, OSError, TimeoutError):
            raise AccessDenied("auth-unavailable", "the user store is unavailable") from None
        user, stored = found if found is not None else (None, None)
        # Verified even for an unknown name (against a dummy hash): the same cost.
        good = await verify_password(stored, password)
        if not good or user is None or user.disabled:
            self.limiter.failed(source, self.monotonic())
            self.audit(
                AuditEvent(
                    actor=name[:64] or "anonymous",
                    source=source,
                    action="login",
                    result="failed",
                    status=401,
                )
            )
            raise AccessDenied("bad-login", "wrong user name or password")
        self.limiter.succeeded(source)
        lifetime = timedelta(hours=self.settings.login_hours)
        try:
            async with self.engine.begin() as conn:
                issued = await issue_token(
                    conn, name, now=self.now(), lifetime=lifetime, label="login"
                )
        except (SQLAlchemyError, OSError, TimeoutError):
            raise AccessDenied("auth-unavailable", "the user store is unavailable") from None
        self.audit(
            AuditEvent(
                actor=name,
                source=source,
                action="login",
                result="ok",
                status=200,
                object=f"token:{issued.id}",
            )
        )
        return issued

    # -- the audit trail, read back ------------------------------------------
    async def audit_rows(self, q: audit_store.AuditQuery) -> list[dict[str, Any]]:
        if self.engine is None:
            raise AccessDenied("auth-unavailable", "no store")
        try:
            async with self.engine.connect() as conn:
                return await audit_store.rows(conn, q)
        except (SQLAlchemyError, OSError, TimeoutError):
            raise AccessDenied("auth-unavailable", "the audit store is unavailable") from None

    async def audit_all(self, q: audit_store.AuditQuery) -> AsyncIterator[dict[str, Any]]:
        if self.engine is None:
            raise AccessDenied("auth-unavailable", "no store")
        async with self.engine.connect() as conn:
            async for row in audit_store.iterate(conn, q):
                yield row
