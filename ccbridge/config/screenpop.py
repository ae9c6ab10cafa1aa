"""The `screen_pop:` section: the caller's history in each pop, and the webhook targets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from ccbridge.config.model import SecretValue
from ccbridge.config.reader import Reader


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One URL every pop is POSTed to, signed with its own shared secret."""

    name: str  # the config key: the `target` label of the webhook metrics (never the URL)
    url: str
    secret: SecretValue
    timeout: float = 5.0  # seconds one attempt may take (connect, send, answer)
    # seconds an event is retried for from when it was made; then it is dropped
    max_age: float = 300.0
    backoff: float = 1.0  # seconds before the first retry; doubled each time, with jitter
    max_backoff: float = 60.0
    queue: int = 1000  # events waiting for this URL at most; beyond, new ones are dropped
    concurrency: int = 2  # deliveries in flight to this URL at once


@dataclass(frozen=True, slots=True)
class ScreenPopSettings:
    """How pops are made; the pops themselves go to the stream whatever this says."""

    # The caller's previous contacts over this many days (from the call record).
    history_days: int = 30
    # Seconds a pop waits for that history before it goes out with it marked unavailable.
    history_timeout: float = 0.5
    history_cache: float = 30.0  # seconds one number's history is reused
    webhooks: tuple[WebhookTarget, ...] = ()


def parse_screen_pop(r: Reader, v: Any) -> ScreenPopSettings:
    d = r.mapping(v, {"history_days", "history_timeout", "history_cache", "webhooks"})
    hooks: list[WebhookTarget] = []
    if d.get("webhooks") is not None:
        with r.at("webhooks", d):
            wmap = r.mapping(d["webhooks"])
            for name in wmap:
                with r.at(name, wmap):
                    hook = r.collect(partial(_target, r, str(name), wmap[name]))
                    if hook is not None:
                        hooks.append(hook)
    return ScreenPopSettings(
        webhooks=tuple(hooks),
        **r.given(
            d,
            {
                "history_days": r.integer(1, 3660),
                "history_timeout": r.number(0.01, 10),
                "history_cache": r.number(0, 3600),
            },
        ),
    )


_TARGET_KEYS = {"url", "secret", "timeout", "max_age", "backoff", "max_backoff", "queue"}


def _target(r: Reader, name: str, v: Any) -> WebhookTarget:
    r.name(name)  # the metrics' `target` label: a plain name
    d = r.mapping(v, _TARGET_KEYS | {"concurrency"}, {"url", "secret"})
    url = r.req(d, "url", r.string)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        with r.at("url", d):
            raise r.fail(f"expected an http:// or https:// URL, got '{url}'")
    target = WebhookTarget(
        name=name,
        url=url,
        secret=r.req(d, "secret", r.secret),
        **r.given(
            d,
            {
                "timeout": r.number(0.1, 120),
                "max_age": r.number(1, 7 * 86_400),
                "backoff": r.number(0.01, 3600),
                "max_backoff": r.number(0.01, 86_400),
                "queue": r.integer(1, 1_000_000),
                "concurrency": r.integer(1, 64),
            },
        ),
    )
    if target.max_backoff < target.backoff:
        with r.at("max_backoff", d):
            raise r.fail(f"max_backoff {target.max_backoff} is below backoff {target.backoff}")
    return target
