"""Last will: published on abnormal close, never after DISCONNECT."""

from __future__ import annotations

from mqttproxy.protocol.packets import Disconnect, Will
from tests.helpers import RawClient, ThreadedGateway, paho_client


def test_will_is_published_when_the_socket_drops(gateway: ThreadedGateway) -> None:
    watcher = paho_client(gateway.port, "watcher")
    watcher.subscribe("status/#", 1)
    client = RawClient(gateway.port)
    client.connect("device", will=Will(topic="status/device", payload=b"gone", qos=1))
    client.close()
    message = watcher.get()
    assert (message.topic, message.payload, message.qos) == ("status/device", b"gone", 1)
    watcher.disconnect()


def test_no_will_after_disconnect(gateway: ThreadedGateway) -> None:
    watcher = paho_client(gateway.port, "watcher")
    watcher.subscribe("status/#", 1)
    with RawClient(gateway.port) as client:
        client.connect("device", will=Will(topic="status/device", payload=b"gone"))
        # [MQTT-3.14.4-3] DISCONNECT discards the will.
        client.send(Disconnect())
        client.assert_closed()
    watcher.assert_no_message()
    watcher.disconnect()


def test_retained_will_is_kept_for_later_subscribers(gateway: ThreadedGateway) -> None:
    client = RawClient(gateway.port)
    client.connect("device", will=Will(topic="status/device", payload=b"offline", retain=True))
    client.close()
    late = paho_client(gateway.port, "late")
    late.subscribe("status/device", 0)
    message = late.get()
    assert (message.payload, message.retain) == (b"offline", True)
    late.disconnect()


def test_will_is_published_after_a_protocol_error(gateway: ThreadedGateway) -> None:
    watcher = paho_client(gateway.port, "watcher")
    watcher.subscribe("status/#", 0)
    with RawClient(gateway.port) as client:
        client.connect("device", will=Will(topic="status/device", payload=b"broken"))
        client.send(b"\x00\x00")  # reserved packet type 0
        client.assert_closed()
    assert watcher.get().payload == b"broken"
    watcher.disconnect()


def test_paho_will_on_abrupt_close(gateway: ThreadedGateway) -> None:
    watcher = paho_client(gateway.port, "watcher")
    watcher.subscribe("lwt/#", 0)
    device = paho_client(gateway.port, "device", will=("lwt/device", b"paho gone", 0, False))
    device.client.socket().close()  # no DISCONNECT
    assert watcher.get().payload == b"paho gone"
    device.client.loop_stop()
    watcher.disconnect()
