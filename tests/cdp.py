"""A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol.

Why not selenium or Playwright: Playwright downloads its own browsers (no CDN here) and
selenium would be a new dependency plus Debian's chromium-driver; the DevTools protocol
is JSON over a WebSocket, which aiohttp (already a dependency) speaks. The browser
writes its port to ``DevToolsActivePort`` in its profile folder; the page target's
WebSocket comes from ``/json/list``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp

from tests.polling import until


class Chromium:
    """``async with Chromium(tmp) as page: await page.goto(url); await page.js(expr)``."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Chromium:
        binary = shutil.which("chromium")
        assert binary, "Debian's chromium is not installed (make test installs it)"
        await asyncio.to_thread(self.profile.mkdir, parents=True, exist_ok=True)
        log = await asyncio.to_thread(open, self.profile / "chromium.log", "wb")
        self._proc = await asyncio.create_subprocess_exec(
            binary,
            "--headless=new",
            "--no-sandbox",  # root in a container: the sandbox needs user namespaces
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            "about:blank",
            stdout=log,
            stderr=log,
        )
        log.close()
        active = self.profile / "DevToolsActivePort"
        await until(active.exists, 30, "chromium's DevTools port")
        port = (await asyncio.to_thread(active.read_text)).split()[0]
        self._http = aiohttp.ClientSession()
        pages: list[dict[str, Any]] = []

        async def find_page() -> None:
            assert self._http is not None
            async with self._http.get(f"http://127.0.0.1:{port}/json/list") as r:
                pages[:] = [t for t in await r.json() if t.get("type") == "page"]

        await find_page()
        self._ws = await self._http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        # No Page.enable or Runtime.enable: their event streams are not needed for
        # navigate and evaluate, and each event is a callback on the test's loop.
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            fut = self._waiting.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        n = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[n] = fut
        await self._ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        got = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in got:
            raise AssertionError(f"{expression}: {got['exceptionDetails']}")
        return got["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_js(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
            f"{url} loaded",
        )

    async def wait_js(self, expression: str, what: str, within: float = 15.0) -> None:
        """Poll until ``expression`` is true in the page."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not await self.js(expression):
            if loop.time() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what}")
            await asyncio.sleep(0.1)

    async def text(self, element_id: str) -> str:
        value = await self.js(f"document.getElementById({json.dumps(element_id)}).textContent")
        return str(value)
