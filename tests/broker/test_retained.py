"""Retained messages: store, replace, clear, deliver on subscribe with RETAIN."""

from __future__ import annotations

from mqttproxy.protocol.packets import Publish, Subscribe
from tests.helpers import RawClient, ThreadedGateway, paho_client


def test_retained_message_goes_to_new_subscribers_with_retain_set(gateway: ThreadedGateway) -> None:
    publisher = paho_client(gateway.port, "pub")
    publisher.publish("config/site", b"v1", qos=1, retain=True)
    subscriber = paho_client(gateway.port, "sub")
    subscriber.subscribe("config/#", 1)
    message = subscriber.get()
    # [MQTT-3.3.1-6] RETAIN is set on messages sent because of a new subscription.
    assert (message.topic, message.payload, message.retain, message.qos) == ("config/site", b"v1", True, 1)
    # [MQTT-3.3.1-9] ... and clear on messages for an established subscription.
    publisher.publish("config/site", b"v2", qos=1, retain=True)
    live = subscriber.get()
    assert (live.payload, live.retain) == (b"v2", False)
    publisher.disconnect()
    subscriber.disconnect()


def test_newer_retained_message_replaces_older(gateway: ThreadedGateway) -> None:
    publisher = paho_client(gateway.port, "pub")
    publisher.publish("state/lamp", b"on", retain=True, qos=1)
    publisher.publish("state/lamp", b"off", retain=True, qos=1)
    subscriber = paho_client(gateway.port, "sub")
    subscriber.subscribe("state/lamp", 0)
    assert subscriber.get().payload == b"off"
    subscriber.assert_no_message()
    publisher.disconnect()
    subscriber.disconnect()


def test_empty_retained_payload_clears_the_topic(gateway: ThreadedGateway) -> None:
    publisher = paho_client(gateway.port, "pub")
    publisher.publish("state/lamp", b"on", retain=True, qos=1)
    publisher.publish("state/lamp", b"", retain=True, qos=1)
    subscriber = paho_client(gateway.port, "sub")
    subscriber.subscribe("state/#", 0)
    subscriber.assert_no_message()
    assert gateway.call(lambda: len(gateway.broker.retained)) == 0
    publisher.disconnect()
    subscriber.disconnect()


def test_wildcard_subscription_gets_each_retained_topic_once(gateway: ThreadedGateway) -> None:
    publisher = paho_client(gateway.port, "pub")
    for topic in ("home/kitchen/temp", "home/hall/temp", "home/hall/light", "$SYS/hidden"):
        publisher.publish(topic, topic.encode(), retain=True, qos=1)
    publisher.disconnect()
    with RawClient(gateway.port) as client:
        client.connect("sub")
        # Two filters that both match home/hall/temp: it comes once, at the higher QoS.
        client.send(Subscribe(packet_id=1, subscriptions=(("home/+/temp", 0), ("home/#", 1))))
        client.recv()
        received = {}
        for _ in range(3):
            packet = client.recv()
            assert isinstance(packet, Publish)
            assert packet.retain
            received[packet.topic] = packet.qos
        assert received == {"home/kitchen/temp": 1, "home/hall/temp": 1, "home/hall/light": 1}
        client.assert_open()


def test_retained_qos_is_capped_by_subscription(gateway: ThreadedGateway) -> None:
    publisher = paho_client(gateway.port, "pub")
    publisher.publish("r/q", b"x", retain=True, qos=2)
    publisher.disconnect()
    with RawClient(gateway.port) as client:
        client.connect("sub")
        client.send(Subscribe(packet_id=1, subscriptions=(("r/q", 1),)))
        client.recv()
        packet = client.recv()
        assert isinstance(packet, Publish)
        assert (packet.qos, packet.retain) == (1, True)
