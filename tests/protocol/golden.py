"""Golden samples: packets next to their wire bytes, written by hand from MQTT 3.1.1.

The bytes are transcribed from the OASIS spec (sections 2 and 3), never produced
by the encoder under test. Every sample is small enough to split at every byte.
"""

from __future__ import annotations

from typing import NamedTuple

from mqttproxy.protocol.packets import (
    Connack,
    Connect,
    ConnectReturnCode,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
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


class Sample(NamedTuple):
    id: str
    packet: Packet
    wire: bytes


def h(text: str) -> bytes:
    """Bytes from hex, spaces allowed."""
    return bytes.fromhex(text)


# Protocol name "MQTT" as a UTF-8 string, then level 4 (3.1.2.1, 3.1.2.2).
MQTT_4 = h("00 04 4d 51 54 54 04")

CONNECT_SAMPLES = [
    Sample(
        "connect-clean-keepalive60",
        Connect(client_id="abc"),
        h("10 0f") + MQTT_4 + h("02 00 3c") + h("00 03 61 62 63"),
    ),
    Sample(
        # [MQTT-3.1.3-6] a zero-byte client id is allowed.
        "connect-persistent-empty-id",
        Connect(client_id="", clean_session=False, keep_alive=0),
        h("10 0c") + MQTT_4 + h("00 00 00") + h("00 00"),
    ),
    Sample(
        # flags: will retain 0x20 | will QoS 1 0x08 | will 0x04 | clean 0x02
        "connect-will-qos1-retain",
        Connect(client_id="c1", keep_alive=30, will=Will(topic="w/t", payload=b"bye", qos=1, retain=True)),
        h("10 18") + MQTT_4 + h("2e 00 1e") + h("00 02 63 31") + h("00 03 77 2f 74") + h("00 03 62 79 65"),
    ),
    Sample(
        # flags: will QoS 2 0x10 | will 0x04, clean session 0
        "connect-will-qos2-empty-message",
        Connect(client_id="c1", clean_session=False, will=Will(topic="w", payload=b"", qos=2)),
        h("10 13") + MQTT_4 + h("14 00 3c") + h("00 02 63 31") + h("00 01 77") + h("00 00"),
    ),
    Sample(
        # flags: user name 0x80 | password 0x40 | clean 0x02; the password is binary
        "connect-username-password",
        Connect(client_id="id", username="user", password=b"\x00\xffpw"),
        h("10 1a")
        + MQTT_4
        + h("c2 00 3c")
        + h("00 02 69 64")
        + h("00 04 75 73 65 72")
        + h("00 04 00 ff 70 77"),
    ),
    Sample(
        "connect-username-only",
        Connect(client_id="id", clean_session=False, username="u"),
        h("10 11") + MQTT_4 + h("80 00 3c") + h("00 02 69 64") + h("00 01 75"),
    ),
    Sample(
        "connect-empty-password",
        Connect(client_id="x", username="u", password=b""),
        h("10 12") + MQTT_4 + h("c2 00 3c") + h("00 01 78") + h("00 01 75") + h("00 00"),
    ),
    Sample(
        # payload order [MQTT-3.1.3-1]: client id, will topic, will message, user name, password
        "connect-everything",
        Connect(
            client_id="x",
            keep_alive=65535,
            will=Will(topic="t", payload=b""),
            username="u",
            password=b"p",
        ),
        h("10 18")
        + MQTT_4
        + h("c6 ff ff")
        + h("00 01 78")
        + h("00 01 74")
        + h("00 00")
        + h("00 01 75")
        + h("00 01 70"),
    ),
    Sample(
        # MQTT 3.1: protocol name "MQIsdp", level 3
        "connect-mqtt31",
        Connect(client_id="abc", protocol_name="MQIsdp", protocol_level=3),
        h("10 11") + h("00 06 4d 51 49 73 64 70 03") + h("02 00 3c") + h("00 03 61 62 63"),
    ),
]

CONNACK_SAMPLES = [
    Sample(f"connack-{code.name.lower()}", Connack(return_code=code), h(f"20 02 00 {code:02x}"))
    for code in ConnectReturnCode
] + [
    Sample("connack-session-present", Connack(session_present=True), h("20 02 01 00")),
]

PUBLISH_SAMPLES = [
    # first byte: 0x30 | DUP 0x08 | QoS << 1 | RETAIN 0x01 (3.3.1)
    Sample("publish-qos0", Publish(topic="a/b", payload=b"hi"), h("30 07 00 03 61 2f 62 68 69")),
    Sample("publish-qos0-retain-empty", Publish(topic="t", retain=True), h("31 03 00 01 74")),
    Sample(
        "publish-qos1",
        Publish(topic="a/b", payload=b"hi", qos=1, packet_id=10),
        h("32 09 00 03 61 2f 62 00 0a 68 69"),
    ),
    Sample(
        "publish-qos1-dup-retain",
        Publish(topic="a/b", payload=b"hi", qos=1, packet_id=1, dup=True, retain=True),
        h("3b 09 00 03 61 2f 62 00 01 68 69"),
    ),
    Sample(
        "publish-qos2",
        Publish(topic="a/b", payload=b"\x00\xff", qos=2, packet_id=65535),
        h("34 09 00 03 61 2f 62 ff ff 00 ff"),
    ),
    Sample(
        "publish-qos2-dup",
        Publish(topic="a/b", qos=2, packet_id=0x1234, dup=True),
        h("3c 07 00 03 61 2f 62 12 34"),
    ),
    Sample(
        "publish-qos2-dup-retain",
        Publish(topic="a/b", payload=b"x", qos=2, packet_id=2, dup=True, retain=True),
        h("3d 08 00 03 61 2f 62 00 02 78"),
    ),
    Sample(
        # the length prefix counts bytes, not characters (1.5.3)
        "publish-utf8-topic",
        Publish(topic="caf\u00e9/\u20ac"),
        h("30 0b 00 09 63 61 66 c3 a9 2f e2 82 ac"),
    ),
    Sample(
        # [MQTT-1.5.3-3] U+FEFF is a character like any other, not a BOM to strip
        "publish-feff-topic",
        Publish(topic="\ufeffa"),
        h("30 06 00 04 ef bb bf 61"),
    ),
    Sample("publish-slash-topic", Publish(topic="/"), h("30 03 00 01 2f")),
]

ACK_SAMPLES = [
    Sample("puback", Puback(packet_id=1), h("40 02 00 01")),
    Sample("pubrec", Pubrec(packet_id=0x1234), h("50 02 12 34")),
    # [MQTT-3.6.1-1] PUBREL fixed header flags are 0010
    Sample("pubrel", Pubrel(packet_id=65535), h("62 02 ff ff")),
    Sample("pubcomp", Pubcomp(packet_id=256), h("70 02 01 00")),
    Sample("unsuback", Unsuback(packet_id=2), h("b0 02 00 02")),
]

SUBSCRIBE_SAMPLES = [
    Sample(
        # [MQTT-3.8.1-1] SUBSCRIBE fixed header flags are 0010
        "subscribe-three-filters",
        Subscribe(packet_id=1, subscriptions=(("a/b", 0), ("c/+", 1), ("#", 2))),
        h("82 12 00 01") + h("00 03 61 2f 62 00") + h("00 03 63 2f 2b 01") + h("00 01 23 02"),
    ),
    Sample(
        "subscribe-one-filter",
        Subscribe(packet_id=10, subscriptions=(("sport/tennis/player1/#", 1),)),
        h("82 1b 00 0a 00 16") + b"sport/tennis/player1/#" + h("01"),
    ),
    Sample(
        "suback-all-codes",
        Suback(packet_id=1, return_codes=(0x00, 0x01, 0x02, 0x80)),
        h("90 06 00 01 00 01 02 80"),
    ),
    Sample("suback-failure", Suback(packet_id=0x0102, return_codes=(0x80,)), h("90 03 01 02 80")),
    Sample(
        # [MQTT-3.10.1-1] UNSUBSCRIBE fixed header flags are 0010
        "unsubscribe-two-filters",
        Unsubscribe(packet_id=2, topic_filters=("a/b", "c/#")),
        h("a2 0c 00 02 00 03 61 2f 62 00 03 63 2f 23"),
    ),
    Sample(
        "unsubscribe-one-filter",
        Unsubscribe(packet_id=65535, topic_filters=("+",)),
        h("a2 05 ff ff 00 01 2b"),
    ),
]

EMPTY_SAMPLES = [
    Sample("pingreq", Pingreq(), h("c0 00")),
    Sample("pingresp", Pingresp(), h("d0 00")),
    Sample("disconnect", Disconnect(), h("e0 00")),
]

GOLDEN: list[Sample] = (
    CONNECT_SAMPLES + CONNACK_SAMPLES + PUBLISH_SAMPLES + ACK_SAMPLES + SUBSCRIBE_SAMPLES + EMPTY_SAMPLES
)
GOLDEN_IDS = [sample.id for sample in GOLDEN]

# One sample of each packet class, for tables keyed by packet type.
FIRST_OF_TYPE: dict[type, Sample] = {}
for _sample in GOLDEN:
    FIRST_OF_TYPE.setdefault(type(_sample.packet), _sample)
