from __future__ import annotations

from tests.helpers import ThreadedGateway, paho_client


def test_publish_reaches_subscriber(gateway: ThreadedGateway) -> None:
    subscriber = paho_client(gateway.port, "sub")
    assert subscriber.subscribe("sensors/#", qos=1) == [1]
    publisher = paho_client(gateway.port, "pub")
    publisher.publish("sensors/t1", b"21.5", qos=1)
    message = subscriber.get()
    assert (message.topic, message.payload, message.qos) == ("sensors/t1", b"21.5", 1)
    publisher.disconnect()
    subscriber.disconnect()
