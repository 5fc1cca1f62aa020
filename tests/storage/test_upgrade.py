"""A gateway started on a database an older gateway wrote keeps its devices and shadows.

The older file is written by the registry and the shadow service
themselves, at each schema version since the registry's, so the test keeps
covering the previous version whenever a migration is appended.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import mqttproxy.storage.database as database_module
from mqttproxy.protocol.packets import Connack
from mqttproxy.registry import Registry
from mqttproxy.registry.models import DeviceCreate, Tenant
from mqttproxy.shadow import Limits, ShadowKey, ShadowService
from mqttproxy.storage import Database
from mqttproxy.storage.migrations import MIGRATIONS
from tests.helpers import RawClient, make_config, running_gateway
from tests.registry.util import registry
from tests.shadow import ShadowClient


def _version_of(description: str) -> int:
    """The schema version a migration brings the file to."""
    return next(number for number, (text, _) in enumerate(MIGRATIONS, start=1) if text == description)


REGISTRY_VERSION = _version_of("device registry: tenants, devices, device tokens")
SHADOW_VERSION = _version_of("device shadows")


async def _write_old_gateway_data(data_dir: Path, version: int) -> str:
    """Register a device (and, if the schema has them, update its shadow) at ``version``; its token."""
    database = Database(data_dir / "mqttproxy.db")
    await database.open()
    try:
        assert await database.fetch_one("PRAGMA user_version") == {"user_version": version}
        key_path = data_dir / "registry.key"
        old = Registry(database, key_path=key_path, disconnect=lambda _p, _r: 0, trust_ca=lambda _p: None)
        await old.start()
        await old.create_tenant(Tenant(id="acme", name="Acme"))
        _, token = await old.create_device(DeviceCreate(id="sensor-1", tenant_id="acme", labels=["hall"]))
        await old.stop()
        if version >= SHADOW_VERSION:
            shadows = ShadowService(database, dispatch=lambda _m: None, limits=Limits())
            update = b'{"state": {"desired": {"fan": "on"}, "reported": {"fan": "off"}}}'
            assert isinstance(await shadows.handle(ShadowKey("sensor-1", ""), "update", update), dict)
    finally:
        await database.close()
    assert token is not None
    return token


@pytest.mark.parametrize(
    "version", range(REGISTRY_VERSION, len(MIGRATIONS)), ids=lambda version: f"from-v{version}"
)
def test_an_upgraded_gateway_keeps_its_devices_and_shadows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    config = make_config(tmp_path, allow_anonymous=False)
    with monkeypatch.context() as older:
        older.setattr(database_module, "MIGRATIONS", MIGRATIONS[:version])
        token = asyncio.run(_write_old_gateway_data(config.data_dir, version))

    with running_gateway(config) as gateway:
        with RawClient(gateway.port) as device:
            assert device.connect("sensor-1", username="sensor-1", password=token.encode()) == Connack()
        assert gateway.run(registry(gateway).device("sensor-1")).labels == ["hall"]
        assert gateway.gateway is not None
        schema = gateway.run(gateway.gateway.database.fetch_one("PRAGMA user_version"))
        assert schema == {"user_version": len(MIGRATIONS)}
        app = ShadowClient.connect(gateway.port, "sensor-1", username="sensor-1", password=token)
        app.watch("sensor-1")
        got = app.get("sensor-1")
        if version >= SHADOW_VERSION:
            assert (got.kind, got.body["version"]) == ("get/accepted", 1)
            assert got.body["state"]["delta"] == {"fan": "on"}
        else:
            assert (got.kind, got.body["code"]) == ("get/rejected", 404)
        accepted = app.request("sensor-1", "update", {"state": {"reported": {"fan": "on"}}})
        assert accepted.body["version"] == (2 if version >= SHADOW_VERSION else 1)
        app.disconnect()
