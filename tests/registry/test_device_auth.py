"""Devices authenticate with their registry token; refusals carry the right CONNACK code."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

import pytest
import trustme

from mqttproxy.protocol.packets import Connack, ConnectReturnCode
from mqttproxy.registry.tokens import ALPHABET, token_hash
from tests.helpers import RawClient, ThreadedGateway, make_config, paho_client, running_gateway, wait_until
from tests.registry.util import add_device, add_tenant, registry

GatewayFactory = Callable[..., ThreadedGateway]
REFUSED_CREDENTIALS = ConnectReturnCode.BAD_USERNAME_OR_PASSWORD
NOT_AUTHORIZED = ConnectReturnCode.NOT_AUTHORIZED


@pytest.fixture
def secured(gateway_factory: GatewayFactory) -> ThreadedGateway:
    """A gateway that lets no anonymous client in."""
    return gateway_factory(allow_anonymous=False)


def _connect(
    gateway: ThreadedGateway, username: str | None, password: str | None, *, source: str | None = None
) -> Connack:
    with RawClient(gateway.port, source=source) as client:
        return client.connect(
            f"c-{username}", username=username, password=password.encode() if password is not None else None
        )


def test_token_format_and_acceptance(secured: ThreadedGateway) -> None:
    add_tenant(secured)
    device, token = add_device(secured, "sensor-1")
    assert device.has_token
    parts = token.split("-")
    assert [len(part) for part in parts] == [4, 4, 4]
    # About 70 bits, in letters that cannot be mistaken for one another when typed.
    assert len(set(ALPHABET)) == len(ALPHABET) == 56
    assert not set("0O1lIo") & set(ALPHABET)
    assert set("".join(parts)) <= set(ALPHABET)
    assert _connect(secured, "sensor-1", token) == Connack()


def test_a_token_is_stored_only_as_a_keyed_hash_and_never_logged(
    secured: ThreadedGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mqttproxy")
    add_tenant(secured)
    _, first = add_device(secured, "sensor-1")
    second = secured.run(registry(secured).regenerate_token("sensor-1"))
    assert _connect(secured, "sensor-1", second) == Connack()
    data_dir = secured.config.data_dir
    key_file = data_dir / "registry.key"
    assert key_file.stat().st_mode & 0o777 == 0o600  # the key is the installation's secret
    with sqlite3.connect(data_dir / "mqttproxy.db") as connection:
        (stored,) = connection.execute("SELECT token_hash FROM device_tokens").fetchall()[0]
    connection.close()
    assert stored == token_hash(key_file.read_bytes(), second)
    on_disk = b"".join(path.read_bytes() for path in data_dir.glob("mqttproxy.db*"))
    for token in (first, second):
        assert token.encode() not in on_disk
        assert token not in caplog.text


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        pytest.param("sensor-1", "aaaa-bbbb-cccc", REFUSED_CREDENTIALS, id="wrong-token"),
        pytest.param("sensor-1", None, REFUSED_CREDENTIALS, id="no-password"),
        pytest.param("ghost", "aaaa-bbbb-cccc", REFUSED_CREDENTIALS, id="unknown-device"),
        pytest.param(None, None, NOT_AUTHORIZED, id="no-credentials"),
    ],
)
def test_refusals(
    secured: ThreadedGateway,
    caplog: pytest.LogCaptureFixture,
    username: str | None,
    password: str | None,
    code: int,
) -> None:
    caplog.set_level(logging.DEBUG, logger="mqttproxy")
    add_tenant(secured)
    _, token = add_device(secured, "sensor-1")
    assert _connect(secured, username, password).return_code == code
    assert secured.call(lambda: secured.broker.stats.auth_failures) == 1
    assert token not in caplog.text
    if password:
        assert password not in caplog.text  # never logged with the secret


def test_disabled_device_and_expired_token_are_not_authorized(secured: ThreadedGateway) -> None:
    add_tenant(secured)
    _, token = add_device(secured, "off", enabled=False)
    assert _connect(secured, "off", token).return_code == NOT_AUTHORIZED
    _, old_token = add_device(secured, "expired", token_expires_at=time.time() - 1)
    assert _connect(secured, "expired", old_token).return_code == NOT_AUTHORIZED


def test_regenerating_the_token_invalidates_the_old_one_at_once(secured: ThreadedGateway) -> None:
    add_tenant(secured)
    _, old = add_device(secured, "sensor-1")
    device = paho_client(secured.port, "sensor-1", username="sensor-1", password=old)
    new = secured.run(registry(secured).regenerate_token("sensor-1"))
    assert new != old
    assert device.disconnects.get(timeout=5) != 0  # the connected device was kicked
    device.client.loop_stop()
    assert _connect(secured, "sensor-1", old).return_code == REFUSED_CREDENTIALS
    assert _connect(secured, "sensor-1", new) == Connack()


def test_disabling_or_deleting_kicks_the_connected_device(secured: ThreadedGateway) -> None:
    add_tenant(secured)
    _, first = add_device(secured, "first")
    _, second = add_device(secured, "second")
    one = paho_client(secured.port, "first", username="first", password=first)
    two = paho_client(secured.port, "second", username="second", password=second)
    secured.run(registry(secured).set_enabled("first", False))
    assert one.disconnects.get(timeout=5) != 0
    secured.run(registry(secured).delete_device("second"))
    assert two.disconnects.get(timeout=5) != 0
    for client in (one, two):
        client.client.loop_stop()
    assert _connect(secured, "first", first).return_code == NOT_AUTHORIZED
    assert _connect(secured, "second", second).return_code == REFUSED_CREDENTIALS


def test_failed_logins_are_rate_limited_per_device(secured: ThreadedGateway) -> None:
    add_tenant(secured)
    _, token = add_device(secured, "target")
    # One wrong token from each of ten addresses: no address reaches the limit, the device does.
    for host in range(1, 11):
        refused = _connect(secured, "target", "xxxx-xxxx-xxxx", source=f"127.0.1.{host}")
        assert refused.return_code == REFUSED_CREDENTIALS
    # Even the right token, from an address that never failed, waits now.
    assert _connect(secured, "target", token, source="127.0.2.1").return_code == NOT_AUTHORIZED
    assert secured.call(lambda: secured.broker.stats.auth_failures) == 11


def test_failed_logins_are_rate_limited_per_address(secured: ThreadedGateway) -> None:
    add_tenant(secured)
    _, token = add_device(secured, "sensor-1")
    # Ten unknown devices from one address: no device reaches the limit, the address does.
    for number in range(10):
        refused = _connect(secured, f"guess-{number}", "xxxx-xxxx-xxxx", source="127.0.3.1")
        assert refused.return_code == REFUSED_CREDENTIALS
    assert _connect(secured, "sensor-1", token, source="127.0.3.1").return_code == NOT_AUTHORIZED
    # The same device from another address is let in: the device itself never failed.
    assert _connect(secured, "sensor-1", token, source="127.0.3.2") == Connack()


def test_a_token_for_a_device_of_a_certificate_tenant_is_not_authorized(secured: ThreadedGateway) -> None:
    add_tenant(secured, "plant", auth_mode="certificate", ca_cert=trustme.CA().cert_pem.bytes().decode())
    add_tenant(secured, "acme")
    add_device(secured, "press-7", tenant_id="plant")
    _, token = add_device(secured, "sensor-1")
    assert _connect(secured, "press-7", token).return_code == NOT_AUTHORIZED


def test_static_users_keep_working_beside_the_registry(gateway_factory: GatewayFactory) -> None:
    from mqttproxy.passwords import hash_password

    gateway = gateway_factory(
        allow_anonymous=False, users=[{"username": "ops", "password_hash": hash_password("pw")}]
    )
    add_tenant(gateway)
    _, token = add_device(gateway, "sensor-1")
    assert _connect(gateway, "ops", "pw") == Connack()
    assert _connect(gateway, "sensor-1", token) == Connack()


def test_presence_is_tracked_and_recorded(secured: ThreadedGateway) -> None:
    add_tenant(secured)
    _, token = add_device(secured, "sensor-1")
    device = paho_client(secured.port, "sensor-1", username="sensor-1", password=token)
    wait_until(lambda: secured.run(registry(secured).device("sensor-1")).online)
    device.disconnect()
    wait_until(lambda: not secured.run(registry(secured).device("sensor-1")).online)
    secured.run(registry(secured)._write_presence())
    seen = secured.run(registry(secured).device("sensor-1"))
    assert seen.last_seen is not None
    assert seen.last_seen == pytest.approx(time.time(), abs=10)
    assert (seen.last_address or "").startswith("127.0.0.1:")


def test_registry_survives_restart(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    config = make_config(tmp_path, allow_anonymous=False)
    with running_gateway(config) as gateway:
        add_tenant(gateway)
        _, token = add_device(gateway, "sensor-1", labels=["hall"])
    with running_gateway(config) as gateway:
        assert _connect(gateway, "sensor-1", token) == Connack()
        device = gateway.run(registry(gateway).device("sensor-1"))
        assert device.labels == ["hall"]
        assert [tenant.id for tenant in registry(gateway).tenants()] == ["acme"]
