"""The chunk codec of the timeseries recorder: samples of one series in, one compact blob out.

A chunk holds the samples of one series (one metric, one label set): ``n``
timestamps (int64 Unix milliseconds, in any order, duplicates allowed) and
``n`` values (any IEEE 754 double, NaN payloads and -0.0 included). Decoding
gives back the very same timestamps and bit-identical values.

Byte layout (integers little-endian)::

    version   u8            FORMAT_VERSION; anything else is refused, so the format can evolve
    zlib stream             the payload below, zlib-compressed (its adler32 catches corruption)

    payload:
      samples     u32       n, at most MAX_SAMPLES
      value kind  u8        0: IEEE bits; 1 + k: decimals, value = scaled / 10**k (k in 0..9)
      exceptions  u32       m, values stored verbatim (decimal kind only; at most n)
      timestamps  int-seq   header (see below)
      values      int-seq   header: the scaled decimals, or the doubles' bits read as int64
      timestamp deltas      byte planes
      value deltas          byte planes
      exception indices     m x u32, ascending
      exception values      m x int64, the doubles' bits
      summary:
        block size  u16     B: the samples are cut in blocks of B; 0: no summary, nothing follows
        ordered     u8      1: the timestamps never decrease
        flags       u8 per block: 1: the block's min, max and sum below hold
        columns     7 x int64 per block, column after column, byte planes (see below): first
                    timestamp, last timestamp, first item, last item, min, max, sum

    int-seq header: first i64, base i64, width u8, wrapped u8

Both columns are sequences of int64 and share one scheme. The first item is
in the header; each following item is its predecessor plus a delta, stored
as ``delta - base`` in the narrowest signed ``width`` holding every one of
them (0 bytes when all deltas equal ``base``: a perfectly regular series
costs nothing per sample). ``base`` is the midpoint of the deltas, so a 10 s
period with +-50 ms of jitter fits one byte instead of two; it is 0 when it
would not narrow anything, which spares the decoder an addition per sample.
``wrapped`` says the deltas were taken modulo 2**64 (they did not fit int64:
timestamps far apart, doubles changing sign), and the decoder wraps the sums
back into int64. The ``n - 1`` deltas are "byte-shuffled": all their lowest
bytes, then all their second bytes, and so on. The high bytes of small deltas
are runs of 0x00 and 0xFF that zlib all but removes, and the low bytes form
a compact alphabet for its Huffman coder.

Values that are decimals, as sensors report them (21.53, 1013.2, a counter),
are stored as integers ``scaled`` with ``scaled / 10**k`` giving the double
back bit-exactly, for the smallest ``k`` that does. Their deltas are tiny
(a random walk in 0.01 steps has deltas of -1, 0, 1) where the IEEE bits of
the same doubles differ in their low mantissa bits at random. The encoder
checks each value with the decoder's own expression, so the round trip is
exact by construction: 0.1 + 0.2 is not the decimal 0.3, and -0.0 is not 0.0.
Up to ``n // 8`` values that are not decimals (a NaN, a -0.0, a stray full
precision double) are kept verbatim as exceptions rather than costing the
chunk its decimal encoding. Anything else is stored as the doubles' IEEE bits
read as int64, through the same delta scheme: slowly changing doubles have
small integer differences, and it keeps NaN payloads, -0.0 and infinities
exact. On every series ``bench/timeseries_throughput.py`` measures (a random
walk, a counter, full-precision noise) it takes fewer bytes than Gorilla's
XOR of consecutive values.

The summary lets a bucketed aggregate skip decoding: a chunk of at least
``2 * BLOCK_SAMPLES`` samples is cut in blocks of ``BLOCK_SAMPLES``, and for
each block it keeps its first and last timestamp, the items the decoder needs
to start there (so any run of blocks decodes on its own, see
``ChunkReader.decode``), and its min, max and sum: of the scaled decimals (a
sum of 1,024 of them fits int64), or of the doubles as IEEE bits. A block
holding an exception, or a NaN, has no summary (its flag is 0): ordering with
NaN depends on position, so it is always decoded. The summary costs 0.1 to
0.15 byte a sample on the sensor series of the benchmark: the 8 byte planes of
its columns are mostly runs of equal bytes.

Per-sample work runs in C: ``array`` packs and unpacks the integers, slicing
shuffles the bytes, ``itertools.accumulate`` and ``map`` rebuild the sums and
quotients. Bit-level packing (Gorilla) or varints in pure Python would cost
microseconds per sample.

Bytes per sample and encode/decode speed for realistic series are measured by
``bench/timeseries_throughput.py``, with the figures in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate, compress, count, islice, repeat
from operator import add, le, lt, ne, sub, truediv

__all__ = [
    "BLOCK_SAMPLES",
    "FORMAT_VERSION",
    "MAX_SAMPLES",
    "ChunkReader",
    "CodecError",
    "decode_chunk",
    "encode_chunk",
]

FORMAT_VERSION = 1
MAX_SAMPLES = 1_000_000  # bounds what a lying header can make the decoder allocate
MAX_DECIMALS = 9
BLOCK_SAMPLES = 128  # samples per summarised block; at most 1,024 (sums of scaled decimals fit int64)

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1
# Below 2**53 an int converts to a double exactly, so ``scaled / 10**k`` is one correctly rounded division.
_EXACT_LIMIT = 1 << 53
_WIDTHS = (0, 1, 2, 4, 8)
_BITS_KIND = 0
_SAMPLE_SIZE = 32  # values tried at every k before a whole chunk is scaled
_ZLIB_LEVEL = 6  # level 9 saves under 1 % on the series measured, for more encode time

_CHUNK_HEADER = struct.Struct("<IBI")
_SEQ_HEADER = struct.Struct("<qqBB")
_SUMMARY_HEADER = struct.Struct("<HB")
_SUMMARY_COLUMNS = 7
_MIN_BLOCK = 16  # a smaller block size in a header is refused: it bounds the summary's size
_PAYLOAD_HEADER_SIZE = _CHUNK_HEADER.size + 2 * _SEQ_HEADER.size
_EXCEPTION_SIZE = 4 + 8
_MAX_SUMMARY = _SUMMARY_HEADER.size + -(-MAX_SAMPLES // _MIN_BLOCK) * (1 + 8 * _SUMMARY_COLUMNS)
_MAX_PAYLOAD = _PAYLOAD_HEADER_SIZE + MAX_SAMPLES * (8 + 8 + _EXCEPTION_SIZE) + _MAX_SUMMARY
_BIG_ENDIAN = sys.byteorder == "big"


class CodecError(ValueError):
    """Samples that cannot be encoded, or bytes that are not a chunk this codec wrote."""


def encode_chunk(timestamps: Sequence[int], values: Sequence[float]) -> bytes:
    """One chunk holding the samples ``(timestamps[i], values[i])``, in the order given."""
    if len(timestamps) != len(values):
        raise CodecError(f"{len(timestamps)} timestamps but {len(values)} values")
    if len(timestamps) > MAX_SAMPLES:
        raise CodecError(f"{len(timestamps)} samples in one chunk; at most {MAX_SAMPLES}")
    stamps = list(timestamps)
    if stamps and (min(stamps) < _INT64_MIN or max(stamps) > _INT64_MAX):
        raise CodecError("a timestamp is outside the int64 range")
    try:
        doubles = array("d", values)
    except OverflowError:
        raise CodecError("a value is an int too large for a double") from None
    kind, scaled, exceptions = _as_decimals(doubles)
    if kind == _BITS_KIND:
        scaled = _as_ints(doubles.tobytes())
    stamp_header, stamp_planes = _pack_ints(stamps)
    value_header, value_planes = _pack_ints(scaled)
    exception_indices = array("I", exceptions)
    exception_bits = array("q")
    if exceptions:
        bits = _as_ints(doubles.tobytes())
        exception_bits.extend(bits[index] for index in exceptions)
    header = _CHUNK_HEADER.pack(len(stamps), kind, len(exceptions)) + stamp_header + value_header
    exception_bytes = _little_endian(exception_indices) + _little_endian(exception_bits)
    summary = _summarize(stamps, scaled, kind, doubles, exceptions)
    return _deflate([header, *stamp_planes, *value_planes, exception_bytes, *summary])


def _deflate(pieces: list[bytes]) -> bytes:
    """The version byte, then one zlib stream with a deflate block per piece.

    Ending a block per byte plane lets each get Huffman codes of its own: a plane of
    low bytes and a plane of sign bytes have little in common (-0.2 byte/sample on random doubles).
    """
    deflater = zlib.compressobj(_ZLIB_LEVEL)
    blocks = [bytes((FORMAT_VERSION,))]
    for piece in pieces:
        blocks.append(deflater.compress(piece))
        blocks.append(deflater.flush(zlib.Z_BLOCK))
    blocks.append(deflater.flush())
    return b"".join(blocks)


def decode_chunk(data: bytes) -> tuple[list[int], list[float]]:
    """The timestamps and values of a chunk ``encode_chunk`` made; ``CodecError`` if it is not one."""
    return ChunkReader(data).decode()


# The summary


def _summarize(
    stamps: list[int], items: list[int], kind: int, doubles: array[float], exceptions: list[int]
) -> list[bytes]:
    """The summary's header and flags, and its columns' byte planes; no blocks below 2 of them."""
    samples = len(stamps)
    if samples < 2 * BLOCK_SAMPLES:
        return [_SUMMARY_HEADER.pack(0, 0)]
    ordered = all(map(le, stamps, islice(stamps, 1, None)))
    starts = range(0, samples, BLOCK_SAMPLES)
    ends = [min(start + BLOCK_SAMPLES, samples) for start in starts]
    flags = bytearray()
    if kind == _BITS_KIND:
        stats: list[tuple[float, float, float]] = []
        for start, end in zip(starts, ends, strict=True):
            block = doubles[start:end]
            total = sum(block)
            flags.append(not math.isnan(total))  # a NaN (or inf - inf): no summary
            stats.append((min(block), max(block), total))
        bits = _as_ints(array("d", [stat for triple in stats for stat in triple]).tobytes())
        lows, highs, sums = bits[0::3], bits[1::3], bits[2::3]
    else:
        lows, highs, sums = [], [], []
        for start, end in zip(starts, ends, strict=True):
            scaled = items[start:end]
            flags.append(bisect_left(exceptions, start) == bisect_left(exceptions, end))
            lows.append(min(scaled))
            highs.append(max(scaled))
            sums.append(sum(scaled))
    columns = array("q", [stamps[start] for start in starts])
    columns.extend(stamps[end - 1] for end in ends)
    columns.extend(items[start] for start in starts)
    columns.extend(items[end - 1] for end in ends)
    for column in (lows, highs, sums):
        columns.extend(column)
    raw = _little_endian(columns)
    return [
        _SUMMARY_HEADER.pack(BLOCK_SAMPLES, ordered) + bytes(flags),
        *(raw[plane::8] for plane in range(8)),
    ]


# Values


def _as_decimals(doubles: array[float]) -> tuple[int, list[int], list[int]]:
    """``(1 + k, scaled, exception indices)`` for the smallest workable k, else ``(_BITS_KIND, [], [])``."""
    tried = doubles[:: max(1, len(doubles) // _SAMPLE_SIZE)].tolist()
    decimals = _decimals_of(tried, 0)
    # A second try covers a sample that missed the finest values of the chunk; a third would be noise.
    for _ in range(2):
        if decimals is None:
            break
        scaled, exceptions = _scale(doubles, decimals)
        if len(exceptions) <= len(doubles) // 8:
            _fill_exceptions(scaled, exceptions)
            return 1 + decimals, scaled, exceptions
        tried = [doubles[i] for i in exceptions[:: max(1, len(exceptions) // _SAMPLE_SIZE)]]
        decimals = _decimals_of(tried, decimals + 1)
    return _BITS_KIND, [], []


def _decimals_of(tried: list[float], least: int) -> int | None:
    """The smallest k >= least giving all but an eighth of ``tried`` back as ``round(v * 10**k) / 10**k``."""
    allowed_misses = len(tried) // 8
    for decimals in range(least, MAX_DECIMALS + 1):
        scale = 10**decimals
        bound = _EXACT_LIMIT / scale
        misses = sum(1 for v in tried if not (abs(v) < bound and round(v * scale) / scale == v))
        if misses <= allowed_misses:
            return decimals
    return None


def _scale(doubles: array[float], decimals: int) -> tuple[list[int], list[int]]:
    """Every value times ``10**decimals`` rounded, and the indices where that does not give it back."""
    scale = 10**decimals
    try:
        scaled = [round(v * scale) for v in doubles]
        exact = min(scaled, default=0) > -_EXACT_LIMIT and max(scaled, default=0) < _EXACT_LIMIT
    except (ValueError, OverflowError):  # NaN, infinity
        exact = False
    if not exact:
        bound = _EXACT_LIMIT / scale
        scaled = [round(v * scale) if abs(v) < bound else 0 for v in doubles]
    decoded = array("d", map(truediv, scaled, repeat(scale)))
    if decoded.tobytes() == doubles.tobytes():
        return scaled, []
    # Compared as bits: -0.0 == 0.0 and NaN != NaN as floats.
    mismatched = map(ne, _as_ints(decoded.tobytes()), _as_ints(doubles.tobytes()))
    return scaled, list(compress(count(), mismatched))


def _fill_exceptions(scaled: list[int], exceptions: list[int]) -> None:
    """Give each exception its predecessor's scaled value: a zero delta, free once compressed."""
    first_regular = 0
    for index in exceptions:
        if index != first_regular:
            break
        first_regular += 1
    for index in exceptions:
        scaled[index] = scaled[index - 1] if index else scaled[first_regular]


def _as_ints(raw: bytes) -> list[int]:
    """Native-order doubles' bytes read as int64."""
    ints = array("q")
    ints.frombytes(raw)
    return ints.tolist()


def _as_doubles(ints: Iterable[int]) -> list[float]:
    doubles = array("d")
    doubles.frombytes(array("q", ints).tobytes())
    return doubles.tolist()


# Integer sequences


def _pack_ints(items: list[int]) -> tuple[bytes, list[bytes]]:
    """The int-seq header and the byte planes of ``items`` (each within int64)."""
    if len(items) < 2:
        return _SEQ_HEADER.pack(items[0] if items else 0, 0, 0, 0), []
    deltas = list(map(sub, items[1:], items))
    low, high = min(deltas), max(deltas)
    wrapped = low < _INT64_MIN or high > _INT64_MAX
    if wrapped:
        deltas = [((delta - _INT64_MIN) & _UINT64_MASK) + _INT64_MIN for delta in deltas]
        low, high = min(deltas), max(deltas)
    base = (low + high) >> 1
    width = _width(low, high)
    centred = _width(low - base, high - base)
    if centred is not None and (width is None or centred < width):
        width = centred
        deltas = list(map(sub, deltas, repeat(base)))
    else:
        base = 0
    assert width is not None  # the deltas are within int64 after wrapping
    header = _SEQ_HEADER.pack(items[0], base, width, wrapped)
    if width == 0:
        return header, []
    raw = _little_endian(_int_array(width, deltas))
    return header, [raw[plane::width] for plane in range(width)]


def _unpack_ints(
    first: int, base: int, width: int, wrapped: int, planes: memoryview, samples: int, low: int, high: int
) -> Iterable[int]:
    """Items ``low`` to ``high`` of what ``_pack_ints`` packed, ``first`` being item ``low``.

    A one-pass iterable, so that callers fuse their own step into it.
    """
    count = high - low
    if count <= 0:
        return ()
    items: Iterable[int]
    if width == 0:
        items = range(first, first + count * base, base) if base else repeat(first, count)
    else:
        # Plane p holds byte p of every delta; deltas low to high - 2 lead from item low to item high - 1.
        deltas = _int_array(width)
        if width == 1:
            deltas.frombytes(planes[low : low + count - 1])
        else:
            stride = samples - 1
            interleaved = bytearray((count - 1) * width)
            for plane in range(width):
                offset = plane * stride + low
                interleaved[plane::width] = planes[offset : offset + count - 1]
            deltas.frombytes(interleaved)
        if _BIG_ENDIAN:
            deltas.byteswap()
        items = accumulate(map(add, deltas, repeat(base)) if base else deltas, initial=first)
    if wrapped:
        return [((item - _INT64_MIN) & _UINT64_MASK) + _INT64_MIN for item in items]
    return items


def _width(low: int, high: int) -> int | None:
    """The narrowest signed width, in bytes, holding every int in [low, high]; None past 8."""
    if low == 0 == high:
        return 0
    for width in _WIDTHS[1:]:
        bound = 1 << (8 * width - 1)
        if -bound <= low and high < bound:
            return width
    return None


def _int_array(width: int, items: Iterable[int] = ()) -> array[int]:
    if width == 1:
        return array("b", items)
    if width == 2:
        return array("h", items)
    if width == 4:
        return array("i", items)
    return array("q", items)


def _little_endian(items: array[int]) -> bytes:
    if _BIG_ENDIAN:
        items.byteswap()
    return items.tobytes()


# Decoding


def _inflate(data: bytes) -> bytes:
    if not data:
        raise CodecError("empty chunk: no version byte")
    if data[0] != FORMAT_VERSION:
        raise CodecError(f"chunk format version {data[0]} is unknown; this codec reads {FORMAT_VERSION}")
    inflater = zlib.decompressobj()
    try:
        payload = inflater.decompress(memoryview(data)[1:], _MAX_PAYLOAD + 1)
    except zlib.error as exc:
        raise CodecError(f"corrupt chunk: {exc}") from None
    if len(payload) > _MAX_PAYLOAD:
        raise CodecError(f"corrupt chunk: payload exceeds {_MAX_PAYLOAD} bytes")
    if not inflater.eof:
        raise CodecError("truncated chunk: the compressed payload ends early")
    if inflater.unused_data:
        raise CodecError(f"corrupt chunk: {len(inflater.unused_data)} bytes after the compressed payload")
    return payload


class ChunkReader:
    """A chunk with its header and summary read; its samples decoded on demand, a run of blocks at a time.

    ``blocks`` runs of ``block_samples`` samples (the last may be shorter); a chunk without a
    summary is one block whose timestamps are not known before decoding. Per block, in lists:
    its first and last timestamp, whether it is ``summarized`` (a byte, 0 or 1) and if so its
    ``lows``, ``highs``, ``sums``, ``firsts`` and ``lasts`` (min, max, sum, first and last value).
    """

    __slots__ = (
        "_exceptions",
        "_first_items",
        "_kind",
        "_stamp_header",
        "_stamp_planes",
        "_value_header",
        "_value_planes",
        "block_samples",
        "blocks",
        "first_timestamps",
        "firsts",
        "highs",
        "last_timestamps",
        "lasts",
        "lows",
        "ordered",
        "samples",
        "summarized",
        "sums",
    )

    def __init__(self, data: bytes) -> None:
        payload = _inflate(data)
        try:
            self._read(payload)
        except CodecError:
            raise
        except (
            ValueError,
            OverflowError,
            IndexError,
            struct.error,
        ) as exc:  # a last line: the checks missed one
            raise CodecError(f"corrupt chunk: {exc}") from None

    def _read(self, payload: bytes) -> None:
        if len(payload) < _PAYLOAD_HEADER_SIZE:
            raise CodecError(f"corrupt chunk: payload of {len(payload)} bytes is shorter than its header")
        samples, kind, exception_count = _CHUNK_HEADER.unpack_from(payload)
        stamp_header = _seq_header(payload, _CHUNK_HEADER.size)
        value_header = _seq_header(payload, _CHUNK_HEADER.size + _SEQ_HEADER.size)
        _check_header(samples, kind, exception_count, stamp_header, value_header)
        deltas = max(samples - 1, 0)
        stamp_end = _PAYLOAD_HEADER_SIZE + deltas * stamp_header[2]
        value_end = stamp_end + deltas * value_header[2]
        index_end = value_end + 4 * exception_count
        samples_end = index_end + 8 * exception_count
        if len(payload) < samples_end + _SUMMARY_HEADER.size:
            raise CodecError(f"corrupt chunk: {len(payload)} payload bytes do not match its header")
        block, ordered = _SUMMARY_HEADER.unpack_from(payload, samples_end)
        if (block and block < _MIN_BLOCK) or ordered > 1:
            raise CodecError(f"corrupt chunk: summary of blocks of {block}, order flag {ordered}")
        blocks = -(-samples // block) if block else 0
        size = samples_end + _SUMMARY_HEADER.size + blocks * (1 + 8 * _SUMMARY_COLUMNS)
        if len(payload) != size:
            raise CodecError(f"corrupt chunk: {len(payload)} payload bytes do not match its header")
        view = memoryview(payload)
        self.samples = samples
        self._kind = kind
        self._stamp_header = stamp_header
        self._value_header = value_header
        self._stamp_planes = view[_PAYLOAD_HEADER_SIZE:stamp_end]
        self._value_planes = view[stamp_end:value_end]
        self._exceptions = _read_exceptions(view[value_end:index_end], view[index_end:samples_end], samples)
        self.ordered = bool(ordered)
        self.block_samples = block
        if block:
            self._read_summary(view[samples_end + _SUMMARY_HEADER.size :], blocks)
        else:
            self.blocks = 1 if samples else 0
            self.first_timestamps = [_INT64_MIN] * self.blocks  # not known before decoding
            self.last_timestamps = [_INT64_MAX] * self.blocks
            self._first_items = [value_header[0]] * self.blocks
            self.summarized = bytes(self.blocks)
            self.firsts = self.lasts = self.lows = self.highs = self.sums = [0.0] * self.blocks

    def _read_summary(self, view: memoryview, blocks: int) -> None:
        flags = bytes(view[:blocks])
        if flags.translate(None, b"\x00\x01"):
            raise CodecError("corrupt chunk: summary flags other than 0 and 1")
        planes = view[blocks:]
        raw = bytearray(len(planes))
        width = len(planes) // 8
        for plane in range(8):
            raw[plane::8] = planes[plane * width : (plane + 1) * width]
        columns = array("q")
        columns.frombytes(raw)
        if _BIG_ENDIAN:
            columns.byteswap()
        stats = columns[2 * blocks :].tolist()  # first items, last items, min, max, sum
        if self._kind == _BITS_KIND:
            values = _as_doubles(stats)
        else:
            values = list(map(truediv, stats, repeat(10 ** (self._kind - 1))))
        self.blocks = blocks
        self.first_timestamps = columns[:blocks].tolist()
        self.last_timestamps = columns[blocks : 2 * blocks].tolist()
        self._first_items = stats[:blocks]
        self.summarized = flags
        self.firsts, self.lasts, self.lows, self.highs, self.sums = (
            values[i * blocks : (i + 1) * blocks] for i in range(5)
        )

    def block_range(self, first: int, end: int) -> tuple[int, int]:
        """The sample indices of blocks ``first`` to ``end - 1``."""
        if not self.block_samples:
            return (0, self.samples) if first < end else (0, 0)
        return first * self.block_samples, min(end * self.block_samples, self.samples)

    def decode(self, first: int = 0, end: int | None = None) -> tuple[list[int], list[float]]:
        """The timestamps and values of blocks ``first`` to ``end - 1`` (all of them by default)."""
        end = self.blocks if end is None else end
        low, high = self.block_range(first, end)
        timestamps, items = self._items(first, low, high)
        if self._kind == _BITS_KIND:
            return timestamps, _as_doubles(items)
        values = list(map(truediv, items, repeat(10 ** (self._kind - 1))))
        for index, value in self._exceptions:
            if low <= index < high:
                values[index - low] = value
        return timestamps, values

    def decode_scaled(self, first: int, end: int) -> tuple[list[int], list[int], int] | None:
        """The timestamps and the decimals as stored (value = item / scale) of blocks ``first`` to
        ``end - 1``, and the scale; ``None`` if the chunk stores IEEE bits or an exception is there.

        Aggregates of the items, divided once, are those of the values: the division is monotonic
        and it is the decoder's own.
        """
        if self._kind == _BITS_KIND:
            return None
        low, high = self.block_range(first, end)
        if self._exceptions and any(low <= index < high for index, _ in self._exceptions):
            return None
        timestamps, items = self._items(first, low, high)
        return timestamps, list(items), 10 ** (self._kind - 1)

    def _items(self, first: int, low: int, high: int) -> tuple[list[int], Iterable[int]]:
        if low >= high:
            return [], []
        stamp_first = self.first_timestamps[first] if self.block_samples else self._stamp_header[0]
        try:
            timestamps = list(
                _unpack_ints(
                    stamp_first, *self._stamp_header[1:], self._stamp_planes, self.samples, low, high
                )
            )
            items = _unpack_ints(
                self._first_items[first], *self._value_header[1:], self._value_planes, self.samples, low, high
            )
        except (ValueError, OverflowError, IndexError) as exc:  # a last line: the checks missed one
            raise CodecError(f"corrupt chunk: {exc}") from None
        return timestamps, items


def _seq_header(payload: bytes, offset: int) -> tuple[int, int, int, int]:
    first, base, width, wrapped = _SEQ_HEADER.unpack_from(payload, offset)
    return first, base, width, wrapped


def _check_header(
    samples: int,
    kind: int,
    exception_count: int,
    stamp_header: tuple[int, int, int, int],
    value_header: tuple[int, int, int, int],
) -> None:
    if samples > MAX_SAMPLES:
        raise CodecError(f"corrupt chunk: {samples} samples; a chunk holds at most {MAX_SAMPLES}")
    if kind > 1 + MAX_DECIMALS:
        raise CodecError(f"corrupt chunk: unknown value kind {kind}")
    if exception_count > samples or (kind == _BITS_KIND and exception_count):
        raise CodecError(f"corrupt chunk: {exception_count} exceptions in {samples} samples")
    for _, _, width, wrapped in (stamp_header, value_header):
        if width not in _WIDTHS or wrapped > 1:
            raise CodecError(f"corrupt chunk: delta width {width}, wrap flag {wrapped}")


def _read_exceptions(index_bytes: memoryview, bit_bytes: memoryview, samples: int) -> list[tuple[int, float]]:
    if not index_bytes:
        return []
    indices = array("I")
    indices.frombytes(index_bytes)
    bits = array("q")
    bits.frombytes(bit_bytes)
    if _BIG_ENDIAN:
        indices.byteswap()
        bits.byteswap()
    if indices[-1] >= samples or not all(map(lt, indices, indices[1:])):
        raise CodecError("corrupt chunk: exception indices out of order or out of range")
    return list(zip(indices, _as_doubles(bits), strict=True))
