"""Tenants, devices and their ACL rules as the registry stores them and the API takes them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mqttproxy.errors import LocalProtocolError
from mqttproxy.protocol.topics import validate_topic_filter

# Ids go into topics ("devices/{device_id}/#") and client ids: no separators,
# wildcards or "$", and short enough for any broker.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
Label = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:=-]{1,64}$")]

DEFAULT_ACL_TOPICS = ("devices/{device_id}/#", "$aws/things/{device_id}/#")


class AclRuleModel(BaseModel):
    """An ACL rule: ``topic`` is a filter where ``{device_id}`` and ``{tenant_id}`` stand for the device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["publish", "subscribe", "both"] = "both"
    topic: str = Field(min_length=1, max_length=1024)
    allow: bool = True

    @field_validator("topic")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        try:
            validate_topic_filter(value.replace("{device_id}", "x").replace("{tenant_id}", "x"))
        except LocalProtocolError as exc:
            raise ValueError(str(exc)) from exc
        return value


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    auth_mode: Literal["token", "certificate"] = "token"
    ca_cert: str | None = Field(
        default=None, description="PEM CA that signs this tenant's device certificates (certificate mode)"
    )
    acl: list[AclRuleModel] = Field(default_factory=list, description="rules tried before the default ones")
    default_acl: bool = Field(
        default=True, description="also allow devices/{device_id}/# and $aws/things/{device_id}/#"
    )

    @field_validator("ca_cert")
    @classmethod
    def _valid_ca(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from cryptography import x509

        try:
            x509.load_pem_x509_certificate(value.encode())
        except ValueError as exc:
            raise ValueError(f"not a PEM certificate: {exc}") from exc
        return value


class Tenant(TenantSettings):
    id: Identifier
    created_at: float = 0.0


class DeviceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", max_length=200)
    labels: list[Label] = Field(default_factory=list, max_length=50)
    notes: str = Field(default="", max_length=10_000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    acl: list[AclRuleModel] = Field(default_factory=list, description="rules tried before the tenant's")
    enabled: bool = True


class DeviceCreate(DeviceSettings):
    id: Identifier
    tenant_id: Identifier
    token_expires_at: float | None = Field(default=None, description="Unix time the first token expires")


class Device(DeviceSettings):
    id: Identifier
    tenant_id: Identifier
    created_at: float
    last_seen: float | None = None
    last_address: str | None = None
    online: bool = False
    token_expires_at: float | None = None
    has_token: bool = False
