"""Registering tenants and devices on a running test gateway."""

from __future__ import annotations

from typing import Any

from mqttproxy.registry.models import Device, DeviceCreate, Tenant
from tests.helpers import ThreadedGateway


def registry(gateway: ThreadedGateway) -> Any:
    return gateway.gateway.registry  # type: ignore[union-attr]


def add_tenant(gateway: ThreadedGateway, tenant_id: str = "acme", **fields: Any) -> Tenant:
    tenant = Tenant(id=tenant_id, name=fields.pop("name", tenant_id), **fields)
    created: Tenant = gateway.run(registry(gateway).create_tenant(tenant))
    return created


def add_device(
    gateway: ThreadedGateway, device_id: str, tenant_id: str = "acme", **fields: Any
) -> tuple[Device, str]:
    device, token = gateway.run(
        registry(gateway).create_device(DeviceCreate(id=device_id, tenant_id=tenant_id, **fields))
    )
    return device, token or ""
