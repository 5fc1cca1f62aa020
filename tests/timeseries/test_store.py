"""The store against a real SQLite file: heads and their log across restarts, sealing, aggregates."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mqttproxy.storage import Database
from mqttproxy.timeseries import store as store_module
from mqttproxy.timeseries.query import AGGREGATES, aggregate
from mqttproxy.timeseries.store import Batch, SeriesKey, TimeseriesStore

T0 = 1_700_006_400_000 // 86_400_000 * 86_400_000  # a UTC midnight
FAST: SeriesKey = ("temperature", (("device", "fast"),))
SLOW: SeriesKey = ("temperature", (("device", "slow"),))


async def open_store(path: Path, chunk_samples: int = 64) -> tuple[Database, TimeseriesStore]:
    database = Database(path)
    await database.open()
    store = TimeseriesStore(database, chunk_samples=chunk_samples)
    await store.open()
    return database, store


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[Database, TimeseriesStore]]:
    database, store = await open_store(tmp_path / "mqttproxy.db")
    try:
        yield database, store
    finally:
        await database.close()


async def flush(store: TimeseriesStore, points: list[tuple[SeriesKey, int, float]]) -> None:
    """What the recorder does per batch: write, seal what is full, trim the log."""
    await store.write(Batch([k for k, _, _ in points], [t for _, t, _ in points], [v for _, _, v in points]))
    await store.seal(store.due_for_sealing())
    await store.maintain(force=True)


async def everything(store: TimeseriesStore, key: SeriesKey) -> list[tuple[int, float]]:
    (series,) = await store.series(labels=dict(key[1]))
    found = await store.samples(series.id, -(2**62), 2**62)
    return list(zip(found.timestamps, found.values, strict=True))


async def count(database: Database, table: str) -> int:
    row = await database.fetch_one(f"SELECT COUNT(*) AS n FROM {table}")  # noqa: S608 - a test's own table name
    assert row is not None
    return int(row["n"])


async def test_a_restart_rebuilds_the_heads_from_the_log(tmp_path: Path) -> None:
    path = tmp_path / "mqttproxy.db"
    database, store = await open_store(path)
    written: dict[SeriesKey, list[tuple[int, float]]] = {FAST: [], SLOW: []}
    rng = random.Random(3)
    for flush_number in range(40):
        points = []
        for i in range(10):
            timestamp = T0 + flush_number * 10_000 + i * 1000 + rng.randint(-3000, 3000)  # some late
            points.append((FAST, timestamp, round(rng.uniform(0, 40), 2)))
        if flush_number % 7 == 0:
            points.append((SLOW, T0 + flush_number * 10_000, float(flush_number)))
        await flush(store, points)
        for key, timestamp, value in points:
            written[key].append((timestamp, value))
    try:
        row = await database.fetch_one("SELECT COUNT(*) AS chunks, SUM(samples) AS sealed FROM ts_chunks")
        assert row is not None
        assert row["chunks"] >= 6
        assert row["sealed"] + store.head_samples == 406
        heads = store.head_samples
        before = {key: await everything(store, key) for key in written}
    finally:
        await database.close()

    database, store = await open_store(path)
    try:
        for key, samples in written.items():
            # Time order, ties in arrival order: what sorted() gives a list in arrival order.
            assert await everything(store, key) == sorted(samples, key=lambda sample: sample[0])
            assert await everything(store, key) == before[key]
        assert store.head_samples == heads
        await flush(store, [(FAST, T0 + 500_000, 1.0)])
        assert (await everything(store, FAST))[-1] == (T0 + 500_000, 1.0)
    finally:
        await database.close()


async def test_log_rows_go_once_no_head_needs_them(opened: tuple[Database, TimeseriesStore]) -> None:
    database, store = opened
    for flush_number in range(64):
        await flush(store, [(FAST, T0 + flush_number, 1.0)])
    # The 64th sample filled the head: sealed, nothing left in memory, nothing needed in the log.
    assert store.head_samples == 0
    assert await count(database, "ts_log") == 0
    assert len(await everything(store, FAST)) == 64


async def test_a_slow_series_does_not_keep_the_whole_log(tmp_path: Path) -> None:
    path = tmp_path / "mqttproxy.db"
    database, store = await open_store(path, chunk_samples=64)
    for flush_number in range(3000):
        points = [(FAST, T0 + flush_number * 100 + i, 1.0) for i in range(10)]
        if flush_number % 100 == 0:
            points.append((SLOW, T0 + flush_number * 100, 2.0))
        await flush(store, points)
    # 30,030 samples went through the log; the slow series' 30 were logged again as it went.
    try:
        assert await count(database, "ts_log") < 200
    finally:
        await database.close()
    database, store = await open_store(path, chunk_samples=64)
    try:
        assert [value for _, value in await everything(store, SLOW)] == [2.0] * 30
        assert len(await everything(store, FAST)) == 30_000
    finally:
        await database.close()


async def test_many_new_series_in_one_batch(opened: tuple[Database, TimeseriesStore]) -> None:
    _, store = opened
    keys: list[SeriesKey] = [("m", (("device", f"d{i:04}"),)) for i in range(1500)]
    await flush(store, [(key, T0, float(i)) for i, key in enumerate(keys)])
    found = await store.series(limit=10_000)
    assert len(found) == 1500
    assert {series.labels["device"] for series in found} == {f"d{i:04}" for i in range(1500)}
    await flush(store, [(keys[7], T0 + 1, 0.5)])
    assert await everything(store, keys[7]) == [(T0, 7.0), (T0 + 1, 0.5)]


async def test_retention_drops_old_samples_from_the_heads(opened: tuple[Database, TimeseriesStore]) -> None:
    _, store = opened
    await flush(store, [(FAST, T0 + i, float(i)) for i in range(10)])
    assert await store.drop_before("temperature", T0 + 4) == 4
    assert [timestamp for timestamp, _ in await everything(store, FAST)] == list(range(T0 + 4, T0 + 10))
    assert store.head_samples == 6
    assert await store.drop_before("humidity", T0 + 100) == 0


@pytest.mark.parametrize("late", [False, True])
@pytest.mark.parametrize("start", [T0, T0 + 12_345])
async def test_aggregates_through_the_store_match_the_samples(
    opened: tuple[Database, TimeseriesStore], late: bool, start: int
) -> None:
    _, store = opened
    rng = random.Random(5)
    for flush_number in range(50):
        points = [(FAST, T0 + (flush_number * 20 + i) * 977, round(rng.gauss(20, 3), 2)) for i in range(20)]
        if late and flush_number % 10 == 9:  # late samples: chunks that overlap earlier ones
            points.append((FAST, T0 + rng.randrange(flush_number * 20 * 977), 99.5))
        await flush(store, points)
    (series,) = await store.series()
    found = await store.samples(series.id, start, start + 900_000)
    for step in (1000, 60_000, 7_777):
        got = await store.aggregate(
            series.id, start_ms=start, end_ms=start + 900_000, step_ms=step, functions=list(AGGREGATES)
        )
        expected = aggregate(
            found.timestamps,
            found.values,
            start_ms=start,
            end_ms=start + 900_000,
            step_ms=step,
            functions=list(AGGREGATES),
        )
        assert [at for at, _ in got] == [at for at, _ in expected]
        for (_, values), (_, wanted) in zip(got, expected, strict=True):
            assert values == pytest.approx(wanted, rel=1e-12)


async def test_many_slow_series_stay_within_the_memory_budget(tmp_path: Path) -> None:
    """200 series of a few samples each: past max_head_samples the largest heads are sealed early."""
    path = tmp_path / "mqttproxy.db"
    database = Database(path)
    await database.open()
    store = TimeseriesStore(database, chunk_samples=2048, max_head_samples=1024)
    await store.open()
    keys: list[SeriesKey] = [("temperature", (("device", f"d{index:03}"),)) for index in range(200)]
    written: dict[SeriesKey, list[tuple[int, float]]] = {key: [] for key in keys}
    rng = random.Random(3)
    for minute in range(30):
        points = []
        for key in keys:
            if rng.random() < 0.5:
                sample = (T0 + minute * 60_000, round(rng.uniform(15, 25), 2))
                written[key].append(sample)
                points.append((key, *sample))
        await store.write(
            Batch([k for k, _, _ in points], [t for _, t, _ in points], [v for _, _, v in points])
        )
        assert store.due_for_sealing() == []  # no head is anywhere near full
        await store.seal(store.over_budget(1000), whole=True)
        assert store.head_samples <= 1024
    for key in keys[:20]:
        assert await everything(store, key) == written[key]
    await database.close()

    database, store = await open_store(path)  # what was sealed early is in chunks, the rest in the log
    for key in keys:
        assert await everything(store, key) == written[key]
    await database.close()


class Turns:
    """Counts the times a task waiting 0.1 ms got the event loop while some work is awaited.

    Not a spin on sleep(0): a loop that only lets go of the GIL for a moment, turn after turn, can
    keep the database's worker thread waiting for it for seconds.
    """

    def __init__(self) -> None:
        self.count = 0
        self.longest_wait = 0.0  # seconds
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.count += 1
            started = time.perf_counter()
            await asyncio.sleep(0.0001)
            self.longest_wait = max(self.longest_wait, time.perf_counter() - started)

    async def __aenter__(self) -> Turns:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)  # started, waiting, before the work to watch begins
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_long_seals_and_relogs_run_in_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sealing or relogging thousands of heads at once would hold the event loop (and delivery)."""
    monkeypatch.setattr(store_module, "RELOG_ROW_SAMPLES", 500)
    path = tmp_path / "mqttproxy.db"
    database, store = await open_store(path, chunk_samples=2048)
    keys: list[SeriesKey] = [("temperature", (("device", f"d{index:04}"),)) for index in range(2000)]
    written = [(key, T0 + minute * 60_000, float(minute)) for minute in range(20) for key in keys]
    try:
        await store.write(
            Batch([k for k, _, _ in written], [t for _, t, _ in written], [v for _, _, v in written])
        )
        assert await count(database, "ts_log") == 1

        # As if slow heads had kept a log far larger than themselves: the heads are written again, in
        # rows of about 500 samples.
        store._log_samples = 10 * store.head_samples + 16 * store.chunk_samples
        async with Turns() as turns:
            await store.maintain(force=True)
        # 80 new rows; the first, which no head needs any more, is gone.
        assert await count(database, "ts_log") == 40_000 // 500
        assert turns.count >= 80  # the loop ran between the rows

        # Sealing all 2,000 heads whole: 2,000 chunks, about 0.1 s of encoding in slices of about 2 ms.
        # The garbage collector is off meanwhile: a full collection in a process that has run the whole
        # suite pauses everything for a few hundred milliseconds, sliced or not.
        series_ids = [series.id for series in await store.series(limit=5000)]
        gc.disable()
        try:
            async with Turns() as turns:
                await store.seal(series_ids, whole=True)
        finally:
            gc.enable()
        assert store.head_samples == 0
        assert await count(database, "ts_chunks") == 2000
        assert turns.longest_wait < 0.04  # in one piece: 60 ms and more
    finally:
        await database.close()

    database, store = await open_store(path, chunk_samples=2048)
    try:
        for key in keys[::250]:
            assert await everything(store, key) == [(t, v) for k, t, v in written if k == key]
    finally:
        await database.close()
