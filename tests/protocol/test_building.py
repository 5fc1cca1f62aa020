"""Building or encoding a packet the spec forbids raises ``LocalProtocolError``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mqttproxy.errors import LocalProtocolError
from mqttproxy.protocol.codec import encode_packet
from mqttproxy.protocol.packets import (
    Connack,
    Connect,
    ConnectReturnCode,
    Packet,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)

# Each factory builds a packet that breaks a rule; building or encoding it must refuse.
FORBIDDEN: dict[str, Callable[[], Packet]] = {
    # PUBLISH
    "publish-topic-plus": lambda: Publish(topic="a/+"),  # [MQTT-3.3.2-2]
    "publish-topic-hash": lambda: Publish(topic="#"),
    "publish-topic-empty": lambda: Publish(topic=""),  # [MQTT-4.7.3-1]
    "publish-topic-nul": lambda: Publish(topic="a\x00b"),  # [MQTT-4.7.3-2]
    "publish-topic-too-long": lambda: Publish(topic="x" * 65536),  # [MQTT-4.7.3-3]
    "publish-topic-too-long-utf8": lambda: Publish(topic="\u00e9" * 32768),  # 65536 bytes
    "publish-topic-surrogate": lambda: Publish(topic="a/\ud800"),  # [MQTT-1.5.3-1]
    "publish-qos3": lambda: Publish(topic="t", qos=3, packet_id=1),  # [MQTT-3.3.1-4]
    "publish-qos-negative": lambda: Publish(topic="t", qos=-1, packet_id=1),
    "publish-qos0-dup": lambda: Publish(topic="t", dup=True),  # [MQTT-3.3.1-2]
    "publish-qos0-packet-id": lambda: Publish(topic="t", packet_id=1),  # [MQTT-2.3.1-5]
    "publish-qos1-no-packet-id": lambda: Publish(topic="t", qos=1),
    "publish-qos1-id0": lambda: Publish(topic="t", qos=1, packet_id=0),  # [MQTT-2.3.1-1]
    "publish-qos2-id-65536": lambda: Publish(topic="t", qos=2, packet_id=65536),
    # packet identifiers [MQTT-2.3.1-1]
    "puback-id0": lambda: Puback(packet_id=0),
    "puback-id-65536": lambda: Puback(packet_id=65536),
    "pubrec-id0": lambda: Pubrec(packet_id=0),
    "pubrel-id0": lambda: Pubrel(packet_id=0),
    "pubcomp-id0": lambda: Pubcomp(packet_id=0),
    "unsuback-id0": lambda: Unsuback(packet_id=0),
    "suback-id0": lambda: Suback(packet_id=0, return_codes=(0,)),
    "subscribe-id0": lambda: Subscribe(packet_id=0, subscriptions=(("a", 0),)),
    "unsubscribe-id0": lambda: Unsubscribe(packet_id=0, topic_filters=("a",)),
    # SUBSCRIBE / SUBACK / UNSUBSCRIBE
    "subscribe-empty": lambda: Subscribe(packet_id=1, subscriptions=()),  # [MQTT-3.8.3-3]
    "subscribe-qos3": lambda: Subscribe(packet_id=1, subscriptions=(("a", 3),)),  # [MQTT-3-8.3-4]
    "subscribe-hash-not-last": lambda: Subscribe(packet_id=1, subscriptions=(("a/#/b", 0),)),
    "subscribe-plus-in-level": lambda: Subscribe(packet_id=1, subscriptions=(("ok", 0), ("a+", 0))),
    "subscribe-hash-in-level": lambda: Subscribe(packet_id=1, subscriptions=(("#a", 0),)),
    "subscribe-empty-filter": lambda: Subscribe(packet_id=1, subscriptions=(("", 0),)),
    "subscribe-filter-too-long": lambda: Subscribe(packet_id=1, subscriptions=(("x" * 65536, 0),)),
    "subscribe-filter-surrogate": lambda: Subscribe(packet_id=1, subscriptions=(("\udfff", 0),)),
    "suback-code-3": lambda: Suback(packet_id=1, return_codes=(0, 3)),  # [MQTT-3.9.3-2]
    "suback-code-0x81": lambda: Suback(packet_id=1, return_codes=(0x81,)),
    "unsubscribe-empty": lambda: Unsubscribe(packet_id=1, topic_filters=()),  # [MQTT-3.10.3-2]
    "unsubscribe-hash-not-last": lambda: Unsubscribe(packet_id=1, topic_filters=("a/#/b",)),
    "unsubscribe-empty-filter": lambda: Unsubscribe(packet_id=1, topic_filters=("",)),
    "unsubscribe-nul": lambda: Unsubscribe(packet_id=1, topic_filters=("a\x00",)),
    # CONNECT / CONNACK
    "connect-password-without-username": lambda: Connect(client_id="c", password=b"pw"),  # [MQTT-3.1.2-22]
    "connect-keep-alive-negative": lambda: Connect(client_id="c", keep_alive=-1),
    "connect-keep-alive-65536": lambda: Connect(client_id="c", keep_alive=65536),
    "connect-client-id-too-long": lambda: Connect(client_id="x" * 65536),
    "connect-password-too-long": lambda: Connect(client_id="c", username="u", password=bytes(65536)),
    "connect-client-id-surrogate": lambda: Connect(client_id="\ud800"),  # [MQTT-1.5.3-1]
    "connect-client-id-nul": lambda: Connect(client_id="a\x00b"),  # [MQTT-1.5.3-2]
    "connect-username-nul": lambda: Connect(client_id="c", username="u\x00"),  # [MQTT-1.5.3-2]
    "connect-protocol-level-256": lambda: Connect(client_id="c", protocol_level=256),  # 3.1.2.2: one byte
    "will-topic-wildcard": lambda: Connect(client_id="c", will=Will(topic="w/+", payload=b"")),
    "will-topic-empty": lambda: Connect(client_id="c", will=Will(topic="", payload=b"")),
    "will-qos3": lambda: Connect(client_id="c", will=Will(topic="w", payload=b"", qos=3)),  # [MQTT-3.1.2-14]
    "will-message-too-long": lambda: Connect(client_id="c", will=Will(topic="w", payload=bytes(65536))),
    "connack-refused-session-present": lambda: Connack(  # [MQTT-3.2.2-4]
        return_code=ConnectReturnCode.NOT_AUTHORIZED, session_present=True
    ),
}


@pytest.mark.parametrize("factory", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_forbidden_packet(factory: Callable[[], Packet]) -> None:
    with pytest.raises(LocalProtocolError):
        encode_packet(factory())


# Edge values that are allowed: each must build and encode.
ALLOWED: dict[str, Callable[[], Packet]] = {
    "publish-topic-65535-bytes": lambda: Publish(topic="x" * 65535),
    "publish-id-65535": lambda: Publish(topic="t", qos=1, packet_id=65535),
    "publish-topic-space": lambda: Publish(topic=" "),
    "publish-topic-dollar": lambda: Publish(topic="$SYS/uptime"),
    "connect-empty-client-id": lambda: Connect(client_id=""),  # [MQTT-3.1.3-6]
    "connect-keep-alive-0": lambda: Connect(client_id="c", keep_alive=0),
    "connect-keep-alive-65535": lambda: Connect(client_id="c", keep_alive=65535),
    "connect-username-without-password": lambda: Connect(client_id="c", username="u"),
    "subscribe-wildcards": lambda: Subscribe(packet_id=1, subscriptions=(("+/+/#", 2), ("#", 0), ("+", 1))),
    "suback-failure-only": lambda: Suback(packet_id=65535, return_codes=(0x80,)),
    "connack-refused": lambda: Connack(return_code=ConnectReturnCode.SERVER_UNAVAILABLE),
}


@pytest.mark.parametrize("factory", ALLOWED.values(), ids=ALLOWED.keys())
def test_allowed_edge_packet(factory: Callable[[], Packet]) -> None:
    assert encode_packet(factory())
