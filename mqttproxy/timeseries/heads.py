"""The newest samples of each series (its head), kept in memory, and the log rows that make them durable.

A flush of the recorder touches many series with a few samples each. Encoding
a chunk per series per flush would cost tens of microseconds a series, and a
row per sample would scatter writes over the whole table; so every flush
appends *one* row to ``ts_log`` holding all its samples, and the samples are
appended to their series' heads in memory. The store seals a full head into
compressed chunks (``codec.py``) and writes what the head still holds to the
log again, so that each series only ever needs the log rows from its
``since`` on; older rows are deleted. At start, the heads are rebuilt from the
log.

Log row layout (little-endian)::

    version   u8            LOG_VERSION
    zlib stream of:
      samples     u32       n
      series ids            n x i64
      timestamps            n x i64 (Unix milliseconds)
      values                n x f64
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import le
from typing import Any

__all__ = ["LOG_VERSION", "Head", "LogError", "decode_log_row", "encode_log_row"]

LOG_VERSION = 1
_ZLIB_LEVEL = 1  # a fourth of the raw size for about 0.15 µs a sample; the rows are short-lived
_COUNT = struct.Struct("<I")
_BIG_ENDIAN = sys.byteorder == "big"


class LogError(ValueError):
    """Bytes that are not a log row this module wrote."""


@dataclass(slots=True)
class Head:
    """A series' samples not yet sealed, in arrival order."""

    since: int  # the first log row that can hold samples of this head
    timestamps: array[int] = field(default_factory=lambda: array("q"))
    values: array[float] = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.timestamps)

    def replace(self, timestamps: Sequence[int], values: Sequence[float], since: int) -> None:
        self.timestamps = array("q", timestamps)
        self.values = array("d", values)
        self.since = since

    def in_order(self) -> tuple[list[int], list[float]]:
        """The samples sorted by time, ties in arrival order."""
        timestamps, values = self.timestamps.tolist(), self.values.tolist()
        if all(map(le, timestamps, islice(timestamps, 1, None))):
            return timestamps, values
        order = sorted(range(len(timestamps)), key=timestamps.__getitem__)  # stable
        return [timestamps[i] for i in order], [values[i] for i in order]


def encode_log_row(series_ids: Sequence[int], timestamps: Sequence[int], values: Sequence[float]) -> bytes:
    """One log row: sample ``i`` is ``(timestamps[i], values[i])`` of series ``series_ids[i]``."""
    if not len(series_ids) == len(timestamps) == len(values):
        raise LogError(f"{len(series_ids)} series ids, {len(timestamps)} timestamps, {len(values)} values")
    columns: list[array[Any]] = [array("q", series_ids), array("q", timestamps), array("d", values)]
    if _BIG_ENDIAN:
        for column in columns:
            column.byteswap()
    body = b"".join([_COUNT.pack(len(series_ids)), *(column.tobytes() for column in columns)])
    return bytes((LOG_VERSION,)) + zlib.compress(body, _ZLIB_LEVEL)


def decode_log_row(data: bytes) -> tuple[array[int], array[int], array[float]]:
    """The series ids, timestamps and values of a log row; ``LogError`` if it is not one."""
    if not data or data[0] != LOG_VERSION:
        raise LogError(f"log row format {data[:1].hex() or 'missing'} is unknown; this reads {LOG_VERSION}")
    try:
        body = zlib.decompress(memoryview(data)[1:])
        (samples,) = _COUNT.unpack_from(body)
    except (zlib.error, struct.error) as exc:
        raise LogError(f"corrupt log row: {exc}") from None
    if len(body) != _COUNT.size + 24 * samples:
        raise LogError(f"corrupt log row: {len(body)} bytes for {samples} samples")
    view = memoryview(body)[_COUNT.size :]
    series_ids: array[int] = array("q")
    series_ids.frombytes(view[: 8 * samples])
    timestamps: array[int] = array("q")
    timestamps.frombytes(view[8 * samples : 16 * samples])
    values: array[float] = array("d")
    values.frombytes(view[16 * samples :])
    if _BIG_ENDIAN:
        for column in (series_ids, timestamps, values):
            column.byteswap()
    return series_ids, timestamps, values
