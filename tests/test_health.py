"""GET /health on the gateway's HTTP listener."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.helpers import ThreadedGateway


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_health_reports_listeners_and_connections(gateway: ThreadedGateway) -> None:
    port = gateway.gateway.web.port  # type: ignore[union-attr]
    assert port
    status, body = _get(port, "/health")
    assert status == 200
    assert body["status"] == "ok"
    mqtt = body["mqtt"]
    assert isinstance(mqtt, dict)
    assert mqtt["serving"] is True
    assert mqtt["listeners"] == [
        {"protocol": "mqtt", "transport": "tcp", "host": "127.0.0.1", "port": gateway.port}
    ]


def test_health_is_503_when_the_listener_is_down(gateway: ThreadedGateway) -> None:
    port = gateway.gateway.web.port  # type: ignore[union-attr]

    async def close_listener() -> None:
        for server in gateway.broker._servers:
            server.close()

    gateway.run(close_listener())
    status, body = _get(port, "/health")
    assert status == 503
    assert body["status"] == "unavailable"
