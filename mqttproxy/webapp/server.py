"""The aiohttp application and the HTTP listener that serves it.

Routes talk to the gateway through ``GatewayView`` (services, never sockets
or SQL). Templates and static files come from the ``mqttproxy.web`` package
(the top-level ``web/`` directory).
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from mqttproxy import __version__
from mqttproxy.config import WebConfig
from mqttproxy.operators import LoginThrottle
from mqttproxy.webapp import pages
from mqttproxy.webapp.api import API_ROUTES, ROUTES, Route
from mqttproxy.webapp.auth import auth_middleware, login, login_page, logout
from mqttproxy.webapp.errors import error_middleware
from mqttproxy.webapp.events import events, on_shutdown, shutdown_context
from mqttproxy.webapp.openapi import openapi
from mqttproxy.webapp.rates import rates_context
from mqttproxy.webapp.registry_api import REGISTRY_ROUTES
from mqttproxy.webapp.services import CONFIG, GATEWAY, THROTTLE, GatewayView
from mqttproxy.webapp.shadow_api import SHADOW_ROUTES
from mqttproxy.webapp.timeseries_api import TIMESERIES_ROUTES

logger = logging.getLogger(__name__)

_REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)


def web_directory() -> Path:
    return Path(str(importlib.resources.files("mqttproxy.web")))


async def _health(request: web.Request) -> web.Response:
    healthy, details = request.app[GATEWAY].health()
    body = {"status": "ok" if healthy else "unavailable", **details}
    return web.json_response(body, status=200 if healthy else 503)


async def _metrics(request: web.Request) -> web.Response:
    # The 0.0.4 text format: what every Prometheus 2.x server scrapes.
    body = generate_latest(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def create_app(*, gateway: GatewayView, config: WebConfig, metrics: Collector) -> web.Application:
    """The gateway's HTTP application: dashboard, API, /health and /metrics."""
    registry = CollectorRegistry()
    registry.register(metrics)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=config.max_body_size
    )
    app[GATEWAY] = gateway
    app[CONFIG] = config
    app[THROTTLE] = LoginThrottle()
    app[_REGISTRY] = registry
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(web_directory() / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    environment.globals["version"] = __version__
    app.cleanup_ctx.append(shutdown_context)
    app.cleanup_ctx.append(rates_context)
    app.on_shutdown.append(on_shutdown)
    router = app.router
    router.add_get("/health", _health)
    router.add_get("/metrics", _metrics)
    router.add_get("/login", login_page)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
    router.add_static("/static", web_directory() / "static", name="static")
    app[API_ROUTES] = [
        *ROUTES,
        *REGISTRY_ROUTES,
        *SHADOW_ROUTES,
        *TIMESERIES_ROUTES,
        Route("GET", "/api/events", events, "Server-Sent Events: the status document once a second"),
        Route("GET", "/api/openapi.json", openapi, "This OpenAPI document"),
    ]
    for route in app[API_ROUTES]:
        router.add_route(route.method, route.path, route.handler)
    pages.add_routes(router)
    return app


class WebServer:
    """Serves ``app`` on host:port until ``stop``."""

    def __init__(self, app: web.Application, *, host: str, port: int) -> None:
        # Open event streams end on shutdown; nothing else takes long to finish.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        self._host = host
        self._port = port
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        host, self.port = self._runner.addresses[0][:2]
        logger.info("listening http %s:%d", host, self.port)
        shown = "localhost" if host in ("0.0.0.0", "::") else host
        logger.info("dashboard: http://%s:%d/", shown, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
