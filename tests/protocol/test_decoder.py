"""Incremental decoding: bytes arrive in any pieces, packets come out whole."""

from __future__ import annotations

import random

import pytest

from mqttproxy.protocol.codec import Decoder
from mqttproxy.protocol.packets import Packet, Publish
from tests.protocol.golden import GOLDEN, GOLDEN_IDS, Sample, h

# A packet to follow each sample: PUBLISH QoS 1 "a/b" id 10 payload "hi".
NEXT = Publish(topic="a/b", payload=b"hi", qos=1, packet_id=10)
NEXT_WIRE = h("32 09 00 03 61 2f 62 00 0a 68 69")


def drain(decoder: Decoder) -> list[Packet]:
    packets = []
    while (packet := decoder.next_packet()) is not None:
        packets.append(packet)
    return packets


def test_empty_decoder_has_nothing() -> None:
    decoder = Decoder()
    assert decoder.next_packet() is None
    decoder.receive_data(b"")
    assert decoder.next_packet() is None
    assert decoder.buffered == 0


@pytest.mark.parametrize("sample", GOLDEN, ids=GOLDEN_IDS)
def test_byte_by_byte(sample: Sample) -> None:
    decoder = Decoder()
    for index, byte in enumerate(sample.wire[:-1]):
        decoder.receive_data(bytes((byte,)))
        assert decoder.next_packet() is None, f"packet complete after {index + 1} bytes"
        assert decoder.buffered == index + 1
    decoder.receive_data(sample.wire[-1:])
    assert decoder.next_packet() == sample.packet
    assert decoder.next_packet() is None
    assert decoder.buffered == 0


@pytest.mark.parametrize("sample", GOLDEN, ids=GOLDEN_IDS)
def test_every_split_in_two(sample: Sample) -> None:
    for cut in range(len(sample.wire) + 1):
        decoder = Decoder()
        decoder.receive_data(sample.wire[:cut])
        if cut < len(sample.wire):
            assert decoder.next_packet() is None, f"cut at {cut}"
        decoder.receive_data(sample.wire[cut:])
        assert drain(decoder) == [sample.packet], f"cut at {cut}"
        assert decoder.buffered == 0


@pytest.mark.parametrize("sample", GOLDEN, ids=GOLDEN_IDS)
def test_trailing_bytes_of_next_packet(sample: Sample) -> None:
    for cut in range(1, len(NEXT_WIRE)):
        decoder = Decoder()
        decoder.receive_data(sample.wire + NEXT_WIRE[:cut])
        assert decoder.next_packet() == sample.packet
        assert decoder.next_packet() is None
        assert decoder.buffered == cut
        decoder.receive_data(NEXT_WIRE[cut:])
        assert drain(decoder) == [NEXT]
        assert decoder.buffered == 0


@pytest.mark.parametrize("sample", GOLDEN, ids=GOLDEN_IDS)
def test_split_inside_packet_after_a_whole_one(sample: Sample) -> None:
    """The tail of a partly consumed read is kept when more bytes come."""
    for cut in range(len(sample.wire)):
        decoder = Decoder()
        decoder.receive_data(NEXT_WIRE + sample.wire[:cut])
        assert decoder.next_packet() == NEXT
        assert decoder.next_packet() is None
        decoder.receive_data(sample.wire[cut:])
        assert drain(decoder) == [sample.packet]


def test_all_samples_in_one_call() -> None:
    decoder = Decoder()
    decoder.receive_data(b"".join(sample.wire for sample in GOLDEN))
    assert drain(decoder) == [sample.packet for sample in GOLDEN]
    assert decoder.buffered == 0


def test_all_samples_twice_in_reverse() -> None:
    samples = GOLDEN + GOLDEN[::-1]
    decoder = Decoder()
    decoder.receive_data(b"".join(sample.wire for sample in samples))
    assert drain(decoder) == [sample.packet for sample in samples]


@pytest.mark.parametrize("seed", range(20))
def test_all_samples_in_random_chunks(seed: int) -> None:
    rng = random.Random(seed)
    wire = b"".join(sample.wire for sample in GOLDEN)
    decoder = Decoder()
    packets: list[Packet] = []
    pos = 0
    while pos < len(wire):
        size = rng.choice((1, 2, 3, 7, 16, 64))
        decoder.receive_data(wire[pos : pos + size])
        pos += size
        packets.extend(drain(decoder))
    assert packets == [sample.packet for sample in GOLDEN]
    assert decoder.buffered == 0


def test_receive_twice_before_reading() -> None:
    """A second receive_data before next_packet appends; it must not replace unread bytes."""
    first, second = GOLDEN[0], GOLDEN[-1]
    decoder = Decoder()
    decoder.receive_data(first.wire)
    decoder.receive_data(second.wire)
    assert decoder.buffered == len(first.wire) + len(second.wire)
    assert drain(decoder) == [first.packet, second.packet]


def test_many_small_reads_before_reading() -> None:
    wire = b"".join(sample.wire for sample in GOLDEN)
    decoder = Decoder()
    for byte in wire:
        decoder.receive_data(bytes((byte,)))
    assert decoder.buffered == len(wire)
    assert drain(decoder) == [sample.packet for sample in GOLDEN]


def test_large_publish_trickled() -> None:
    """A packet larger than one read, in pieces whose edges fall inside the length field too."""
    payload = bytes(range(256)) * 80  # remaining length 20483: three length bytes
    wire = h("30 83 a0 01 00 01 74") + payload
    decoder = Decoder()
    for start in range(0, len(wire), 1000):
        assert decoder.next_packet() is None
        decoder.receive_data(wire[start : start + 1000])
    assert drain(decoder) == [Publish(topic="t", payload=payload)]


def test_payload_is_immutable_copy() -> None:
    """Packets decoded from an accumulated buffer do not share it."""
    wire = h("30 07 00 03 61 2f 62 68 69")
    decoder = Decoder()
    decoder.receive_data(wire[:4])
    decoder.receive_data(wire[4:] + wire)
    first, second = drain(decoder)
    assert isinstance(first, Publish)
    assert type(first.payload) is bytes
    assert first == second == Publish(topic="a/b", payload=b"hi")
