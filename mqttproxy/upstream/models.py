"""Upstream broker records: what ``data/brokers.json`` and the REST API hold.

Validated with pydantic; unknown fields are errors. The password is
write-only: it is accepted here but never part of what ``public()`` returns.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from mqttproxy.errors import LocalProtocolError
from mqttproxy.protocol.topics import validate_topic_filter
from mqttproxy.upstream.routes import RouteRule, RouteTable, check_template

BrokerId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
QoSLevel = Annotated[int, Field(ge=0, le=2)]


def _check_filter(value: str) -> str:
    try:
        validate_topic_filter(value)
    except LocalProtocolError as exc:
        raise ValueError(str(exc)) from exc
    return value


class Route(BaseModel):
    """One topic route.

    ``out``: local messages to the upstream; ``in``: upstream messages (subscribed) to local subscribers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    direction: Literal["out", "in"] = "out"
    filter: str = Field(description="topic filter: local for out, on the upstream for in")
    exclude: list[str] = Field(default_factory=list, description="filters not to forward (out only)")
    remap: str | None = Field(default=None, description="topic on the other side: {1}.. captures, {topic}")
    max_qos: QoSLevel = 2
    retain: bool = Field(default=True, description="pass the RETAIN flag through")

    @field_validator("filter")
    @classmethod
    def _valid_filter(cls, value: str) -> str:
        return _check_filter(value)

    @field_validator("exclude")
    @classmethod
    def _valid_excludes(cls, values: list[str], info: ValidationInfo) -> list[str]:
        if values and info.data.get("direction") == "in":
            raise ValueError("exclude applies to out routes only")
        return [_check_filter(value) for value in values]

    @field_validator("remap")
    @classmethod
    def _valid_remap(cls, value: str | None, info: ValidationInfo) -> str | None:
        topic_filter = info.data.get("filter")
        if value is not None and topic_filter is not None:
            check_template(value, topic_filter)
        return value

    def rule(self) -> RouteRule:
        return RouteRule(self.filter, tuple(self.exclude), self.remap, self.max_qos, self.retain)


# One DNS label; "_" too, as container and service names (docker compose) use it.
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def check_host(host: str) -> str:
    """``host`` if it is an IP address or a host name a resolver accepts; ``ValueError`` otherwise.

    Checked here so that a name the resolver would refuse outright (an
    empty or 64-character label, a space) is an error in the record, not
    in a connection attempt.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return host
    try:
        labels = host.encode("idna").decode("ascii").removesuffix(".").split(".")
    except UnicodeError:
        labels = [""]
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{host!r} is not a host name or IP address")
    return host


def split_host_port(entry: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port); ``ValueError`` if malformed."""
    host, port = entry, ""
    has_port = False
    if entry.startswith("["):
        host, closed, rest = entry[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"address {entry!r}: expected [host] or [host]:port")
        has_port, port = bool(rest), rest[1:]
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
        has_port = True
    if not host:
        raise ValueError(f"address {entry!r}: no host")
    check_host(host)
    if not has_port:
        return host, default_port
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"address {entry!r}: bad port")
    return host, int(port)


def _existing_file(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


class BrokerSettings(BaseModel):
    """Everything about one upstream broker but its id (the REST body of create and update)."""

    # No infinite or NaN delays: a backoff of NaN seconds never ends.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=200)
    address: str = Field(min_length=1, max_length=253, description="host name or IP of the upstream")
    port: int = Field(default=1883, ge=1, le=65535)
    failover: list[str] = Field(
        default_factory=list, description="further 'host' or 'host:port' entries tried in turn"
    )
    client_id_prefix: str = Field(default="mqttproxy", min_length=1, max_length=64)
    username: str | None = None
    password: SecretStr | None = None
    enabled: bool = True
    use_tls: bool = False
    insecure_skip_verify: bool = False
    ca_cert_path: Path | None = None
    client_cert_path: Path | None = None
    client_key_path: Path | None = Field(default=None, validate_default=True)  # checked with the cert
    mqtt_version: Literal["3.1.1", "5"] = "3.1.1"
    keepalive: int = Field(default=60, ge=5, le=65535)
    clean_session: bool = True
    routes: list[Route] = Field(default_factory=lambda: [Route(filter="#")])
    max_qos: QoSLevel = Field(default=1, description="QoS cap for everything sent to this upstream")
    queue_max_messages: int = Field(default=100_000, ge=1)
    queue_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    drop_policy: Literal["oldest", "newest"] = "oldest"
    max_inflight: int = Field(default=100, ge=1, le=65_000)
    ack_timeout: float = Field(
        default=30.0, gt=0, description="seconds before an unacknowledged QoS 1/2 is sent again"
    )
    reconnect_min_delay: float = Field(default=0.5, gt=0)
    reconnect_max_delay: float = Field(default=60.0, gt=0)

    _files = field_validator("ca_cert_path", "client_cert_path")(_existing_file)
    _host = field_validator("address")(check_host)

    @field_validator("failover")
    @classmethod
    def _valid_failover(cls, values: list[str]) -> list[str]:
        for value in values:
            split_host_port(value, 1883)
        return values

    @field_validator("password")
    @classmethod
    def _password_needs_username(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and info.data.get("username") is None:
            raise ValueError("a password needs a username")
        return value

    @field_validator("client_key_path")
    @classmethod
    def _key_with_certificate(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if (value is None) != (info.data.get("client_cert_path") is None) and "client_cert_path" in info.data:
            raise ValueError("client_cert_path and client_key_path go together")
        return _existing_file(value)

    @field_validator("reconnect_max_delay")
    @classmethod
    def _delays_in_order(cls, value: float, info: ValidationInfo) -> float:
        minimum = info.data.get("reconnect_min_delay")
        if minimum is not None and minimum > value:
            raise ValueError(f"smaller than reconnect_min_delay ({minimum:g})")
        return value

    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) to try in turn: the address, then the failovers."""
        return [(self.address, self.port), *(split_host_port(entry, self.port) for entry in self.failover)]

    def outbound(self) -> RouteTable:
        return RouteTable([route.rule() for route in self.routes if route.direction == "out"])

    def inbound(self) -> RouteTable:
        return RouteTable([route.rule() for route in self.routes if route.direction == "in"])

    def public(self) -> dict[str, object]:
        """JSON-ready settings without the password (write-only), with whether one is set."""
        data = self.model_dump(mode="json", exclude={"password"})
        data["has_password"] = self.password is not None
        return data


class BrokerRecord(BrokerSettings):
    """A stored upstream broker: its settings and its id."""

    id: BrokerId

    @classmethod
    def create(cls, broker_id: str, settings: BrokerSettings) -> BrokerRecord:
        return cls.model_validate({**settings.model_dump(), "id": broker_id})

    def settings(self) -> BrokerSettings:
        return BrokerSettings.model_validate(self.model_dump(exclude={"id"}))
