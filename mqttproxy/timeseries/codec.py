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
read as int64, through the same delta scheme: it beats XOR with the previous
value (Gorilla) on every series measured, because slowly changing doubles
have small integer differences, and it keeps NaN payloads, -0.0 and
infinities exact.

Per-sample work runs in C: ``array`` packs and unpacks the integers, slicing
shuffles the bytes, ``itertools.accumulate`` and ``map`` rebuild the sums and
quotients. Bit-level packing (Gorilla) or varints in pure Python would cost
microseconds per sample.

Bytes per sample and encode/decode speed for realistic series are measured by
``bench/timeseries_throughput.py``, with the figures in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Sequence
from itertools import accumulate, compress, count, repeat
from operator import add, lt, ne, sub, truediv

__all__ = ["FORMAT_VERSION", "MAX_SAMPLES", "CodecError", "decode_chunk", "encode_chunk"]

FORMAT_VERSION = 1
MAX_SAMPLES = 1_000_000  # bounds what a lying header can make the decoder allocate
MAX_DECIMALS = 9

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
_PAYLOAD_HEADER_SIZE = _CHUNK_HEADER.size + 2 * _SEQ_HEADER.size
_EXCEPTION_SIZE = 4 + 8
_MAX_PAYLOAD = _PAYLOAD_HEADER_SIZE + MAX_SAMPLES * (8 + 8 + _EXCEPTION_SIZE)
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
    return _deflate([header, *stamp_planes, *value_planes, exception_bytes])


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
    payload = _inflate(data)
    try:
        return _decode_payload(payload)
    except CodecError:
        raise
    except (ValueError, OverflowError, IndexError, struct.error) as exc:  # a last line: the checks missed one
        raise CodecError(f"corrupt chunk: {exc}") from None


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
    first: int, base: int, width: int, wrapped: int, planes: memoryview, samples: int
) -> Iterable[int]:
    """The items ``_pack_ints`` packed, as a one-pass iterable so callers fuse their own step into it."""
    if samples == 0:
        return ()
    items: Iterable[int]
    if width == 0:
        items = range(first, first + samples * base, base) if base else repeat(first, samples)
    else:
        interleaved = bytearray(len(planes))
        for plane in range(width):
            interleaved[plane::width] = planes[plane * (samples - 1) : (plane + 1) * (samples - 1)]
        deltas = _int_array(width)
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


def _decode_payload(payload: bytes) -> tuple[list[int], list[float]]:
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
    if len(payload) != index_end + 8 * exception_count:
        raise CodecError(f"corrupt chunk: {len(payload)} payload bytes do not match its header")
    view = memoryview(payload)
    timestamps = list(_unpack_ints(*stamp_header, view[_PAYLOAD_HEADER_SIZE:stamp_end], samples))
    scaled = _unpack_ints(*value_header, view[stamp_end:value_end], samples)
    if kind == _BITS_KIND:
        return timestamps, _as_doubles(scaled)
    values = list(map(truediv, scaled, repeat(10 ** (kind - 1))))
    _patch_exceptions(values, view[value_end:index_end], view[index_end:])
    return timestamps, values


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


def _patch_exceptions(values: list[float], index_bytes: memoryview, bit_bytes: memoryview) -> None:
    if not index_bytes:
        return
    indices = array("I")
    indices.frombytes(index_bytes)
    bits = array("q")
    bits.frombytes(bit_bytes)
    if _BIG_ENDIAN:
        indices.byteswap()
        bits.byteswap()
    if indices[-1] >= len(values) or not all(map(lt, indices, indices[1:])):
        raise CodecError("corrupt chunk: exception indices out of order or out of range")
    for index, value in zip(indices, _as_doubles(bits), strict=True):
        values[index] = value
