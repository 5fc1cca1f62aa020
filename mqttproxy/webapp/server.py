"""The aiohttp application and the HTTP listener that serves it.

Routes talk to services through the small ``HealthSource`` protocol, never to
sockets or the broker's internals.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from aiohttp import web

logger = logging.getLogger(__name__)


class HealthSource(Protocol):
    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the gateway is healthy, and the details to show."""
        ...


_SOURCE = web.AppKey("health_source", HealthSource)


async def _health(request: web.Request) -> web.Response:
    healthy, details = request.app[_SOURCE].health()
    body = {"status": "ok" if healthy else "unavailable", **details}
    return web.json_response(body, status=200 if healthy else 503)


def create_app(*, health: HealthSource) -> web.Application:
    app = web.Application()
    app[_SOURCE] = health
    app.router.add_get("/health", _health)
    return app


class WebServer:
    """Serves ``app`` on host:port until ``stop``."""

    def __init__(self, app: web.Application, *, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._host = host
        self._port = port
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        host, self.port = self._runner.addresses[0][:2]
        logger.info("listening http %s:%d", host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
