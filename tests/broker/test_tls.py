"""The TLS listener: server certificate, optional and required client certificates."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import trustme
from paho.mqtt.enums import CallbackAPIVersion

from mqttproxy.protocol.codec import Decoder, encode_packet
from mqttproxy.protocol.packets import Connack, Connect
from tests.helpers import RawClient, ThreadedGateway, paho_client, wait_until


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_config(tmp_path: Path, ca: trustme.CA, *, require_client_certificate: bool) -> dict[str, object]:
    server = ca.issue_cert("127.0.0.1", "localhost")
    certfile = tmp_path / "server.pem"
    keyfile = tmp_path / "server.key"
    cafile = tmp_path / "ca.pem"
    server.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    server.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return {
        "tls": {
            "port": 0,
            "certfile": certfile,
            "keyfile": keyfile,
            "cafile": cafile,
            "require_client_certificate": require_client_certificate,
        }
    }


def _tls_port(gateway: ThreadedGateway) -> int:
    return next(listener.port for listener in gateway.broker.listeners if listener.kind == "tls")


def _client_context(ca: trustme.CA, tmp_path: Path, *, with_certificate: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if with_certificate:
        ca.issue_cert("device-1").configure_cert(context)
    return context


def _mqtt_over_tls(port: int, context: ssl.SSLContext) -> Connack:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(encode_packet(Connect(client_id="tls-device")))
        decoder = Decoder()
        while (packet := decoder.next_packet()) is None:
            data = sock.recv(4096)
            assert data, "closed before CONNACK"
            decoder.receive_data(data)
        assert isinstance(packet, Connack)
        return packet


def test_tls_listener_serves_mqtt(
    gateway_factory: Callable[..., ThreadedGateway],
    tmp_path: Path,
    ca: trustme.CA,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mqttproxy.broker")
    gateway = gateway_factory(mqtt=_tls_config(tmp_path, ca, require_client_certificate=False))
    port = _tls_port(gateway)
    assert port != gateway.port
    # Port 0 binds a free port; the log says which, one line per listener.
    assert f"listening mqtt tcp 127.0.0.1:{gateway.port}" in caplog.messages
    assert f"listening mqtt tls 127.0.0.1:{port}" in caplog.messages
    context = _client_context(ca, tmp_path, with_certificate=False)
    assert _mqtt_over_tls(port, context) == Connack()
    # Plain and TLS clients share one broker.
    subscriber = paho_client(gateway.port, "plain-sub")
    subscriber.subscribe("tls/#", 1)
    tls_client = paho.Client(CallbackAPIVersion.VERSION2, client_id="tls-pub", protocol=paho.MQTTv311)
    tls_client.tls_set_context(context)
    tls_client.connect("127.0.0.1", port)
    tls_client.loop_start()
    info = tls_client.publish("tls/reading", b"encrypted", qos=1)
    info.wait_for_publish(5)
    assert subscriber.get().payload == b"encrypted"
    tls_client.disconnect()
    tls_client.loop_stop()
    subscriber.disconnect()


def test_untrusted_client_certificate_is_refused_when_required(
    gateway_factory: Callable[..., ThreadedGateway], tmp_path: Path, ca: trustme.CA
) -> None:
    gateway = gateway_factory(mqtt=_tls_config(tmp_path, ca, require_client_certificate=True))
    port = _tls_port(gateway)
    with_certificate = _client_context(ca, tmp_path, with_certificate=True)
    assert _mqtt_over_tls(port, with_certificate) == Connack()

    without_certificate = _client_context(ca, tmp_path, with_certificate=False)
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        _mqtt_over_tls(port, without_certificate)

    stranger = trustme.CA()  # a certificate from a CA the gateway does not trust
    context = ssl.create_default_context()
    ca.configure_trust(context)
    stranger.issue_cert("intruder").configure_cert(context)
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        _mqtt_over_tls(port, context)
    # A failed handshake leaves nothing behind.
    wait_until(lambda: gateway.call(lambda: gateway.broker.connection_count) == 0)


def test_plain_bytes_on_the_tls_port_are_dropped(
    gateway_factory: Callable[..., ThreadedGateway], tmp_path: Path, ca: trustme.CA
) -> None:
    gateway = gateway_factory(mqtt=_tls_config(tmp_path, ca, require_client_certificate=False))
    with RawClient(_tls_port(gateway)) as client:
        client.send(Connect(client_id="not-tls"))
        client.assert_closed()
    paho_client(gateway.port, "still-fine").disconnect()
