"""The aiohttp application and the HTTP listener that serves it.

Routes talk to services through the small ``HealthSource`` protocol, never to
sockets or the broker's internals.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


class HealthSource(Protocol):
    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the gateway is healthy, and the details to show."""
        ...


_SOURCE = web.AppKey("health_source", HealthSource)
_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


async def _health(request: web.Request) -> web.Response:
    healthy, details = request.app[_SOURCE].health()
    body = {"status": "ok" if healthy else "unavailable", **details}
    return web.json_response(body, status=200 if healthy else 503)


async def _metrics(request: web.Request) -> web.Response:
    # The 0.0.4 text format: what every Prometheus 2.x server scrapes.
    body = generate_latest(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def create_app(*, health: HealthSource, metrics: Collector) -> web.Application:
    """The gateway's HTTP application: /health and /metrics (both open)."""
    registry = CollectorRegistry()
    registry.register(metrics)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    app = web.Application()
    app[_SOURCE] = health
    app[_REGISTRY] = registry
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
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
