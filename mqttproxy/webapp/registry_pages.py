"""The device registry's pages: tenants, devices, and device tokens shown once.

Like the broker pages, every change is a POST carrying the CSRF token and a
success redirects (303) with a flash message; a form with errors is shown
again with the errors next to its fields, and nothing is saved. A device's
token is shown on the response to the POST that made it, only
(``Cache-Control: no-store``), never in a URL. Delete and new-token buttons
ask first (``data-confirm``); without script, the POST without
``confirmed=yes`` answers with a page that asks. The forms' text is read by
``registry_forms``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from mqttproxy.registry import Conflict, NotFound, Registry
from mqttproxy.registry.models import DEFAULT_ACL_TOPICS, Device, DeviceCreate, Tenant
from mqttproxy.webapp.auth import redirect, render
from mqttproxy.webapp.pages import error_page, moment
from mqttproxy.webapp.registry_forms import (
    DEVICE_FIELDS,
    ONLINE_CHOICES,
    PAGE_SIZE,
    TENANT_FIELDS,
    DeviceFilters,
    FieldError,
    Form,
    device_values,
    format_acl,
    list_devices,
    parse_expiry,
    tenant_values,
    validate_device,
    validate_tenant,
    values_from_post,
)
from mqttproxy.webapp.services import GATEWAY

# --- helpers for pages ----------------------------------------------------------------------------

_FLASH = {
    "tenant-added": "Tenant {id} added.",
    "tenant-saved": "Tenant {id} saved.",
    "tenant-deleted": "Tenant {id} deleted.",
    "device-added": "Device {id} added.",
    "device-saved": "Device {id} saved.",
    "device-enabled": "Device {id} enabled: it may connect again.",
    "device-disabled": "Device {id} disabled and disconnected.",
    "device-deleted": "Device {id} deleted.",
}
_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_TENANTS = ("/tenants", "Back to the tenants")
_DEVICES = ("/devices", "Back to the devices")


def _registry(request: web.Request) -> Registry:
    return request.app[GATEWAY].registry


def _flash(request: web.Request) -> str:
    template = _FLASH.get(request.query.get("flash", ""), "")
    item = request.query.get("id", "")
    return template.format(id=item if _IDENTIFIER.match(item) else "")


def _back(path: str, flash: str, item_id: str, query: str = "") -> web.Response:
    return redirect(f"{path}?{query + '&' if query else ''}{urlencode({'flash': flash, 'id': item_id})}")


async def _list_query(request: web.Request) -> str:
    """The query of the list a row's form came from (field ``back``), rebuilt from its known filters."""
    back = _text(await request.post(), "back") if request.method == "POST" else ""
    return DeviceFilters.from_query(dict(parse_qsl(back))).query()


async def _back_to_devices(request: web.Request, flash: str, device_id: str) -> web.Response:
    """To the list the row's form came from (its filters and page), with a flash message."""
    return _back("/devices", flash, device_id, await _list_query(request))


def _not_found(request: web.Request, exc: NotFound) -> web.Response:
    back, page = (_TENANTS, "tenants") if exc.what == "tenant" else (_DEVICES, "devices")
    return error_page(
        request,
        404,
        f"No such {exc.what}",
        f"There is no {exc.what} with id {exc.item_id!r}.",
        back=back,
        page=page,
    )


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


# --- tenants --------------------------------------------------------------------------------------


def _tenants_page(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    tenants = sorted(_registry(request).tenants(), key=lambda tenant: tenant.id)
    query = request.query.get("q", "").strip()
    needle = query.casefold()
    found = [
        tenant for tenant in tenants if needle in tenant.id.casefold() or needle in tenant.name.casefold()
    ]
    context: dict[str, object] = {
        "page": "tenants",
        "tenants": found,
        "total": len(tenants),
        "q": query,
        "flash": _flash(request),
        "error": error,
    }
    return render(request, "tenants.html", context, status=status)


async def tenants_page(request: web.Request) -> web.Response:
    return _tenants_page(request)


def _tenant_form(
    request: web.Request, form: Form, *, tenant_id: str | None = None, status: int = 200
) -> web.Response:
    action = "/tenants/new" if tenant_id is None else f"/tenants/{tenant_id}/edit"
    context: dict[str, object] = {
        "page": "tenants",
        "form": form,
        "tenant_id": tenant_id,
        "action": action,
        "default_topics": DEFAULT_ACL_TOPICS,
    }
    return render(request, "tenant_form.html", context, status=status)


async def new_tenant(request: web.Request) -> web.Response:
    return _tenant_form(request, Form(tenant_values()))


async def create_tenant(request: web.Request) -> web.Response:
    values = values_from_post(await request.post(), TENANT_FIELDS)
    tenant, form = validate_tenant(values, new=True)
    if tenant is None:
        return _tenant_form(request, form, status=400)
    assert isinstance(tenant, Tenant)
    try:
        await _registry(request).create_tenant(tenant)
    except Conflict:
        form.add_error("id", "A tenant with this id exists already.")
        return _tenant_form(request, form, status=409)
    return _back("/tenants", "tenant-added", tenant.id)


async def edit_tenant(request: web.Request) -> web.Response:
    try:
        tenant = _registry(request).tenant(request.match_info["id"])
    except NotFound as exc:
        return _not_found(request, exc)
    return _tenant_form(request, Form(tenant_values(tenant)), tenant_id=tenant.id)


async def save_tenant(request: web.Request) -> web.Response:
    tenant_id = request.match_info["id"]
    registry = _registry(request)
    try:
        registry.tenant(tenant_id)
        values = values_from_post(await request.post(), TENANT_FIELDS) | {"id": tenant_id}
        settings, form = validate_tenant(values, new=False)
        if settings is None:
            return _tenant_form(request, form, tenant_id=tenant_id, status=400)
        await registry.update_tenant(tenant_id, settings)
    except NotFound as exc:
        return _not_found(request, exc)
    return _back("/tenants", "tenant-saved", tenant_id)


async def delete_tenant(request: web.Request) -> web.Response:
    """GET, or a POST without ``confirmed=yes`` (no script to ask): the confirmation page."""
    tenant_id = request.match_info["id"]
    registry = _registry(request)
    try:
        tenant = registry.tenant(tenant_id)
        if request.method != "POST" or (await request.post()).get("confirmed") != "yes":
            has_devices = bool(await registry.devices(tenant_id=tenant_id, limit=1))
            context = {"page": "tenants", "tenant": tenant, "has_devices": has_devices}
            return render(request, "tenant_delete.html", context)
        await registry.delete_tenant(tenant_id)
    except NotFound as exc:
        return _not_found(request, exc)
    except Conflict as exc:
        return _tenants_page(request, error=f"Tenant {tenant_id} was not deleted: {exc}.", status=409)
    return _back("/tenants", "tenant-deleted", tenant_id)


# --- devices -------------------------------------------------------------------------------------


async def devices_page(request: web.Request) -> web.Response:
    registry = _registry(request)
    filters = DeviceFilters.from_query(request.query)
    devices, more = await list_devices(registry, filters)
    tenants = {tenant.id: tenant for tenant in sorted(registry.tenants(), key=lambda tenant: tenant.id)}
    rows = [
        {
            "device": device,
            "tenant": tenants.get(device.tenant_id),
            "last_seen": moment(device.last_seen),
        }
        for device in devices
    ]
    context = {
        "page": "devices",
        "rows": rows,
        "tenants": list(tenants.values()),
        "filters": filters,
        "online_choices": ONLINE_CHOICES,
        "back": filters.query(),
        "previous": filters.query(offset=max(0, filters.offset - PAGE_SIZE)) if filters.offset else None,
        "next": filters.query(offset=filters.offset + PAGE_SIZE) if more else None,
        "page_number": filters.offset // PAGE_SIZE + 1,
        "poll": f"/api/devices?{filters.api_query()}",
        "total": await registry.count(),
        "flash": _flash(request),
    }
    return render(request, "devices.html", context)


def _device_form(
    request: web.Request, form: Form, *, device: Device | None = None, status: int = 200
) -> web.Response:
    """The add form (no ``device``) or the edit form of ``device``."""
    registry = _registry(request)
    tenants = sorted(registry.tenants(), key=lambda tenant: tenant.id)
    tenant = None
    if device is not None:
        tenant = next((item for item in tenants if item.id == device.tenant_id), None)
    context = {
        "page": "devices",
        "form": form,
        "device": device,
        "tenant": tenant,
        "tenant_acl": format_acl(tenant.acl) if tenant is not None else "",
        "tenants": tenants,
        "default_topics": DEFAULT_ACL_TOPICS,
        "expiry": moment(device.token_expires_at) if device is not None else None,
        "action": "/devices/new" if device is None else f"/devices/{device.id}/edit",
    }
    return render(request, "device_form.html", context, status=status)


def _mqtt_hint(request: web.Request, device: Device, tenant: Tenant) -> dict[str, Any]:
    """Where and how the device connects: the gateway's MQTT listeners as this browser reaches it."""
    _, details = request.app[GATEWAY].health()
    listeners = []
    for listener in details.get("mqtt", {}).get("listeners", []):
        host = listener["host"]
        if host in ("0.0.0.0", "::", ""):
            host = request.url.host or "localhost"
        listeners.append({"transport": listener["transport"], "host": host, "port": listener["port"]})
    topic = f"devices/{device.id}/telemetry" if tenant.default_acl else None
    return {"listeners": listeners, "topic": topic}


def _token_page(
    request: web.Request, device: Device, token: str, *, created: bool, status: int = 200
) -> web.Response:
    """The token, this once; the response must not be stored anywhere."""
    tenant = _registry(request).tenant(device.tenant_id)
    context = {
        "page": "devices",
        "device": device,
        "token": token,
        "created": created,
        "expiry": moment(device.token_expires_at),
        "hint": _mqtt_hint(request, device, tenant),
    }
    response = render(request, "device_token.html", context, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


async def new_device(request: web.Request) -> web.Response:
    return _device_form(request, Form(device_values(tenant_id=request.query.get("tenant", ""))))


async def create_device(request: web.Request) -> web.Response:
    registry = _registry(request)
    values = values_from_post(await request.post(), DEVICE_FIELDS)
    tenants = {tenant.id for tenant in registry.tenants()}
    settings, form = validate_device(values, tenants=tenants)
    if settings is None:
        return _device_form(request, form, status=400)
    assert isinstance(settings, DeviceCreate)
    try:
        device, token = await registry.create_device(settings)
    except Conflict:
        form.add_error("id", "A device with this id exists already.")
        return _device_form(request, form, status=409)
    except NotFound:  # the tenant went away meanwhile
        form.add_error("tenant_id", f"There is no tenant {settings.tenant_id!r}.")
        return _device_form(request, form, status=400)
    if token is None:
        return _back("/devices", "device-added", device.id)
    return _token_page(request, device, token, created=True)


async def edit_device(request: web.Request) -> web.Response:
    try:
        device = await _registry(request).device(request.match_info["id"])
    except NotFound as exc:
        return _not_found(request, exc)
    return _device_form(request, Form(device_values(device)), device=device)


async def save_device(request: web.Request) -> web.Response:
    registry = _registry(request)
    try:
        device = await registry.device(request.match_info["id"])
        values = values_from_post(await request.post(), DEVICE_FIELDS)
        values |= {"id": device.id, "tenant_id": device.tenant_id}
        settings, form = validate_device(values)
        if settings is None:
            return _device_form(request, form, device=device, status=400)
        await registry.update_device(device.id, settings)
    except NotFound as exc:
        return _not_found(request, exc)
    return _back("/devices", "device-saved", device.id)


async def enable_device(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


async def disable_device(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    try:
        device = await _registry(request).set_enabled(request.match_info["id"], enabled)
    except NotFound as exc:
        return _not_found(request, exc)
    return await _back_to_devices(request, "device-enabled" if enabled else "device-disabled", device.id)


async def renew_token(request: web.Request) -> web.Response:
    """GET, or a POST without ``confirmed=yes``: the confirmation page (with an expiry); else the token."""
    registry = _registry(request)
    try:
        device = await registry.device(request.match_info["id"])
        tenant = registry.tenant(device.tenant_id)
    except NotFound as exc:
        return _not_found(request, exc)
    form = Form({"token_expires_at": ""})
    context = {"page": "devices", "device": device, "tenant": tenant, "form": form}
    posted = await request.post() if request.method == "POST" else {}
    if tenant.auth_mode != "token":  # nothing to renew: the page says why
        return render(request, "device_renew.html", context, status=409 if posted else 200)
    form.values["token_expires_at"] = _text(posted, "token_expires_at")
    if posted.get("confirmed") != "yes":
        return render(request, "device_renew.html", context)
    try:
        expires_at = parse_expiry(form.values["token_expires_at"], time.time())
        token = await registry.regenerate_token(device.id, expires_at=expires_at)
        renewed = await registry.device(device.id)
    except FieldError as exc:
        form.add_error("token_expires_at", str(exc))
        return render(request, "device_renew.html", context, status=400)
    except NotFound as exc:
        return _not_found(request, exc)
    return _token_page(request, renewed, token, created=False)


async def delete_device(request: web.Request) -> web.Response:
    """GET, or a POST without ``confirmed=yes`` (no script to ask): the confirmation page."""
    registry = _registry(request)
    try:
        device = await registry.device(request.match_info["id"])
        if request.method != "POST" or (await request.post()).get("confirmed") != "yes":
            context = {"page": "devices", "device": device, "back": await _list_query(request)}
            return render(request, "device_delete.html", context)
        await registry.delete_device(device.id)
    except NotFound as exc:
        return _not_found(request, exc)
    return await _back_to_devices(request, "device-deleted", device.id)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/tenants", tenants_page)
    router.add_get("/tenants/new", new_tenant)
    router.add_post("/tenants/new", create_tenant)
    router.add_get("/tenants/{id}/edit", edit_tenant)
    router.add_post("/tenants/{id}/edit", save_tenant)
    router.add_get("/tenants/{id}/delete", delete_tenant)
    router.add_post("/tenants/{id}/delete", delete_tenant)
    router.add_get("/devices", devices_page)
    router.add_get("/devices/new", new_device)
    router.add_post("/devices/new", create_device)
    router.add_get("/devices/{id}/edit", edit_device)
    router.add_post("/devices/{id}/edit", save_device)
    router.add_post("/devices/{id}/enable", enable_device)
    router.add_post("/devices/{id}/disable", disable_device)
    router.add_get("/devices/{id}/token", renew_token)
    router.add_post("/devices/{id}/token", renew_token)
    router.add_get("/devices/{id}/delete", delete_device)
    router.add_post("/devices/{id}/delete", delete_device)
