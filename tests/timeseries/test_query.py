"""Bucketed aggregates against a straightforward reference computation."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproxy.timeseries.codec import ChunkReader, encode_chunk
from mqttproxy.timeseries.query import AGGREGATES, aggregate, aggregate_chunks, bucket_count


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


@st.composite
def chunked_series(draw: st.DrawFn) -> tuple[list[list[tuple[int, float]]], list[tuple[int, float]]]:
    """Samples in time order cut into chunks (some long enough to be summarised) and a tail."""
    start = draw(st.integers(-100_000, 100_000))
    gaps = draw(st.lists(st.integers(0, 40), min_size=0, max_size=1500))
    decimals = draw(st.booleans())
    values = draw(
        st.lists(
            st.integers(-50_000, 50_000).map(lambda n: n / 100)
            if decimals
            else st.floats(-1e6, 1e6, allow_nan=False),
            min_size=len(gaps),
            max_size=len(gaps),
        )
    )
    timestamps = [start + sum(gaps[: i + 1]) for i in range(len(gaps))]
    samples = list(zip(timestamps, values, strict=True))
    cuts = sorted(draw(st.lists(st.integers(0, len(samples)), max_size=4)))
    pieces = [samples[a:b] for a, b in zip([0, *cuts], [*cuts, len(samples)], strict=True)]
    return pieces[:-1], pieces[-1]


@settings(max_examples=80, deadline=None)
@given(
    series=chunked_series(),
    start=st.integers(-120_000, 140_000),
    length=st.integers(1, 80_000),
    step=st.integers(1, 20_000),
    functions=st.lists(st.sampled_from(sorted(AGGREGATES)), min_size=1, max_size=7, unique=True),
)
def test_aggregates_from_chunk_summaries_match_the_reference(
    series: tuple[list[list[tuple[int, float]]], list[tuple[int, float]]],
    start: int,
    length: int,
    step: int,
    functions: list[str],
) -> None:
    chunks, tail = series
    readers = [
        ChunkReader(encode_chunk([t for t, _ in chunk], [v for _, v in chunk])) for chunk in chunks if chunk
    ]
    got = aggregate_chunks(
        readers,
        ([t for t, _ in tail], [v for _, v in tail]),
        start_ms=start,
        end_ms=start + length,
        step_ms=step,
        functions=functions,
    )
    every = [sample for chunk in chunks for sample in chunk] + tail
    expected = reference(every, start, start + length, step, functions)
    assert_same(got, expected)
    # Only sums (and averages) may differ, in their last bits: the rest is exactly aggregate()'s.
    exact = aggregate(
        [t for t, _ in every],
        [v for _, v in every],
        start_ms=start,
        end_ms=start + length,
        step_ms=step,
        functions=functions,
    )
    for (_, values), (_, wanted) in zip(got, exact, strict=True):
        assert {k: v for k, v in values.items() if k not in ("sum", "avg")} == {
            k: v for k, v in wanted.items() if k not in ("sum", "avg")
        }


def test_a_day_of_a_million_samples_in_minutes_from_summaries(monkeypatch: pytest.MonkeyPatch) -> None:
    # 86.4 ms apart: 694 samples a minute, blocks of 128 inside buckets and across their edges.
    timestamps = [i * 864 // 10 for i in range(1_000_000)]
    values = [float((i // 100) % 50) for i in range(1_000_000)]
    readers = [
        ChunkReader(encode_chunk(timestamps[i : i + 2048], values[i : i + 2048]))
        for i in range(0, len(timestamps), 2048)
    ]
    decoded = []
    decode_scaled = ChunkReader.decode_scaled

    def counting(self: ChunkReader, first: int, end: int) -> tuple[list[int], list[int], int] | None:
        found = decode_scaled(self, first, end)
        decoded.append(len(found[0]) if found else 0)
        return found

    monkeypatch.setattr(ChunkReader, "decode_scaled", counting)
    got = aggregate_chunks(
        readers, ([], []), start_ms=12_345, end_ms=86_400_000, step_ms=60_000, functions=sorted(AGGREGATES)
    )
    expected = aggregate(
        timestamps, values, start_ms=12_345, end_ms=86_400_000, step_ms=60_000, functions=sorted(AGGREGATES)
    )
    assert_same(got, expected)
    assert len(got) == 1440
    assert sum(decoded) < 250_000  # the blocks across the 1,440 bucket edges, not the million
