"""Certificate tenants: the TLS client certificate names the device, signed by the tenant's CA."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from mqttproxy.protocol.codec import Decoder, encode_packet
from mqttproxy.protocol.packets import Connack, Connect, ConnectReturnCode
from tests.helpers import ThreadedGateway
from tests.registry.util import add_device, add_tenant

GatewayFactory = Callable[..., ThreadedGateway]


@pytest.fixture
def server_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_gateway(gateway_factory: GatewayFactory, tmp_path: Path, server_ca: trustme.CA) -> ThreadedGateway:
    server = server_ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    server.cert_chain_pems[0].write_to_path(str(certfile))
    server.private_key_pem.write_to_path(str(keyfile))
    return gateway_factory(
        allow_anonymous=False, mqtt={"tls": {"port": 0, "certfile": certfile, "keyfile": keyfile}}
    )


def _connect(gateway: ThreadedGateway, server_ca: trustme.CA, identity: trustme.LeafCert | None) -> Connack:
    port = next(listener.port for listener in gateway.broker.listeners if listener.kind == "tls")
    context = ssl.create_default_context()
    server_ca.configure_trust(context)
    if identity is not None:
        identity.configure_cert(context)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(encode_packet(Connect(client_id="by-certificate")))
        decoder = Decoder()
        while (packet := decoder.next_packet()) is None:
            data = sock.recv(4096)
            assert data, "closed before CONNACK"
            decoder.receive_data(data)
    assert isinstance(packet, Connack)
    return packet


def test_device_certificate_from_the_tenant_ca_is_accepted(
    tls_gateway: ThreadedGateway, server_ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mqttproxy.broker")
    tenant_ca = trustme.CA()
    add_tenant(tls_gateway, "plant", auth_mode="certificate", ca_cert=tenant_ca.cert_pem.bytes().decode())
    device, token = add_device(tls_gateway, "press-7", tenant_id="plant")
    assert token == ""  # certificate tenants issue no tokens
    assert not device.has_token
    assert _connect(tls_gateway, server_ca, tenant_ca.issue_cert("press-7")) == Connack()
    assert "client by-certificate connected" in caplog.text
    assert "as device:press-7" in caplog.text


def test_certificate_of_another_tenant_ca_is_refused(
    tls_gateway: ThreadedGateway, server_ca: trustme.CA
) -> None:
    plant_ca, other_ca = trustme.CA(), trustme.CA()
    add_tenant(tls_gateway, "plant", auth_mode="certificate", ca_cert=plant_ca.cert_pem.bytes().decode())
    add_tenant(tls_gateway, "other", auth_mode="certificate", ca_cert=other_ca.cert_pem.bytes().decode())
    add_device(tls_gateway, "press-7", tenant_id="plant")
    # Trusted by the listener (other's CA), but not the device's own tenant's CA.
    refused = _connect(tls_gateway, server_ca, other_ca.issue_cert("press-7"))
    assert refused.return_code == ConnectReturnCode.NOT_AUTHORIZED


def test_unknown_and_disabled_devices_are_refused(
    tls_gateway: ThreadedGateway, server_ca: trustme.CA
) -> None:
    plant_ca = trustme.CA()
    add_tenant(tls_gateway, "plant", auth_mode="certificate", ca_cert=plant_ca.cert_pem.bytes().decode())
    add_device(tls_gateway, "off", tenant_id="plant", enabled=False)
    assert (
        _connect(tls_gateway, server_ca, plant_ca.issue_cert("off")).return_code
        == ConnectReturnCode.NOT_AUTHORIZED
    )
    # No such device and no credentials: not authorized.
    unknown = _connect(tls_gateway, server_ca, plant_ca.issue_cert("nobody"))
    assert unknown.return_code == ConnectReturnCode.NOT_AUTHORIZED


def test_token_device_cannot_use_a_certificate(tls_gateway: ThreadedGateway, server_ca: trustme.CA) -> None:
    plant_ca = trustme.CA()
    add_tenant(tls_gateway, "plant", auth_mode="certificate", ca_cert=plant_ca.cert_pem.bytes().decode())
    add_tenant(tls_gateway, "acme")
    add_device(tls_gateway, "tokened", tenant_id="acme")
    refused = _connect(tls_gateway, server_ca, plant_ca.issue_cert("tokened"))
    assert refused.return_code == ConnectReturnCode.NOT_AUTHORIZED


def test_a_bad_ca_is_refused_when_creating_the_tenant(tls_gateway: ThreadedGateway) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a PEM certificate"):
        add_tenant(
            tls_gateway, "broken", auth_mode="certificate", ca_cert="-----BEGIN CERTIFICATE-----\nnope\n"
        )


def test_the_common_name_comes_before_the_dns_names(
    tls_gateway: ThreadedGateway, server_ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mqttproxy.broker")
    plant_ca = trustme.CA()
    add_tenant(tls_gateway, "plant", auth_mode="certificate", ca_cert=plant_ca.cert_pem.bytes().decode())
    add_device(tls_gateway, "press-7", tenant_id="plant")
    add_device(tls_gateway, "press-8", tenant_id="plant")
    named = plant_ca.issue_cert("press-8", common_name="press-7")
    assert _connect(tls_gateway, server_ca, named) == Connack()
    assert "as device:press-7" in caplog.text
    assert "device:press-8" not in caplog.text


def test_a_certificate_naming_no_device_is_refused(
    tls_gateway: ThreadedGateway, server_ca: trustme.CA
) -> None:
    plant_ca = trustme.CA()
    add_tenant(tls_gateway, "plant", auth_mode="certificate", ca_cert=plant_ca.cert_pem.bytes().decode())
    add_device(tls_gateway, "press-7", tenant_id="plant")
    only_an_address = plant_ca.issue_cert("127.0.0.1")  # no CN, no DNS name
    refused = _connect(tls_gateway, server_ca, only_an_address)
    assert refused.return_code == ConnectReturnCode.NOT_AUTHORIZED
