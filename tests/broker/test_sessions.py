"""Persistent sessions, redelivery on reconnect, session takeover."""

from __future__ import annotations

import pytest

from mqttproxy.protocol.packets import Connack, Puback, Pubcomp, Publish, Pubrec, Pubrel, Subscribe, Will
from tests.helpers import RawClient, ThreadedGateway, paho_client, wait_until


def _subscribe(client: RawClient, topic_filter: str, qos: int) -> None:
    client.send(Subscribe(packet_id=1, subscriptions=((topic_filter, qos),)))
    client.recv()


def test_new_session_is_not_present(gateway: ThreadedGateway) -> None:
    with RawClient(gateway.port) as client:
        assert client.connect("fresh", clean_session=False) == Connack(session_present=False)


@pytest.mark.parametrize("qos", [1, 2])
def test_persistent_session_keeps_subscriptions_and_queues_while_offline(
    gateway: ThreadedGateway, qos: int
) -> None:
    device = paho_client(gateway.port, "device", clean_session=False)
    device.subscribe("cmd/device", qos)
    device.disconnect()
    wait_until(lambda: gateway.call(lambda: gateway.broker.sessions["device"].connection is None))

    publisher = paho_client(gateway.port, "app")
    publisher.publish("cmd/device", b"queued while away", qos=qos)
    publisher.publish("cmd/device", b"qos0 while away", qos=0)  # not queued for offline sessions
    publisher.disconnect()

    device = paho_client(gateway.port, "device", clean_session=False)
    assert device.session_present
    message = device.get()
    assert (message.payload, message.qos) == (b"queued while away", qos)
    device.assert_no_message()
    device.disconnect()


def test_clean_session_discards_the_previous_session(gateway: ThreadedGateway) -> None:
    device = paho_client(gateway.port, "device", clean_session=False)
    device.subscribe("cmd/device", 1)
    device.disconnect()
    wait_until(lambda: gateway.call(lambda: gateway.broker.sessions["device"].connection is None))

    device = paho_client(gateway.port, "device", clean_session=True)
    assert not device.session_present
    publisher = paho_client(gateway.port, "app")
    publisher.publish("cmd/device", b"nobody subscribed", qos=1)
    device.assert_no_message()
    device.disconnect()
    publisher.disconnect()
    # [MQTT-3.1.2-6] a clean session ends with its connection.
    wait_until(lambda: gateway.call(lambda: "device" not in gateway.broker.sessions))


@pytest.mark.parametrize("qos", [1, 2])
def test_unacknowledged_publish_is_redelivered_with_dup_on_reconnect(
    gateway: ThreadedGateway, qos: int
) -> None:
    with RawClient(gateway.port) as client:
        client.connect("device", clean_session=False)
        _subscribe(client, "cmd/#", qos)
        publisher = paho_client(gateway.port, "app")
        publisher.publish("cmd/a", b"first", qos=qos)
        publisher.publish("cmd/b", b"second", qos=qos)
        first = client.recv()
        second = client.recv()
        publisher.disconnect()
    # The connection dropped before any PUBACK (QoS 1) or PUBREC (QoS 2).
    wait_until(lambda: gateway.call(lambda: gateway.broker.sessions["device"].connection is None))
    with RawClient(gateway.port) as client:
        assert client.connect("device", clean_session=False) == Connack(session_present=True)
        again = [client.recv(), client.recv()]
        # [MQTT-4.4.0-1] resent in the original order, same identifiers, DUP set.
        assert isinstance(first, Publish)
        assert isinstance(second, Publish)
        assert again == [
            Publish(topic="cmd/a", payload=b"first", qos=qos, dup=True, packet_id=first.packet_id),
            Publish(topic="cmd/b", payload=b"second", qos=qos, dup=True, packet_id=second.packet_id),
        ]
        for packet in again:
            assert isinstance(packet, Publish)
            assert packet.packet_id is not None
            if qos == 1:
                client.send(Puback(packet_id=packet.packet_id))
            else:
                client.send(Pubrec(packet_id=packet.packet_id))
                assert client.recv() == Pubrel(packet_id=packet.packet_id)
                client.send(Pubcomp(packet_id=packet.packet_id))
        client.assert_open()
    wait_until(lambda: gateway.call(lambda: not gateway.broker.sessions["device"].inflight))


def test_released_qos2_resends_pubrel_not_publish_on_reconnect(gateway: ThreadedGateway) -> None:
    with RawClient(gateway.port) as client:
        client.connect("device", clean_session=False)
        _subscribe(client, "cmd/#", 2)
        publisher = paho_client(gateway.port, "app")
        publisher.publish("cmd/x", b"q2", qos=2)
        publish = client.recv()
        assert isinstance(publish, Publish)
        assert publish.packet_id is not None
        client.send(Pubrec(packet_id=publish.packet_id))
        assert client.recv() == Pubrel(packet_id=publish.packet_id)
        publisher.disconnect()
    wait_until(lambda: gateway.call(lambda: gateway.broker.sessions["device"].connection is None))
    with RawClient(gateway.port) as client:
        assert client.connect("device", clean_session=False).session_present
        assert client.recv() == Pubrel(packet_id=publish.packet_id)


def test_inbound_qos2_state_survives_reconnect(gateway: ThreadedGateway) -> None:
    """A QoS 2 PUBLISH resent after reconnect, before PUBREL, is not delivered twice."""
    subscriber = paho_client(gateway.port, "sub")
    subscriber.subscribe("t/q2", 2)
    with RawClient(gateway.port) as client:
        client.connect("device", clean_session=False)
        client.send(Publish(topic="t/q2", payload=b"one", qos=2, packet_id=9))
        assert client.recv() == Pubrec(packet_id=9)
    wait_until(lambda: gateway.call(lambda: gateway.broker.sessions["device"].connection is None))
    with RawClient(gateway.port) as client:
        client.connect("device", clean_session=False)
        client.send(Publish(topic="t/q2", payload=b"one", qos=2, packet_id=9, dup=True))
        assert client.recv() == Pubrec(packet_id=9)
    assert subscriber.get().payload == b"one"
    subscriber.assert_no_message()
    subscriber.disconnect()


def test_second_connection_with_same_client_id_takes_over(gateway: ThreadedGateway) -> None:
    watcher = paho_client(gateway.port, "watcher")
    watcher.subscribe("status/device", 1)
    first = RawClient(gateway.port)
    first.connect("device", will=Will(topic="status/device", payload=b"offline", qos=1))
    with RawClient(gateway.port) as second:
        assert second.connect("device") == Connack(session_present=False)
        # [MQTT-3.1.4-2] the older connection is closed ...
        first.assert_closed()
        # ... its will published, since it never sent DISCONNECT ...
        assert watcher.get().payload == b"offline"
        # ... and the new one works.
        second.send(Publish(topic="status/device", payload=b"back", qos=1, packet_id=1))
        assert second.recv() == Puback(packet_id=1)
        assert watcher.get().payload == b"back"
    first.close()
    watcher.disconnect()


def test_takeover_of_persistent_session_keeps_it(gateway: ThreadedGateway) -> None:
    first = RawClient(gateway.port)
    first.connect("device", clean_session=False)
    _subscribe(first, "cmd/#", 1)
    with RawClient(gateway.port) as second:
        assert second.connect("device", clean_session=False) == Connack(session_present=True)
        first.assert_closed()
        publisher = paho_client(gateway.port, "app")
        publisher.publish("cmd/go", b"to the new connection", qos=1)
        packet = second.recv()
        assert isinstance(packet, Publish)
        assert packet.payload == b"to the new connection"
        publisher.disconnect()
    first.close()
