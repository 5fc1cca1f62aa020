"""The registry's REST API: /api/tenants and /api/devices."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from mqttproxy.registry import NotFound
from mqttproxy.registry.models import Device, DeviceCreate, DeviceSettings, Tenant, TenantSettings
from mqttproxy.webapp.api import Route, read_json
from mqttproxy.webapp.errors import ApiError
from mqttproxy.webapp.services import GATEWAY


class TokenRenewal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_at: float | None = Field(default=None, description="Unix time the new token expires; none: never")


def _device(device: Device, token: str | None = None) -> dict[str, Any]:
    body = device.model_dump(mode="json")
    if token is not None:
        body["token"] = token  # shown this once; only a keyed hash is stored
    return body


async def list_tenants(request: web.Request) -> web.Response:
    return web.json_response(
        [tenant.model_dump(mode="json") for tenant in request.app[GATEWAY].registry.tenants()]
    )


def _needs_a_ca(settings: TenantSettings) -> None:
    # As the tenant form says: without its CA, no device of the tenant could ever connect.
    if settings.auth_mode == "certificate" and not settings.ca_cert:
        raise ApiError(
            400,
            "ca_cert: certificate authentication needs the CA that signs the devices' certificates",
            field="ca_cert",
        )


async def create_tenant(request: web.Request) -> web.Response:
    tenant = Tenant.model_validate(await read_json(request))
    _needs_a_ca(tenant)
    created = await request.app[GATEWAY].registry.create_tenant(tenant)
    return web.json_response(created.model_dump(mode="json"), status=201)


async def get_tenant(request: web.Request) -> web.Response:
    tenant = request.app[GATEWAY].registry.tenant(request.match_info["id"])
    return web.json_response(tenant.model_dump(mode="json"))


async def update_tenant(request: web.Request) -> web.Response:
    data = await read_json(request)
    if data.pop("id", request.match_info["id"]) != request.match_info["id"]:
        raise ApiError(400, "id: the id of a tenant cannot change", field="id")
    data.pop("created_at", None)
    settings = TenantSettings.model_validate(data)
    _needs_a_ca(settings)
    tenant = await request.app[GATEWAY].registry.update_tenant(request.match_info["id"], settings)
    return web.json_response(tenant.model_dump(mode="json"))


async def delete_tenant(request: web.Request) -> web.Response:
    await request.app[GATEWAY].registry.delete_tenant(request.match_info["id"])
    return web.Response(status=204)


def _flag(request: web.Request, name: str) -> bool | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ApiError(400, f"{name}: expected true or false", field=name)


def _number(request: web.Request, name: str, default: int, maximum: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) > maximum:
        raise ApiError(400, f"{name}: expected a whole number up to {maximum}", field=name)
    return int(text)


async def list_devices(request: web.Request) -> web.Response:
    devices = await request.app[GATEWAY].registry.devices(
        tenant_id=request.query.get("tenant") or None,
        label=request.query.get("label") or None,
        online=_flag(request, "online"),
        search=request.query.get("q") or None,
        limit=_number(request, "limit", 100, 1000),
        offset=_number(request, "offset", 0, 10**9),
    )
    return web.json_response([_device(device) for device in devices])


async def create_device(request: web.Request) -> web.Response:
    body = DeviceCreate.model_validate(await read_json(request))
    registry = request.app[GATEWAY].registry
    try:
        registry.tenant(body.tenant_id)
    except NotFound:
        raise ApiError(400, f"tenant_id: no tenant {body.tenant_id!r}", field="tenant_id") from None
    device, token = await registry.create_device(body)
    return web.json_response(_device(device, token), status=201)


async def get_device(request: web.Request) -> web.Response:
    device = await request.app[GATEWAY].registry.device(request.match_info["id"])
    return web.json_response(_device(device))


async def update_device(request: web.Request) -> web.Response:
    device_id = request.match_info["id"]
    registry = request.app[GATEWAY].registry
    current = await registry.device(device_id)
    data = await read_json(request)
    for key, value in (("id", device_id), ("tenant_id", current.tenant_id)):
        if data.pop(key, value) != value:
            raise ApiError(400, f"{key}: cannot change", field=key)
    for derived in ("created_at", "last_seen", "last_address", "online", "token_expires_at", "has_token"):
        data.pop(derived, None)  # what GET returns may be sent back as it was
    device = await registry.update_device(device_id, DeviceSettings.model_validate(data))
    return web.json_response(_device(device))


async def delete_device(request: web.Request) -> web.Response:
    await request.app[GATEWAY].registry.delete_device(request.match_info["id"])
    return web.Response(status=204)


async def renew_token(request: web.Request) -> web.Response:
    body = TokenRenewal.model_validate(await read_json(request) if request.can_read_body else {})
    registry = request.app[GATEWAY].registry
    token = await registry.regenerate_token(request.match_info["id"], expires_at=body.expires_at)
    return web.json_response(_device(await registry.device(request.match_info["id"]), token))


async def enable_device(request: web.Request) -> web.Response:
    device = await request.app[GATEWAY].registry.set_enabled(request.match_info["id"], True)
    return web.json_response(_device(device))


async def disable_device(request: web.Request) -> web.Response:
    device = await request.app[GATEWAY].registry.set_enabled(request.match_info["id"], False)
    return web.json_response(_device(device))


REGISTRY_ROUTES: list[Route] = [
    Route("GET", "/api/tenants", list_tenants, "List tenants"),
    Route("POST", "/api/tenants", create_tenant, "Create a tenant", Tenant, 201),
    Route("GET", "/api/tenants/{id}", get_tenant, "One tenant"),
    Route("PUT", "/api/tenants/{id}", update_tenant, "Replace a tenant's settings", TenantSettings),
    Route("DELETE", "/api/tenants/{id}", delete_tenant, "Delete a tenant without devices", status=204),
    Route(
        "GET",
        "/api/devices",
        list_devices,
        "List devices; query: tenant, label, online (true/false), q (id or name), limit, offset",
    ),
    Route(
        "POST",
        "/api/devices",
        create_device,
        "Register a device; a token tenant's returns its token once",
        DeviceCreate,
        201,
    ),
    Route("GET", "/api/devices/{id}", get_device, "One device, with whether it is online"),
    Route("PUT", "/api/devices/{id}", update_device, "Replace a device's settings", DeviceSettings),
    Route("DELETE", "/api/devices/{id}", delete_device, "Delete a device (it is disconnected)", status=204),
    Route(
        "POST",
        "/api/devices/{id}/token",
        renew_token,
        "New token, returned once; the old one stops working",
        TokenRenewal,
    ),
    Route("POST", "/api/devices/{id}/enable", enable_device, "Let the device connect again"),
    Route("POST", "/api/devices/{id}/disable", disable_device, "Refuse and disconnect the device"),
]
