"""GET /api/events: the status as Server-Sent Events, once a second, for live pages."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from aiohttp import web

from mqttproxy.webapp.api import status_document

SHUTDOWN = web.AppKey("shutdown", asyncio.Event)
INTERVAL = 1.0


async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    shutdown = request.app[SHUTDOWN]
    # Reconnect after 2 s if the stream breaks (EventSource does that by itself).
    await response.write(b"retry: 2000\n\n")
    while not shutdown.is_set():
        data = json.dumps(status_document(request), separators=(",", ":"))
        try:
            await response.write(f"event: status\ndata: {data}\n\n".encode())
        except (ConnectionResetError, ConnectionError):
            break  # the browser went away
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shutdown.wait(), INTERVAL)
    return response


async def shutdown_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: open event streams end when the server shuts down."""
    app[SHUTDOWN] = asyncio.Event()
    yield


async def on_shutdown(app: web.Application) -> None:
    app[SHUTDOWN].set()
