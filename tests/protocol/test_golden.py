"""Encoder and decoder against hand-written wire bytes."""

from __future__ import annotations

import pytest

from mqttproxy.errors import LocalProtocolError, RemoteProtocolError
from mqttproxy.protocol.codec import Decoder, encode_packet, encode_remaining_length
from mqttproxy.protocol.packets import PACKET_TYPE_OF, Packet, Publish
from tests.protocol.golden import GOLDEN, GOLDEN_IDS, Sample, h


def decode_one(wire: bytes) -> Packet:
    decoder = Decoder()
    decoder.receive_data(wire)
    packet = decoder.next_packet()
    assert packet is not None
    assert decoder.next_packet() is None
    assert decoder.buffered == 0
    return packet


def test_golden_covers_every_packet_type() -> None:
    assert {type(sample.packet) for sample in GOLDEN} == set(PACKET_TYPE_OF)


@pytest.mark.parametrize("sample", GOLDEN, ids=GOLDEN_IDS)
def test_encode(sample: Sample) -> None:
    assert encode_packet(sample.packet) == sample.wire


@pytest.mark.parametrize("sample", GOLDEN, ids=GOLDEN_IDS)
def test_decode(sample: Sample) -> None:
    packet = decode_one(sample.wire)
    assert type(packet) is type(sample.packet)
    assert packet == sample.packet


# 2.2.3, table 2.4: the boundaries of each encoded length.
REMAINING_LENGTHS = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "80 01"),
    (321, "c1 02"),  # the spec's own example
    (16383, "ff 7f"),
    (16384, "80 80 01"),
    (2097151, "ff ff 7f"),
    (2097152, "80 80 80 01"),
    (268435455, "ff ff ff 7f"),
]


@pytest.mark.parametrize(("length", "encoded"), REMAINING_LENGTHS, ids=[str(n) for n, _ in REMAINING_LENGTHS])
def test_encode_remaining_length(length: int, encoded: str) -> None:
    assert encode_remaining_length(length) == h(encoded)


@pytest.mark.parametrize(("length", "encoded"), REMAINING_LENGTHS, ids=[str(n) for n, _ in REMAINING_LENGTHS])
def test_decoder_reads_remaining_length(length: int, encoded: str) -> None:
    """The decoder's idea of the packet size shows in max_packet_size: exact fits, one less refuses."""
    header = h("30") + h(encoded)
    total = len(header) + length
    fits = Decoder(max_packet_size=total)
    fits.receive_data(header)
    if length == 0:
        # a PUBLISH with an empty body is malformed, but the header was read
        with pytest.raises(RemoteProtocolError):
            fits.next_packet()
    else:
        assert fits.next_packet() is None
    too_small = Decoder(max_packet_size=total - 1)
    too_small.receive_data(header)
    with pytest.raises(RemoteProtocolError):
        too_small.next_packet()


def test_encode_remaining_length_above_maximum() -> None:
    with pytest.raises(LocalProtocolError):
        encode_remaining_length(268435456)


@pytest.mark.parametrize("length", [-1, -128, -200])
def test_encode_remaining_length_negative(length: int) -> None:
    # A remaining length is a count of bytes: no encoding exists for a negative one.
    with pytest.raises(LocalProtocolError):
        encode_remaining_length(length)


# PUBLISH of topic "t" (2 + 1 bytes) and a payload filling the rest, at the length boundaries.
LARGE_PUBLISH = [
    (127, "7f"),
    (128, "80 01"),
    (16383, "ff 7f"),
    (16384, "80 80 01"),
    (2097151, "ff ff 7f"),
    (2097152, "80 80 80 01"),
]


@pytest.mark.parametrize(("length", "encoded"), LARGE_PUBLISH, ids=[str(n) for n, _ in LARGE_PUBLISH])
def test_large_publish(length: int, encoded: str) -> None:
    payload = (bytes(range(256)) * (length // 256 + 1))[: length - 3]
    packet = Publish(topic="t", payload=payload)
    wire = h("30") + h(encoded) + h("00 01 74") + payload
    assert encode_packet(packet) == wire
    assert decode_one(wire) == packet
