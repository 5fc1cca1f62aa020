"""The recorder against a real SQLite file: batching, sealing, late samples, retention, restart."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mqttproxy.broker.message import Message
from mqttproxy.storage import Database
from mqttproxy.timeseries import DataConfig, DataConfigExists, DataConfigNotFound, Recorder, RecorderSettings

DAY_MS = 86_400_000


def config(**changes: Any) -> DataConfig:
    body: dict[str, Any] = {
        "id": "rooms",
        "topic": "devices/{device}/sensors/{sensor}",
        "fields": [{"metric": "temperature", "pointer": "/temp", "unit": "°C"}],
        "timestamp": {"pointer": "/ts", "unit": "ms"},
    }
    body.update(changes)
    return DataConfig.model_validate(body)


def message(topic: str, payload: bytes) -> Message:
    return Message(topic, payload, 0, False, "client:test", asyncio.get_running_loop().time())


def reading(temp: float, ts: int) -> bytes:
    return f'{{"temp": {temp}, "ts": {ts}}}'.encode()


async def open_recorder(path: Path, **settings: Any) -> tuple[Database, Recorder]:
    database = Database(path)
    await database.open()
    recorder = Recorder(database, RecorderSettings(**{"flush_interval": 3600.0, **settings}))
    await recorder.start()
    return database, recorder


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[tuple[Database, Recorder]]:
    database, recorder = await open_recorder(tmp_path / "mqttproxy.db", chunk_samples=16)
    try:
        yield database, recorder
    finally:
        await recorder.stop()
        await database.close()


async def all_samples(recorder: Recorder, **labels: str) -> list[tuple[int, float]]:
    (series,) = await recorder.series(metric="temperature", labels=labels)
    found = await recorder.samples(series.id, -(2**62), 2**62)
    return list(zip(found.timestamps, found.values, strict=True))


NOW = int(time.time() * 1000)


async def test_matching_messages_become_samples_of_a_labelled_series(
    opened: tuple[Database, Recorder],
) -> None:
    _, recorder = opened
    await recorder.add_config(config())
    recorder.on_message(message("devices/d1/sensors/s1", reading(21.5, NOW)))
    recorder.on_message(message("devices/d1/sensors/s1", reading(21.75, NOW + 1000)))
    recorder.on_message(message("devices/d2/sensors/s1", reading(19.0, NOW)))
    recorder.on_message(message("elsewhere/d1", reading(99.0, NOW)))  # not matched: never queued
    assert await recorder.flush() == 3
    assert await all_samples(recorder, device="d1", sensor="s1") == [(NOW, 21.5), (NOW + 1000, 21.75)]
    assert await all_samples(recorder, device="d2") == [(NOW, 19.0)]
    series = await recorder.series()
    assert [(item.metric, item.labels) for item in series] == [
        ("temperature", {"device": "d1", "sensor": "s1"}),
        ("temperature", {"device": "d2", "sensor": "s1"}),
    ]
    assert recorder.stats["rooms"].as_json() == {"messages": 3, "points": 3, "failures": {}}
    assert recorder.points == 3


async def test_bad_payloads_are_counted_per_config_and_never_raise(opened: tuple[Database, Recorder]) -> None:
    _, recorder = opened
    await recorder.add_config(config())
    for payload in [
        b"not json",
        b'{"ts": 1}',
        b'{"temp": "warm", "ts": 1}',
        reading(20.0, NOW + 10 * DAY_MS),
    ]:
        recorder.on_message(message("devices/d1/sensors/s1", payload))
    recorder.on_message(message("devices/d1/sensors/s1", reading(20.0, NOW)))
    assert await recorder.flush() == 1
    stats = recorder.stats["rooms"]
    assert stats.messages == 5
    assert stats.points == 1
    assert sum(stats.failures.values()) == 4
    assert set(stats.failures) == {"not_json", "pointer_missing", "not_a_number", "timestamp_in_future"}


async def test_receive_time_is_used_without_a_payload_timestamp(opened: tuple[Database, Recorder]) -> None:
    _, recorder = opened
    await recorder.add_config(config(timestamp=None))
    before = int(time.time() * 1000)
    recorder.on_message(message("devices/d1/sensors/s1", b'{"temp": 1}'))
    await recorder.flush()
    ((timestamp, value),) = await all_samples(recorder)
    assert before - 5 <= timestamp <= int(time.time() * 1000) + 5
    assert value == 1.0


async def test_heads_are_sealed_in_time_order_and_late_samples_are_kept(
    opened: tuple[Database, Recorder],
) -> None:
    database, recorder = opened
    await recorder.add_config(config())
    expected = []
    for flush in range(10):
        # Each flush arrives in reverse order, and every third one is older than all before it.
        base = NOW - flush * 100_000 if flush % 3 == 2 else NOW + flush * 10_000
        batch = [(base + index * 1000, float(flush * 10 + index)) for index in range(7)]
        for timestamp, value in reversed(batch):
            recorder.on_message(message("devices/d/sensors/s", reading(value, timestamp)))
        expected += batch
        await recorder.flush()
    assert await all_samples(recorder) == sorted(expected)
    chunks = await database.fetch_all("SELECT samples, LENGTH(data) AS size FROM ts_chunks")
    assert chunks
    assert all(chunk["samples"] == 16 for chunk in chunks)
    # The rest waits in the series' head (and the log) for more samples.
    assert sum(chunk["samples"] for chunk in chunks) + recorder.store.head_samples == 70
    assert recorder.bytes_on_disk == sum(chunk["size"] for chunk in chunks)


async def test_a_range_query_is_half_open(opened: tuple[Database, Recorder]) -> None:
    _, recorder = opened
    await recorder.add_config(config())
    for offset in range(10):
        recorder.on_message(message("devices/d/sensors/s", reading(float(offset), NOW + offset)))
    await recorder.flush()
    (series,) = await recorder.series()
    found = await recorder.samples(series.id, NOW + 2, NOW + 5)
    assert (found.timestamps, found.values) == ([NOW + 2, NOW + 3, NOW + 4], [2.0, 3.0, 4.0])


async def test_enough_queued_points_flush_without_waiting_for_the_interval(tmp_path: Path) -> None:
    database, recorder = await open_recorder(tmp_path / "db", flush_points=10)
    try:
        await recorder.add_config(config())
        for offset in range(10):
            recorder.on_message(message("devices/d/sensors/s", reading(1.0, NOW + offset)))
        for _ in range(200):
            if recorder.points == 10:
                break
            await asyncio.sleep(0.01)
        assert recorder.points == 10  # the interval is an hour
    finally:
        await recorder.stop()
        await database.close()


async def test_a_full_queue_drops_new_messages_and_counts(tmp_path: Path) -> None:
    database, recorder = await open_recorder(tmp_path / "db", max_queued_messages=5)
    try:
        await recorder.add_config(config())
        for offset in range(8):
            recorder.on_message(message("devices/d/sensors/s", reading(float(offset), NOW + offset)))
        assert recorder.dropped == 3
        await recorder.flush()
        assert [value for _, value in await all_samples(recorder)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    finally:
        await recorder.stop()
        await database.close()


async def test_stop_flushes_and_a_restart_keeps_configs_and_samples(tmp_path: Path) -> None:
    path = tmp_path / "mqttproxy.db"
    database, recorder = await open_recorder(path, chunk_samples=16)
    await recorder.add_config(config())
    for offset in range(40):
        recorder.on_message(message("devices/d/sensors/s", reading(offset / 4, NOW + offset * 1000)))
    await recorder.stop()  # nothing flushed before: stop must write it all
    await database.close()

    database, recorder = await open_recorder(path, chunk_samples=16)
    try:
        assert [item.id for item in recorder.configs()] == ["rooms"]
        assert await all_samples(recorder) == [(NOW + offset * 1000, offset / 4) for offset in range(40)]
        row = await database.fetch_one("SELECT SUM(LENGTH(data)) AS size FROM ts_chunks")
        assert row is not None
        assert recorder.bytes_on_disk == row["size"]
    finally:
        await recorder.stop()
        await database.close()


async def test_stop_during_a_slow_write_loses_nothing(tmp_path: Path) -> None:
    """Shutdown while a flush waits on a locked database: that batch and the rest are still stored."""
    path = tmp_path / "mqttproxy.db"
    database, recorder = await open_recorder(path, flush_interval=0.01)
    await recorder.add_config(config())
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    for offset in range(10):
        recorder.on_message(message("devices/d/sensors/s", reading(offset, NOW + offset)))
    await asyncio.sleep(0.2)  # the flush task has taken the batch and waits for the lock
    assert recorder.points == 0
    for offset in range(10, 20):
        recorder.on_message(message("devices/d/sensors/s", reading(offset, NOW + offset)))
    asyncio.get_running_loop().call_later(0.3, blocker.execute, "ROLLBACK")
    await recorder.stop()
    blocker.close()
    assert (recorder.points, recorder.lost_points) == (20, 0)
    await database.close()

    database, recorder = await open_recorder(path)
    try:
        assert await all_samples(recorder) == [(NOW + offset, float(offset)) for offset in range(20)]
    finally:
        await recorder.stop()
        await database.close()


async def test_retention_drops_whole_old_chunks_per_metric(opened: tuple[Database, Recorder]) -> None:
    database, recorder = opened
    fields = [
        {"metric": "temperature", "pointer": "/temp", "retention_days": 1},
        {"metric": "humidity", "pointer": "/temp", "retention_days": 10},
    ]
    await recorder.add_config(config(fields=fields))
    for day in (5, 3, 0):
        for offset in range(20):
            timestamp = NOW - day * DAY_MS + offset
            recorder.on_message(message("devices/d/sensors/s", reading(float(day), timestamp)))
        await recorder.flush()
    assert await recorder.apply_retention(NOW) > 0
    assert {value for _, value in await all_samples(recorder)} == {0.0}  # 3 and 5 days old: gone
    (humidity,) = await recorder.series(metric="humidity")
    kept = await recorder.samples(humidity.id, -(2**62), 2**62)
    assert set(kept.values) == {0.0, 3.0, 5.0}
    row = await database.fetch_one("SELECT SUM(LENGTH(data)) AS size FROM ts_chunks")
    assert row is not None
    assert recorder.bytes_on_disk == row["size"]


async def test_series_of_a_deleted_config_follow_the_default_retention(
    opened: tuple[Database, Recorder],
) -> None:
    _, recorder = opened
    await recorder.add_config(config())
    recorder.on_message(message("devices/d/sensors/s", reading(1.0, NOW - 40 * DAY_MS)))
    await recorder.flush()
    recorder.on_message(message("devices/d/sensors/s", reading(2.0, NOW)))
    await recorder.flush()
    await recorder.delete_config("rooms")
    recorder.on_message(message("devices/d/sensors/s", reading(3.0, NOW + 1)))  # no longer recorded
    await recorder.flush()
    await recorder.apply_retention(NOW)  # default: 30 days
    assert await all_samples(recorder) == [(NOW, 2.0)]


async def test_config_changes_take_effect_at_once(opened: tuple[Database, Recorder]) -> None:
    _, recorder = opened
    await recorder.add_config(config())
    with pytest.raises(DataConfigExists):
        await recorder.add_config(config())
    await recorder.update_config(config(topic="rooms/{device}", enabled=True))
    recorder.on_message(message("devices/d/sensors/s", reading(1.0, NOW)))
    recorder.on_message(message("rooms/r1", reading(2.0, NOW)))
    await recorder.flush()
    assert await all_samples(recorder) == [(NOW, 2.0)]
    await recorder.update_config(config(topic="rooms/{device}", enabled=False))
    recorder.on_message(message("rooms/r1", reading(3.0, NOW + 1)))
    assert await recorder.flush() == 0
    with pytest.raises(DataConfigNotFound):
        await recorder.update_config(config(id="nope"))
    with pytest.raises(DataConfigNotFound):
        await recorder.delete_config("nope")


async def test_a_failed_write_is_counted_and_the_recorder_goes_on(
    opened: tuple[Database, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk cannot be produced on demand: the store's write fails once instead.
    _, recorder = opened
    await recorder.add_config(config())
    original = recorder.store.write

    async def failing(batch: Any) -> int:
        monkeypatch.setattr(recorder.store, "write", original)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(recorder.store, "write", failing)
    recorder.on_message(message("devices/d/sensors/s", reading(1.0, NOW)))
    assert await recorder.flush() == 0
    assert (recorder.write_failures, recorder.lost_points) == (1, 1)
    assert recorder.last_flush_error == "database or disk is full"
    recorder.on_message(message("devices/d/sensors/s", reading(2.0, NOW + 1)))
    assert await recorder.flush() == 1
    assert await all_samples(recorder) == [(NOW + 1, 2.0)]


async def test_a_backlog_is_written_in_batches_and_the_event_loop_runs_between_them(
    opened: tuple[Database, Recorder],
) -> None:
    _, recorder = opened
    await recorder.add_config(config())
    for offset in range(5000):
        recorder.on_message(message("devices/d/sensors/s", reading(float(offset), NOW + offset)))
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count_turns())
    try:
        await recorder.flush()  # the flush task, woken by the backlog, takes its share too
        for _ in range(100):
            if recorder.points == 5000:
                break
            await asyncio.sleep(0.01)
    finally:
        counter.cancel()
    assert recorder.points == 5000
    assert recorder.flush_seconds.count == 5  # batches of about flush_points (1,000)
    assert turns >= 5  # the device path had its turns meanwhile
    assert len(await all_samples(recorder)) == 5000


async def device_traffic(busy: asyncio.Event, turn_seconds: float) -> None:
    """Make every turn of the event loop take ``turn_seconds``, as a flood of device messages does.

    Blocking in time.sleep rather than spinning: a loop spinning in Python that lets go of the GIL
    for a moment every turn can keep the database's worker thread from it for seconds (the waiting
    thread asks for a switch only after 5 ms without one), which is not what is tested here.
    """
    while busy.is_set():
        time.sleep(turn_seconds)  # noqa: ASYNC251 - the point is to hold up the event loop
        await asyncio.sleep(0)


async def wait_points(recorder: Recorder, points: int, timeout: float) -> None:
    for _ in range(int(timeout / 0.01)):
        if recorder.points >= points:
            break
        await asyncio.sleep(0.01)
    assert recorder.points == points


async def test_the_background_flush_writes_a_backlog_at_once_on_a_quiet_loop(tmp_path: Path) -> None:
    database, recorder = await open_recorder(tmp_path / "db", flush_points=10)  # interval: an hour
    try:
        await recorder.add_config(config())
        for offset in range(200):
            recorder.on_message(message("devices/d/sensors/s", reading(1.0, NOW + offset)))
        await wait_points(recorder, 200, timeout=10)  # 20 batches, none waiting for the interval
        assert recorder.flush_seconds.count == 20
    finally:
        await recorder.stop()
        await database.close()


async def test_under_a_storm_the_background_flush_gives_way_to_the_device_path(tmp_path: Path) -> None:
    database, recorder = await open_recorder(tmp_path / "db", flush_points=10, flush_interval=0.3)
    busy = asyncio.Event()
    busy.set()
    traffic = asyncio.create_task(device_traffic(busy, turn_seconds=0.002))
    try:
        await recorder.add_config(config())
        for offset in range(200):
            recorder.on_message(message("devices/d/sensors/s", reading(1.0, NOW + offset)))
        await asyncio.sleep(1.2)
        # A batch at once, then one per flush_interval while every turn of the loop is busy.
        assert 1 <= recorder.flush_seconds.count <= 6
        busy.clear()
        await traffic
        await wait_points(recorder, 200, timeout=10)  # the rest as soon as the loop is quiet
        assert recorder.dropped == 0
    finally:
        busy.clear()
        await traffic
        await recorder.stop()
        await database.close()


async def test_the_recorder_keeps_unsealed_samples_within_its_budget(tmp_path: Path) -> None:
    database, recorder = await open_recorder(tmp_path / "mqttproxy.db", max_head_samples=1024)
    try:
        await recorder.add_config(config())
        for second in range(10):
            for device in range(300):
                recorder.on_message(message(f"devices/d{device}/sensors/s", reading(21.5, NOW + second)))
            await recorder.flush()
        assert recorder.points == 3000
        assert recorder.store.head_samples <= 1024
        (series,) = await recorder.series(metric="temperature", labels={"device": "d7"})
        assert len((await recorder.samples(series.id, 0, 2**62)).timestamps) == 10
    finally:
        await recorder.stop()
        await database.close()
