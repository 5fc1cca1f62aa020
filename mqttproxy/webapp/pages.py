"""The dashboard's server-rendered pages."""

from __future__ import annotations

from aiohttp import web

from mqttproxy.webapp.api import status_document
from mqttproxy.webapp.auth import render


async def overview(request: web.Request) -> web.Response:
    return render(request, "overview.html", {"status": status_document(request), "page": "overview"})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", overview)
