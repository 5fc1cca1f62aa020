"""Log rows of the series' heads: they decode exactly, and bytes that are not one raise LogError only."""

from __future__ import annotations

import contextlib
import math
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproxy.timeseries.heads import LOG_VERSION, Head, LogError, decode_log_row, encode_log_row

POINTS = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=2**63 - 1),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False),
    ),
    max_size=300,
)


@settings(max_examples=100)
@given(POINTS)
def test_a_log_row_round_trips(points: list[tuple[int, int, float]]) -> None:
    series_ids, timestamps, values = ([point[i] for point in points] for i in range(3))
    decoded = decode_log_row(encode_log_row(series_ids, timestamps, values))
    assert [column.tolist() for column in decoded] == [series_ids, timestamps, values]


def test_nan_and_signed_zero_keep_their_bits() -> None:
    _, _, values = decode_log_row(encode_log_row([1, 1], [0, 1], [math.nan, -0.0]))
    assert math.isnan(values[0])
    assert math.copysign(1.0, values[1]) == -1.0


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(LogError, match="2 series ids, 1 timestamps, 2 values"):
        encode_log_row([1, 2], [0], [1.0, 2.0])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "unknown"),
        (bytes([LOG_VERSION + 1]) + zlib.compress(struct.pack("<I", 0)), "unknown"),
        (bytes([LOG_VERSION]) + b"not zlib", "corrupt"),
        (bytes([LOG_VERSION]) + zlib.compress(b"\x01"), "corrupt"),
        (bytes([LOG_VERSION]) + zlib.compress(struct.pack("<I", 2) + bytes(47)), "51 bytes for 2 samples"),
    ],
)
def test_bytes_that_are_not_a_log_row_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(LogError, match=message):
        decode_log_row(data)


@settings(max_examples=200)
@given(st.binary(max_size=100))
def test_random_bytes_raise_nothing_but_log_error(data: bytes) -> None:
    with contextlib.suppress(LogError):
        decode_log_row(bytes([LOG_VERSION]) + zlib.compress(data))


def test_a_head_sorts_by_time_and_keeps_ties_in_arrival_order() -> None:
    head = Head(since=1)
    for timestamp, value in [(5, 1.0), (3, 2.0), (5, 3.0), (4, 4.0), (3, 5.0)]:
        head.timestamps.append(timestamp)
        head.values.append(value)
    assert head.in_order() == ([3, 3, 4, 5, 5], [2.0, 5.0, 4.0, 1.0, 3.0])
    assert len(head) == 5
