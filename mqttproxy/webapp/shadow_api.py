"""Shadows over REST, for applications: the same documents and errors as over MQTT.

An update or delete through REST publishes the same MQTT responses (the
delta reaches the device), since it goes through the same service.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from aiohttp import web

from mqttproxy.shadow import ShadowError, ShadowKey, ShadowService
from mqttproxy.webapp.api import Route
from mqttproxy.webapp.services import GATEWAY

logger = logging.getLogger(__name__)


def _key(request: web.Request) -> ShadowKey:
    return ShadowKey(request.match_info["thing"], request.query.get("name", ""))


def _error(error: ShadowError) -> web.Response:
    # The contract's error body (as on .../rejected), with the HTTP status of its code.
    return web.json_response(error.body(ShadowService.now()), status=error.code)


async def _serve(request: web.Request, operation: str) -> web.Response:
    key = _key(request)
    payload = await request.read() if operation == "update" else b""
    shadows = request.app[GATEWAY].shadows
    try:
        if operation == "get":
            return web.json_response(await shadows.document(key.thing, key.name))
        result = await shadows.handle(key, operation, payload)
    except ShadowError as error:
        return _error(error)
    except Exception:
        # The contract's 500 rather than aiohttp's plain-text one (update and
        # delete get theirs from the service).
        logger.exception("shadow %s get failed", key.prefix)
        return _error(ShadowError(500, "Internal service failure"))
    if isinstance(result, ShadowError):
        return _error(result)
    return web.json_response(result)


async def get_shadow(request: web.Request) -> web.Response:
    return await _serve(request, "get")


async def update_shadow(request: web.Request) -> web.Response:
    return await _serve(request, "update")


async def delete_shadow(request: web.Request) -> web.Response:
    return await _serve(request, "delete")


async def list_named_shadows(request: web.Request) -> web.Response:
    shadows = request.app[GATEWAY].shadows
    try:
        page_size = int(request.query.get("pageSize", "25"))
    except ValueError:
        page_size = 0
    if not 1 <= page_size <= 100:
        return _error(ShadowError(400, "Invalid pageSize"))
    token = request.query.get("nextToken")
    try:
        after = base64.urlsafe_b64decode(token.encode()).decode() if token else None
    except ValueError:  # binascii.Error and UnicodeDecodeError alike
        return _error(ShadowError(400, "Invalid nextToken"))
    names = await shadows.named_shadows(request.match_info["thing"], page_size=page_size + 1, after=after)
    body: dict[str, Any] = {"results": names[:page_size], "timestamp": shadows.now()}
    if len(names) > page_size:
        body["nextToken"] = base64.urlsafe_b64encode(names[page_size - 1].encode()).decode()
    return web.json_response(body)


async def list_things(request: web.Request) -> web.Response:
    return web.json_response({"things": await request.app[GATEWAY].shadows.things()})


SHADOW_ROUTES: list[Route] = [
    Route("GET", "/api/things", list_things, "Things that have a shadow"),
    Route("GET", "/api/things/{thing}/shadow", get_shadow, "A thing's shadow (?name= for a named one)"),
    Route(
        "POST",
        "/api/things/{thing}/shadow",
        update_shadow,
        "Update a shadow; devices get the delta over MQTT",
    ),
    Route("DELETE", "/api/things/{thing}/shadow", delete_shadow, "Delete a shadow (its version lives on)"),
    Route(
        "GET",
        "/api/things/shadow/ListNamedShadowsForThing/{thing}",
        list_named_shadows,
        "Names of a thing's named shadows (?pageSize=, ?nextToken=)",
    ),
]
