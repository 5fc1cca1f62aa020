"""Bucketed aggregates against a straightforward reference computation."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproxy.timeseries.query import AGGREGATES, aggregate, bucket_count


def reference(
    samples: list[tuple[int, float]], start: int, end: int, step: int, functions: list[str]
) -> list[tuple[int, dict[str, float]]]:
    """One pass, one dictionary of buckets: obviously right, if slow."""
    buckets: dict[int, list[float]] = defaultdict(list)
    for timestamp, value in samples:
        if start <= timestamp < end:
            buckets[start + (timestamp - start) // step * step].append(value)
    result = []
    for at in sorted(buckets):
        values = buckets[at]
        computed = {
            "min": min(values),
            "max": max(values),
            "avg": math.fsum(values) / len(values),
            "sum": math.fsum(values),
            "count": float(len(values)),
            "first": values[0],
            "last": values[-1],
        }
        result.append((at, {name: computed[name] for name in functions}))
    return result


def assert_same(
    got: list[tuple[int, dict[str, float]]], expected: list[tuple[int, dict[str, float]]]
) -> None:
    assert [at for at, _ in got] == [at for at, _ in expected]
    for (_, values), (_, wanted) in zip(got, expected, strict=True):
        assert values.keys() == wanted.keys()
        for name, value in values.items():
            assert value == pytest.approx(wanted[name], rel=1e-9, abs=1e-6), name


samples_strategy = st.lists(
    st.tuples(st.integers(-10_000, 100_000), st.floats(-1e6, 1e6, allow_nan=False)), max_size=400
).map(lambda items: sorted(items, key=lambda item: item[0]))


@settings(max_examples=300, deadline=None)
@given(
    samples=samples_strategy,
    start=st.integers(-20_000, 50_000),
    length=st.integers(1, 200_000),
    step=st.integers(1, 50_000),
    functions=st.lists(st.sampled_from(sorted(AGGREGATES)), min_size=1, max_size=7, unique=True),
)
def test_aggregates_match_the_reference(
    samples: list[tuple[int, float]], start: int, length: int, step: int, functions: list[str]
) -> None:
    end = start + length
    timestamps = [timestamp for timestamp, _ in samples]
    values = [value for _, value in samples]
    got = aggregate(timestamps, values, start_ms=start, end_ms=end, step_ms=step, functions=functions)
    assert_same(got, reference(samples, start, end, step, functions))


def test_a_day_of_minutes() -> None:
    # One sample every 10 s for a day, value = minute of the day: each bucket's avg is its minute.
    timestamps = list(range(0, 86_400_000, 10_000))
    values = [float(timestamp // 60_000) for timestamp in timestamps]
    got = aggregate(
        timestamps, values, start_ms=0, end_ms=86_400_000, step_ms=60_000, functions=["avg", "count", "first"]
    )
    assert len(got) == 1440
    assert got[0] == (0, {"avg": 0.0, "count": 6, "first": 0.0})
    assert got[-1] == (86_340_000, {"avg": 1439.0, "count": 6, "first": 1439.0})


def test_empty_buckets_are_left_out_and_the_range_is_half_open() -> None:
    timestamps = [0, 5, 100, 200]
    values = [1.0, 2.0, 3.0, 4.0]
    got = aggregate(timestamps, values, start_ms=0, end_ms=200, step_ms=10, functions=["sum"])
    assert got == [(0, {"sum": 3.0}), (100, {"sum": 3.0})]  # 200 is the end: not included


def test_buckets_align_to_the_start_of_the_range() -> None:
    got = aggregate([7, 12, 16], [1.0, 2.0, 3.0], start_ms=2, end_ms=20, step_ms=5, functions=["count"])
    assert got == [(7, {"count": 1}), (12, {"count": 2})]


@pytest.mark.parametrize(
    ("start", "end", "step", "count"), [(0, 10, 5, 2), (0, 11, 5, 3), (0, 1, 5, 1), (-10, 0, 3, 4)]
)
def test_bucket_count(start: int, end: int, step: int, count: int) -> None:
    assert bucket_count(start, end, step) == count
