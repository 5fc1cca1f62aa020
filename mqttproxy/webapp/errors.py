"""JSON errors for the API, as DESIGN.md promises: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from mqttproxy.registry import Conflict, NotFound
from mqttproxy.timeseries import DataConfigExists, DataConfigNotFound
from mqttproxy.upstream.fanout import BrokerExists, BrokerNotFound

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
}


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, *, code: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.field = field


# The shadow routes speak the AWS IoT shadow contract, errors included.
_SHADOW_MESSAGES = {
    401: "Unauthorized",
    403: "Forbidden",
    413: "The payload exceeds the maximum size allowed",
    500: "Internal service failure",
}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    request: web.Request | None = None,
) -> web.Response:
    """The API's error document; on the shadow routes (given ``request``), the contract's instead."""
    if request is not None and is_shadow_api(request):
        shadow_body = {
            "code": status,
            "message": _SHADOW_MESSAGES.get(status, message),
            "timestamp": int(time.time()),
        }
        return web.json_response(shadow_body, status=status, headers=headers)
    body: dict[str, Any] = {"code": code or _CODES.get(status, "error"), "message": message}
    if field is not None:
        body["field"] = field
    return web.json_response({"error": body}, status=status, headers=headers)


def validation_error(exc: ValidationError) -> ApiError:
    """The first problem pydantic found, with the field it concerns (``routes.0.filter``)."""
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return ApiError(400, f"{field}: {message}" if field else message, code="validation_error", field=field)


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def is_shadow_api(request: web.Request) -> bool:
    return request.path == "/api/things" or request.path.startswith("/api/things/")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every API failure as a JSON error; the service's own exceptions mapped to statuses."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, code=exc.code, field=exc.field)
    except ValidationError as exc:
        error = validation_error(exc)
        return error_response(error.status, error.message, code=error.code, field=error.field)
    except BrokerNotFound as exc:
        return error_response(404, str(exc))
    except BrokerExists as exc:
        return error_response(409, str(exc), field="id")
    except NotFound as exc:
        return error_response(404, str(exc))
    except Conflict as exc:
        return error_response(409, str(exc), field=exc.field)
    except DataConfigNotFound as exc:
        return error_response(404, str(exc))
    except DataConfigExists as exc:
        return error_response(409, str(exc), field="id")
    except web.HTTPException as exc:
        if exc.status < 400 or not is_api(request):
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, exc.reason, headers=headers, request=request)
    except Exception:
        if not is_api(request):
            raise
        # A bug, not the client's fault: the script still gets the API's error document.
        logger.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error; the gateway log has the details", request=request)
