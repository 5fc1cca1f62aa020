"""Malformed bytes from the peer: the Decoder raises ``RemoteProtocolError``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mqttproxy.errors import RemoteProtocolError
from mqttproxy.protocol.codec import Decoder
from mqttproxy.protocol.packets import Connect, ConnectReturnCode, Packet, PacketType, Will
from tests.protocol.golden import FIRST_OF_TYPE, h


def s(raw: bytes) -> bytes:
    """A length-prefixed string or binary field (1.5.3)."""
    return len(raw).to_bytes(2, "big") + raw


def pkt(first: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes((first, len(body))) + body


def connect(
    flags: int = 0x02,
    payload: bytes = s(b"id"),
    *,
    name: bytes = b"MQTT",
    level: int = 4,
) -> bytes:
    return pkt(0x10, s(name) + bytes((level, flags)) + h("00 3c") + payload)


def decode_all(wire: bytes, *, max_packet_size: int | None = None) -> list[Packet]:
    decoder = Decoder() if max_packet_size is None else Decoder(max_packet_size=max_packet_size)
    decoder.receive_data(wire)
    packets = []
    while (packet := decoder.next_packet()) is not None:
        packets.append(packet)
    return packets


MALFORMED: dict[str, bytes] = {
    # --- fixed header
    "remaining-length-5-bytes": h("30 ff ff ff ff 01"),  # 2.2.3: at most four bytes
    "remaining-length-5-bytes-max": h("30 80 80 80 80 00"),
    "reserved-type-0": h("00 00"),
    "reserved-type-15": h("f0 00"),
    # [MQTT-3.3.1-4] QoS 3
    "publish-qos3": pkt(0x36, s(b"t") + h("00 01")),
    "publish-qos3-retain": pkt(0x37, s(b"t") + h("00 01")),
    "publish-qos3-dup": pkt(0x3E, s(b"t") + h("00 01")),
    "publish-qos3-dup-retain": pkt(0x3F, s(b"t") + h("00 01")),
    # [MQTT-3.3.1-2] DUP is 0 at QoS 0
    "publish-qos0-dup": pkt(0x38, s(b"t")),
    "publish-qos0-dup-retain": pkt(0x39, s(b"t")),
    # --- packet identifier 0 [MQTT-2.3.1-1]
    "publish-qos1-id0": pkt(0x32, s(b"t") + h("00 00")),
    "publish-qos2-id0": pkt(0x34, s(b"t") + h("00 00")),
    "puback-id0": h("40 02 00 00"),
    "pubrec-id0": h("50 02 00 00"),
    "pubrel-id0": h("62 02 00 00"),
    "pubcomp-id0": h("70 02 00 00"),
    "subscribe-id0": pkt(0x82, h("00 00") + s(b"a") + h("00")),
    "suback-id0": h("90 03 00 00 00"),
    "unsubscribe-id0": pkt(0xA2, h("00 00") + s(b"a")),
    "unsuback-id0": h("b0 02 00 00"),
    # --- topic names [MQTT-3.3.2-2], [MQTT-4.7.1-1], [MQTT-4.7.3-1]
    "publish-topic-plus": pkt(0x30, s(b"a/+")),
    "publish-topic-hash": pkt(0x30, s(b"#")),
    "publish-topic-trailing-hash": pkt(0x30, s(b"a/#")),
    "publish-topic-plus-in-level": pkt(0x30, s(b"sport+")),
    "publish-topic-empty": pkt(0x30, s(b"")),
    "will-topic-wildcard": connect(0x06, s(b"id") + s(b"w/#") + s(b"")),
    "will-topic-empty": connect(0x06, s(b"id") + s(b"") + s(b"")),
    # --- SUBSCRIBE / UNSUBSCRIBE
    "subscribe-empty-payload": h("82 02 00 01"),  # [MQTT-3.8.3-3]
    "unsubscribe-empty-payload": h("a2 02 00 01"),  # [MQTT-3.10.3-2]
    "subscribe-missing-qos": pkt(0x82, h("00 01") + s(b"a")),
    "subscribe-second-filter-truncated": pkt(0x82, h("00 01") + s(b"a") + h("00 00 05 62")),
    "subscribe-no-packet-id": h("82 01 00"),
    "unsubscribe-truncated-filter": pkt(0xA2, h("00 01 00 03 61")),
    # --- CONNECT
    "connect-reserved-flag": connect(0x03),  # [MQTT-3.1.2-3]
    "connect-reserved-flag-only": connect(0x01),
    "connect-will-qos1-without-will": connect(0x0A),  # [MQTT-3.1.2-13]
    "connect-will-qos2-without-will": connect(0x12),
    "connect-will-retain-without-will": connect(0x22),  # [MQTT-3.1.2-15]
    "connect-will-qos3": connect(0x1E, s(b"id") + s(b"w") + s(b"")),  # [MQTT-3.1.2-14]
    "connect-password-without-username": connect(0x42, s(b"id") + s(b"pw")),  # [MQTT-3.1.2-22]
    "connect-username-flag-no-username": connect(0x82, s(b"id")),
    "connect-password-flag-no-password": connect(0xC2, s(b"id") + s(b"u")),
    "connect-will-flag-no-will-message": connect(0x06, s(b"id") + s(b"w")),
    "connect-will-flag-no-will-topic": connect(0x06, s(b"id")),
    "connect-no-client-id": connect(0x02, b""),
    "connect-client-id-truncated": connect(0x02, h("00 05 61 62")),
    "connect-ends-in-variable-header": pkt(0x10, s(b"MQTT") + h("04 02")),
    "connect-ends-in-protocol-name": pkt(0x10, h("00 04 4d 51")),
    "connect-empty-body": h("10 00"),
    "connect-trailing-byte": connect(0x02, s(b"id") + h("00")),
    "connect-trailing-string": connect(0x02, s(b"id") + s(b"extra")),
    # --- CONNACK
    "connack-reserved-bit-1": h("20 02 02 00"),  # 3.2.2.1: bits 7-1 are reserved
    "connack-reserved-bit-7": h("20 02 80 00"),
    "connack-return-code-6": h("20 02 00 06"),  # 3.2.2.3: 6-255 reserved
    "connack-return-code-255": h("20 02 00 ff"),
    "connack-session-present-refused": h("20 02 01 05"),  # [MQTT-3.2.2-4]
    "connack-length-3": h("20 03 00 00 00"),
    "connack-length-1": h("20 01 00"),
    # --- SUBACK [MQTT-3.9.3-2]
    "suback-code-3": h("90 03 00 01 03"),
    "suback-code-0x81": h("90 03 00 01 81"),
    "suback-code-0x7f": h("90 04 00 01 00 7f"),
    "suback-length-1": h("90 01 00"),
    "suback-no-return-codes": h("90 02 00 01"),  # [MQTT-3.9.3-1] one per filter
    # --- fixed-size packets with the wrong remaining length
    "puback-length-3": h("40 03 00 01 00"),
    "puback-length-1": h("40 01 01"),
    "puback-length-0": h("40 00"),
    "pubrec-length-3": h("50 03 00 01 00"),
    "pubrel-length-3": h("62 03 00 01 00"),
    "pubcomp-length-3": h("70 03 00 01 00"),
    "unsuback-length-3": h("b0 03 00 01 00"),
    "pingreq-length-1": h("c0 01 00"),
    "pingresp-length-1": h("d0 01 00"),
    "disconnect-length-1": h("e0 01 00"),
    # --- truncated fields
    "publish-empty-body": h("30 00"),
    "publish-one-byte-body": h("30 01 00"),
    "publish-topic-runs-past-end": h("30 04 00 05 61 62"),
    "publish-qos1-missing-packet-id": pkt(0x32, s(b"t")),
    "publish-qos1-half-packet-id": pkt(0x32, s(b"t") + h("00")),
}


@pytest.mark.parametrize("wire", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_all(wire)


def test_valid_twins_of_malformed_samples_decode() -> None:
    """The helpers build valid packets when nothing is wrong, so each failure above has its own cause."""
    assert len(decode_all(connect())) == 1
    assert len(decode_all(connect(0x06, s(b"id") + s(b"w") + s(b"")))) == 1
    assert len(decode_all(connect(0xC2, s(b"id") + s(b"u") + s(b"pw")))) == 1
    assert len(decode_all(pkt(0x32, s(b"t") + h("00 01")))) == 1
    assert len(decode_all(pkt(0x82, h("00 01") + s(b"a") + h("00")))) == 1
    assert len(decode_all(pkt(0xA2, h("00 01") + s(b"a")))) == 1


# --- fixed header flags [MQTT-2.2.2-2]: every non-PUBLISH type with every wrong flag value


def _wrong_flag_params() -> list[object]:
    params: list[object] = []
    for sample in FIRST_OF_TYPE.values():
        packet_type = sample.wire[0] >> 4
        if packet_type == PacketType.PUBLISH:
            continue
        for flags in range(16):
            first = (packet_type << 4) | flags
            if first != sample.wire[0]:
                name = PacketType(packet_type).name
                params.append(pytest.param(bytes((first,)) + sample.wire[1:], id=f"{name}-{first:#04x}"))
    return params


@pytest.mark.parametrize("wire", _wrong_flag_params())
def test_wrong_fixed_header_flags(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_all(wire)


@pytest.mark.parametrize(
    "first_byte",
    [0x00, 0x0F, 0xF0, 0xFF, 0x36, 0x38, 0x60, 0x80, 0xA0, 0x11, 0xC1, 0xE8],
    ids=lambda b: f"{b:#04x}",
)
def test_bad_first_byte_refused_before_length(first_byte: int) -> None:
    decoder = Decoder()
    decoder.receive_data(bytes((first_byte,)))
    with pytest.raises(RemoteProtocolError):
        decoder.next_packet()


def test_fifth_length_byte_refused_before_it_arrives() -> None:
    decoder = Decoder()
    decoder.receive_data(h("30 ff ff ff"))
    assert decoder.next_packet() is None
    decoder.receive_data(h("ff"))
    with pytest.raises(RemoteProtocolError):
        decoder.next_packet()


# --- UTF-8 strings [MQTT-1.5.3-1], [MQTT-1.5.3-2]

BAD_STRINGS = {
    "c3-28": h("c3 28"),  # invalid continuation byte
    "surrogate-d800": h("ed a0 80"),  # U+D800 encoded
    "surrogate-dfff": h("ed bf bf"),
    "overlong-nul": h("c0 80"),
    "overlong-slash": h("c0 af"),
    "truncated-sequence": h("61 c3"),
    "lone-continuation": h("80"),
    "above-10ffff": h("f4 90 80 80"),
    "byte-ff": h("ff"),
    "nul": h("61 00 62"),
    "only-nul": h("00"),
}

STRING_FIELDS: dict[str, Callable[[bytes], bytes]] = {
    "publish-topic": lambda raw: pkt(0x30, s(raw)),
    "client-id": lambda raw: connect(0x02, s(raw)),
    "will-topic": lambda raw: connect(0x06, s(b"id") + s(raw) + s(b"")),
    "username": lambda raw: connect(0x82, s(b"id") + s(raw)),
    "subscribe-filter": lambda raw: pkt(0x82, h("00 01") + s(raw) + h("00")),
    "unsubscribe-filter": lambda raw: pkt(0xA2, h("00 01") + s(raw)),
    "protocol-name": lambda raw: pkt(0x10, s(raw) + h("04 02 00 3c") + s(b"id")),
}


@pytest.mark.parametrize("field", STRING_FIELDS.values(), ids=STRING_FIELDS.keys())
@pytest.mark.parametrize("raw", BAD_STRINGS.values(), ids=BAD_STRINGS.keys())
def test_bad_utf8_string(field: Callable[[bytes], bytes], raw: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_all(field(raw))


@pytest.mark.parametrize("field", list(STRING_FIELDS.values())[:-1], ids=list(STRING_FIELDS)[:-1])
def test_good_utf8_string(field: Callable[[bytes], bytes]) -> None:
    # "é/€" plus U+FEFF, which must not be stripped [MQTT-1.5.3-3]
    assert len(decode_all(field(h("c3 a9 2f e2 82 ac ef bb bf")))) == 1


def test_binary_fields_take_any_bytes() -> None:
    """Will message and password are binary data, not strings (3.1.3.3, 3.1.3.5)."""
    wire = connect(0xC6, s(b"id") + s(b"w") + s(h("c3 28 00")) + s(b"u") + s(h("ed a0 80 00")))
    assert decode_all(wire) == [
        Connect(
            client_id="id",
            will=Will(topic="w", payload=h("c3 28 00")),
            username="u",
            password=h("ed a0 80 00"),
        )
    ]


# --- topic filters [MQTT-4.7.1-2], [MQTT-4.7.1-3], [MQTT-4.7.3-1]

BAD_FILTERS = ["a/#/b", "a+", "#a", "+a", "a/b#", "sport/tennis#", "#/", "##", "a/++", ""]


@pytest.mark.parametrize("topic_filter", BAD_FILTERS)
def test_subscribe_bad_filter(topic_filter: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_all(pkt(0x82, h("00 01") + s(b"ok") + h("00") + s(topic_filter.encode()) + h("01")))


@pytest.mark.parametrize("topic_filter", BAD_FILTERS)
def test_unsubscribe_bad_filter(topic_filter: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_all(pkt(0xA2, h("00 01") + s(b"ok") + s(topic_filter.encode())))


@pytest.mark.parametrize("requested", [0x03, 0x04, 0x05, 0x80, 0x81, 0xFC, 0xFF], ids=lambda b: f"{b:#04x}")
def test_subscribe_bad_requested_qos(requested: int) -> None:
    # [MQTT-3-8.3-4] QoS 3 or any reserved bit set is malformed
    with pytest.raises(RemoteProtocolError):
        decode_all(pkt(0x82, h("00 01") + s(b"a") + bytes((requested,))))


# --- protocol name and level


@pytest.mark.parametrize("name", [b"MQTX", b"mqtt", b"MQTT\x00", b"", b"MQIsdp2"], ids=repr)
def test_unknown_protocol_name_closes_without_connack(name: bytes) -> None:
    # [MQTT-3.1.2-1] no CONNACK: return_code is None
    with pytest.raises(RemoteProtocolError) as caught:
        decode_all(connect(name=name))
    assert caught.value.return_code is None


@pytest.mark.parametrize(
    ("name", "level"),
    [(b"MQTT", 5), (b"MQTT", 3), (b"MQTT", 0), (b"MQTT", 255), (b"MQIsdp", 4)],
    ids=lambda v: v.decode() if isinstance(v, bytes) else str(v),
)
def test_unsupported_level_answers_0x01(name: bytes, level: int) -> None:
    # [MQTT-3.1.2-2] answer CONNACK 0x01 and disconnect
    with pytest.raises(RemoteProtocolError) as caught:
        decode_all(connect(name=name, level=level))
    assert caught.value.return_code == ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION


def test_mqtt5_connect_answers_0x01() -> None:
    """An MQTT 5 CONNECT (properties after keep alive) is refused by its level, not its layout."""
    wire = pkt(0x10, s(b"MQTT") + h("05 02 00 3c") + h("05 11 00 00 00 78") + h("00 00"))
    with pytest.raises(RemoteProtocolError) as caught:
        decode_all(wire)
    assert caught.value.return_code == 1


# --- maximum packet size


def test_max_packet_size_one_over_refused_from_header_alone() -> None:
    # PUBLISH of remaining length 127: 129 bytes in all
    decoder = Decoder(max_packet_size=128)
    decoder.receive_data(h("30"))
    assert decoder.next_packet() is None
    decoder.receive_data(h("7f"))
    with pytest.raises(RemoteProtocolError):
        decoder.next_packet()


def test_max_packet_size_multibyte_length_refused_from_header_alone() -> None:
    # remaining length 16384 in three bytes: 16388 bytes in all
    decoder = Decoder(max_packet_size=16387)
    decoder.receive_data(h("30 80 80 01 00 01 74"))
    with pytest.raises(RemoteProtocolError):
        decoder.next_packet()


@pytest.mark.parametrize("payload_size", [0, 124, 125, 500])
def test_max_packet_size_exactly_at_limit_accepted(payload_size: int) -> None:
    body = s(b"t") + bytes(payload_size)
    length = len(body)
    header = bytes((0x30, length)) if length < 128 else bytes((0x30, length & 0x7F | 0x80, length >> 7))
    wire = header + body
    assert len(decode_all(wire, max_packet_size=len(wire))) == 1
    with pytest.raises(RemoteProtocolError):
        decode_all(wire, max_packet_size=len(wire) - 1)


def test_max_packet_size_counts_each_packet_alone() -> None:
    wire = h("c0 00") * 10 + h("30 03 00 01 74")
    assert len(decode_all(wire, max_packet_size=5)) == 11
