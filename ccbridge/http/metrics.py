"""GET /metrics: the registry in the Prometheus text or OpenMetrics format, formatted off the loop.

The loop takes the snapshots (ccbridge/scrape.py ``freeze``, a few ms whatever the
number of agents); families and text are built, and gzipped when the client accepts it,
in a worker thread, the text with each line's name and labels cached
(ccbridge/exposition.py). Query: only ``name[]`` (repeatable), the sample names to keep, as
prometheus_client's handler takes it; anything else is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import re
from typing import Final

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from ccbridge.exposition import Exposition
from ccbridge.http.base import ApiError, Handler
from ccbridge.scrape import freeze, render

__all__ = ["MAX_NAMES", "metrics_handler"]

NAME_PARAM: Final = "name[]"
MAX_NAMES: Final = 256  # more than the bridge exports; a bound on the work a query asks
# Prometheus metric names (and the _total/_bucket/... sample names derived from them).
SAMPLE_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,199}")


def _names(request: web.Request) -> list[str] | None:
    """The ``name[]`` values, or None for a full scrape; ApiError on anything else."""
    unknown = sorted(k for k in request.query if k != NAME_PARAM)
    if unknown:
        raise ApiError(
            400,
            "invalid-query",
            f"/metrics takes only {NAME_PARAM}=<sample name> (repeatable); "
            f"unknown parameter {unknown[0][:64]!r}",
            parameter=unknown[0][:64],
        )
    if NAME_PARAM not in request.query:
        return None
    names = request.query.getall(NAME_PARAM)
    if len(names) > MAX_NAMES:
        raise ApiError(
            400,
            "invalid-query",
            f"at most {MAX_NAMES} {NAME_PARAM} values, got {len(names)}",
            parameter=NAME_PARAM,
        )
    for n in names:
        if not SAMPLE_NAME.fullmatch(n):
            raise ApiError(
                400,
                "invalid-query",
                f"{NAME_PARAM} {n[:64]!r} is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                parameter=NAME_PARAM,
            )
    return names


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """The /metrics handler over ``registry``."""
    exposition = Exposition()  # its caches live as long as the handler

    async def handle(request: web.Request) -> web.Response:
        names = _names(request)
        chosen, content_type = choose_encoder(",".join(request.headers.getall(hdrs.ACCEPT, [])))
        encoder = exposition.encoder(chosen)
        compress = gzip_accepted(",".join(request.headers.getall(hdrs.ACCEPT_ENCODING, [])))
        frozen = freeze(registry, names)  # on the loop: copies of loop-owned state only
        body = await asyncio.to_thread(render, frozen, encoder, compress)
        headers = {hdrs.CONTENT_TYPE: content_type, hdrs.VARY: hdrs.ACCEPT_ENCODING}
        if compress:
            headers[hdrs.CONTENT_ENCODING] = "gzip"
        return web.Response(body=body, headers=headers)

    return handle
