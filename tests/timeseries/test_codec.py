"""The chunk codec: every series decodes exactly, and bytes that are not a chunk raise CodecError only."""

from __future__ import annotations

import contextlib
import math
import random
import struct
import zlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mqttproxy.timeseries.codec import FORMAT_VERSION, MAX_SAMPLES, CodecError, decode_chunk, encode_chunk

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Every double, NaNs with any payload and -0.0 included: drawn as raw bits.
ANY_DOUBLE = st.integers(min_value=0, max_value=2**64 - 1).map(
    lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0]
)
DECIMAL = st.integers(min_value=-(10**7), max_value=10**7).flatmap(
    lambda scaled: st.sampled_from([scaled / 10**k for k in range(5)])
)


def bits(values: list[float]) -> list[int]:
    """Doubles as their IEEE bits: NaN payloads and the sign of zero compare exactly."""
    return [struct.unpack("<Q", struct.pack("<d", value))[0] for value in values]


def assert_round_trip(timestamps: list[int], values: list[float]) -> bytes:
    data = encode_chunk(timestamps, values)
    decoded_timestamps, decoded_values = decode_chunk(data)
    assert decoded_timestamps == timestamps
    assert bits(decoded_values) == bits(values)
    return data


@st.composite
def series(draw: st.DrawFn, values: st.SearchStrategy[float]) -> tuple[list[int], list[float]]:
    size = draw(st.integers(min_value=0, max_value=300))
    regular = draw(st.booleans())
    if regular:
        # A sensor on a clock: fixed period, small jitter; sometimes a sample arrives late.
        start = draw(st.integers(min_value=0, max_value=2**42))
        period = draw(st.integers(min_value=1, max_value=3_600_000))
        jitter = draw(st.integers(min_value=0, max_value=period))
        rng = random.Random(draw(st.integers()))
        stamps = [start + i * period + rng.randint(-jitter, jitter) for i in range(size)]
    else:
        stamps = draw(st.lists(INT64, min_size=size, max_size=size))
    return stamps, draw(st.lists(values, min_size=size, max_size=size))


@settings(max_examples=150)
@given(series(ANY_DOUBLE))
@example(([0, 1], [math.nan, -0.0]))
@example(([2**63 - 1, -(2**63)], [math.inf, -math.inf]))
def test_any_doubles_round_trip_bit_exactly(sample: tuple[list[int], list[float]]) -> None:
    assert_round_trip(*sample)


@settings(max_examples=150)
@given(series(DECIMAL))
def test_decimal_readings_round_trip_exactly(sample: tuple[list[int], list[float]]) -> None:
    assert_round_trip(*sample)


@settings(max_examples=200)
@given(series(st.one_of(DECIMAL, DECIMAL, DECIMAL, DECIMAL, DECIMAL, DECIMAL, DECIMAL, ANY_DOUBLE)))
def test_decimals_mixed_with_stray_doubles_round_trip(sample: tuple[list[int], list[float]]) -> None:
    """Mostly decimals with some NaNs, -0.0 and full-precision doubles: the exceptions path."""
    assert_round_trip(*sample)


@pytest.mark.parametrize(
    ("timestamps", "values"),
    [
        ([], []),
        ([5], [1.5]),
        ([3, 1, 2, 2], [1.0, 2.0, 3.0, 4.0]),  # out of order, a duplicate: kept as given
        ([0, 10, 20], [0.1 + 0.2, 0.3, -0.0]),  # 0.1 + 0.2 is not the decimal 0.3
        ([0, 1, 2, 3], [math.nan, float("-nan"), math.inf, -math.inf]),
        ([-(2**63), 2**63 - 1, 0], [1e308, -1e308, 5e-324]),  # deltas that wrap int64
        ([i * 1000 for i in range(4096)], [21.5] * 4096),  # constant: no per-sample bytes
    ],
)
def test_edge_series_round_trip(timestamps: list[int], values: list[float]) -> None:
    assert_round_trip(timestamps, values)


def test_a_regular_sensor_series_costs_a_few_bytes_a_sample() -> None:
    """0.01-step random walk every 10 s with jitter: far below the 16 bytes of a raw pair."""
    rng = random.Random(7)
    stamps, values, level = [], [], 2150
    for i in range(2048):
        stamps.append(1_700_000_000_000 + i * 10_000 + rng.randint(-50, 50))
        level += rng.choice((-1, 0, 0, 1))
        values.append(level / 100)
    data = assert_round_trip(stamps, values)
    assert len(data) / len(stamps) < 4


def test_integers_are_stored_as_doubles() -> None:
    assert decode_chunk(encode_chunk([1, 2], [3, -4]))[1] == [3.0, -4.0]


@pytest.mark.parametrize(
    ("timestamps", "values", "message"),
    [
        ([1, 2], [1.0], "2 timestamps but 1 values"),
        ([2**63], [1.0], "outside the int64 range"),
        ([1], [10**400], "too large for a double"),
    ],
)
def test_samples_that_cannot_be_encoded(timestamps: list[int], values: list[float], message: str) -> None:
    with pytest.raises(CodecError, match=message):
        encode_chunk(timestamps, values)


def test_too_many_samples_for_one_chunk() -> None:
    with pytest.raises(CodecError, match="at most"):
        encode_chunk(range(MAX_SAMPLES + 1), [0.0] * (MAX_SAMPLES + 1))


def envelope(payload: bytes) -> bytes:
    """A payload in a valid version byte and zlib stream: only the decoder's own checks can refuse it."""
    return bytes([FORMAT_VERSION]) + zlib.compress(payload)


VALID = encode_chunk([1_000, 2_000, 3_500, 3_400], [21.5, 21.51, math.nan, 22.0])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty chunk"),
        (bytes([FORMAT_VERSION + 1]) + VALID[1:], "version"),
        (VALID[:-3], "truncated|corrupt"),
        (VALID + b"\x00", "after the compressed payload"),
        (envelope(b"\x00" * 3), "shorter than its header"),
        # A header claiming a million one-byte deltas over an empty body: refused before allocating.
        (envelope(struct.pack("<IBI", MAX_SAMPLES, 1, 0) + struct.pack("<qqBB", 0, 0, 1, 0) * 2), "match"),
        (envelope(struct.pack("<IBI", MAX_SAMPLES + 1, 1, 0) + b"\0" * 36), "at most"),
        (envelope(struct.pack("<IBI", 2, 99, 0) + b"\0" * 36), "value kind"),
        (envelope(struct.pack("<IBI", 2, 1, 3) + b"\0" * 36), "exceptions"),
        (envelope(struct.pack("<IBI", 2, 1, 0) + struct.pack("<qqBB", 0, 0, 3, 0) * 2), "delta width"),
    ],
)
def test_corrupt_chunks_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_chunk(data)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_raise_nothing_but_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode_chunk(data)


@settings(max_examples=300)
@given(st.integers(min_value=1, max_value=len(VALID) - 1), st.integers(min_value=1, max_value=255))
def test_a_flipped_byte_is_refused_or_decodes_to_some_series(position: int, flip: int) -> None:
    """zlib's checksum catches nearly every flip; none may escape as another exception."""
    damaged = bytearray(VALID)
    damaged[position] ^= flip
    try:
        timestamps, values = decode_chunk(bytes(damaged))
    except CodecError:
        return
    assert len(timestamps) == len(values)


@settings(max_examples=200)
@given(st.binary(min_size=36, max_size=120))
def test_any_payload_behind_a_valid_envelope_raises_nothing_but_codec_error(payload: bytes) -> None:
    """Past the checksum, the decoder's own header checks are all that stands between a bug and a crash."""
    with contextlib.suppress(CodecError):
        decode_chunk(envelope(payload))
