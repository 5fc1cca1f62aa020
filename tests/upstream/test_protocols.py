"""Upstreams over MQTT 5 (with the hop marker) and over TLS."""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import trustme
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqttproxy.upstream.client import HOP_PROPERTY
from mqttproxy.upstream.models import BrokerSettings, Route
from tests.helpers import TIMEOUT, ThreadedGateway, paho_client, wait_until
from tests.mosquitto import Mosquitto, free_port
from tests.upstream.util import add, record, status, upstream_subscriber, wait_state

MosquittoFactory = Callable[..., Mosquitto]


class V5Client:
    """A paho MQTT 5 client on the upstream, to see and send user properties."""

    def __init__(self, port: int) -> None:
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        connected: queue.Queue[bool] = queue.Queue()
        self.client.on_connect = lambda *_: connected.put(True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        connected.get(timeout=TIMEOUT)

    def subscribe(self, topic_filter: str) -> None:
        done: queue.Queue[Any] = queue.Queue()
        self.client.on_subscribe = lambda *args: done.put(args)
        self.client.subscribe(topic_filter, qos=1)
        done.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes, user_properties: list[tuple[str, str]]) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        if user_properties:
            properties.UserProperty = user_properties
        self.client.publish(topic, payload, qos=1, properties=properties).wait_for_publish(TIMEOUT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt5_upstream_gets_the_hop_marker_and_loops_are_cut(
    gateway: ThreadedGateway, upstream: Mosquitto
) -> None:
    routes = [Route(filter="devices/#"), Route(direction="in", filter="cmd/#")]
    add(gateway, record("v5", upstream, mqtt_version="5", routes=routes))
    wait_state(gateway, "v5")
    watcher = V5Client(upstream.port)
    watcher.subscribe("devices/#")
    device = paho_client(gateway.port, "device")
    device.subscribe("cmd/#", 1)
    device.publish("devices/d1/t", b"1", qos=1)
    message = watcher.messages.get(timeout=TIMEOUT)
    assert message.payload == b"1"
    assert (HOP_PROPERTY, "test-gateway") in message.properties.UserProperty

    # A message that already passed through this gateway is not taken back in.
    watcher.publish("cmd/d1", b"looped", [(HOP_PROPERTY, "test-gateway")])
    watcher.publish("cmd/d1", b"from another gateway", [(HOP_PROPERTY, "gateway-b")])
    watcher.publish("cmd/d1", b"from an application", [])
    assert device.get().payload == b"from another gateway"
    assert device.get().payload == b"from an application"
    device.assert_no_message()
    assert status(gateway, "v5")["received"] == 2
    watcher.close()
    device.disconnect()


@pytest.mark.parametrize(
    ("fields", "logged"),
    [
        ({}, "(p2, c1, k60)"),
        ({"mqtt_version": "5", "clean_session": False, "keepalive": 17}, "(p5, c0, k17)"),
    ],
    ids=["defaults", "v5-persistent-k17"],
)
def test_version_clean_session_and_keepalive_reach_the_upstream(
    gateway: ThreadedGateway, upstream: Mosquitto, fields: dict[str, Any], logged: str
) -> None:
    add(gateway, record("cloud", upstream, **fields))
    wait_state(gateway, "cloud")
    # Mosquitto logs each client's protocol version, clean session flag and keep-alive.
    assert f"as mqttproxy-test-gateway {logged}." in upstream.log()


def test_tls_upstream_with_ca(
    gateway: ThreadedGateway, mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    tls_port = free_port()
    upstream = mosquitto_factory(
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {paths['ca']}\ncertfile {paths['cert']}\nkeyfile {paths['key']}\n"
    )
    watcher = upstream_subscriber(upstream)  # on the plain listener of the same broker
    add(gateway, record("tls", upstream, port=tls_port, use_tls=True, ca_cert_path=paths["ca"]))
    wait_state(gateway, "tls")
    device = paho_client(gateway.port, "device")
    device.publish("secure/t", b"over tls", qos=1)
    assert watcher.get().payload == b"over tls"

    # Without the CA the certificate is not trusted...
    add(gateway, record("untrusted", upstream, port=tls_port, use_tls=True))
    wait_state(gateway, "untrusted", "backoff")
    assert "CERTIFICATE_VERIFY_FAILED" in (status(gateway, "untrusted")["last_error"] or "")
    # ... unless the operator says to skip verification.
    add(gateway, record("insecure", upstream, port=tls_port, use_tls=True, insecure_skip_verify=True))
    wait_state(gateway, "insecure")
    device.disconnect()
    watcher.disconnect()


def test_tls_upstream_requiring_a_client_certificate(
    gateway: ThreadedGateway, mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("gateway-7")
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key", "client", "client-key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client"]))
    client.private_key_pem.write_to_path(str(paths["client-key"]))
    tls_port = free_port()
    upstream = mosquitto_factory(
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {paths['ca']}\ncertfile {paths['cert']}\nkeyfile {paths['key']}\n"
        "require_certificate true\n"
    )
    tls = {"port": tls_port, "use_tls": True, "ca_cert_path": paths["ca"]}
    add(gateway, record("without", upstream, **tls))
    add(
        gateway,
        record(
            "with", upstream, client_cert_path=paths["client"], client_key_path=paths["client-key"], **tls
        ),
    )
    wait_state(gateway, "with")
    wait_until(lambda: status(gateway, "without")["last_error"] is not None)
    assert status(gateway, "without")["state"] != "connected"


def test_unusable_ca_file_puts_only_that_link_in_backoff_until_replaced(
    gateway: ThreadedGateway, mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    """A CA file that exists but holds no certificate: an error in the status, not a dead link."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    ca_file, cert, key = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    ca_file.write_text("not a certificate\n")
    tls_port = free_port()
    upstream = mosquitto_factory(f"listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n")
    watcher = upstream_subscriber(upstream)
    add(gateway, record("plain", upstream))
    tls = record("tls", upstream, port=tls_port, use_tls=True, ca_cert_path=ca_file)
    add(gateway, tls)
    wait_state(gateway, "tls", "backoff")
    expected = f"ca_cert_path {ca_file}: cannot be loaded (NO_CERTIFICATE_OR_CRL_FOUND)"
    assert status(gateway, "tls")["last_error"] == expected
    result = gateway.run(gateway.gateway.fanout.test_connection(tls.settings()))  # type: ignore[union-attr]
    assert (result.ok, result.message) == (False, expected)

    # The other link and the devices carry on.
    wait_state(gateway, "plain")
    device = paho_client(gateway.port, "device")
    device.publish("t", b"still flowing", qos=1)
    assert watcher.get().payload == b"still flowing"

    # The file is read again at every attempt: replacing it is enough.
    ca.cert_pem.write_to_path(str(ca_file))
    wait_state(gateway, "tls")
    wait_until(lambda: status(gateway, "tls")["forwarded"] == 1)
    assert watcher.get().payload == b"still flowing"  # the copy the tls link kept queued
    device.disconnect()
    watcher.disconnect()


def test_client_key_not_matching_the_certificate_is_reported(
    gateway: ThreadedGateway, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert, other_key = tmp_path / "client.pem", tmp_path / "other-key.pem"
    ca.issue_cert("gateway-7").cert_chain_pems[0].write_to_path(str(cert))
    ca.issue_cert("someone-else").private_key_pem.write_to_path(str(other_key))
    settings = BrokerSettings(
        name="mismatch",
        address="127.0.0.1",
        port=free_port(),
        use_tls=True,
        client_cert_path=cert,
        client_key_path=other_key,
    )
    result = gateway.run(gateway.gateway.fanout.test_connection(settings))  # type: ignore[union-attr]
    assert result.ok is False
    assert result.message == (
        f"client_cert_path {cert} with client_key_path {other_key}: cannot be loaded (KEY_VALUES_MISMATCH)"
    )
