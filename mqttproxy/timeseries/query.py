"""Bucketed aggregates over samples in time order. Pure functions.

Buckets are aligned to the start of the range: bucket ``i`` holds the samples
with ``start + i*step <= t < start + (i+1)*step``. Empty buckets are left
out, so a gap in the data is a gap in the answer rather than a zero.

``aggregate`` works on decoded samples. ``aggregate_chunks`` gives the same
buckets from chunks in time order without decoding every sample: a block of a
chunk (``codec.ChunkReader``) that lies inside one bucket counts through its
summary (min, max, sum, first, last), and only the blocks that straddle a
bucket's edge, or have no summary, are decoded. For a day of 1,000,000
samples in 1-minute buckets that leaves about a fifth of the samples to
decode. Min, max, count, first and last are the very values ``aggregate``
gives; a sum (and so an average) may differ in its last bits, added up in
another order.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

from mqttproxy.timeseries.codec import ChunkReader

AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "min": min,
    "max": max,
    "avg": lambda values: sum(values) / len(values),
    "sum": sum,
    "count": len,
    "first": lambda values: values[0],
    "last": lambda values: values[-1],
}

Bucket = tuple[int, dict[str, float]]  # (bucket start, {aggregate: value})
State = list[float]  # count, sum, min, max, first, last of one bucket so far


def bucket_count(start_ms: int, end_ms: int, step_ms: int) -> int:
    return -(-(end_ms - start_ms) // step_ms)


def aggregate(
    timestamps: Sequence[int],
    values: Sequence[float],
    *,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    functions: Sequence[str],
) -> list[Bucket]:
    """The ``functions`` of every non-empty bucket of [start_ms, end_ms), from samples in time order."""
    chosen = [(name, AGGREGATES[name]) for name in functions]
    buckets: list[Bucket] = []
    # Slices between binary-searched bounds keep the per-sample work in C (min, max, sum).
    low = bisect_left(timestamps, start_ms)
    end = bisect_left(timestamps, end_ms)
    while low < end:
        bucket_start = start_ms + (timestamps[low] - start_ms) // step_ms * step_ms
        high = bisect_left(timestamps, bucket_start + step_ms, low, end)
        window = values[low:high]
        buckets.append((bucket_start, {name: function(window) for name, function in chosen}))
        low = high
    return buckets


def aggregate_chunks(
    chunks: Sequence[ChunkReader],
    tail: tuple[Sequence[int], Sequence[float]],
    *,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    functions: Sequence[str],
) -> list[Bucket]:
    """What ``aggregate`` gives for the chunks' samples followed by ``tail``'s.

    The chunks must be in time order, each ``ordered``, none overlapping the next (a chunk may
    start at the timestamp where the one before ends), and ``tail`` sorted and after them.
    """
    states: dict[int, State] = {}
    for chunk in chunks:
        _fold_chunk(states, chunk, start_ms, end_ms, step_ms)
    _fold_samples(states, tail[0], tail[1], start_ms, end_ms, step_ms)
    return [(start_ms + index * step_ms, _finish(states[index], functions)) for index in sorted(states)]


def _fold_chunk(
    states: dict[int, State], chunk: ChunkReader, start_ms: int, end_ms: int, step_ms: int
) -> None:
    firsts, lasts, summarized = chunk.first_timestamps, chunk.last_timestamps, chunk.summarized
    run = -1  # the first of consecutive blocks to decode, if any
    for block in range(chunk.blocks):
        first, last = firsts[block], lasts[block]
        if last < start_ms or first >= end_ms:
            if run >= 0:
                _fold_blocks(states, chunk, run, block, start_ms, end_ms, step_ms)
                run = -1
            continue
        index = (first - start_ms) // step_ms
        if (
            not summarized[block]
            or first < start_ms
            or last >= end_ms
            or (last - start_ms) // step_ms != index
        ):
            if run < 0:
                run = block
            continue
        if run >= 0:
            _fold_blocks(states, chunk, run, block, start_ms, end_ms, step_ms)
            run = -1
        count = min(chunk.block_samples, chunk.samples - block * chunk.block_samples)
        low, high, total = chunk.lows[block], chunk.highs[block], chunk.sums[block]
        _fold(states, index, count, total, low, high, chunk.firsts[block], chunk.lasts[block])
    if run >= 0:
        _fold_blocks(states, chunk, run, chunk.blocks, start_ms, end_ms, step_ms)


def _fold_blocks(
    states: dict[int, State],
    chunk: ChunkReader,
    first: int,
    end: int,
    start_ms: int,
    end_ms: int,
    step_ms: int,
) -> None:
    """Decode blocks ``first`` to ``end - 1`` and add their samples; decimals stay integers until the end."""
    scaled = chunk.decode_scaled(first, end)
    if scaled is None:
        _fold_samples(states, *chunk.decode(first, end), start_ms, end_ms, step_ms)
    else:
        _fold_samples(states, scaled[0], scaled[1], start_ms, end_ms, step_ms, scaled[2])


def _fold_samples(
    states: dict[int, State],
    timestamps: Sequence[int],
    values: Sequence[float],
    start_ms: int,
    end_ms: int,
    step_ms: int,
    scale: int = 0,
) -> None:
    """Add samples in time order; with ``scale``, ``values`` are integers to divide by it."""
    low = bisect_left(timestamps, start_ms)
    end = bisect_left(timestamps, end_ms)
    while low < end:
        index = (timestamps[low] - start_ms) // step_ms
        high = bisect_left(timestamps, start_ms + (index + 1) * step_ms, low, end)
        window = values[low:high]
        if scale:
            total, smallest, largest = sum(window) / scale, min(window) / scale, max(window) / scale
            _fold(states, index, high - low, total, smallest, largest, window[0] / scale, window[-1] / scale)
        else:
            _fold(states, index, high - low, sum(window), min(window), max(window), window[0], window[-1])
        low = high


def _fold(
    states: dict[int, State],
    index: int,
    count: int,
    total: float,
    low: float,
    high: float,
    first: float,
    last: float,
) -> None:
    """Add the aggregates of the next samples of bucket ``index``, in time order."""
    state = states.get(index)
    if state is None:
        states[index] = [count, total, low, high, first, last]
        return
    state[0] += count
    state[1] += total
    # As min() and max() over all of them: the first of equal values stays (0.0 before -0.0).
    state[2] = min(state[2], low)
    state[3] = max(state[3], high)
    state[5] = last


def _finish(state: State, functions: Sequence[str]) -> dict[str, float]:
    count, total, low, high, first, last = state
    every = {"min": low, "max": high, "avg": total / count, "sum": total, "count": count, "first": first}
    every["last"] = last
    return {name: every[name] for name in functions}
