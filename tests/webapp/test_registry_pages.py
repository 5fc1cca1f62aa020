"""The registry's pages over plain HTTP: tenants and devices, tokens shown once, filters, CSRF."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

from mqttproxy.protocol.packets import ConnectReturnCode
from mqttproxy.registry.models import AclRuleModel, Device, Tenant
from mqttproxy.webapp.registry_forms import (
    PAGE_SIZE,
    AclSyntaxError,
    DeviceFilters,
    FieldError,
    device_values,
    format_acl,
    format_expiry,
    parse_acl,
    parse_acl_line,
    parse_expiry,
    parse_labels,
    parse_metadata,
    tenant_values,
    validate_device,
    validate_tenant,
)
from tests.helpers import RawClient, ThreadedGateway
from tests.registry.util import add_device, add_tenant, registry
from tests.webapp.conftest import WebClient
from tests.webapp.test_pages import field_errors, input_value, textarea

PAGES = ["/tenants", "/tenants/new", "/devices", "/devices/new"]
ITEM_PAGES = ["/tenants/acme/edit", "/tenants/acme/delete", "/devices/d1/edit", "/devices/d1/token"]
NOT_AUTHORIZED = ConnectReturnCode.NOT_AUTHORIZED
BAD_CREDENTIALS = ConnectReturnCode.BAD_USERNAME_OR_PASSWORD


# --- helpers ----------------------------------------------------------------------------


def devices(gateway: ThreadedGateway, **filters: Any) -> list[Device]:
    assert gateway.gateway is not None
    return gateway.run(gateway.gateway.registry.devices(**filters))


def tenants(gateway: ThreadedGateway) -> list[Tenant]:
    return gateway.call(registry(gateway).tenants)


def tenant_form(**overrides: str) -> dict[str, str]:
    """A valid add form as a browser posts it (checked boxes only)."""
    fields = {
        "id": "acme",
        "name": "Acme Corp",
        "auth_mode": "token",
        "ca_cert": "",
        "default_acl": "on",
        "acl": (
            "# fleet status\nallow publish fleet/{tenant_id}/status\n\ndeny both devices/{device_id}/secret/#"
        ),
    }
    fields.update(overrides)
    return fields


def device_form(**overrides: str) -> dict[str, str]:
    fields = {
        "id": "d1",
        "tenant_id": "acme",
        "name": "Hall sensor",
        "labels": "hall, floor:3,, hall",
        "notes": "Above the door.\r\nSecond line.",
        "metadata": '{"site": "berlin", "floor": 3}',
        "acl": "allow subscribe broadcast/#",
        "enabled": "on",
        "token_expires_at": "",
    }
    fields.update(overrides)
    return fields


def shown_token(page: str) -> str:
    found = re.search(r'id="device-token" value="([^"]+)" readonly', page)
    assert found, "no token on the page"
    return unescape(found.group(1))


def row_ids(page: str) -> list[str]:
    return [unescape(item) for item in re.findall(r'<tr data-device="([^"]+)"', page)]


def connect(gateway: ThreadedGateway, device_id: str, token: str) -> int:
    with RawClient(gateway.port) as client:
        return int(client.connect(device_id, username=device_id, password=token.encode()).return_code)


def ca_pem() -> str:
    return trustme.CA().cert_pem.bytes().decode()


# --- logging in, rendering ------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES + ITEM_PAGES)
def test_registry_pages_send_strangers_to_the_login_page(web_client: WebClient, path: str) -> None:
    response = web_client.get(path)
    assert response.status == 302
    assert response.location is not None
    location = urlsplit(response.location)
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [path]
    assert web_client.post(path, {"name": "x"}, csrf=False).status == 401


def test_every_registry_page_renders_for_an_operator(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    add_tenant(web_gateway, "acme")
    add_device(web_gateway, "d1")
    for path in PAGES + ITEM_PAGES + ["/devices/d1/delete", "/devices?q=d&online=no&offset=100"]:
        page = admin_client.get(path)
        assert page.status == 200, path
        assert f'<meta name="csrf-token" content="{admin_client.csrf_token}">' in page.text
        assert '<a href="/devices" ' in page.text
        assert '<a href="/tenants" ' in page.text
    assert '<a href="/devices" aria-current="page">Devices</a>' in admin_client.get("/devices").text
    assert '<a href="/tenants" aria-current="page">Tenants</a>' in admin_client.get("/tenants").text
    overview = admin_client.get("/").text
    assert '<a class="stat-label stat-link" href="/devices?online=yes">Devices online' in overview


def test_unknown_tenants_and_devices_are_404_pages(admin_client: WebClient) -> None:
    for path in ["/tenants/nope/edit", "/tenants/nope/delete"]:
        page = admin_client.get(path)
        assert page.status == 404, path
        assert "There is no tenant with id &#39;nope&#39;." in page.text
        assert 'href="/tenants">Back to the tenants' in page.text
    for path in ["/devices/nope/edit", "/devices/nope/token", "/devices/nope/delete"]:
        page = admin_client.get(path)
        assert page.status == 404, path
        assert "There is no device with id &#39;nope&#39;." in page.text
    for path in ["/devices/nope/enable", "/devices/nope/disable", "/devices/nope/edit"]:
        assert admin_client.post(path, device_form()).status == 404, path


def test_empty_lists_say_what_to_do(admin_client: WebClient) -> None:
    assert "No tenants yet." in admin_client.get("/tenants").text
    page = admin_client.get("/devices").text
    assert '<a href="/tenants/new">Add a tenant</a> first' in page
    assert "Add device</a>" not in page  # no tenant to add one to
    assert "add a tenant</a> first" in admin_client.get("/devices/new").text


# --- tenants ----------------------------------------------------------------------------------


def test_a_tenant_added_and_edited_through_the_forms(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    response = admin_client.post("/tenants/new", tenant_form())
    assert response.status == 303, response.text
    assert response.location == "/tenants?flash=tenant-added&id=acme"
    [tenant] = tenants(web_gateway)
    assert (tenant.id, tenant.name, tenant.auth_mode, tenant.default_acl) == (
        "acme",
        "Acme Corp",
        "token",
        True,
    )
    assert tenant.ca_cert is None
    assert tenant.acl == [
        AclRuleModel(action="publish", topic="fleet/{tenant_id}/status"),
        AclRuleModel(action="both", topic="devices/{device_id}/secret/#", allow=False),
    ]
    listing = admin_client.get(response.location).text
    assert '<p class="flash" role="status">Tenant acme added.</p>' in listing
    assert '<tr data-tenant="acme">' in listing
    assert '<td data-label="ACL rules" class="num">2</td>' in listing

    again = admin_client.post("/tenants/new", tenant_form(name="Other"))
    assert again.status == 409
    assert field_errors(again.text, "id") == ["A tenant with this id exists already."]

    page = admin_client.get("/tenants/acme/edit").text
    assert 'name="id"' not in page  # the id cannot change
    assert textarea(page, "acl") == (
        "allow publish fleet/{tenant_id}/status\ndeny both devices/{device_id}/secret/#"
    )
    assert 'name="default_acl" value="on" checked' in page
    assert "devices/{device_id}/#" in page  # the defaults are explained
    pem = ca_pem()
    form = tenant_form(name="Acme", auth_mode="certificate", ca_cert=pem.replace("\n", "\r\n"), acl="")
    del form["id"], form["default_acl"]
    saved = admin_client.post("/tenants/acme/edit", form)
    assert saved.status == 303, saved.text
    assert saved.location == "/tenants?flash=tenant-saved&id=acme"
    [tenant] = tenants(web_gateway)
    assert (tenant.name, tenant.auth_mode, tenant.default_acl, tenant.acl) == (
        "Acme",
        "certificate",
        False,
        [],
    )
    assert tenant.ca_cert == pem.strip()


@pytest.mark.parametrize(
    ("fields", "name", "errors"),
    [
        ({"id": "a/b"}, "id", ["Use 1 to 64 letters, digits, _ . : or -, starting with a letter or digit."]),
        ({"id": "a+b"}, "id", ["Use 1 to 64 letters, digits, _ . : or -, starting with a letter or digit."]),
        ({"id": ""}, "id", ["Required."]),
        ({"name": "  "}, "name", ["Required."]),
        ({"auth_mode": "password"}, "auth_mode", ["Input should be 'token' or 'certificate'"]),
        (
            {"acl": "allow publish a/#\npermit publish b\nallow both x/#/y\nallow publish"},
            "acl",
            [
                "line 2: a rule starts with allow or deny",
                "line 3: '#' must be the last level of a topic filter [MQTT-4.7.1-2]: 'x/#/y'",
                "line 4: a topic filter comes after publish",
            ],
        ),
        ({"acl": "allow write a/b"}, "acl", ["line 1: after allow comes publish, subscribe or both"]),
        ({"ca_cert": "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----"}, "ca_cert", None),
        (
            {"auth_mode": "certificate"},
            "ca_cert",
            ["Certificate authentication needs the CA that signs the devices' certificates."],
        ),
    ],
)
def test_a_bad_tenant_form_shows_inline_errors_and_saves_nothing(
    admin_client: WebClient,
    web_gateway: ThreadedGateway,
    fields: dict[str, str],
    name: str,
    errors: list[str] | None,
) -> None:
    response = admin_client.post("/tenants/new", tenant_form(**fields))
    assert response.status == 400
    assert "Nothing was saved." in response.text
    shown = field_errors(response.text, name)
    if errors is None:
        assert len(shown) == 1
        assert shown[0].startswith("Not a PEM certificate")
    else:
        assert shown == errors
    assert f'aria-invalid="true" aria-describedby="{name}-error"' in response.text
    if "acl" in fields:
        assert textarea(response.text, "acl") == fields["acl"]  # what was typed comes back
    assert tenants(web_gateway) == []


def test_a_bad_edit_changes_nothing(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    before = add_tenant(web_gateway, "acme", name="Acme")
    form = tenant_form(acl="deny both {device}/#")
    response = admin_client.post("/tenants/acme/edit", form)
    assert response.status == 400
    assert field_errors(response.text, "acl") == [
        "line 1: unknown placeholder {device}: use {device_id} or {tenant_id}"
    ]
    assert 'action="/tenants/acme/edit"' in response.text
    assert tenants(web_gateway) == [before]


def test_a_tenant_with_devices_is_not_deleted(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "acme")
    add_device(web_gateway, "d1")
    asked = admin_client.post("/tenants/acme/delete")  # without script: a page asks (and explains)
    assert asked.status == 200
    assert "still has devices" in asked.text
    assert 'name="confirmed"' not in asked.text
    refused = admin_client.post("/tenants/acme/delete", {"confirmed": "yes"})
    assert refused.status == 409
    assert "Tenant acme was not deleted: tenant &#39;acme&#39; still has 1 device(s): delete them first." in (
        refused.text
    )
    assert [tenant.id for tenant in tenants(web_gateway)] == ["acme"]

    assert admin_client.post("/devices/d1/delete", {"confirmed": "yes"}).status == 303
    asked = admin_client.get("/tenants/acme/delete")
    assert '<input type="hidden" name="confirmed" value="yes">' in asked.text
    deleted = admin_client.post("/tenants/acme/delete", {"confirmed": "yes"})
    assert deleted.status == 303
    assert deleted.location == "/tenants?flash=tenant-deleted&id=acme"
    assert tenants(web_gateway) == []
    assert "Tenant acme deleted." in admin_client.get(deleted.location).text


# --- devices ----------------------------------------------------------------------------------------


def test_a_device_added_through_the_form_shows_its_token_once(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    add_tenant(web_gateway, "acme")
    page = admin_client.get("/devices/new?tenant=acme").text
    assert '<option value="acme" selected>' in page
    assert 'name="enabled" value="on" checked' in page

    response = admin_client.post("/devices/new", device_form())
    assert response.status == 200, response.text
    assert response.location is None  # the token is on this response, not behind a redirect
    assert response.headers["Cache-Control"] == "no-store"
    assert "Copy it now: it is not shown again." in response.text
    token = shown_token(response.text)
    assert f"-u d1 -P '{token}'" in response.text  # the mosquitto_pub hint
    assert f"127.0.0.1:{web_gateway.port}" in response.text

    [device] = devices(web_gateway)
    assert (device.id, device.tenant_id, device.name) == ("d1", "acme", "Hall sensor")
    assert device.labels == ["hall", "floor:3"]
    assert device.notes == "Above the door.\nSecond line."
    assert device.metadata == {"site": "berlin", "floor": 3}
    assert device.acl == [AclRuleModel(action="subscribe", topic="broadcast/#")]
    assert (device.enabled, device.has_token, device.token_expires_at) == (True, True, None)

    assert connect(web_gateway, "d1", token) == 0
    for path in ["/devices", "/devices/d1/edit"]:
        assert token not in admin_client.get(path).text

    again = admin_client.post("/devices/new", device_form(name="Other"))
    assert again.status == 409
    assert field_errors(again.text, "id") == ["A device with this id exists already."]
    assert "device-token" not in again.text


def test_a_token_expiry_is_kept_in_utc(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "acme")
    response = admin_client.post("/devices/new", device_form(token_expires_at="2099-01-31T12:30"))
    assert response.status == 200, response.text
    [device] = devices(web_gateway)
    assert device.token_expires_at == datetime(2099, 1, 31, 12, 30, tzinfo=timezone.utc).timestamp()
    assert '<time datetime="2099-01-31T12:30:00+00:00" data-local-time>' in response.text


def test_a_certificate_device_gets_no_token(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "plant", auth_mode="certificate", ca_cert=ca_pem())
    response = admin_client.post("/devices/new", device_form(tenant_id="plant"))
    assert response.status == 303
    assert response.location == "/devices?flash=device-added&id=d1"
    [device] = devices(web_gateway)
    assert device.has_token is False
    listing = admin_client.get(response.location).text
    assert "Device d1 added." in listing
    assert 'action="/devices/d1/token"' not in listing
    edit = admin_client.get("/devices/d1/edit").text
    assert "client certificate issued by the CA of tenant" in edit
    refused = admin_client.post("/devices/d1/token", {"confirmed": "yes"})
    assert refused.status == 409
    assert "No token for d1" in refused.text


@pytest.mark.parametrize(
    ("fields", "name", "errors"),
    [
        ({"id": "a/b"}, "id", ["Use 1 to 64 letters, digits, _ . : or -, starting with a letter or digit."]),
        (
            {"id": "sensor+"},
            "id",
            ["Use 1 to 64 letters, digits, _ . : or -, starting with a letter or digit."],
        ),
        ({"tenant_id": "ghost"}, "tenant_id", ["There is no tenant 'ghost'."]),
        ({"tenant_id": ""}, "tenant_id", ["Choose the device's tenant."]),
        (
            {"acl": "allow publish a\nallow b"},
            "acl",
            ["line 2: after allow comes publish, subscribe or both"],
        ),
        (
            {"metadata": '{"floor": 3'},
            "metadata",
            ["Not valid JSON: Expecting ',' delimiter (line 1, column 12)."],
        ),
        ({"metadata": "[1, 2]"}, "metadata", ['Metadata is a JSON object, like {"floor": 3}.']),
        ({"labels": "ok, not ok"}, "labels", ["Label 'not ok': use 1 to 64 letters, digits, _ . : = or -."]),
        (
            {"token_expires_at": "2001-01-01T00:00"},
            "token_expires_at",
            ["That time has passed: give a time in the future, or leave it empty."],
        ),
        (
            {"token_expires_at": "soon"},
            "token_expires_at",
            ["Give a date and time like 2030-01-31T12:00 (UTC), or leave it empty."],
        ),
    ],
)
def test_a_bad_device_form_shows_inline_errors_and_saves_nothing(
    admin_client: WebClient,
    web_gateway: ThreadedGateway,
    fields: dict[str, str],
    name: str,
    errors: list[str],
) -> None:
    add_tenant(web_gateway, "acme")
    response = admin_client.post("/devices/new", device_form(**fields))
    assert response.status == 400
    assert "Nothing was saved." in response.text
    assert field_errors(response.text, name) == errors
    assert "device-token" not in response.text
    assert input_value(response.text, "name") == "Hall sensor"  # what was typed comes back
    assert textarea(response.text, "metadata") == device_form(**fields)["metadata"]
    assert devices(web_gateway) == []


def test_a_device_edited_through_the_form(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "acme", acl=[AclRuleModel(topic="fleet/#", action="subscribe")])
    add_device(web_gateway, "d1", labels=["hall"], metadata={"floor": 3}, acl=[AclRuleModel(topic="x/#")])
    page = admin_client.get("/devices/d1/edit").text
    assert input_value(page, "labels") == "hall"
    assert textarea(page, "metadata") == '{\n  "floor": 3\n}'
    assert textarea(page, "acl") == "allow both x/#"
    assert "<pre>allow subscribe fleet/#</pre>" in page  # the tenant's rules, for reference
    assert 'name="tenant_id"' not in page
    assert 'name="id"' not in page

    form = device_form(name="Renamed", labels="a, b", metadata="", acl="", notes="")
    del form["enabled"]
    response = admin_client.post("/devices/d1/edit", form)
    assert response.status == 303, response.text
    assert response.location == "/devices?flash=device-saved&id=d1"
    [device] = devices(web_gateway)
    assert (device.name, device.labels, device.metadata, device.acl, device.notes) == (
        "Renamed",
        ["a", "b"],
        {},
        [],
        "",
    )
    assert device.enabled is False
    assert device.tenant_id == "acme"

    bad = admin_client.post("/devices/d1/edit", device_form(metadata="nope"))
    assert bad.status == 400
    assert field_errors(bad.text, "metadata") == ["Not valid JSON: Expecting value (line 1, column 1)."]
    assert devices(web_gateway) == [device]


def test_disable_disconnects_and_enable_lets_in(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    add_tenant(web_gateway, "acme")
    _, token = add_device(web_gateway, "d1")
    admin_client.get("/devices")
    with RawClient(web_gateway.port) as client:
        assert client.connect("d1", username="d1", password=token.encode()).return_code == 0
        response = admin_client.post("/devices/d1/disable", {"back": "tenant=acme&offset=100&evil=x"})
        assert response.status == 303
        assert response.location == "/devices?tenant=acme&offset=100&flash=device-disabled&id=d1"
        client.assert_closed()
    assert connect(web_gateway, "d1", token) == NOT_AUTHORIZED
    listing = admin_client.get("/devices").text
    assert 'data-field="enabled">disabled</span>' in listing
    assert 'action="/devices/d1/enable"' in listing
    assert (
        "Device d1 disabled and disconnected."
        in admin_client.get("/devices?flash=device-disabled&id=d1").text
    )

    response = admin_client.post("/devices/d1/enable")
    assert response.location == "/devices?flash=device-enabled&id=d1"
    assert connect(web_gateway, "d1", token) == 0


def test_a_new_token_replaces_the_old_one(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "acme")
    _, old = add_device(web_gateway, "d1")
    admin_client.get("/devices")
    asked = admin_client.post("/devices/d1/token")  # without script: a page asks first
    assert asked.status == 200
    assert '<input type="hidden" name="confirmed" value="yes">' in asked.text
    assert connect(web_gateway, "d1", old) == 0  # nothing changed yet

    with RawClient(web_gateway.port) as client:
        assert client.connect("d1", username="d1", password=old.encode()).return_code == 0
        response = admin_client.post("/devices/d1/token", {"confirmed": "yes", "token_expires_at": ""})
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert "The old token no longer works." in response.text
        client.assert_closed()
    new = shown_token(response.text)
    assert new != old
    assert connect(web_gateway, "d1", old) == BAD_CREDENTIALS
    assert connect(web_gateway, "d1", new) == 0

    bad = admin_client.post("/devices/d1/token", {"confirmed": "yes", "token_expires_at": "2000-01-01T00:00"})
    assert bad.status == 400
    assert field_errors(bad.text, "token_expires_at") == [
        "That time has passed: give a time in the future, or leave it empty."
    ]
    assert connect(web_gateway, "d1", new) == 0


def test_delete_asks_first_and_disconnects(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "acme")
    _, token = add_device(web_gateway, "d1")
    admin_client.get("/devices")
    asked = admin_client.post("/devices/d1/delete", {"back": "q=d"})
    assert asked.status == 200
    assert "Delete device d1?" in asked.text
    assert '<input type="hidden" name="back" value="q=d">' in asked.text
    assert [device.id for device in devices(web_gateway)] == ["d1"]
    with RawClient(web_gateway.port) as client:
        assert client.connect("d1", username="d1", password=token.encode()).return_code == 0
        response = admin_client.post("/devices/d1/delete", {"confirmed": "yes", "back": "q=d"})
        assert response.status == 303
        assert response.location == "/devices?q=d&flash=device-deleted&id=d1"
        client.assert_closed()
    assert devices(web_gateway) == []
    page = admin_client.get(response.location).text
    assert "Device d1 deleted." in page
    assert row_ids(page) == []


# --- the list: search, filters, paging, live -----------------------------------------------------


def test_tenants_are_searched_by_id_or_name(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "acme", name="Acme Corp")
    add_tenant(web_gateway, "globex", name="Globex Plant 7")
    add_tenant(web_gateway, "initech", name="Initech")

    def shown(query: str) -> list[str]:
        page = admin_client.get(f"/tenants?{query}")
        assert page.status == 200
        return [unescape(item) for item in re.findall(r'<tr data-tenant="([^"]+)"', page.text)]

    assert shown("") == ["acme", "globex", "initech"]
    assert shown("q=glob") == ["globex"]
    assert shown("q=PLANT") == ["globex"]  # names too, any case
    assert shown("q=c") == ["acme", "initech"]
    assert shown("q=nothing") == []
    page = admin_client.get("/tenants?q=nothing").text
    assert "contains “nothing”" in page
    assert 'value="nothing"' in page
    assert '<span class="count">3</span>' in page  # the count is of every tenant


def test_search_and_filters(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "acme")
    add_tenant(web_gateway, "globex")
    add_device(web_gateway, "hall-1", name="Hall sensor", labels=["hall", "floor:1"])
    _, token = add_device(web_gateway, "hall-2", name="Hall door", labels=["hall"])
    add_device(web_gateway, "pump-7", tenant_id="globex", name="Water pump", labels=["floor:1"])
    with RawClient(web_gateway.port) as client:
        assert client.connect("hall-2", username="hall-2", password=token.encode()).return_code == 0

        def shown(query: str) -> list[str]:
            page = admin_client.get(f"/devices?{query}")
            assert page.status == 200
            return row_ids(page.text)

        assert shown("") == ["hall-1", "hall-2", "pump-7"]
        assert shown("q=hall") == ["hall-1", "hall-2"]
        assert shown("q=PUMP") == ["pump-7"]  # names too, any case
        assert shown("q=water") == ["pump-7"]
        assert shown("tenant=globex") == ["pump-7"]
        assert shown("label=floor%3A1") == ["hall-1", "pump-7"]
        assert shown("label=floor%3A1&tenant=acme") == ["hall-1"]
        assert shown("online=yes") == ["hall-2"]
        assert shown("online=no") == ["hall-1", "pump-7"]
        assert shown("online=no&q=hall") == ["hall-1"]
        assert shown("q=nothing") == []
        assert "No device matches." in admin_client.get("/devices?q=nothing").text

        page = admin_client.get("/devices?q=hall&tenant=acme&online=yes").text
        assert 'value="hall"' in page
        assert '<option value="acme" selected>' in page
        assert '<option value="yes" selected>' in page
        assert 'data-poll="/api/devices?q=hall&amp;tenant=acme&amp;online=true&amp;limit=100"' in page
        assert '<input type="hidden" name="back" value="q=hall&amp;tenant=acme&amp;online=yes">' in page
        assert 'data-field="online">online</span>' in page
        # The API the page polls answers for the same rows.
        listed = admin_client.get("/api/devices?q=hall&tenant=acme&online=true&limit=100").json()
        assert [item["id"] for item in listed] == ["hall-2"]


def test_paging(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "acme")
    count = PAGE_SIZE * 2 + 5
    for number in range(count):
        add_device(web_gateway, f"dev-{number:03d}")
    first = admin_client.get("/devices").text
    assert row_ids(first) == [f"dev-{number:03d}" for number in range(PAGE_SIZE)]
    assert 'rel="prev"' not in first
    assert f'rel="next" href="/devices?offset={PAGE_SIZE}"' in first
    second = admin_client.get(f"/devices?offset={PAGE_SIZE}").text
    assert row_ids(second)[0] == f"dev-{PAGE_SIZE:03d}"
    assert 'rel="prev" href="/devices"' in second
    assert f'rel="next" href="/devices?offset={PAGE_SIZE * 2}"' in second
    assert "Page 2" in second
    last = admin_client.get(f"/devices?offset={PAGE_SIZE * 2}&q=dev").text
    assert row_ids(last) == [f"dev-{number:03d}" for number in range(PAGE_SIZE * 2, count)]
    assert f'rel="prev" href="/devices?q=dev&amp;offset={PAGE_SIZE}"' in last
    assert 'rel="next"' not in last
    assert "No more devices." in admin_client.get("/devices?offset=900").text
    assert row_ids(admin_client.get("/devices?offset=abc").text) == row_ids(first)


def test_flash_messages_only_name_valid_ids(admin_client: WebClient) -> None:
    assert "Tenant acme:eu deleted." in admin_client.get("/tenants?flash=tenant-deleted&id=acme:eu").text
    page = admin_client.get("/devices?flash=device-deleted&id=%3Cscript%3E").text
    assert "Device  deleted." in page
    assert "<script>" not in page


def test_forms_without_the_csrf_token_are_refused(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    add_tenant(web_gateway, "acme")
    _, token = add_device(web_gateway, "d1")
    admin_client.get("/devices")
    attempts = {
        "/tenants/new": tenant_form(id="other"),
        "/tenants/acme/edit": tenant_form(name="Changed"),
        "/tenants/acme/delete": {"confirmed": "yes"},
        "/devices/new": device_form(id="d2"),
        "/devices/d1/edit": device_form(name="Changed"),
        "/devices/d1/disable": {},
        "/devices/d1/enable": {},
        "/devices/d1/token": {"confirmed": "yes"},
        "/devices/d1/delete": {"confirmed": "yes"},
    }
    for path, fields in attempts.items():
        assert admin_client.post(path, fields, csrf=False).status == 403, path
        assert admin_client.post(path, {**fields, "csrf_token": "forged"}, csrf=False).status == 403, path
    assert [tenant.name for tenant in tenants(web_gateway)] == ["acme"]
    [device] = devices(web_gateway)
    assert (device.id, device.name, device.enabled) == ("d1", "", True)
    assert connect(web_gateway, "d1", token) == 0


# --- the forms' text, without a gateway ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        (
            "allow publish fleet/{tenant_id}/status",
            {"allow": True, "action": "publish", "topic": "fleet/{tenant_id}/status"},
        ),
        (
            "deny both devices/{device_id}/secret/#",
            {"allow": False, "action": "both", "topic": "devices/{device_id}/secret/#"},
        ),
        ("allow subscribe +/news", {"allow": True, "action": "subscribe", "topic": "+/news"}),
        (
            '  allow   both   "my home/{device_id}/#"  ',
            {"allow": True, "action": "both", "topic": "my home/{device_id}/#"},
        ),
        (
            "deny publish $aws/things/{device_id}/shadow/#",
            {"allow": False, "action": "publish", "topic": "$aws/things/{device_id}/shadow/#"},
        ),
    ],
)
def test_acl_lines_accepted(line: str, rule: dict[str, Any]) -> None:
    assert parse_acl_line(line) == rule
    model = AclRuleModel.model_validate(rule)
    assert AclRuleModel.model_validate(parse_acl_line(format_acl([model]))) == model


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("publish a/b", "a rule starts with allow or deny"),
        ("Allow publish a/b", "a rule starts with allow or deny"),
        ("allow", "after allow comes publish, subscribe or both"),
        ("deny read a/b", "after deny comes publish, subscribe or both"),
        ("allow both", "a topic filter comes after both"),
        ("allow both a b", "unexpected 'b': a rule is allow|deny ACTION FILTER (quote a filter with spaces)"),
        ("allow both devices/{id}/#", "unknown placeholder {id}: use {device_id} or {tenant_id}"),
        ('allow both "a b', "a quote is not closed"),
    ],
)
def test_acl_lines_rejected(line: str, error: str) -> None:
    with pytest.raises(AclSyntaxError) as raised:
        parse_acl_line(line)
    assert str(raised.value) == error


def test_acl_text_skips_comments_and_numbers_errors_by_line() -> None:
    parsed = parse_acl("# rules\n\nallow publish a/#\nnope\n  \ndeny subscribe b/+\nallow both\n")
    assert parsed.rules == [
        {"allow": True, "action": "publish", "topic": "a/#"},
        {"allow": False, "action": "subscribe", "topic": "b/+"},
    ]
    assert parsed.lines == [3, 6]
    assert parsed.errors == [
        "line 4: a rule starts with allow or deny",
        "line 7: a topic filter comes after both",
    ]


def test_labels_metadata_and_expiry_boxes() -> None:
    assert parse_labels(" hall, floor:3 ,,\nhall\n, b ") == ["hall", "floor:3", "b"]
    assert parse_labels("  ") == []
    assert parse_metadata("") == {}
    assert parse_metadata(' {"a": [1, {"b": null}]} ') == {"a": [1, {"b": None}]}
    for text, message in [
        ("{", "Not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)."),
        ('"text"', 'Metadata is a JSON object, like {"floor": 3}.'),
        ('{"a": NaN}', "NaN is not JSON: use a number or a string."),
    ]:
        with pytest.raises(FieldError) as raised:
            parse_metadata(text)
        assert str(raised.value) == message
    now = time.time()
    assert parse_expiry(" ", now) is None
    expected = datetime(2099, 5, 1, 8, 0, tzinfo=timezone.utc).timestamp()
    assert parse_expiry("2099-05-01T08:00", now) == expected
    assert parse_expiry("2099-05-01T08:00Z", now) == expected
    assert parse_expiry("2099-05-01T10:00+02:00", now) == expected
    assert parse_expiry("2099-05-01", now) == datetime(2099, 5, 1, tzinfo=timezone.utc).timestamp()
    assert format_expiry(expected) == "2099-05-01T08:00"
    assert format_expiry(None) == ""
    with pytest.raises(FieldError):
        parse_expiry("2099-13-01T00:00", now)
    with pytest.raises(FieldError):
        parse_expiry("2000-01-01T00:00", now)


def test_forms_round_trip_the_models() -> None:
    tenant = Tenant(
        id="acme",
        name="Acme",
        acl=[AclRuleModel(topic="a b/#", action="publish", allow=False)],
        default_acl=False,
    )
    settings, form = validate_tenant(tenant_values(tenant), new=False)
    assert form.errors == {}
    assert settings is not None
    assert settings.model_dump() == tenant.model_dump(exclude={"id", "created_at"})
    device = Device(
        id="d1",
        tenant_id="acme",
        created_at=1.0,
        name="n",
        labels=["x", "y:1"],
        notes="a\nb",
        metadata={"k": ["v", 1]},
        acl=[AclRuleModel(topic="{device_id}/in", action="subscribe")],
        enabled=False,
    )
    again, form = validate_device(device_values(device))
    assert form.errors == {}
    assert again is not None
    assert again.model_dump() == device.model_dump(include=set(again.model_dump()))


def test_list_filters_come_from_the_query() -> None:
    filters = DeviceFilters.from_query(
        {"q": " hall ", "tenant": "acme", "online": "maybe", "offset": "200", "x": "y"}
    )
    assert filters == DeviceFilters(q="hall", tenant="acme", online="", offset=200)
    assert filters.query() == "q=hall&tenant=acme&offset=200"
    assert filters.query(offset=0) == "q=hall&tenant=acme"
    assert DeviceFilters.from_query({"offset": "-5"}).offset == 0
    assert DeviceFilters.from_query({"online": "no"}).api_query() == "limit=100"
    assert DeviceFilters(label="a b", online="yes").api_query() == "label=a+b&online=true&limit=100"
