"""The rendered kamailio.cfg's /site-lost, run by the real Kamailio: garbage gets a clear
HTTP error, a known site an answer, and the edge keeps serving. (Moving real calls in
setup is the lab's proof: tests/integration/test_edge.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from ccbridge.config import Config, parse_config
from ccbridge.edge.rpc import HTTP_STATUS, EdgeRpcError, KamailioRpc
from ccbridge.edge.view import edge_view
from ccbridge.lab.edge import LabEdge
from ccbridge.variables import EDGE_SITE_LOST

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "examples" / "lab.yaml"
LAB_EDGE = "edge:\n  enabled: false\n  sip: 127.0.9.1:5060\n  rpc: 127.0.9.1:5080\n"
# Its own loopback address, away from the lab's edge; probes an hour apart stay off the
# lab's sites.
EDGE = "edge:\n  sip: 127.0.77.1:5060\n  rpc: 127.0.77.1:5080\n  probe_interval: 3600\n"


@pytest.fixture(scope="module")
def config() -> Iterator[Config]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CCBRIDGE_AMI_SECRET", "ami-secret")
        env.setenv("CCBRIDGE_API_TOKEN", "token")
        text = LAB.read_text()
        assert LAB_EDGE in text, "examples/lab.yaml's edge section changed"
        start = text.index(LAB_EDGE)
        text = text[:start] + EDGE + text[text.index("\n\n", start) :]
        yield parse_config(text, "deploy.yaml", REPO / "examples")


@pytest.fixture(scope="module")
def running(config: Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabEdge]:
    edge = LabEdge(config, tmp_path_factory.mktemp("edge"))
    edge.start()
    try:
        yield edge
    finally:
        edge.stop()


@pytest.fixture
async def http(running: LabEdge) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with aiohttp.ClientSession() as session:
        yield session, f"http://{running.settings.rpc}{EDGE_SITE_LOST}"


GARBAGE = [
    (b"", 400),
    (b"garbage", 400),
    (b"sip:127.0.2.1", 400),  # no port
    (b"sip:127.0.2.1:5060;transport=tcp", 400),
    (b"sip:agent@127.0.2.1:5060", 400),
    (b"sip:127.0.2.1:5060\r\nsip:127.0.1.1:5060", 400),
    (b"\xff\xfe\x00sip", 400),
    (b"sip:127.0.2.1:5060" + b"0" * 5000, 400),
    (b"sip:127.0.0.99:5060", 404),  # well formed, not a site of the dispatcher list
    (b"sip:127.0.2.1:5061", 404),  # a site's address, another port
    (b"sip:999.999.999.999:99999", 404),
]


@pytest.mark.parametrize(("body", "status"), GARBAGE, ids=[repr(b[:30]) for b, _ in GARBAGE])
async def test_garbage_posted_to_site_lost_is_a_clear_error(
    http: tuple[aiohttp.ClientSession, str], body: bytes, status: int
) -> None:
    session, url = http
    async with session.post(url, data=body) as resp:
        text = await resp.text()
        assert resp.status == status, text
        assert text.strip() in ("expected sip:IPV4:PORT", "no such site")


async def test_only_post_and_a_site_of_the_list_moves_calls(
    config: Config, http: tuple[aiohttp.ClientSession, str], running: LabEdge
) -> None:
    session, url = http
    async with session.get(url) as resp:
        assert resp.status == 405
    view = edge_view(config)
    assert view is not None
    rpc = KamailioRpc(running.settings.rpc_url, 2.0)
    try:
        # no call in setup at this edge: every site answers 0 moved, again and again
        for uri in view.uris.values():
            assert await rpc.site_lost(uri) == 0
            assert await rpc.site_lost(uri) == 0
        with pytest.raises(EdgeRpcError) as info:
            await rpc.site_lost("sip:127.0.0.99:5060")
        assert info.value.reason == HTTP_STATUS and "no such site" in str(info.value)
        # many at once: Kamailio's one TCP worker answers each, and keeps serving RPC
        answers = await asyncio.gather(
            *(session.post(url, data=b"sip:bad") for _ in range(50)), return_exceptions=True
        )
        assert all(isinstance(a, aiohttp.ClientResponse) and a.status == 400 for a in answers)
        for a in answers:
            assert isinstance(a, aiohttp.ClientResponse)
            a.release()
        assert await rpc.states()
        assert running.pid() is not None
    finally:
        await rpc.close()
