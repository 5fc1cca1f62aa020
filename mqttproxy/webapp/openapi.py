"""GET /api/openapi.json: an OpenAPI 3.1 document generated from the route table and the models."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from mqttproxy import __version__
from mqttproxy.webapp.api import API_ROUTES, Route

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "the field at fault, e.g. routes.0.filter"},
            },
        }
    },
}


def _schema_name(model: type[BaseModel]) -> str:
    return model.__name__


def document(routes: list[Route]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": _ERROR}
    paths: dict[str, Any] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "security": [{"bearer": []}, {"session": []}],
            "responses": {
                str(route.status): {"description": "success"},
                "400": {"description": "malformed or invalid body", "content": _json_ref("Error")},
                "401": {"description": "no valid session or token", "content": _json_ref("Error")},
            },
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", route.path)
        ]
        if parameters:
            operation["parameters"] = parameters
            operation["responses"]["404"] = {"description": "no such item", "content": _json_ref("Error")}
        if route.body is not None:
            name = _schema_name(route.body)
            schema = route.body.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            components[name] = schema
            operation["requestBody"] = {"required": True, "content": _json_ref(name)}
            operation["responses"]["413"] = {
                "description": "body larger than [web] max_body_size",
                "content": _json_ref("Error"),
            }
        if route.method != "GET":
            operation["responses"]["403"] = {
                "description": "session without CSRF token",
                "content": _json_ref("Error"),
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "mqttproxy API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token (mqp_...)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "mqttproxy_session"},
            },
        },
    }


def _json_ref(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.app[API_ROUTES]))
