"""/api/tenants and /api/devices: CRUD, filters, tokens once, bad input changing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RawClient, ThreadedGateway
from tests.webapp.api_client import Api, token_api, web_gateway, web_port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ThreadedGateway, Api]]:
    with web_gateway(tmp_path) as gateway:
        yield gateway, token_api(web_port(gateway))


def test_tenant_and_device_lifecycle(served: tuple[ThreadedGateway, Api]) -> None:
    gateway, api = served
    tenant = api.ok("POST", "/api/tenants", {"id": "acme", "name": "Acme"}, status=201)
    assert (tenant["auth_mode"], tenant["default_acl"]) == ("token", True)
    created = api.ok(
        "POST",
        "/api/devices",
        {"id": "d1", "tenant_id": "acme", "name": "Hall sensor", "labels": ["hall"]},
        status=201,
    )
    token = created["token"]
    assert created["has_token"]
    with RawClient(gateway.port) as device:
        assert device.connect("d1", username="d1", password=token.encode()).return_code == 0
        listed = api.ok("GET", "/api/devices?online=true")
        assert [item["id"] for item in listed] == ["d1"]
        assert "token" not in listed[0]
    assert api.ok("GET", "/api/devices/d1")["labels"] == ["hall"]
    assert [item["id"] for item in api.ok("GET", "/api/devices?label=hall&tenant=acme&q=sens")] == ["d1"]
    assert api.ok("GET", "/api/devices?label=other") == []

    renewed = api.ok("POST", "/api/devices/d1/token")
    assert renewed["token"] != token
    with RawClient(gateway.port) as device:
        assert device.connect("d1", username="d1", password=token.encode()).return_code == 4

    disabled = api.ok("POST", "/api/devices/d1/disable")
    assert disabled["enabled"] is False
    assert api.ok("POST", "/api/devices/d1/enable")["enabled"] is True
    updated = api.ok("PUT", "/api/devices/d1", {**api.ok("GET", "/api/devices/d1"), "notes": "moved"})
    assert updated["notes"] == "moved"

    assert api.call("DELETE", "/api/tenants/acme").status == 409  # it still has a device
    assert api.call("DELETE", "/api/devices/d1").status == 204
    assert api.call("GET", "/api/devices/d1").status == 404
    assert api.call("DELETE", "/api/tenants/acme").status == 204
    assert api.ok("GET", "/api/tenants") == []


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/tenants", {"id": "bad/id", "name": "x"}, 400, "id"),
        ("/api/tenants", {"id": "x" * 65, "name": "x"}, 400, "id"),
        ("/api/tenants", {"id": "t", "name": "x", "auth_mode": "magic"}, 400, "auth_mode"),
        ("/api/tenants", {"id": "t", "name": "x", "ca_cert": "not pem"}, 400, "ca_cert"),
        ("/api/tenants", {"id": "t", "name": "x", "auth_mode": "certificate"}, 400, "ca_cert"),
        ("/api/tenants", {"id": "t", "name": "x", "acl": [{"topic": "a/#/b"}]}, 400, "acl.0.topic"),
        ("/api/tenants", {"id": "acme", "name": "again"}, 409, "id"),
        ("/api/devices", {"id": "d+1", "tenant_id": "acme"}, 400, "id"),
        ("/api/devices", {"id": "d2", "tenant_id": "nobody"}, 400, "tenant_id"),
        ("/api/devices", {"id": "d2", "tenant_id": "acme", "labels": ["has space"]}, 400, "labels.0"),
        ("/api/devices", {"id": "d2", "tenant_id": "acme", "colour": "red"}, 400, "colour"),
        ("/api/devices", {"id": "d1", "tenant_id": "acme"}, 409, "id"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    served: tuple[ThreadedGateway, Api], path: str, body: dict[str, object], status: int, field: str
) -> None:
    _, api = served
    api.ok("POST", "/api/tenants", {"id": "acme", "name": "Acme"}, status=201)
    api.ok("POST", "/api/devices", {"id": "d1", "tenant_id": "acme"}, status=201)
    before = (api.ok("GET", "/api/tenants"), api.ok("GET", "/api/devices"))
    response = api.call("POST", path, body)
    assert response.status == status
    assert response.error()["field"] == field
    assert (api.ok("GET", "/api/tenants"), api.ok("GET", "/api/devices")) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/devices/nope"),
        ("PUT", "/api/devices/nope"),
        ("POST", "/api/devices/nope/token"),
        ("DELETE", "/api/tenants/nope"),
        ("GET", "/api/tenants/nope"),
    ],
)
def test_unknown_ids_are_404(served: tuple[ThreadedGateway, Api], method: str, path: str) -> None:
    _, api = served
    body = {"name": "x"} if method == "PUT" else None
    response = api.call(method, path, body) if body is not None else api.call(method, path)
    assert response.status == 404


def test_a_tenant_cannot_switch_to_certificates_without_a_ca(served: tuple[ThreadedGateway, Api]) -> None:
    _, api = served
    api.ok("POST", "/api/tenants", {"id": "acme", "name": "Acme"}, status=201)
    response = api.call("PUT", "/api/tenants/acme", {"name": "Acme", "auth_mode": "certificate"})
    assert (response.status, response.error()["field"]) == (400, "ca_cert")
    assert api.ok("GET", "/api/tenants/acme")["auth_mode"] == "token"


def test_filters_are_validated(served: tuple[ThreadedGateway, Api]) -> None:
    _, api = served
    assert api.call("GET", "/api/devices?online=maybe").error()["field"] == "online"
    assert api.call("GET", "/api/devices?limit=-1").error()["field"] == "limit"
