"""Bucketed aggregates over samples in time order. Pure functions.

Buckets are aligned to the start of the range: bucket ``i`` holds the samples
with ``start + i*step <= t < start + (i+1)*step``. Empty buckets are left
out, so a gap in the data is a gap in the answer rather than a zero.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

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
