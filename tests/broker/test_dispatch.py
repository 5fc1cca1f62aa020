"""The dispatch point: hooks see every accepted message; a failing hook harms nothing."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from mqttproxy.broker.message import Message
from tests.helpers import ThreadedGateway, paho_client, wait_until

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


def test_the_gateway_attaches_the_documented_hooks(gateway: ThreadedGateway) -> None:
    """docs/ARCHITECTURE.md lists the hooks every message passes, in the order they run."""
    attached = gateway.call(lambda: gateway.broker.dispatcher.hook_names)
    section = ARCHITECTURE.read_text().split("\n## Dispatch hooks\n", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `([\w-]+)` \|", section, re.MULTILINE) == attached


def test_hooks_see_every_message_in_order(gateway: ThreadedGateway) -> None:
    seen: list[tuple[str, Message]] = []
    gateway.call(lambda: gateway.broker.dispatcher.add_hook("first", lambda m: seen.append(("first", m))))
    gateway.call(lambda: gateway.broker.dispatcher.add_hook("second", lambda m: seen.append(("second", m))))
    publisher = paho_client(gateway.port, "dev1")
    publisher.publish("devices/dev1/telemetry", b"{}", qos=1, retain=True)
    wait_until(lambda: len(seen) == 2)
    assert [name for name, _ in seen] == ["first", "second"]
    message = seen[0][1]
    assert seen[1][1] is message  # one object shared by every consumer
    assert (message.topic, message.payload, message.qos, message.retain) == (
        "devices/dev1/telemetry",
        b"{}",
        1,
        True,
    )
    assert message.source == "client:dev1"
    publisher.disconnect()


def test_a_failing_hook_does_not_stop_delivery(gateway: ThreadedGateway) -> None:
    after: list[Message] = []

    def broken(message: Message) -> None:
        raise RuntimeError("hook bug")

    gateway.call(lambda: gateway.broker.dispatcher.add_hook("broken", broken))
    gateway.call(lambda: gateway.broker.dispatcher.add_hook("after", after.append))
    subscriber = paho_client(gateway.port, "sub")
    subscriber.subscribe("t", 0)
    publisher = paho_client(gateway.port, "pub")
    publisher.publish("t", b"1", qos=1)
    publisher.publish("t", b"2", qos=1)
    assert [subscriber.get().payload, subscriber.get().payload] == [b"1", b"2"]
    wait_until(lambda: len(after) == 2)
    assert gateway.call(lambda: gateway.broker.stats.hook_errors) == 2
    publisher.disconnect()
    subscriber.disconnect()


def test_duplicate_hook_name_is_refused(gateway: ThreadedGateway) -> None:
    gateway.call(lambda: gateway.broker.dispatcher.add_hook("x", lambda m: None))
    with pytest.raises(ValueError, match="already attached"):
        gateway.call(lambda: gateway.broker.dispatcher.add_hook("x", lambda m: None))
    gateway.call(lambda: gateway.broker.dispatcher.remove_hook("x"))
    assert "x" not in gateway.call(lambda: gateway.broker.dispatcher.hook_names)


def test_stop_closes_clients_and_listener(gateway: ThreadedGateway) -> None:
    client = paho_client(gateway.port, "c")
    port = gateway.port
    gateway.run(gateway.gateway.stop())  # type: ignore[union-attr]
    assert client.disconnects.get(timeout=5) != 0
    client.client.loop_stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
