"""Static settings from ``config/proxy.toml``, validated by pydantic.

Every table forbids unknown keys, so a typo is an error that names the key
and the file instead of a setting silently ignored. Defaults here are the
"embedded defaults" the gateway runs on without a file.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from mqttproxy.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/proxy.toml")

Port = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[float, Field(gt=0)]
LogLevel = Literal["debug", "info", "warning", "error"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsListenerConfig(_Section):
    port: Port = 8883
    certfile: Path
    keyfile: Path
    cafile: Path | None = None
    require_client_certificate: bool = False

    @field_validator("certfile", "keyfile", "cafile")
    @classmethod
    def _must_exist(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {path}")
        return path


class MqttConfig(_Section):
    host: str = "0.0.0.0"
    port: Port = 1883
    tls: TlsListenerConfig | None = None
    max_connections: int = Field(default=10_000, ge=1)
    max_packet_size: int = Field(default=1_048_576, ge=64, le=268_435_460)
    max_inflight_messages: int = Field(default=20, ge=1, le=65_535)
    max_queued_messages: int = Field(default=1_000, ge=0)
    write_buffer_limit: int = Field(default=1_048_576, ge=4_096)
    connect_timeout: Seconds = 10.0


class StaticUser(_Section):
    username: str = Field(min_length=1)
    password_hash: str

    @field_validator("password_hash")
    @classmethod
    def _argon2_only(cls, value: str) -> str:
        if not value.startswith("$argon2"):
            raise ValueError("must be an Argon2 hash as printed by `mqttproxy hash-password`")
        return value


class AuthConfig(_Section):
    allow_anonymous: bool = False
    users: list[StaticUser] = Field(default_factory=list)

    @field_validator("users")
    @classmethod
    def _unique_usernames(cls, users: list[StaticUser]) -> list[StaticUser]:
        seen: set[str] = set()
        for user in users:
            if user.username in seen:
                raise ValueError(f"user {user.username!r} is listed twice")
            seen.add(user.username)
        return users


class UpstreamConfig(_Section):
    # Encrypts upstream passwords in brokers.json; MQTTPROXY_SECRET_KEY overrides it.
    secret_key: SecretStr | None = None
    connect_timeout: Seconds = 10.0

    def effective_secret_key(self) -> str | None:
        from_environment = os.environ.get("MQTTPROXY_SECRET_KEY")
        if from_environment:
            return from_environment
        return self.secret_key.get_secret_value() if self.secret_key is not None else None


def default_gateway_id() -> str:
    """The host name, reduced to characters that are safe in client ids and topics."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "gateway"


class ShadowConfig(_Section):
    # Largest desired + reported of a shadow, in bytes (metadata not counted).
    max_document_bytes: int = Field(default=8192, ge=64)
    max_depth: int = Field(default=6, ge=1, le=32)
    max_client_token_bytes: int = Field(default=64, ge=1)


class TimeseriesConfig(_Section):
    # Write what is queued at least this often (seconds) ...
    flush_interval: Seconds = 1.0
    # ... or as soon as about this many points are waiting.
    flush_points: int = Field(default=1000, ge=1)
    # Messages waiting to be recorded; beyond it new ones are dropped and counted.
    max_queued_messages: int = Field(default=100_000, ge=1)
    # Samples per sealed chunk: larger compresses better, smaller reads less per query.
    chunk_samples: int = Field(default=2048, ge=16, le=65_536)
    # Newest samples held in memory (16 bytes each) until sealed; past it the largest heads are
    # sealed early, in smaller chunks. Raise it for many series to compress better.
    max_head_samples: int = Field(default=2_000_000, ge=1024)
    # Seconds a payload timestamp may be ahead of the gateway's clock before it is refused.
    max_future: Seconds = 300.0
    # Days kept of series that no data config records any more.
    default_retention_days: float = Field(default=30.0, gt=0)
    # Seconds between retention passes.
    retention_interval: Seconds = 3600.0


class WebConfig(_Section):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: Port = 3000
    # The first start creates operator "admin" with this password (MQTTPROXY_ADMIN_PASSWORD
    # overrides it); without one a random password is written once to the log.
    admin_password: SecretStr | None = None
    session_ttl: Seconds = 8 * 3600.0
    # Mark the session cookie Secure: set when the dashboard is served over HTTPS (a proxy).
    cookie_secure: bool = False
    metrics_require_auth: bool = False
    max_body_size: int = Field(default=65_536, ge=1024)

    def effective_admin_password(self) -> str | None:
        from_environment = os.environ.get("MQTTPROXY_ADMIN_PASSWORD")
        if from_environment:
            return from_environment
        return self.admin_password.get_secret_value() or None if self.admin_password is not None else None


class Config(_Section):
    # Names this gateway to upstreams: client id {client_id_prefix}-{gateway_id}.
    gateway_id: str = Field(default_factory=default_gateway_id, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    data_dir: Path = Path("data")
    log_level: LogLevel = "info"
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    timeseries: TimeseriesConfig = Field(default_factory=TimeseriesConfig)
    web: WebConfig = Field(default_factory=WebConfig)


def load_config(path: Path | None) -> Config:
    """Read ``path``; with ``None``, read the default file if present, else use defaults.

    Raises ``ConfigError`` naming the file and the offending key.
    """
    if path is None:
        if not DEFAULT_CONFIG_PATH.is_file():
            return Config()
        path = DEFAULT_CONFIG_PATH
    try:
        with path.open("rb") as file:
            raw = tomllib.load(file)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file", path=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}", path=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", path=str(path)) from exc
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{path}: {key}: {message}{more}", path=str(path), key=key) from exc
