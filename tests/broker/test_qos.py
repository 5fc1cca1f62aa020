"""QoS 0, 1 and 2 in both directions, through paho and raw sockets."""

from __future__ import annotations

import pytest

from mqttproxy.protocol.packets import (
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
)
from tests.helpers import RawClient, ThreadedGateway, paho_client


@pytest.mark.parametrize("publish_qos", [0, 1, 2])
@pytest.mark.parametrize("subscribe_qos", [0, 1, 2])
def test_delivery_qos_is_the_lower_of_publish_and_subscription(
    gateway: ThreadedGateway, publish_qos: int, subscribe_qos: int
) -> None:
    subscriber = paho_client(gateway.port, "sub")
    assert subscriber.subscribe("t/qos", subscribe_qos) == [subscribe_qos]
    publisher = paho_client(gateway.port, "pub")
    publisher.publish("t/qos", b"payload", qos=publish_qos)
    message = subscriber.get()
    assert message.payload == b"payload"
    assert message.qos == min(publish_qos, subscribe_qos)
    assert not message.retain
    subscriber.assert_no_message()
    publisher.disconnect()
    subscriber.disconnect()


def test_qos1_publish_is_acknowledged_with_its_packet_id(gateway: ThreadedGateway) -> None:
    with RawClient(gateway.port) as client:
        client.connect("raw-pub")
        client.send(Publish(topic="t/1", payload=b"x", qos=1, packet_id=4242))
        assert client.recv() == Puback(packet_id=4242)


def test_qos2_inbound_handshake_delivers_once(gateway: ThreadedGateway) -> None:
    subscriber = paho_client(gateway.port, "sub")
    subscriber.subscribe("t/2", 2)
    with RawClient(gateway.port) as client:
        client.connect("raw-pub")
        client.send(Publish(topic="t/2", payload=b"once", qos=2, packet_id=7))
        assert client.recv() == Pubrec(packet_id=7)
        # [MQTT-4.3.3-2] the same identifier again before PUBREL is a duplicate.
        client.send(Publish(topic="t/2", payload=b"once", qos=2, packet_id=7, dup=True))
        assert client.recv() == Pubrec(packet_id=7)
        client.send(Pubrel(packet_id=7))
        assert client.recv() == Pubcomp(packet_id=7)
        # After PUBCOMP the identifier is free: a new message may reuse it.
        client.send(Publish(topic="t/2", payload=b"again", qos=2, packet_id=7))
        assert client.recv() == Pubrec(packet_id=7)
        client.send(Pubrel(packet_id=7))
        assert client.recv() == Pubcomp(packet_id=7)
    assert subscriber.get().payload == b"once"
    assert subscriber.get().payload == b"again"
    subscriber.assert_no_message()
    subscriber.disconnect()


def test_qos2_outbound_handshake(gateway: ThreadedGateway) -> None:
    with RawClient(gateway.port) as client:
        client.connect("raw-sub")
        client.send(Subscribe(packet_id=1, subscriptions=(("t/out", 2),)))
        assert client.recv() == Suback(packet_id=1, return_codes=(2,))
        publisher = paho_client(gateway.port, "pub")
        publisher.publish("t/out", b"exactly once", qos=2)
        publish = client.recv()
        assert isinstance(publish, Publish)
        assert (publish.qos, publish.payload, publish.dup) == (2, b"exactly once", False)
        assert publish.packet_id is not None
        client.send(Pubrec(packet_id=publish.packet_id))
        assert client.recv() == Pubrel(packet_id=publish.packet_id)
        client.send(Pubcomp(packet_id=publish.packet_id))
        client.assert_open()
        assert gateway.call(lambda: len(gateway.broker.sessions["raw-sub"].inflight)) == 0
        publisher.disconnect()


def test_qos1_outbound_stays_in_flight_until_puback(gateway: ThreadedGateway) -> None:
    with RawClient(gateway.port) as client:
        client.connect("raw-sub")
        client.send(Subscribe(packet_id=1, subscriptions=(("t/ack", 1),)))
        client.recv()
        publisher = paho_client(gateway.port, "pub")
        publisher.publish("t/ack", b"m", qos=1)
        publish = client.recv()
        assert isinstance(publish, Publish)
        assert publish.packet_id is not None

        def inflight() -> int:
            return len(gateway.broker.sessions["raw-sub"].inflight)

        assert gateway.call(inflight) == 1
        client.send(Puback(packet_id=publish.packet_id))
        client.assert_open()
        assert gateway.call(inflight) == 0
        publisher.disconnect()


def test_packet_ids_of_inflight_messages_are_distinct(gateway: ThreadedGateway) -> None:
    with RawClient(gateway.port) as client:
        client.connect("raw-sub")
        client.send(Subscribe(packet_id=1, subscriptions=(("t/ids", 1),)))
        client.recv()
        publisher = paho_client(gateway.port, "pub")
        for index in range(10):
            publisher.publish("t/ids", str(index), qos=1)
        received = [client.recv() for _ in range(10)]
        assert all(isinstance(packet, Publish) for packet in received)
        ids = [packet.packet_id for packet in received if isinstance(packet, Publish)]
        assert len(set(ids)) == 10
        assert [p.payload for p in received if isinstance(p, Publish)] == [str(i).encode() for i in range(10)]
        publisher.disconnect()
