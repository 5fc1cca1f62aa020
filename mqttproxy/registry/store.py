"""SQL of the registry: tenants, devices and device tokens, as rows in and models out."""

from __future__ import annotations

import json
import time

from mqttproxy.registry.models import Device, DeviceCreate, DeviceSettings, Tenant, TenantSettings
from mqttproxy.storage import Database, Row

_DEVICE_COLUMNS = (
    "d.id, d.tenant_id, d.name, d.labels, d.notes, d.metadata, d.acl, d.enabled, d.created_at, "
    "d.last_seen, d.last_address, t.expires_at AS token_expires_at, t.token_hash IS NOT NULL AS has_token"
)
_DEVICE_FROM = "FROM devices d LEFT JOIN device_tokens t ON t.device_id = d.id"


def _tenant(row: Row) -> Tenant:
    return Tenant.model_validate(
        {**row, "acl": json.loads(row["acl"]), "default_acl": bool(row["default_acl"])}
    )


def _device(row: Row, online: bool) -> Device:
    fields = {key: value for key, value in row.items() if key != "token_hash"}  # never leaves the registry
    return Device.model_validate(
        {
            **fields,
            "labels": json.loads(row["labels"]),
            "metadata": json.loads(row["metadata"]),
            "acl": json.loads(row["acl"]),
            "enabled": bool(row["enabled"]),
            "has_token": bool(row["has_token"]),
            "online": online,
        }
    )


def _acl_json(settings: TenantSettings | DeviceSettings) -> str:
    return json.dumps([rule.model_dump() for rule in settings.acl])


class RegistryStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    # --- tenants -------------------------------------------------------------------

    async def tenants(self) -> list[Tenant]:
        return [_tenant(row) for row in await self._db.fetch_all("SELECT * FROM tenants ORDER BY id")]

    async def insert_tenant(self, tenant: Tenant) -> Tenant:
        created = tenant.model_copy(update={"created_at": time.time()})
        await self._db.execute(
            "INSERT INTO tenants (id, name, auth_mode, ca_cert, acl, default_acl, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                created.id,
                created.name,
                created.auth_mode,
                created.ca_cert,
                _acl_json(created),
                int(created.default_acl),
                created.created_at,
            ),
        )
        return created

    async def update_tenant(self, tenant_id: str, settings: TenantSettings) -> None:
        await self._db.execute(
            "UPDATE tenants SET name = ?, auth_mode = ?, ca_cert = ?, acl = ?, default_acl = ? WHERE id = ?",
            (
                settings.name,
                settings.auth_mode,
                settings.ca_cert,
                _acl_json(settings),
                int(settings.default_acl),
                tenant_id,
            ),
        )

    async def delete_tenant(self, tenant_id: str) -> None:
        await self._db.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,))

    async def count_devices(self, tenant_id: str | None) -> int:
        """Devices of one tenant, or of all with ``None``."""
        if tenant_id is None:
            row = await self._db.fetch_one("SELECT COUNT(*) AS n FROM devices")
        else:
            row = await self._db.fetch_one(
                "SELECT COUNT(*) AS n FROM devices WHERE tenant_id = ?", (tenant_id,)
            )
        return int(row["n"]) if row else 0

    # --- devices -------------------------------------------------------------------

    async def device_row(self, device_id: str) -> Row | None:
        """The device with its token hash: what authentication needs, in one query."""
        return await self._db.fetch_one(
            f"SELECT {_DEVICE_COLUMNS}, t.token_hash {_DEVICE_FROM} WHERE d.id = ?", (device_id,)
        )

    async def device(self, device_id: str, online: bool) -> Device | None:
        row = await self.device_row(device_id)
        return _device(row, online) if row is not None else None

    async def devices(
        self,
        *,
        tenant_id: str | None,
        label: str | None,
        search: str | None,
        limit: int,
        offset: int,
        among: tuple[list[str], bool] | None = None,
    ) -> list[Row]:
        """A page of devices; ``among`` = (ids, True) keeps only those ids, (ids, False) all others."""
        where: list[str] = []
        params: list[object] = []
        if among is not None:
            ids, inside = among
            where.append(
                "d.id IN (SELECT value FROM json_each(?))"
                if inside
                else "d.id NOT IN (SELECT value FROM json_each(?))"
            )
            params.append(json.dumps(ids))
        if tenant_id is not None:
            where.append("d.tenant_id = ?")
            params.append(tenant_id)
        if label is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(d.labels) WHERE json_each.value = ?)")
            params.append(label)
        if search:
            where.append("(d.id LIKE ? ESCAPE '\\' OR d.name LIKE ? ESCAPE '\\')")
            pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            params += [pattern, pattern]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return await self._db.fetch_all(
            f"SELECT {_DEVICE_COLUMNS} {_DEVICE_FROM} {clause} ORDER BY d.id LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )

    async def insert_device(self, device: DeviceCreate, token_hash: str | None) -> None:
        now = time.time()
        async with self._db.transaction() as connection:
            await connection.execute(
                "INSERT INTO devices (id, tenant_id, name, labels, notes, metadata, acl, enabled, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    device.id,
                    device.tenant_id,
                    device.name,
                    json.dumps(device.labels),
                    device.notes,
                    json.dumps(device.metadata),
                    _acl_json(device),
                    int(device.enabled),
                    now,
                ),
            )
            if token_hash is not None:
                await connection.execute(
                    "INSERT INTO device_tokens (device_id, token_hash, created_at, expires_at) "
                    "VALUES (?, ?, ?, ?)",
                    (device.id, token_hash, now, device.token_expires_at),
                )

    async def update_device(self, device_id: str, settings: DeviceSettings) -> None:
        await self._db.execute(
            "UPDATE devices SET name = ?, labels = ?, notes = ?, metadata = ?, acl = ?, enabled = ? "
            "WHERE id = ?",
            (
                settings.name,
                json.dumps(settings.labels),
                settings.notes,
                json.dumps(settings.metadata),
                _acl_json(settings),
                int(settings.enabled),
                device_id,
            ),
        )

    async def delete_device(self, device_id: str) -> None:
        await self._db.execute("DELETE FROM devices WHERE id = ?", (device_id,))

    async def set_token(self, device_id: str, token_hash: str, expires_at: float | None) -> None:
        await self._db.execute(
            "INSERT INTO device_tokens (device_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id) DO UPDATE SET token_hash = excluded.token_hash, "
            "created_at = excluded.created_at, expires_at = excluded.expires_at",
            (device_id, token_hash, time.time(), expires_at),
        )

    async def record_presence(self, seen: dict[str, tuple[float, str | None]]) -> None:
        """Last seen time and address of many devices in one transaction."""
        async with self._db.transaction() as connection:
            await connection.executemany(
                "UPDATE devices SET last_seen = ?, last_address = COALESCE(?, last_address) WHERE id = ?",
                [(when, address, device_id) for device_id, (when, address) in seen.items()],
            )


def device_from_row(row: Row, online: bool) -> Device:
    return _device(row, online)
