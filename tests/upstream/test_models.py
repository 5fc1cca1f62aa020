"""Upstream broker records: defaults, every validation rule, addresses and the password-free view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from mqttproxy.upstream.models import BrokerRecord, BrokerSettings, Route, split_host_port
from mqttproxy.upstream.routes import Resolved

SECRET = "s3cr3t-Pa55w0rd"
EXISTING = "<existing file>"  # replaced by a real file under tmp_path


def test_settings_defaults() -> None:
    settings = BrokerSettings(name="n", address="h")
    assert settings.port == 1883
    assert settings.failover == []
    assert settings.username is None
    assert settings.password is None
    assert settings.enabled
    assert not settings.use_tls
    assert settings.mqtt_version == "3.1.1"
    assert settings.routes == [Route(direction="out", filter="#")]
    route = settings.routes[0]
    assert (route.exclude, route.remap, route.max_qos, route.retain) == ([], None, 2, True)
    assert settings.max_qos == 1
    assert settings.reconnect_min_delay <= settings.reconnect_max_delay
    assert settings.addresses() == [("h", 1883)]


def test_record_defaults_and_default_routes_are_not_shared() -> None:
    first = BrokerRecord(id="b1", name="n", address="h")
    second = BrokerRecord(id="b2", name="n", address="h")
    assert first.id == "b1"
    assert first.routes == [Route(filter="#")]
    assert first.routes is not second.routes
    assert first.outbound().resolve("a/b") == Resolved("a/b", b"a/b", 2, True)
    assert not first.inbound()


def test_outbound_and_inbound_split_routes_by_direction() -> None:
    settings = BrokerSettings(
        name="n",
        address="h",
        routes=[
            Route(filter="devices/+/telemetry", remap="site7/{1}/t", max_qos=1, retain=False),
            Route(direction="in", filter="cmd/#", remap="devices/{1}/cmd"),
        ],
    )
    assert settings.outbound().resolve("devices/d1/telemetry") == Resolved(
        "site7/d1/t", b"site7/d1/t", 1, False
    )
    assert settings.outbound().resolve("cmd/d1") is None
    assert settings.inbound().resolve("cmd/d1") == Resolved("devices/d1/cmd", b"devices/d1/cmd", 2, True)


VALID_ROUTE = {"filter": "a/+"}

# (id, fields over a valid record, pydantic error location, text in the message)
REJECTIONS: list[tuple[str, dict[str, Any], tuple[str | int, ...], str]] = [
    ("port-0", {"port": 0}, ("port",), "greater than or equal to 1"),
    ("port-65536", {"port": 65536}, ("port",), "less than or equal to 65535"),
    ("port-text", {"port": "x"}, ("port",), "integer"),
    ("unknown-field", {"bogus": 1}, ("bogus",), "Extra inputs"),
    ("id-space", {"id": "a b"}, ("id",), "pattern"),
    ("id-too-long", {"id": "x" * 65}, ("id",), "pattern"),
    ("id-empty", {"id": ""}, ("id",), "pattern"),
    ("id-leading-dash", {"id": "-a"}, ("id",), "pattern"),
    ("id-trailing-newline", {"id": "a\n"}, ("id",), "pattern"),
    ("id-slash", {"id": "a/b"}, ("id",), "pattern"),
    ("id-missing", {"id": None}, ("id",), "Field required"),
    ("name-empty", {"name": ""}, ("name",), "at least 1"),
    ("address-empty", {"address": ""}, ("address",), "at least 1"),
    ("address-empty-label", {"address": "mqtt..example"}, ("address",), "not a host name or IP address"),
    ("address-long-label", {"address": "a" * 64 + ".example"}, ("address",), "not a host name"),
    ("address-space", {"address": "mqtt example"}, ("address",), "not a host name"),
    ("address-with-port", {"address": "mqtt.example:8883"}, ("address",), "not a host name"),
    ("address-url", {"address": "mqtt://mqtt.example"}, ("address",), "not a host name"),
    ("keepalive-low", {"keepalive": 4}, ("keepalive",), "greater than or equal to 5"),
    ("max-qos-3", {"max_qos": 3}, ("max_qos",), "less than or equal to 2"),
    ("mqtt-version", {"mqtt_version": "3.1"}, ("mqtt_version",), "'3.1.1' or '5'"),
    ("queue-bytes", {"queue_max_bytes": 1023}, ("queue_max_bytes",), "1024"),
    ("ack-timeout-0", {"ack_timeout": 0}, ("ack_timeout",), "greater than 0"),
    ("ack-timeout-inf", {"ack_timeout": float("inf")}, ("ack_timeout",), "finite number"),
    ("ack-timeout-nan", {"ack_timeout": "nan"}, ("ack_timeout",), "finite number"),
    (
        "reconnect-max-inf",
        {"reconnect_max_delay": "Infinity"},
        ("reconnect_max_delay",),
        "finite number",
    ),
    ("route-hash-middle", {"routes": [{"filter": "a/#/b"}]}, ("routes", 0, "filter"), "'#' must be"),
    ("route-plus-in-level", {"routes": [{"filter": "a+/b"}]}, ("routes", 0, "filter"), "whole topic level"),
    ("route-hash-in-level", {"routes": [{"filter": "a/b#"}]}, ("routes", 0, "filter"), "whole topic level"),
    ("route-empty-filter", {"routes": [{"filter": ""}]}, ("routes", 0, "filter"), "at least one"),
    ("route-nul", {"routes": [{"filter": "a\x00"}]}, ("routes", 0, "filter"), "U+0000"),
    ("route-no-filter", {"routes": [{}]}, ("routes", 0, "filter"), "Field required"),
    (
        "exclude-misplaced-hash",
        {"routes": [{"filter": "#", "exclude": ["ok", "a/#/b"]}]},
        ("routes", 0, "exclude"),
        "'#' must be",
    ),
    (
        "exclude-plus-in-level",
        {"routes": [{"filter": "#", "exclude": ["a/b+"]}]},
        ("routes", 0, "exclude"),
        "whole topic level",
    ),
    (
        "second-route-bad",
        {"routes": [VALID_ROUTE, {"filter": "x", "max_qos": 3}]},
        ("routes", 1, "max_qos"),
        "less than or equal to 2",
    ),
    (
        "route-direction",
        {"routes": [{"filter": "a", "direction": "both"}]},
        ("routes", 0, "direction"),
        "'out'",
    ),
    ("route-unknown-field", {"routes": [{"filter": "a", "qos": 1}]}, ("routes", 0, "qos"), "Extra inputs"),
    (
        "remap-beyond-wildcards",
        {"routes": [{"filter": "a/+", "remap": "x/{2}"}]},
        ("routes", 0, "remap"),
        "uses {2} but 'a/+' has 1",
    ),
    (
        "remap-no-wildcards",
        {"routes": [{"filter": "a", "remap": "{1}"}]},
        ("routes", 0, "remap"),
        "has 0 wildcard",
    ),
    (
        "remap-wildcard",
        {"routes": [{"filter": "a/+", "remap": "x/+"}]},
        ("routes", 0, "remap"),
        "remap 'x/+'",
    ),
    ("remap-empty", {"routes": [{"filter": "a/+", "remap": ""}]}, ("routes", 0, "remap"), "cannot be empty"),
    (
        "exclude-on-in-route",
        {"routes": [{"direction": "in", "filter": "#", "exclude": ["a"]}]},
        ("routes", 0, "exclude"),
        "exclude applies to out routes only",
    ),
    ("password-no-username", {"password": "p"}, ("password",), "password needs a username"),
    (
        "cert-without-key",
        {"client_cert_path": EXISTING},
        ("client_key_path",),
        "client_cert_path and client_key_path go together",
    ),
    (
        "key-without-cert",
        {"client_key_path": EXISTING},
        ("client_key_path",),
        "client_cert_path and client_key_path go together",
    ),
    ("ca-missing", {"ca_cert_path": "/nonexistent/ca.pem"}, ("ca_cert_path",), "no such file"),
    (
        "client-cert-missing",
        {"client_cert_path": "/nonexistent/c.pem", "client_key_path": EXISTING},
        ("client_cert_path",),
        "no such file",
    ),
    (
        "client-key-missing",
        {"client_cert_path": EXISTING, "client_key_path": "/nonexistent/k.pem"},
        ("client_key_path",),
        "no such file",
    ),
    ("ca-is-directory", {"ca_cert_path": "<tmp_path>"}, ("ca_cert_path",), "no such file"),
    (
        "reconnect-min-above-max",
        {"reconnect_min_delay": 5, "reconnect_max_delay": 1},
        ("reconnect_max_delay",),
        "smaller than reconnect_min_delay",
    ),
    ("reconnect-min-0", {"reconnect_min_delay": 0}, ("reconnect_min_delay",), "greater than 0"),
    ("failover-port-0", {"failover": ["h:0"]}, ("failover",), "'h:0': bad port"),
    ("failover-port-high", {"failover": ["ok", "h:65536"]}, ("failover",), "'h:65536': bad port"),
    ("failover-port-text", {"failover": ["h:x"]}, ("failover",), "bad port"),
    ("failover-no-host", {"failover": [":1883"]}, ("failover",), "no host"),
    ("failover-bad-host", {"failover": ["ok", "b..d:1883"]}, ("failover",), "'b..d' is not a host name"),
    ("failover-empty", {"failover": [""]}, ("failover",), "no host"),
    ("failover-v6-junk", {"failover": ["[::1]x"]}, ("failover",), "expected [host] or [host]:port"),
    ("failover-not-list", {"failover": "h"}, ("failover",), "valid list"),
]


def _record_fields(fields: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    existing = tmp_path / "existing.pem"
    existing.write_text("x")
    data: dict[str, Any] = {"id": "b1", "name": "n", "address": "h"}
    for key, value in fields.items():
        if value is None:
            data.pop(key)
        else:
            placeholders = {EXISTING: str(existing), "<tmp_path>": str(tmp_path)}
            data[key] = placeholders.get(value, value) if isinstance(value, str) else value
    return data


@pytest.mark.parametrize(
    ("fields", "loc", "message"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_record_rejects(
    fields: dict[str, Any], loc: tuple[str | int, ...], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError) as caught:
        BrokerRecord.model_validate(_record_fields(fields, tmp_path))
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    assert errors[0]["loc"] == loc
    assert message in errors[0]["msg"]


@pytest.mark.parametrize(
    "fields",
    [
        {"port": 1},
        {"port": 65535},
        {"id": "A.b_c-9"},
        {"id": "x" * 64},
        {"reconnect_min_delay": 60.0},
        {"address": "a" * 63 + ".example."},
        {"address": "compose_service-1"},
        {"address": "b\u00fccher.example"},
        {"address": "fe80::1"},
        {"address": "192.0.2.7"},
    ],
    ids=[
        "port-1",
        "port-65535",
        "id-punctuation",
        "id-64",
        "reconnect-equal",
        "address-63-label-root-dot",
        "address-underscore",
        "address-idn",
        "address-v6",
        "address-v4",
    ],
)
def test_record_accepts_limits(fields: dict[str, Any], tmp_path: Path) -> None:
    BrokerRecord.model_validate(_record_fields(fields, tmp_path))


def test_settings_accept_existing_tls_files(tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("x")
    settings = BrokerSettings(
        name="n",
        address="h",
        use_tls=True,
        ca_cert_path=files["ca"],
        client_cert_path=files["cert"],
        client_key_path=files["key"],
    )
    assert settings.ca_cert_path == files["ca"]
    assert settings.public()["client_key_path"] == str(files["key"])


def test_settings_reject_id() -> None:
    with pytest.raises(ValidationError) as caught:
        BrokerSettings.model_validate({"name": "n", "address": "h", "id": "b1"})
    assert caught.value.errors()[0]["loc"] == ("id",)


SPLITS = [
    ("host", "h", ("h", 8883)),
    ("host-port", "h:1884", ("h", 1884)),
    ("host-port-max", "h:65535", ("h", 65535)),
    ("host-port-1", "h:1", ("h", 1)),
    ("ipv4-port", "10.0.0.1:80", ("10.0.0.1", 80)),
    ("v6", "[::1]", ("::1", 8883)),
    ("v6-port", "[fe80::1]:1884", ("fe80::1", 1884)),
    ("bare-v6", "fe80::1", ("fe80::1", 8883)),
]


@pytest.mark.parametrize(("entry", "expected"), [s[1:] for s in SPLITS], ids=[s[0] for s in SPLITS])
def test_split_host_port(entry: str, expected: tuple[str, int]) -> None:
    assert split_host_port(entry, 8883) == expected


BAD_SPLITS = [
    ("port-0", "h:0", "bad port"),
    ("port-65536", "h:65536", "bad port"),
    ("port-text", "h:x", "bad port"),
    ("port-negative", "h:-1", "bad port"),
    ("port-plus", "h:+1", "bad port"),
    ("port-space", "h: 1", "bad port"),
    ("v6-port-0", "[::1]:0", "bad port"),
    ("v6-port-text", "[::1]:x", "bad port"),
    ("v6-junk", "[::1]x", r"expected \[host\] or \[host\]:port"),
    ("empty-port", "host:", "bad port"),
    ("v6-empty-port", "[::1]:", "bad port"),
    ("empty", "", "no host"),
    ("no-host", ":1883", "no host"),
    ("v6-empty", "[]", "no host"),
    ("v6-empty-port", "[]:1883", "no host"),
    ("empty-label", "b..d:1883", "'b..d' is not a host name or IP address"),
    ("space", "b d", "is not a host name"),
    ("v6-not-an-address", "[b d]:1883", "is not a host name"),
    ("two-colons-not-v6", "h:1:2", "'h:1:2' is not a host name"),
]


@pytest.mark.parametrize(("entry", "message"), [b[1:] for b in BAD_SPLITS], ids=[b[0] for b in BAD_SPLITS])
def test_split_host_port_rejects(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_host_port(entry, 1883)


def test_split_host_port_rejects_unclosed_bracket() -> None:
    with pytest.raises(ValueError, match="address"):
        split_host_port("[::1", 1883)


@pytest.mark.parametrize(
    "entry",
    ["h:\u0661\u0662", "h:\uff11\uff12", "[::1]:\u0661\u0662"],
    ids=["arabic-indic", "fullwidth", "v6-arabic-indic"],
)
def test_split_host_port_rejects_non_ascii_digits(entry: str) -> None:
    # str.isdigit() alone would accept other scripts' digits, and int() reads them.
    with pytest.raises(ValueError, match="bad port"):
        split_host_port(entry, 1883)


def test_addresses_order_and_default_ports() -> None:
    settings = BrokerSettings(
        name="n",
        address="main",
        port=1884,
        failover=["b", "c:1900", "[fe80::1]", "[fe80::2]:1901", "10.0.0.9"],
    )
    assert settings.addresses() == [
        ("main", 1884),
        ("b", 1884),
        ("c", 1900),
        ("fe80::1", 1884),
        ("fe80::2", 1901),
        ("10.0.0.9", 1884),
    ]


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [*map(str, value), *(s for item in value.values() for s in _strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [str(value)]


def test_public_never_contains_the_password() -> None:
    settings = BrokerSettings(
        name="n",
        address="h",
        username="user",
        password=SecretStr(SECRET),
        routes=[Route(filter="a/#", remap="b/{1}")],
        failover=["f:1"],
    )
    public = settings.public()
    assert "password" not in public
    assert public["has_password"] is True
    assert public["username"] == "user"
    assert public["routes"] == [
        {"direction": "out", "filter": "a/#", "exclude": [], "remap": "b/{1}", "max_qos": 2, "retain": True}
    ]
    assert not any(SECRET in text for text in _strings(public))
    assert SECRET not in json.dumps(public)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings.model_dump())  # SecretStr stays masked


def test_public_without_password() -> None:
    public = BrokerSettings(name="n", address="h").public()
    assert public["has_password"] is False
    assert "password" not in public
    json.dumps(public)  # JSON-ready


def test_record_create_and_settings_round_trip_keep_the_password(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = BrokerSettings(
        name="n",
        address="h",
        port=8883,
        username="user",
        password=SecretStr(SECRET),
        use_tls=True,
        ca_cert_path=ca,
        failover=["[::1]:1"],
        routes=[Route(filter="a/#", exclude=["a/x"], remap="b/{1}"), Route(direction="in", filter="c")],
    )
    record = BrokerRecord.create("b1", settings)
    assert record.id == "b1"
    assert record.password is not None
    assert record.password.get_secret_value() == SECRET
    assert record.public()["id"] == "b1"
    back = record.settings()
    assert type(back) is BrokerSettings
    assert back == settings
    assert back.password is not None
    assert back.password.get_secret_value() == SECRET
    assert BrokerRecord.create("b1", back) == record


def test_record_create_validates_the_id() -> None:
    with pytest.raises(ValidationError) as caught:
        BrokerRecord.create("bad id", BrokerSettings(name="n", address="h"))
    assert caught.value.errors()[0]["loc"] == ("id",)


def test_records_are_frozen() -> None:
    record = BrokerRecord(id="b1", name="n", address="h")
    with pytest.raises(ValidationError):
        record.port = 1  # type: ignore[misc]
