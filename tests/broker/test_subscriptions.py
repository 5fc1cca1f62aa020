"""SUBSCRIBE/UNSUBSCRIBE, wildcards, overlapping filters and $-topics."""

from __future__ import annotations

import pytest

from mqttproxy.protocol.packets import Publish, Suback, Subscribe, Unsuback, Unsubscribe
from tests.helpers import RawClient, ThreadedGateway, paho_client, wait_until


@pytest.mark.parametrize(
    ("topic_filter", "topic", "delivered"),
    [
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/#", "sport", True),
        ("sport/#", "sport/tennis/player1", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("#", "$SYS/monitor", False),
        ("+/monitor", "$SYS/monitor", False),
        ("$SYS/#", "$aws/things/x", False),
        ("$aws/things/+/shadow/#", "$aws/things/lamp/shadow/update", True),
        ("#", "$aws/things/lamp/shadow/update", False),
    ],
)
def test_filter_matching(gateway: ThreadedGateway, topic_filter: str, topic: str, delivered: bool) -> None:
    subscriber = paho_client(gateway.port, "sub")
    subscriber.subscribe(topic_filter, 0)
    publisher = paho_client(gateway.port, "pub")
    publisher.publish(topic, b"m", qos=1)
    if delivered:
        assert subscriber.get().topic == topic
    else:
        subscriber.assert_no_message()
    publisher.disconnect()
    subscriber.disconnect()


def test_overlapping_subscriptions_deliver_once_at_highest_qos(gateway: ThreadedGateway) -> None:
    with RawClient(gateway.port) as client:
        client.connect("sub")
        client.send(Subscribe(packet_id=3, subscriptions=(("a/#", 0), ("a/+/c", 2), ("a/b/c", 1))))
        assert client.recv() == Suback(packet_id=3, return_codes=(0, 2, 1))
        publisher = paho_client(gateway.port, "pub")
        publisher.publish("a/b/c", b"once", qos=2)
        packet = client.recv()
        assert isinstance(packet, Publish)
        assert (packet.payload, packet.qos) == (b"once", 2)
        client.assert_open()  # no second copy
        publisher.disconnect()


def test_resubscribing_replaces_the_granted_qos(gateway: ThreadedGateway) -> None:
    with RawClient(gateway.port) as client:
        client.connect("sub")
        client.send(Subscribe(packet_id=1, subscriptions=(("x/y", 2),)))
        client.recv()
        client.send(Subscribe(packet_id=2, subscriptions=(("x/y", 0),)))
        assert client.recv() == Suback(packet_id=2, return_codes=(0,))
        publisher = paho_client(gateway.port, "pub")
        publisher.publish("x/y", b"m", qos=2)
        packet = client.recv()
        assert isinstance(packet, Publish)
        assert packet.qos == 0
        client.assert_open()
        publisher.disconnect()
    # The clean session ended with the connection, and its subscription with it.
    wait_until(lambda: gateway.call(lambda: gateway.broker.router.subscription_count) == 0)


def test_unsubscribe_stops_delivery_and_is_acknowledged(gateway: ThreadedGateway) -> None:
    with RawClient(gateway.port) as client:
        client.connect("sub")
        client.send(Subscribe(packet_id=1, subscriptions=(("keep/#", 0), ("drop/#", 0))))
        client.recv()
        # [MQTT-3.10.4-4] UNSUBACK also for a filter that was never subscribed.
        client.send(Unsubscribe(packet_id=2, topic_filters=("drop/#", "never/subscribed")))
        assert client.recv() == Unsuback(packet_id=2)
        publisher = paho_client(gateway.port, "pub")
        publisher.publish("drop/1", b"gone", qos=1)
        publisher.publish("keep/1", b"kept", qos=1)
        packet = client.recv()
        assert isinstance(packet, Publish)
        assert packet.payload == b"kept"
        publisher.disconnect()


def test_clients_cannot_publish_to_sys(gateway: ThreadedGateway) -> None:
    subscriber = paho_client(gateway.port, "sub")
    subscriber.subscribe("$SYS/#", 0)
    publisher = paho_client(gateway.port, "pub")
    publisher.publish("$SYS/broker/fake", b"spoofed", qos=1)  # still acknowledged
    subscriber.assert_no_message()
    assert gateway.call(lambda: gateway.broker.stats.dropped_sys_topic) == 1
    publisher.disconnect()
    subscriber.disconnect()


def test_only_the_sys_level_itself_is_reserved(gateway: ThreadedGateway) -> None:
    subscriber = paho_client(gateway.port, "sub")
    subscriber.subscribe("$SYSTEM/#", 0)
    publisher = paho_client(gateway.port, "pub")
    publisher.publish("$SYSTEM/status", b"not the broker's", qos=1)
    assert subscriber.get().payload == b"not the broker's"
    assert gateway.call(lambda: gateway.broker.stats.dropped_sys_topic) == 0
    publisher.disconnect()
    subscriber.disconnect()


def test_many_subscribers_each_get_one_copy(gateway: ThreadedGateway) -> None:
    subscribers = [paho_client(gateway.port, f"sub{index}") for index in range(5)]
    for subscriber in subscribers:
        subscriber.subscribe("fan/#", 1)
    publisher = paho_client(gateway.port, "pub")
    publisher.publish("fan/out", b"all", qos=1)
    for subscriber in subscribers:
        assert subscriber.get().payload == b"all"
        subscriber.assert_no_message(0.05)
        subscriber.disconnect()
    publisher.disconnect()
