"""Last will: published on abnormal close, never after DISCONNECT."""

from __future__ import annotations

from mqttproxy.broker.auth import AuthDecision, ConnectRequest
from mqttproxy.protocol.packets import ConnectReturnCode, Disconnect, Will
from tests.helpers import RawClient, ThreadedGateway, paho_client, wait_until


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


def test_will_to_sys_is_dropped_and_counted(gateway: ThreadedGateway) -> None:
    # A will is a PUBLISH the client arranged in advance: it may not write under
    # $SYS either (a retained one there would overwrite the gateway's own status).
    watcher = paho_client(gateway.port, "watcher")
    watcher.subscribe("$SYS/#", 0)
    client = RawClient(gateway.port)
    client.connect("device", will=Will(topic="$SYS/mqttproxy/fake", payload=b"spoofed", retain=True))
    client.close()
    wait_until(lambda: gateway.call(lambda: gateway.broker.stats.dropped_sys_topic) == 1)
    watcher.assert_no_message()
    assert gateway.call(lambda: len(gateway.broker.retained)) == 0
    watcher.disconnect()


class _OwnTopicsOnly:
    """A topic policy like the registry's: publish under devices/{name}/ only."""

    def __init__(self, name: str) -> None:
        self._prefix = f"devices/{name}/"

    def may_publish(self, topic: str) -> bool:
        return topic.startswith(self._prefix)

    def may_subscribe(self, topic_filter: str) -> bool:
        return topic_filter.startswith(self._prefix)


class _PolicyAuthenticator:
    """Accepts user names starting with "restricted-", each limited to its own topics."""

    async def authenticate(self, request: ConnectRequest) -> AuthDecision | None:
        if request.username is None or not request.username.startswith("restricted-"):
            return None
        return AuthDecision(
            return_code=ConnectReturnCode.ACCEPTED,
            principal=f"test:{request.username}",
            policy=_OwnTopicsOnly(request.username),
        )


def test_will_outside_the_clients_policy_is_dropped(gateway: ThreadedGateway) -> None:
    assert gateway.gateway is not None
    auth = gateway.gateway.auth
    gateway.call(lambda: auth.add(_PolicyAuthenticator()))
    watcher = paho_client(gateway.port, "watcher")
    watcher.subscribe("devices/#", 0)
    # Its own topic: published as usual.
    allowed = RawClient(gateway.port)
    allowed.connect(
        "d1", username="restricted-d1", will=Will(topic="devices/restricted-d1/status", payload=b"gone")
    )
    allowed.close()
    assert watcher.get().payload == b"gone"
    # Another device's topic: the same ACL as for its PUBLISHes applies.
    denied = RawClient(gateway.port)
    denied.connect(
        "d2", username="restricted-d2", will=Will(topic="devices/restricted-d1/cmd", payload=b"reboot")
    )
    denied.close()
    wait_until(lambda: gateway.call(lambda: gateway.broker.stats.dropped_acl) == 1)
    watcher.assert_no_message()
    watcher.disconnect()
