"""error_middleware: a handler's bug on an API route is a logged JSON 500, never a bare text page."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from mqttproxy.webapp.errors import error_middleware


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    app = web.Application(middlewares=[error_middleware])
    for path in ("/api/brokers", "/api/things/t1/shadow", "/brokers"):
        app.router.add_get(path, broken)
    return await aiohttp_client(app)


async def test_a_bug_in_an_api_handler_is_a_json_500(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    response = await client.get("/api/brokers")
    assert response.status == 500
    assert (await response.json())["error"]["code"] == "internal_error"
    assert "GET /api/brokers failed" in caplog.text
    assert "RuntimeError: a bug" in caplog.text


async def test_the_shadow_routes_answer_in_the_contracts_format(client: Any) -> None:
    response = await client.get("/api/things/t1/shadow")
    assert response.status == 500
    body = await response.json()
    assert (body["code"], body["message"]) == (500, "Internal service failure")


async def test_pages_keep_aiohttps_own_error_page(client: Any) -> None:
    response = await client.get("/brokers")
    assert response.status == 500
    assert response.content_type == "text/plain"
