"""The device registry: tenants and devices, their credentials, ACLs and who is online.

It authenticates CONNECTs (as one of the broker's authenticators), gives each
accepted device its topic ACL, hears from the broker when devices come and
go, and asks the broker to disconnect a device that is disabled, deleted or
given a new token. Presence is written to the database in batches, never
once per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mqttproxy.broker.auth import AuthDecision, ConnectRequest
from mqttproxy.errors import MqttProxyError
from mqttproxy.protocol.packets import ConnectReturnCode
from mqttproxy.registry.acl import AclRule, TopicAcl
from mqttproxy.registry.certificates import CertificateError, device_id_of, issued_by
from mqttproxy.registry.models import (
    DEFAULT_ACL_TOPICS,
    AclRuleModel,
    Device,
    DeviceCreate,
    DeviceSettings,
    Tenant,
    TenantSettings,
)
from mqttproxy.registry.store import RegistryStore, device_from_row
from mqttproxy.registry.tokens import load_key, new_token, token_hash
from mqttproxy.storage import Database
from mqttproxy.throttle import LoginThrottle

logger = logging.getLogger(__name__)

PRINCIPAL_PREFIX = "device:"
_PRESENCE_FLUSH = 5.0  # seconds between batched presence writes


class NotFound(MqttProxyError):
    def __init__(self, what: str, item_id: str) -> None:
        super().__init__(f"no {what} with id {item_id!r}")
        self.what = what
        self.item_id = item_id


class Conflict(MqttProxyError):
    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def _rules(models: list[AclRuleModel], device_id: str, tenant_id: str) -> list[AclRule]:
    return [
        AclRule(
            topic=rule.topic.replace("{device_id}", device_id).replace("{tenant_id}", tenant_id),
            publish=rule.action in ("publish", "both"),
            subscribe=rule.action in ("subscribe", "both"),
            allow=rule.allow,
        )
        for rule in models
    ]


def _admission(tenant: TenantSettings) -> tuple[object, ...]:
    """What decides whether a device of ``tenant`` may connect and which topics it gets."""
    return (tenant.auth_mode, tenant.ca_cert, tenant.acl, tenant.default_acl)


def acl_for(device_id: str, device_acl: list[AclRuleModel], tenant: Tenant) -> TopicAcl:
    """The device's rules, then its tenant's, then (unless switched off) the defaults."""
    rules = _rules(device_acl, device_id, tenant.id) + _rules(tenant.acl, device_id, tenant.id)
    if tenant.default_acl:
        rules += _rules([AclRuleModel(topic=topic) for topic in DEFAULT_ACL_TOPICS], device_id, tenant.id)
    return TopicAcl(rules)


class Registry:
    def __init__(
        self,
        database: Database,
        *,
        key_path: Path,
        disconnect: Callable[[str, str], int],
        trust_ca: Callable[[str], None],
        throttle: LoginThrottle | None = None,
    ) -> None:
        self._store = RegistryStore(database)
        self._key_path = key_path
        self._key = b""
        self._disconnect = disconnect
        self._trust_ca = trust_ca
        self._throttle = throttle or LoginThrottle(limit=10, window=60.0)
        self._tenants: dict[str, Tenant] = {}
        self._online: dict[str, int] = {}  # device id -> open connections
        self._seen: dict[str, tuple[float, str | None]] = {}  # presence not yet written
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._key = await asyncio.to_thread(load_key, self._key_path)
        self._tenants = {tenant.id: tenant for tenant in await self._store.tenants()}
        for tenant in self._tenants.values():
            if tenant.ca_cert:
                self._trust_ca(tenant.ca_cert)
        self._flusher = asyncio.get_running_loop().create_task(
            self._flush_presence(), name="registry-presence"
        )

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self._write_presence()

    # --- tenants ------------------------------------------------------------------------

    def tenants(self) -> list[Tenant]:
        return list(self._tenants.values())

    def tenant(self, tenant_id: str) -> Tenant:
        try:
            return self._tenants[tenant_id]
        except KeyError:
            raise NotFound("tenant", tenant_id) from None

    async def create_tenant(self, tenant: Tenant) -> Tenant:
        async with self._lock:
            if tenant.id in self._tenants:
                raise Conflict(f"a tenant with id {tenant.id!r} already exists", field="id")
            created = await self._store.insert_tenant(tenant)
            self._tenants[created.id] = created
        if created.ca_cert:
            self._trust_ca(created.ca_cert)
        logger.info("tenant %s created (%s authentication)", created.id, created.auth_mode)
        return created

    async def update_tenant(self, tenant_id: str, settings: TenantSettings) -> Tenant:
        async with self._lock:
            current = self.tenant(tenant_id)
            await self._store.update_tenant(tenant_id, settings)
            updated = Tenant.model_validate(
                {**settings.model_dump(), "id": tenant_id, "created_at": current.created_at}
            )
            self._tenants[tenant_id] = updated
        if updated.ca_cert and updated.ca_cert != current.ca_cert:
            self._trust_ca(updated.ca_cert)
        logger.info("tenant %s updated", tenant_id)
        if _admission(updated) != _admission(current):
            # A connected device keeps the rules it was let in under: it reconnects
            # (or does not) under the tenant's new ones.
            for device_id in await self._online_in(tenant_id):
                self._kick(device_id, "tenant settings changed")
        return updated

    async def delete_tenant(self, tenant_id: str) -> None:
        async with self._lock:
            self.tenant(tenant_id)
            count = await self._store.count_devices(tenant_id)
            if count:
                raise Conflict(
                    f"tenant {tenant_id!r} still has {count} device(s): delete them first", field="id"
                )
            await self._store.delete_tenant(tenant_id)
            del self._tenants[tenant_id]
        logger.info("tenant %s deleted", tenant_id)

    async def _online_in(self, tenant_id: str) -> list[str]:
        """The ids of the tenant's devices that are connected now."""
        online = list(self._online)
        if not online:
            return []
        rows = await self._store.devices(
            tenant_id=tenant_id, label=None, search=None, limit=len(online), offset=0, among=(online, True)
        )
        return [row["id"] for row in rows]

    # --- devices ---------------------------------------------------------------------------

    async def count(self, tenant_id: str | None = None) -> int:
        """How many devices are registered (in one tenant, or in all)."""
        return await self._store.count_devices(tenant_id)

    def is_online(self, device_id: str) -> bool:
        return self._online.get(device_id, 0) > 0

    async def device(self, device_id: str) -> Device:
        found = await self._store.device(device_id, self.is_online(device_id))
        if found is None:
            raise NotFound("device", device_id)
        return found

    async def devices(
        self,
        *,
        tenant_id: str | None = None,
        label: str | None = None,
        online: bool | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Device]:
        # Who is online is known here, not in the database: the query takes the
        # list of online ids, so that filtering and paging happen in one place.
        rows = await self._store.devices(
            tenant_id=tenant_id,
            label=label,
            search=search,
            limit=limit,
            offset=offset,
            among=None if online is None else (list(self._online), online),
        )
        return [device_from_row(row, self.is_online(row["id"])) for row in rows]

    async def create_device(self, request: DeviceCreate) -> tuple[Device, str | None]:
        """Create a device; for a token tenant also its first token, returned this once."""
        tenant = self.tenant(request.tenant_id)
        token = new_token() if tenant.auth_mode == "token" else None
        async with self._lock:
            if await self._store.device_row(request.id) is not None:
                raise Conflict(f"a device with id {request.id!r} already exists", field="id")
            await self._store.insert_device(request, token_hash(self._key, token) if token else None)
        logger.info("device %s created in tenant %s", request.id, request.tenant_id)
        return await self.device(request.id), token

    async def update_device(self, device_id: str, settings: DeviceSettings) -> Device:
        current = await self.device(device_id)
        await self._store.update_device(device_id, settings)
        if not settings.enabled or settings.acl != current.acl:
            # Disabled, or its topics changed: it reconnects (or does not) under the new rules.
            self._kick(device_id, "device disabled" if not settings.enabled else "device ACL changed")
        logger.info("device %s updated", device_id)
        return await self.device(device_id)

    async def set_enabled(self, device_id: str, enabled: bool) -> Device:
        current = await self.device(device_id)
        settings = DeviceSettings.model_validate(
            {**current.model_dump(include=set(DeviceSettings.model_fields)), "enabled": enabled}
        )
        return await self.update_device(device_id, settings)

    async def delete_device(self, device_id: str) -> None:
        await self.device(device_id)
        await self._store.delete_device(device_id)
        self._kick(device_id, "device deleted")
        logger.info("device %s deleted", device_id)

    async def regenerate_token(self, device_id: str, *, expires_at: float | None = None) -> str:
        """A new token for the device; the old one stops working at once. Returned this once."""
        device = await self.device(device_id)
        if self.tenant(device.tenant_id).auth_mode != "token":
            raise Conflict(f"device {device_id!r} authenticates with a certificate, not a token", field="id")
        token = new_token()
        await self._store.set_token(device_id, token_hash(self._key, token), expires_at)
        self._kick(device_id, "device token regenerated")
        logger.info("device %s has a new token", device_id)
        return token

    def _kick(self, device_id: str, reason: str) -> None:
        closed = self._disconnect(PRINCIPAL_PREFIX + device_id, reason)
        if closed:
            logger.info("disconnected device %s (%d connection(s)): %s", device_id, closed, reason)

    # --- authentication (a broker Authenticator) ------------------------------------------

    async def authenticate(self, request: ConnectRequest) -> AuthDecision | None:
        if request.certificate is not None and request.username is None:
            return await self._authenticate_certificate(request)
        if request.username is None:
            return None
        device_id = request.username
        keys = (f"address:{request.peer.rsplit(':', 1)[0]}", f"device:{device_id}")
        if self._throttle.retry_after(*keys):
            logger.warning(
                "CONNECT for device %r from %s refused: too many failed attempts", device_id, request.peer
            )
            return AuthDecision(return_code=ConnectReturnCode.NOT_AUTHORIZED)
        row = await self._store.device_row(device_id)
        if row is None:
            self._throttle.failed(*keys)
            return None  # not a device: the static users may know it, else it is refused
        decision = self._check_token(row, request)
        if decision.accepted:
            self._throttle.succeeded(*keys)
        else:
            self._throttle.failed(*keys)
        return decision

    def _check_token(self, row: dict[str, Any], request: ConnectRequest) -> AuthDecision:
        device_id = row["id"]
        tenant = self._tenants.get(row["tenant_id"])
        if tenant is None or tenant.auth_mode != "token":
            return self._refused(device_id, ConnectReturnCode.NOT_AUTHORIZED, "its tenant uses certificates")
        if not row["enabled"]:
            return self._refused(device_id, ConnectReturnCode.NOT_AUTHORIZED, "device disabled")
        stored = row["token_hash"]
        presented = (request.password or b"").decode("utf-8", "replace")
        if stored is None or not hmac.compare_digest(stored, token_hash(self._key, presented)):
            return self._refused(device_id, ConnectReturnCode.BAD_USERNAME_OR_PASSWORD, "wrong token")
        if row["token_expires_at"] is not None and row["token_expires_at"] < time.time():
            return self._refused(device_id, ConnectReturnCode.NOT_AUTHORIZED, "token expired")
        return self._accepted(device_id, row["acl"], tenant)

    async def _authenticate_certificate(self, request: ConnectRequest) -> AuthDecision | None:
        assert request.certificate is not None
        try:
            device_id = device_id_of(request.certificate)
        except CertificateError as exc:
            logger.warning("client certificate from %s refused: %s", request.peer, exc)
            return AuthDecision(return_code=ConnectReturnCode.NOT_AUTHORIZED)
        row = await self._store.device_row(device_id)
        if row is None:
            return None
        tenant = self._tenants.get(row["tenant_id"])
        if tenant is None or tenant.auth_mode != "certificate" or not tenant.ca_cert:
            return self._refused(
                device_id, ConnectReturnCode.NOT_AUTHORIZED, "its tenant does not use certificates"
            )
        if not issued_by(request.certificate, tenant.ca_cert):
            return self._refused(
                device_id, ConnectReturnCode.NOT_AUTHORIZED, "certificate not from its tenant's CA"
            )
        if not row["enabled"]:
            return self._refused(device_id, ConnectReturnCode.NOT_AUTHORIZED, "device disabled")
        return self._accepted(device_id, row["acl"], tenant)

    def _accepted(self, device_id: str, acl_json: str, tenant: Tenant) -> AuthDecision:
        device_acl = [AclRuleModel.model_validate(rule) for rule in _loads(acl_json)]
        return AuthDecision(
            return_code=ConnectReturnCode.ACCEPTED,
            principal=PRINCIPAL_PREFIX + device_id,
            policy=acl_for(device_id, device_acl, tenant),
        )

    @staticmethod
    def _refused(device_id: str, code: ConnectReturnCode, reason: str) -> AuthDecision:
        logger.warning("CONNECT for device %s refused: %s", device_id, reason)
        return AuthDecision(return_code=code)

    # --- presence (a broker PresenceListener) ----------------------------------------------

    def client_connected(self, principal: str | None, client_id: str, address: str) -> None:
        if principal is None or not principal.startswith(PRINCIPAL_PREFIX):
            return
        device_id = principal.removeprefix(PRINCIPAL_PREFIX)
        self._online[device_id] = self._online.get(device_id, 0) + 1
        self._seen[device_id] = (time.time(), address)

    def client_disconnected(self, principal: str | None, client_id: str) -> None:
        if principal is None or not principal.startswith(PRINCIPAL_PREFIX):
            return
        device_id = principal.removeprefix(PRINCIPAL_PREFIX)
        remaining = self._online.get(device_id, 0) - 1
        if remaining > 0:
            self._online[device_id] = remaining
        else:
            self._online.pop(device_id, None)
        address = self._seen.get(device_id, (0.0, None))[1]
        self._seen[device_id] = (time.time(), address)

    @property
    def online_count(self) -> int:
        return len(self._online)

    async def _flush_presence(self) -> None:
        while True:
            await asyncio.sleep(_PRESENCE_FLUSH)
            await self._write_presence()

    async def _write_presence(self) -> None:
        if not self._seen:
            return
        seen, self._seen = self._seen, {}
        try:
            await self._store.record_presence(seen)
        except Exception:
            logger.exception("could not record the presence of %d device(s); will retry", len(seen))
            self._seen = {**seen, **self._seen}


def _loads(text: str) -> list[dict[str, Any]]:
    value = json.loads(text)
    return value if isinstance(value, list) else []
