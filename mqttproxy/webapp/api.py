"""The REST API under /api: JSON in and out, bodies validated with the services' pydantic models.

``ROUTES`` is the one list of API routes: the app registers it and the
OpenAPI document is generated from it, so the two cannot drift apart.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from mqttproxy.upstream.fanout import BrokerNotFound
from mqttproxy.upstream.models import BrokerRecord, BrokerSettings
from mqttproxy.webapp.auth import operator
from mqttproxy.webapp.errors import ApiError
from mqttproxy.webapp.rates import RATES
from mqttproxy.webapp.services import GATEWAY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="what the token is for")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    status: int = 200


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON (RFC 8259) has neither.
    raise ApiError(400, f"malformed JSON: {name} is not a JSON number")


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; a clear 400 otherwise (413 past the size limit, from aiohttp)."""
    # Bytes, not text: JSON is UTF-8 whatever charset the Content-Type names.
    body = await request.read()
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise ApiError(400, "malformed JSON: the body is not UTF-8") from exc
    except RecursionError as exc:
        raise ApiError(400, "malformed JSON: nested too deeply") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "expected a JSON object")
    return data


def _broker(request: web.Request, record: BrokerRecord) -> dict[str, Any]:
    return {**record.public(), "status": request.app[GATEWAY].fanout.status(record.id)}


async def list_brokers(request: web.Request) -> web.Response:
    fanout = request.app[GATEWAY].fanout
    return web.json_response([_broker(request, record) for record in fanout.records()])


async def create_broker(request: web.Request) -> web.Response:
    data = await read_json(request)
    record = BrokerRecord.model_validate(data)
    await request.app[GATEWAY].fanout.add(record)
    return web.json_response(_broker(request, record), status=201)


async def get_broker(request: web.Request) -> web.Response:
    record = request.app[GATEWAY].fanout.record(request.match_info["id"])
    return web.json_response(_broker(request, record))


async def update_broker(request: web.Request) -> web.Response:
    broker_id = request.match_info["id"]
    fanout = request.app[GATEWAY].fanout
    current = fanout.record(broker_id)
    data = await read_json(request)
    if data.pop("id", broker_id) != broker_id:
        raise ApiError(400, "id: the id of a broker cannot change", field="id")
    if "password" not in data and current.password is not None and data.get("username") is not None:
        data["password"] = current.password  # write-only: leaving it out keeps it
    record = await fanout.update(broker_id, BrokerSettings.model_validate(data))
    return web.json_response(_broker(request, record))


async def delete_broker(request: web.Request) -> web.Response:
    await request.app[GATEWAY].fanout.delete(request.match_info["id"])
    return web.Response(status=204)


async def toggle_broker(request: web.Request) -> web.Response:
    record = await request.app[GATEWAY].fanout.toggle(request.match_info["id"])
    return web.json_response(_broker(request, record))


async def test_broker(request: web.Request) -> web.Response:
    data = await read_json(request)
    broker_id = data.pop("id", None)
    if broker_id is not None and not isinstance(broker_id, str):
        raise ApiError(400, "id: Input should be a valid string", code="validation_error", field="id")
    fanout = request.app[GATEWAY].fanout
    if broker_id is not None and "password" not in data and data.get("username") is not None:
        # Testing an edited broker: its stored (write-only) password goes with the test.
        with contextlib.suppress(BrokerNotFound):
            stored = fanout.record(broker_id).password
            if stored is not None:
                data["password"] = stored
    settings = BrokerSettings.model_validate(data)
    result = await fanout.test_connection(settings)
    return web.json_response(
        {
            "ok": result.ok,
            "address": result.address,
            "message": result.message,
            "seconds": round(result.seconds, 3),
        }
    )


def status_document(request: web.Request) -> dict[str, Any]:
    gateway = request.app[GATEWAY]
    healthy, details = gateway.health()
    counters = gateway.broker_counters()
    return {
        "healthy": healthy,
        **details,
        "counters": {
            "messages_received": counters["messages_received"],
            "messages_sent": counters["messages_sent"],
            "connections": counters["connections"],
            "devices_online": gateway.registry.online_count,
            "sessions": counters["sessions"],
            "retained": counters["retained"],
        },
        "rates": request.app[RATES].latest(),
        "brokers": gateway.fanout.statuses(),
    }


async def status(request: web.Request) -> web.Response:
    return web.json_response(status_document(request))


async def rates_history(request: web.Request) -> web.Response:
    return web.json_response(request.app[RATES].history())


async def clients(request: web.Request) -> web.Response:
    return web.json_response(request.app[GATEWAY].clients())


def _token(token: Any) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
    }


async def list_tokens(request: web.Request) -> web.Response:
    tokens = await request.app[GATEWAY].operators.tokens(operator(request))
    return web.json_response([_token(token) for token in tokens])


async def create_token(request: web.Request) -> web.Response:
    body = TokenRequest.model_validate(await read_json(request))
    token, secret = await request.app[GATEWAY].operators.create_token(operator(request), body.name)
    # The secret is shown this once; only its hash is stored.
    return web.json_response({**_token(token), "token": secret}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    try:
        token_id = int(request.match_info["id"])
    except ValueError:
        raise ApiError(404, "no such token") from None
    if not await request.app[GATEWAY].operators.revoke_token(operator(request), token_id):
        raise ApiError(404, "no such token")
    return web.Response(status=204)


API_ROUTES = web.AppKey("api_routes", list[Route])

ROUTES: list[Route] = [
    Route("GET", "/api/brokers", list_brokers, "List upstream brokers with their live status"),
    Route(
        "POST", "/api/brokers", create_broker, "Add an upstream broker and connect to it", BrokerRecord, 201
    ),
    Route("POST", "/api/brokers/test", test_broker, "Try connection settings without saving", BrokerSettings),
    Route("GET", "/api/brokers/{id}", get_broker, "One upstream broker with its live status"),
    Route(
        "PUT",
        "/api/brokers/{id}",
        update_broker,
        "Replace a broker's settings (omit password to keep it)",
        BrokerSettings,
    ),
    Route(
        "DELETE", "/api/brokers/{id}", delete_broker, "Disconnect and remove an upstream broker", status=204
    ),
    Route("POST", "/api/brokers/{id}/toggle", toggle_broker, "Pause or resume an upstream broker"),
    Route("GET", "/api/status", status, "Listener, connections, counters, rates and every upstream's status"),
    Route(
        "GET", "/api/rates", rates_history, "Messages per second, one sample a second, for the last minutes"
    ),
    Route("GET", "/api/clients", clients, "Connected MQTT clients"),
    Route("GET", "/api/tokens", list_tokens, "Your API tokens (never their secrets)"),
    Route(
        "POST",
        "/api/tokens",
        create_token,
        "Create an API token; its secret is returned once",
        TokenRequest,
        201,
    ),
    Route("DELETE", "/api/tokens/{id}", revoke_token, "Revoke an API token", status=204),
]
