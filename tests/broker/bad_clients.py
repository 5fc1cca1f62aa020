"""Raw bad clients and a well-behaved bystander, shared by the bad-input and limits tests."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mqttproxy.protocol.codec import encode_remaining_length
from mqttproxy.protocol.packets import (
    ConnectReturnCode,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
)
from tests.helpers import RawClient, ThreadedGateway, paho_client, wait_until

# A bad connection is closed as soon as its bytes are read; allow for a slow CI box.
CLOSE_TIMEOUT = 2.0

# --- raw packet builders ---------------------------------------------------------
#
# The packet classes refuse to build what the spec forbids, so bad packets are
# assembled by hand here.


def mqtt_string(value: bytes) -> bytes:
    """A length-prefixed UTF-8 string field, from raw (possibly ill-formed) bytes."""
    return len(value).to_bytes(2, "big") + value


def raw_packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_remaining_length(len(body)) + body


def raw_connect(
    client_id: bytes = b"bad-client",
    *,
    name: bytes = b"MQTT",
    level: int = 4,
    flags: int = 0x02,
    keep_alive: int = 60,
    tail: bytes = b"",
    first_byte: int = 0x10,
) -> bytes:
    """A CONNECT; ``tail`` follows the client id (will, user name, password fields)."""
    body = (
        mqtt_string(name)
        + bytes((level, flags))
        + keep_alive.to_bytes(2, "big")
        + mqtt_string(client_id)
        + tail
    )
    return raw_packet(first_byte, body)


def raw_publish(
    topic: bytes, payload: bytes = b"x", *, first_byte: int = 0x30, packet_id: int | None = None
) -> bytes:
    packet_id_bytes = b"" if packet_id is None else packet_id.to_bytes(2, "big")
    return raw_packet(first_byte, mqtt_string(topic) + packet_id_bytes + payload)


def raw_subscribe(topic_filter: bytes, qos: int = 0, *, first_byte: int = 0x82, packet_id: int = 1) -> bytes:
    return raw_packet(first_byte, packet_id.to_bytes(2, "big") + mqtt_string(topic_filter) + bytes((qos,)))


def random_garbage(seed: int, size: int = 200) -> bytes:
    """Seeded random bytes led by a reserved packet type (0 or 15), so no prefix is a packet."""
    rng = random.Random(seed)
    first = rng.choice([*range(0x00, 0x10), *range(0xF0, 0x100)])
    return bytes((first,)) + rng.randbytes(size - 1)


# --- broker state and logs ---------------------------------------------------------


def stat(gateway: ThreadedGateway, name: str) -> int:
    """A ``BrokerStats`` counter, read on the gateway's loop."""
    value: int = gateway.call(lambda: getattr(gateway.broker.stats, name))
    return value


def connection_count(gateway: ThreadedGateway) -> int:
    count: int = gateway.call(lambda: gateway.broker.connection_count)
    return count


def wait_for_connections(gateway: ThreadedGateway, expected: int) -> None:
    wait_until(lambda: connection_count(gateway) == expected, message=f"{expected} open connections")


def broker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("mqttproxy") and record.levelno >= logging.WARNING
    ]


def assert_warning_logged(caplog: pytest.LogCaptureFixture, *fragments: str) -> None:
    """Some WARNING from the broker contains every one of ``fragments``."""
    lines = broker_warnings(caplog)
    assert any(all(fragment in line for fragment in fragments) for line in lines), (
        f"no WARNING containing {fragments!r} in {lines!r}"
    )


def peer_of(client: RawClient) -> str:
    """How the broker names ``client`` in its logs."""
    host, port = client.sock.getsockname()[:2]
    return f"{host}:{port}"


# --- well-behaved traffic ------------------------------------------------------------


def publish_acked(client: RawClient, topic: str, payload: bytes, *, packet_id: int = 1) -> None:
    """PUBLISH at QoS 1 and wait for the broker's PUBACK."""
    client.send(Publish(topic=topic, payload=payload, qos=1, packet_id=packet_id))
    assert client.recv() == Puback(packet_id=packet_id)


def subscribe_acked(client: RawClient, topic_filter: str, qos: int, *, packet_id: int = 1) -> None:
    client.send(Subscribe(packet_id=packet_id, subscriptions=((topic_filter, qos),)))
    assert client.recv() == Suback(packet_id=packet_id, return_codes=(qos,))


def assert_ping(client: RawClient) -> None:
    """The connection is alive: PINGREQ is answered [MQTT-3.12.4-1]."""
    client.send(Pingreq())
    assert client.recv() == Pingresp()


class Bystander:
    """A well-behaved paho subscriber that connects before the bad client arrives.

    ``assert_served`` proves the broker still routes messages to it, published
    by a fresh connection (so the listener still accepts) or by a given client.
    """

    TOPIC = "bystander"

    def __init__(
        self, gateway: ThreadedGateway, *, username: str | None = None, password: str | None = None
    ) -> None:
        self.gateway = gateway
        self._username = username
        self._password = password
        self._published = 0
        self.client = paho_client(
            gateway.port, f"bystander-{uuid.uuid4().hex[:8]}", username=username, password=password
        )
        assert self.client.subscribe(f"{self.TOPIC}/#", qos=1) == [1]

    def close(self) -> None:
        self.client.disconnect()

    def expect(self, topic: str, payload: bytes) -> None:
        message = self.client.get()
        assert (message.topic, message.payload) == (topic, payload)

    def assert_served(self, publisher: RawClient | None = None) -> None:
        self._published += 1
        topic = f"{self.TOPIC}/check/{self._published}"
        payload = f"still serving #{self._published}".encode()
        if publisher is not None:
            publish_acked(publisher, topic, payload, packet_id=self._published)
        else:
            with RawClient(self.gateway.port) as fresh:
                password = None if self._password is None else self._password.encode()
                connack = fresh.connect(
                    f"bystander-pub-{uuid.uuid4().hex[:8]}", username=self._username, password=password
                )
                assert connack.return_code == ConnectReturnCode.ACCEPTED
                publish_acked(fresh, topic, payload)
                fresh.send(Disconnect())
        self.expect(topic, payload)


@contextmanager
def connected_bystander(gateway: ThreadedGateway, **credentials: Any) -> Iterator[Bystander]:
    bystander = Bystander(gateway, **credentials)
    try:
        yield bystander
    finally:
        bystander.close()


def assert_rejected(
    gateway: ThreadedGateway,
    bystander: Bystander,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    *,
    connect_first: bool,
    expected: tuple[Packet, ...] = (),
    log: str = "",
    counter: str | None = "protocol_errors",
) -> None:
    """Send ``data`` on a new connection; check it alone is closed, counted and logged."""
    before = stat(gateway, counter) if counter else 0
    with RawClient(gateway.port) as bad:
        peer = peer_of(bad)
        if connect_first:
            assert bad.connect("bad-client").return_code == ConnectReturnCode.ACCEPTED
        bad.send(data)
        sent = bad.assert_closed(timeout=CLOSE_TIMEOUT)
    assert sent == list(expected)
    if counter:
        assert stat(gateway, counter) == before + 1
    assert_warning_logged(caplog, peer, log)
    bystander.assert_served()
    wait_for_connections(gateway, 1)  # the bystander alone: nothing leaked, nothing else closed
