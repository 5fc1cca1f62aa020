"""The chunk summary: per-block summaries that hold, and runs of blocks that decode on their own."""

from __future__ import annotations

import math
import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproxy.timeseries.codec import (
    BLOCK_SAMPLES,
    FORMAT_VERSION,
    ChunkReader,
    CodecError,
    decode_chunk,
    encode_chunk,
)

DECIMAL = st.integers(min_value=-(10**7), max_value=10**7).flatmap(
    lambda scaled: st.sampled_from([scaled / 10**k for k in range(4)])
)
ANY_DOUBLE = st.integers(min_value=0, max_value=2**64 - 1).map(
    lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0]
)


def bits(values: list[float]) -> list[int]:
    return [struct.unpack("<Q", struct.pack("<d", value))[0] for value in values]


def walk(samples: int, seed: int = 1, period: int = 1000) -> tuple[list[int], list[float]]:
    rng = random.Random(seed)
    stamps = [1_700_000_000_000 + i * period + rng.randint(0, period // 10) for i in range(samples)]
    level, values = 2150, []
    for _ in range(samples):
        level += rng.choice((-1, 0, 1))
        values.append(level / 100)
    return stamps, values


@st.composite
def chunks(draw: st.DrawFn, values: st.SearchStrategy[float]) -> tuple[list[int], list[float]]:
    size = draw(st.integers(min_value=0, max_value=5 * BLOCK_SAMPLES))
    start = draw(st.integers(min_value=-(2**62), max_value=2**62))
    steps = draw(st.lists(st.integers(min_value=0, max_value=10**6), min_size=size, max_size=size))
    stamps = [start + sum(steps[: i + 1]) for i in range(size)]
    if draw(st.booleans()):  # now and then out of order: the summary says so
        draw(st.randoms()).shuffle(stamps)
    return stamps, draw(st.lists(values, min_size=size, max_size=size))


def check_blocks(stamps: list[int], values: list[float]) -> None:
    """Every block's summary is what its samples say, and every run of blocks decodes on its own."""
    reader = ChunkReader(encode_chunk(stamps, values))
    assert reader.samples == len(stamps)
    assert reader.ordered == (bool(reader.block_samples) and stamps == sorted(stamps))
    for block in range(reader.blocks):
        low, high = reader.block_range(block, block + 1)
        part_stamps, part_values = stamps[low:high], values[low:high]
        if reader.block_samples:
            assert (reader.first_timestamps[block], reader.last_timestamps[block]) == (
                part_stamps[0],
                part_stamps[-1],
            )
        if reader.summarized[block]:
            assert not any(math.isnan(value) for value in part_values)
            assert (reader.lows[block], reader.highs[block]) == (min(part_values), max(part_values))
            assert (reader.firsts[block], reader.lasts[block]) == (part_values[0], part_values[-1])
            assert reader.sums[block] == pytest.approx(math.fsum(part_values), rel=1e-12, abs=1e-9)
    rng = random.Random(len(stamps))
    for _ in range(5):
        first = rng.randrange(reader.blocks + 1)
        end = rng.randrange(first, reader.blocks + 1)
        low, high = reader.block_range(first, end)
        got_stamps, got_values = reader.decode(first, end)
        assert got_stamps == stamps[low:high]
        assert bits(got_values) == bits(values[low:high])
        scaled = reader.decode_scaled(first, end)
        if scaled is not None:
            assert scaled[0] == got_stamps
            assert bits([item / scaled[2] for item in scaled[1]]) == bits(got_values)


@settings(max_examples=100, deadline=None)
@given(chunks(DECIMAL))
def test_decimal_chunks_summarise_and_decode_by_blocks(chunk: tuple[list[int], list[float]]) -> None:
    check_blocks(*chunk)


@settings(max_examples=100, deadline=None)
@given(chunks(ANY_DOUBLE))
def test_any_doubles_summarise_and_decode_by_blocks(chunk: tuple[list[int], list[float]]) -> None:
    check_blocks(*chunk)


@settings(max_examples=100, deadline=None)
@given(chunks(st.one_of(DECIMAL, DECIMAL, DECIMAL, DECIMAL, DECIMAL, DECIMAL, DECIMAL, ANY_DOUBLE)))
def test_blocks_with_exceptions_have_no_summary(chunk: tuple[list[int], list[float]]) -> None:
    check_blocks(*chunk)


def test_a_sensor_chunk_is_summarised_block_by_block() -> None:
    stamps, values = walk(2048)
    reader = ChunkReader(encode_chunk(stamps, values))
    assert (reader.blocks, reader.block_samples, reader.ordered) == (16, BLOCK_SAMPLES, True)
    assert reader.summarized == b"\x01" * 16
    assert decode_chunk(encode_chunk(stamps, values)) == (stamps, values)


def test_a_block_holding_a_stray_double_is_decoded_not_summarised() -> None:
    stamps, values = walk(1024)
    values[300] = math.pi  # not a decimal: kept verbatim as an exception
    reader = ChunkReader(encode_chunk(stamps, values))
    assert [block for block in range(reader.blocks) if not reader.summarized[block]] == [300 // BLOCK_SAMPLES]
    assert reader.decode_scaled(2, 3) is None
    assert reader.decode(2, 3)[1] == values[256:384]


def test_small_chunks_have_no_summary() -> None:
    stamps, values = walk(2 * BLOCK_SAMPLES - 1)
    reader = ChunkReader(encode_chunk(stamps, values))
    assert (reader.blocks, reader.block_samples, reader.summarized) == (1, 0, b"\x00")
    assert reader.decode() == (stamps, values)


def summary_of(stamps: list[int], values: list[float]) -> tuple[bytes, int]:
    """A chunk's payload and the offset of its summary header."""
    payload = zlib.decompress(encode_chunk(stamps, values)[1:])
    blocks = -(-len(stamps) // BLOCK_SAMPLES)
    return payload, len(payload) - 3 - blocks * 57


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda payload, at: payload[:at] + struct.pack("<H", 8) + payload[at + 2 :], "blocks of 8"),
        (lambda payload, at: payload[:at] + struct.pack("<H", 64) + payload[at + 2 :], "match"),
        (lambda payload, at: payload[: at + 2] + b"\x02" + payload[at + 3 :], "order flag 2"),
        (lambda payload, at: payload[: at + 3] + b"\x07" + payload[at + 4 :], "flags"),
        (lambda payload, at: payload[:-1], "match"),
    ],
)
def test_a_corrupt_summary_is_refused(change: object, message: str) -> None:
    payload, at = summary_of(*walk(3 * BLOCK_SAMPLES))
    damaged = change(payload, at)  # type: ignore[operator]
    with pytest.raises(CodecError, match=message):
        ChunkReader(bytes([FORMAT_VERSION]) + zlib.compress(damaged))
