"""Random methods, paths, headers and bodies against every route of a started bridge, as
every kind of caller: never a 500, and nothing changes without the permission for it.

The bridge runs on its own event loop in a thread; hypothesis drives plain HTTP requests
from the test's thread. "Nothing changes" is checked on what the API can change here
(the sites' drain flags; the AMI links are down, so agent and call actions cannot reach
a site) and on the audit trail: every 403 left a `denied` row.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import string
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccbridge.access.acl import allowed
from tests.polling import until_sync
from tests.store.access_world import BOOTSTRAP, World, make_world


class Threaded:
    """A World whose bridge runs on a loop in another thread."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.world: World = self.run(make_world(tmp))
        self.acls = {name: self.run(self._acl(token)) for name, token in self.world.tokens.items()}
        self.acls["bootstrap"] = ("ccb.#",)

    async def _acl(self, token: str) -> tuple[str, ...]:
        p = await self.world.bridge.access.authenticate(f"Bearer {token}", "test")
        return p.acl

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def drained(self) -> dict[str, bool]:
        async def read() -> dict[str, bool]:
            return {n: s.drained for n, s in self.world.bridge.state.sites.items()}

        return dict(self.run(read()))

    def close(self) -> None:
        self.run(self.world.bridge.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def threaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Threaded]:
    mp = pytest.MonkeyPatch()
    mp.setenv("CCBRIDGE_AMI_SECRET", "x")
    mp.setenv("CCBRIDGE_API_TOKEN", BOOTSTRAP)
    t = Threaded(tmp_path_factory.mktemp("fuzz"))
    try:
        yield t
    finally:
        t.close()
        mp.undo()


SITES = ["dhaka", "bangalore", "manila", "nowhere", "dha.ka", "%2e%2e", "*", "#", "me"]
AGENTS = ["dac-agent1", "blr-agent1", "roam1", "me", "x" * 80, "a.b"]
SEGMENT = st.text(string.ascii_letters + string.digits + "-_.%*#~!$'()+,;=:@", max_size=20)
REAL = st.one_of(
    st.builds(
        lambda s, a: f"/api/v1/sites/{s}/{a}",
        st.sampled_from(["dhaka", "bangalore", "manila"]),
        st.sampled_from(["drain", "undrain"]),
    ),
    st.builds(
        lambda g, a: f"/api/v1/agents/{g}/{a}",
        st.sampled_from(["dac-agent1", "dac-agent2", "blr-agent1", "mnl-agent1"]),
        st.sampled_from(["login", "logout", "pause", "unpause"]),
    ),
)
PATHS = st.one_of(
    REAL,  # well-formed routes a third of the time: where permissions are decided
    REAL,
    st.builds(
        lambda s, a: f"/api/v1/sites/{s}/{a}",
        st.sampled_from(SITES) | SEGMENT,
        st.sampled_from(["drain", "undrain", "x"]),
    ),
    st.builds(
        lambda g, a: f"/api/v1/agents/{g}/{a}",
        st.sampled_from(AGENTS) | SEGMENT,
        st.sampled_from(["login", "logout", "pause", "unpause"]),
    ),
    st.sampled_from(
        [
            "/api/v1/sites",
            "/api/v1/queues",
            "/api/v1/trunks",
            "/api/v1/agents",
            "/api/v1/route/preview",
            "/api/v1/calls",
            "/api/v1/audit",
            "/api/v1/audit?format=csv",
            "/api/v1/audit?since=x&limit=-1",
            "/api/v1/login",
            "/api/v1/staffing/coverage",
            "/api/v1/staffing?from=2026-01-01",
            "/healthz",
            "/readyz",
            "/api/v1/",
            "/api/v1/sites/",
        ]
    ),
    st.builds(lambda p: "/" + p, SEGMENT),
)
CALLERS = st.sampled_from(["sue", "dac-agent1", "vic", "ada", "crm", "bootstrap", None, "junk"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
BODIES = st.one_of(
    st.none(),
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "site": st.sampled_from(SITES),
            "queues": st.lists(st.text(max_size=10), max_size=3),
            "reason": st.text(max_size=100),
            "to": st.text(max_size=20),
            "user": st.sampled_from(["ada", "sue", "x"]),
            "password": st.text(max_size=20),
            "did": st.text(max_size=16),
        },
    ).map(lambda d: json.dumps(d).encode()),
)
METHODS = st.one_of(
    st.sampled_from(["GET", "POST"]),  # the routes' own methods half the time
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW"]),
)
HEADERS = st.dictionaries(
    st.sampled_from(["Content-Type", "X-Forwarded-For", "Accept", "Cookie", "Content-Encoding"]),
    st.text(string.ascii_letters + string.digits + "/;=-. ", max_size=30),
    max_size=3,
)

seen: dict[str, int] = {"403": 0, "requests": 0, "2xx": 0, "changes": 0}


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(METHODS, PATHS, CALLERS, HEADERS, BODIES)
def test_random_requests_never_fail_the_bridge_or_change_what_they_may_not(
    threaded: Threaded,
    method: str,
    path: str,
    caller: str | None,
    headers: dict[str, str],
    body: bytes | None,
) -> None:
    w = threaded.world
    if caller == "junk":
        headers["Authorization"] = "Bearer ccb_000000000000_junk"
    elif caller is not None:
        headers.update(w.auth(caller))
    before = threaded.drained()
    conn = http.client.HTTPConnection("127.0.0.1", w.bridge.http_port or 0, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        status, data = r.status, r.read()
    finally:
        conn.close()
    seen["requests"] += 1
    seen["2xx"] += 200 <= status < 300
    assert status != 500, (method, path, caller, data[:300])
    if status >= 500 and method == "HEAD":
        assert path.startswith("/readyz"), (method, path)  # a HEAD answer has no body
    elif status >= 500 and path.startswith("/readyz"):
        assert json.loads(data)["ready"] is False  # the sites are down here
    elif status >= 500:  # a site down (AMI): a service error with its id, never a crash
        assert json.loads(data)["error"] in {
            "site-down",
            "ami-error",
            "ami-timeout",
            "no-carrier",
            "originate-failed",
            "records-unavailable",
            "auth-unavailable",
        }, data
    if status == 403:  # (HEAD answers carry no body to tell which 403)
        assert method == "HEAD" or b'"forbidden"' in data, data  # never an undeclared route
        seen["403"] += 1
    after = threaded.drained()
    for site, was in before.items():
        if after[site] != was:
            acl = threaded.acls.get(caller or "", ())
            assert caller in threaded.acls and allowed(acl, f"ccb.sites.{site}.drain"), (
                method,
                path,
                caller,
            )
            assert status == 200
    seen["changes"] += after != before
    # Put the flags back so the next example starts from the same state.
    if after != before:
        threaded.run(_reset(w))


async def _reset(w: World) -> None:
    for name in w.bridge.state.sites:
        w.bridge.services.sites.set_drained(name, False)


def test_every_refusal_of_the_fuzz_was_audited(threaded: Threaded) -> None:
    """Runs after the fuzz (same module): one `denied` audit row per 403 it got."""
    if seen["requests"] == 0:
        pytest.skip("the fuzz did not run first")  # only when run on its own
    trail = threaded.world.bridge.access.trail
    assert trail is not None
    until_sync(lambda: trail.writer.status().caught_up, 20, "the audit trail written")
    rows = threaded.run(threaded.world.audit_rows())
    denied = [r for r in rows if r["result"] == "denied"]
    print(
        f"fuzz: {seen['requests']} requests, {seen['2xx']} answered 2xx, {seen['403']} "
        f"refused with 403, {seen['changes']} changed a drain flag"
    )
    assert seen["403"] > 0 and len(denied) == seen["403"]
