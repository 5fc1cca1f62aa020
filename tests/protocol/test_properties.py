"""Property tests: round trips over generated packets, and fuzzing the Decoder."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqttproxy.errors import RemoteProtocolError
from mqttproxy.protocol.codec import Decoder, encode_packet, encode_remaining_length
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
from mqttproxy.protocol.topics import topic_matches

# No example database: nothing is written outside the test directory.
moderate = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- strategies

# [MQTT-1.5.3-1], [MQTT-1.5.3-2]: no surrogates, no U+0000.
_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
strings = st.text(_chars, max_size=20)
_level_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00/+#")
levels = st.text(_level_chars, max_size=8)

# [MQTT-4.7.1-1], [MQTT-4.7.3-1]: no wildcards, at least one character.
topic_names = st.lists(levels, min_size=1, max_size=5).map("/".join).filter(bool)
# [MQTT-4.7.1-2], [MQTT-4.7.1-3]: wildcards fill whole levels, '#' only last.
topic_filters = st.builds(
    lambda parts, hash_: "/".join([*parts, "#"] if hash_ else parts),
    st.lists(st.one_of(levels, st.just("+")), max_size=5),
    st.booleans(),
).filter(bool)
packet_ids = st.integers(1, 0xFFFF)
payloads = st.binary(max_size=400)
qos_values = st.sampled_from([0, 1, 2])


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(qos_values)
    return Publish(
        topic=draw(topic_names),
        payload=draw(payloads),
        qos=qos,
        retain=draw(st.booleans()),
        dup=qos > 0 and draw(st.booleans()),
        packet_id=draw(packet_ids) if qos else None,
    )


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    will = None
    if draw(st.booleans()):
        will = Will(
            topic=draw(topic_names),
            payload=draw(payloads),
            qos=draw(qos_values),
            retain=draw(st.booleans()),
        )
    username = draw(st.none() | strings)
    password = draw(st.none() | st.binary(max_size=40)) if username is not None else None
    name, level = draw(st.sampled_from([("MQTT", 4), ("MQIsdp", 3)]))
    return Connect(
        client_id=draw(strings),
        clean_session=draw(st.booleans()),
        keep_alive=draw(st.integers(0, 0xFFFF)),
        will=will,
        username=username,
        password=password,
        protocol_name=name,
        protocol_level=level,
    )


@st.composite
def connacks(draw: st.DrawFn) -> Connack:
    code = draw(st.sampled_from(ConnectReturnCode))
    present = code == ConnectReturnCode.ACCEPTED and draw(st.booleans())
    return Connack(return_code=code, session_present=present)


packets: st.SearchStrategy[Packet] = st.one_of(
    connects(),
    connacks(),
    publishes(),
    st.builds(Puback, packet_id=packet_ids),
    st.builds(Pubrec, packet_id=packet_ids),
    st.builds(Pubrel, packet_id=packet_ids),
    st.builds(Pubcomp, packet_id=packet_ids),
    st.builds(
        Subscribe,
        packet_id=packet_ids,
        subscriptions=st.lists(st.tuples(topic_filters, qos_values), min_size=1, max_size=5).map(tuple),
    ),
    st.builds(
        Suback,
        packet_id=packet_ids,
        return_codes=st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=5).map(tuple),
    ),
    st.builds(
        Unsubscribe,
        packet_id=packet_ids,
        topic_filters=st.lists(topic_filters, min_size=1, max_size=5).map(tuple),
    ),
    st.builds(Unsuback, packet_id=packet_ids),
    st.just(Pingreq()),
    st.just(Pingresp()),
    st.just(Disconnect()),
)


def decode_chunks(chunks: list[bytes]) -> list[Packet]:
    decoder = Decoder()
    out: list[Packet] = []
    for chunk in chunks:
        decoder.receive_data(chunk)
        while (packet := decoder.next_packet()) is not None:
            out.append(packet)
    assert decoder.buffered == 0
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in pairwise(points)]


def fuzz(chunks: list[bytes]) -> None:
    """Feed ``chunks``; anything but ``RemoteProtocolError`` escapes and fails the test."""
    decoder = Decoder(max_packet_size=1 << 16)
    try:
        for chunk in chunks:
            decoder.receive_data(chunk)
            while decoder.next_packet() is not None:
                pass
    except RemoteProtocolError:
        pass


# --- round trips


@moderate
@given(packets)
def test_round_trip(packet: Packet) -> None:
    assert decode_chunks([encode_packet(packet)]) == [packet]


@moderate
@given(st.lists(packets, min_size=1, max_size=6), st.lists(st.integers(min_value=0), max_size=12))
def test_round_trip_in_random_chunks(sent: list[Packet], cuts: list[int]) -> None:
    wire = b"".join(encode_packet(packet) for packet in sent)
    assert decode_chunks(split(wire, cuts)) == sent


@moderate
@given(packets)
def test_round_trip_byte_by_byte(packet: Packet) -> None:
    wire = encode_packet(packet)
    assert decode_chunks([wire[i : i + 1] for i in range(len(wire))]) == [packet]


@moderate
@given(st.integers(0, 268_435_455))
def test_remaining_length_is_minimal_and_read_back(length: int) -> None:
    encoded = encode_remaining_length(length)
    assert len(encoded) == 1 + (length >= 128) + (length >= 16384) + (length >= 2097152)
    header = b"\x30" + encoded
    exact = Decoder(max_packet_size=len(header) + length)
    exact.receive_data(header)
    if length:
        assert exact.next_packet() is None  # length read, body awaited
    smaller = Decoder(max_packet_size=len(header) + length - 1)
    smaller.receive_data(header)
    try:
        smaller.next_packet()
    except RemoteProtocolError:
        pass
    else:
        raise AssertionError("a packet one byte over the limit was not refused")


# --- fuzzing: only RemoteProtocolError may come out


@settings(moderate, max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    fuzz([data])


@moderate
@given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=8))
def test_random_bytes_in_chunks(data: bytes, cuts: list[int]) -> None:
    fuzz(split(data, cuts))


# A mutation: (kind, position, byte); the position wraps around the data.
mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate"]), st.integers(0), st.integers(0, 255)
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, position, byte in ops:
        if not out:
            break
        index = position % len(out)
        if kind == "flip":
            out[index] ^= 1 << (byte % 8)
        elif kind == "set":
            out[index] = byte
        elif kind == "insert":
            out.insert(index, byte)
        elif kind == "delete":
            del out[index]
        else:
            del out[index:]
    return bytes(out)


@settings(moderate, max_examples=300)
@given(st.lists(packets, min_size=1, max_size=3), mutations, st.lists(st.integers(min_value=0), max_size=4))
def test_mutated_encodings(sent: list[Packet], ops: list[tuple[str, int, int]], cuts: list[int]) -> None:
    wire = mutate(b"".join(encode_packet(packet) for packet in sent), ops)
    fuzz([wire])
    fuzz(split(wire, cuts))


# --- topic matching


@moderate
@given(topic_names | topic_names.map("$".__add__), st.data())
def test_filter_derived_from_topic_matches_it(topic: str, data: st.DataObject) -> None:
    """Replacing levels by '+', or a tail by '#', keeps the match (4.7.1.2, 4.7.1.3)."""
    parts = topic.split("/")
    derived = ["+" if data.draw(st.booleans()) else part for part in parts]
    cut = data.draw(st.integers(0, len(parts)))
    candidates = ["/".join(derived), "/".join([*derived[:cut], "#"])]
    for topic_filter in candidates:
        starts_wild = topic_filter[:1] in ("+", "#")
        # [MQTT-4.7.2-1] a leading wildcard never matches a $ topic
        assert topic_matches(topic_filter, topic) is not (topic.startswith("$") and starts_wild)


@moderate
@given(topic_names, topic_names)
def test_literal_filter_matches_only_equal_topic(a: str, b: str) -> None:
    assert topic_matches(a, b) is (a == b)
