"""Kamailio's JSON-RPC over HTTP (jsonrpcs + xhttp): the few calls the bridge makes.

Every fault becomes an EdgeRpcError with a stable reason; nothing else leaves this module,
so a broken, slow or impostor edge can cost the bridge a log line and a counter, never a
task or the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any, Final
from urllib.parse import urljoin

import aiohttp

from ccbridge.variables import EDGE_SITE_LOST

# Why an RPC failed: the `result` label of ccbridge_edge_rpc_total besides "ok".
REFUSED: Final = "refused"  # nothing listens, or the connection broke
TIMEOUT: Final = "timeout"
HTTP_STATUS: Final = "http-status"  # an HTTP answer other than 200
NOT_JSON: Final = "not-json"  # not a JSON document (or not UTF-8, or empty)
RPC_ERROR: Final = "rpc-error"  # a JSON-RPC error object: Kamailio refused the call
BAD_REPLY: Final = "bad-reply"  # JSON, but not a JSON-RPC answer to this request
TOO_LARGE: Final = "too-large"
REASONS: Final = (REFUSED, TIMEOUT, HTTP_STATUS, NOT_JSON, RPC_ERROR, BAD_REPLY, TOO_LARGE)

# dispatcher.list for thousands of destinations stays far below this.
MAX_REPLY: Final = 1 << 20


class EdgeRpcError(Exception):
    """One failed RPC: ``reason`` is one of REASONS, the message says what was seen."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class KamailioRpc:
    """A client of one edge's JSON-RPC listener (``http://HOST:PORT/RPC``)."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.site_lost_url = urljoin(url, EDGE_SITE_LOST)  # same listener, the cfg's own path
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, *params: object) -> Any:
        """The ``result`` of one JSON-RPC call; EdgeRpcError for anything else."""
        rid = next(self._ids)
        body = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": rid}
        status, raw = await self._post(self.url, json=body)
        if status != 200:
            raise EdgeRpcError(HTTP_STATUS, f"HTTP {status}: {_excerpt(raw)}")
        return _result(raw, rid)

    async def site_lost(self, uri: str) -> int:
        """Tell the edge the site at ``uri`` (``sip:HOST:PORT``) is lost: the calls in setup
        there move to the next site of their set. How many moved; HTTP_STATUS with the
        edge's reason for a malformed or unknown site (kamailio.cfg.j2, SITE_LOST_HTTP)."""
        status, raw = await self._post(self.site_lost_url, data=uri.encode())
        if status != 200:
            raise EdgeRpcError(HTTP_STATUS, f"HTTP {status}: {_excerpt(raw)}")
        text = raw.decode("ascii", "replace").strip()
        if not text.isdigit() or len(text) > 9:
            raise EdgeRpcError(BAD_REPLY, f"not a count of calls: {_excerpt(raw)}")
        return int(text)

    async def _post(self, url: str, **body: Any) -> tuple[int, bytes]:
        """(HTTP status, body) of one POST; EdgeRpcError when there is no whole answer."""
        if self._session is None:
            # One connection at most: the edge's RPC is one small request at a time.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        try:
            async with asyncio.timeout(self.timeout):
                async with self._session.post(url, **body) as resp:
                    raw = await _read_capped(resp)
                    status = resp.status
        except TimeoutError:
            raise EdgeRpcError(TIMEOUT, f"no answer within {self.timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise EdgeRpcError(REFUSED, f"{type(exc).__name__}: {exc}") from None
        if len(raw) > MAX_REPLY:
            raise EdgeRpcError(TOO_LARGE, f"answer over {MAX_REPLY} bytes")
        return status, raw

    async def set_state(self, state: str, group: int, uri: str) -> None:
        """``dispatcher.set_state``: one destination of one set (see edge/view.py)."""
        await self.call("dispatcher.set_state", state, group, uri)

    async def states(self) -> dict[tuple[int, str], str]:
        """``dispatcher.list`` as (set id, destination URI) -> its FLAGS (``AP``, ``DX``, ...)."""
        result = await self.call("dispatcher.list")
        return parse_list(result)


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    """The body, or MAX_REPLY + 1 bytes of it: enough to tell it is too large."""
    raw = bytearray()
    while len(raw) <= MAX_REPLY:
        chunk = await resp.content.read(MAX_REPLY + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    return bytes(raw)


def _result(raw: bytes, rid: int) -> Any:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EdgeRpcError(NOT_JSON, f"not JSON: {_excerpt(raw)}") from None
    if not isinstance(doc, dict) or doc.get("id") != rid:
        raise EdgeRpcError(BAD_REPLY, f"not the answer to request {rid}: {_excerpt(raw)}")
    error = doc.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else error
        raise EdgeRpcError(RPC_ERROR, f"refused: {str(message)[:200]}")
    if "result" not in doc:
        raise EdgeRpcError(BAD_REPLY, f"neither result nor error: {_excerpt(raw)}")
    return doc["result"]


def parse_list(result: Any) -> dict[tuple[int, str], str]:
    """The destinations of a ``dispatcher.list`` result; BAD_REPLY when its shape is not
    Kamailio 5.6's (``{"RECORDS": [{"SET": {"ID", "TARGETS": [{"DEST": {"URI", "FLAGS"}}]}}]}``)."""
    out: dict[tuple[int, str], str] = {}
    try:
        records = result.get("RECORDS") or []
        if not isinstance(records, list):
            raise TypeError(records)
        for record in records:
            group = record["SET"]
            gid = group["ID"]
            targets = group.get("TARGETS") or []
            if not isinstance(gid, int) or not isinstance(targets, list):
                raise TypeError(gid)
            for target in targets:
                dest = target["DEST"]
                uri, flags = dest["URI"], dest["FLAGS"]
                if not isinstance(uri, str) or not isinstance(flags, str):
                    raise TypeError(uri)
                out[(gid, uri)] = flags
    except (AttributeError, KeyError, TypeError):
        raise EdgeRpcError(BAD_REPLY, "dispatcher.list in an unknown shape") from None
    return out


def _excerpt(raw: bytes) -> str:
    return repr(raw[:120])
