"""Self-service HTTP backend client: per-attempt timeout, bounded retries, a circuit breaker."""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ccbridge.config.ivr import BreakerSettings, SelfServiceSettings

log = logging.getLogger("ccbridge.selfservice")

_SAY_RE = re.compile(r"^[0-9]{1,32}$")
_ANSWER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after N consecutive failures; after ``reset_after`` s lets one trial through.

    Pure: the caller passes the time in, so tests drive it with plain numbers.
    """

    def __init__(self, settings: BreakerSettings) -> None:
        self.settings = settings
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial = False  # a half-open trial request is in flight
        self.opened_total = 0

    def state(self, now: float) -> BreakerState:
        if self._state is BreakerState.OPEN and now - self._opened_at >= self.settings.reset_after:
            return BreakerState.HALF_OPEN
        return self._state

    def allow(self, now: float) -> bool:
        """May a request go out now? In half-open, only one at a time."""
        st = self.state(now)
        if st is BreakerState.CLOSED:
            return True
        if st is BreakerState.OPEN or self._trial:
            return False
        self._state = BreakerState.HALF_OPEN
        self._trial = True
        return True

    def success(self, now: float) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._trial = False

    def failure(self, now: float) -> None:
        self._failures += 1
        was_trial = self._trial
        self._trial = False
        if was_trial or self._failures >= self.settings.failures:
            if self._state is not BreakerState.OPEN:
                self.opened_total += 1
            self._state = BreakerState.OPEN
            self._opened_at = now


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What the backend said, or why it said nothing. ``reason`` is a bounded label."""

    ok: bool
    reason: str  # ok | breaker_open | timeout | connect_error | http_NNN | bad_reply
    answer: str | None = None
    say: str | None = None


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SelfServiceClient:
    """POST {"lookup", "digits", "site"} to the backend; expect {"answer", "say"?} back."""

    def __init__(
        self,
        settings: SelfServiceSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.breaker = CircuitBreaker(settings.breaker)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a ClientSession must be made inside the running loop.
        if self._session is None or self._session.closed:
            headers = {}
            if self.settings.token is not None and self.settings.token.reveal():
                headers["Authorization"] = f"Bearer {self.settings.token.reveal()}"
            self._session = aiohttp.ClientSession(headers=headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def lookup(self, name: str, digits: str, site: str) -> LookupResult:
        if not self.breaker.allow(self._clock()):
            return LookupResult(False, "breaker_open")
        s = self.settings
        reason = "timeout"
        for attempt in range(s.retries + 1):
            if attempt:
                await asyncio.sleep(s.retry_backoff)
            try:
                result = await self._once(name, digits, site)
            except _Retryable as exc:
                reason = exc.reason
                continue
            # The backend answered (even 4xx or nonsense): it is alive.
            self.breaker.success(self._clock())
            return result
        self.breaker.failure(self._clock())
        return LookupResult(False, reason)

    async def _once(self, name: str, digits: str, site: str) -> LookupResult:
        body = {"lookup": name, "digits": digits, "site": site}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with self._client().post(self.settings.url, json=body, timeout=timeout) as resp:
                if resp.status >= 500:
                    raise _Retryable(f"http_{resp.status}")
                if resp.status >= 300:
                    return LookupResult(False, f"http_{resp.status}")
                try:
                    data: Any = await resp.json(content_type=None)
                except ValueError:
                    return LookupResult(False, "bad_reply")
        except TimeoutError:
            raise _Retryable("timeout") from None
        except aiohttp.ClientError:
            raise _Retryable("connect_error") from None
        return parse_reply(data)


def parse_reply(data: Any) -> LookupResult:
    """``{"answer": "shipped", "say": "3"}``: the answer picks prompts, ``say`` is read back.

    Both reach the dialplan, so only safe shapes pass: a short lowercase word and digits.
    """
    if not isinstance(data, dict):
        return LookupResult(False, "bad_reply")
    answer = data.get("answer")
    if not isinstance(answer, str) or not _ANSWER_RE.match(answer):
        return LookupResult(False, "bad_reply")
    say = data.get("say")
    say_s = str(say) if isinstance(say, str | int) and not isinstance(say, bool) else None
    if say_s is not None and not _SAY_RE.match(say_s):
        say_s = None
    return LookupResult(True, "ok", answer, say_s)
