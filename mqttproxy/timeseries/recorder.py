"""The timeseries recorder: a tap on the dispatch point, a batch writer, retention and queries.

The tap runs for every message on the device path, so it only matches the
topic against the data configs' filters (a cached trie lookup) and appends
the message to a bounded queue. Parsing, extraction and writing run in the
recorder's own task, in batches: a flush happens every ``flush_interval`` or
as soon as about ``flush_points`` points are waiting. A message the recorder
cannot use is counted against its data config and never affects delivery.

Delivery comes first. The recorder shares the event loop with the device
path, so between batches it lets the loop run until a turn comes back
quickly, meaning the device path has caught up with what arrived during the
batch. Below saturation that takes a turn or two; under a storm that keeps
the loop busy it waits up to ``flush_interval`` for each batch, and what the
queue cannot hold meanwhile is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from mqttproxy.broker.message import Message
from mqttproxy.broker.topic_trie import SubscriptionTrie
from mqttproxy.errors import MqttProxyError
from mqttproxy.metrics import LatencyHistogram
from mqttproxy.storage import Database
from mqttproxy.timeseries.extract import Extractor
from mqttproxy.timeseries.models import DataConfig
from mqttproxy.timeseries.query import bucket_count
from mqttproxy.timeseries.store import Batch, Samples, Series, TimeseriesStore

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
SEALS_PER_BATCH = 2
ROUTE_CACHE_SIZE = 10_000  # topics
# A turn of the event loop shorter than this found little device traffic waiting: the device path
# has caught up and the next batch may run. A loaded turn (a read of MQTT data and its delivery)
# takes from a few hundred microseconds up.
IDLE_TURN = 0.0002  # seconds
Route = tuple[
    tuple[tuple[str, int], ...], int
]  # the data configs matching a topic, the points a message gives


class DataConfigNotFound(MqttProxyError):
    def __init__(self, config_id: str) -> None:
        super().__init__(f"no data config with id {config_id!r}")


class DataConfigExists(MqttProxyError):
    def __init__(self, config_id: str) -> None:
        super().__init__(f"a data config with id {config_id!r} already exists")


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    flush_interval: float = 1.0  # seconds
    flush_points: int = 1000
    max_queued_messages: int = 100_000
    chunk_samples: int = 2048
    max_head_samples: int = 2_000_000  # unsealed samples in memory, all series together
    max_future: float = 300.0  # seconds a payload timestamp may be ahead of the clock
    default_retention_days: float = 30.0  # for series no data config produces any more
    retention_interval: float = 3600.0  # seconds between retention passes


@dataclass(slots=True)
class ConfigStats:
    """What one data config did since start: shown on the dashboard and in /metrics."""

    messages: int = 0
    points: int = 0
    failures: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "points": self.points, "failures": dict(self.failures)}


class Recorder:
    def __init__(self, database: Database, settings: RecorderSettings | None = None) -> None:
        self.settings = settings or RecorderSettings()
        self.store = TimeseriesStore(
            database,
            chunk_samples=self.settings.chunk_samples,
            max_head_samples=self.settings.max_head_samples,
        )
        self._configs: dict[str, DataConfig] = {}
        self._extractors: dict[str, Extractor] = {}
        self._fields: dict[str, int] = {}  # points a message of each config can give
        self._trie: SubscriptionTrie[str] = SubscriptionTrie()
        self._routes: dict[str, Route] = {}
        self._max_queued = self.settings.max_queued_messages
        self._flush_points = self.settings.flush_points
        self._queue: deque[Message] = deque()
        self._waiting_points = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._flusher: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        self.stats: dict[str, ConfigStats] = {}
        self.points = 0  # points stored since start
        self.dropped = 0  # messages dropped because the queue was full
        self.write_failures = 0
        self.lost_points = 0  # points a failed write could not store
        self.flush_seconds = LatencyHistogram()
        self.last_flush_error: str | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        for config in await self.store.configs():
            self._install(config)
        self._stopping = False
        self._flusher = asyncio.create_task(self._flush_loop(), name="timeseries-flush")
        self._retention = asyncio.create_task(self._retention_loop(), name="timeseries-retention")
        logger.info("timeseries recorder: %d data configs", len(self._configs))

    async def stop(self) -> None:
        """Stop the tasks and flush what is queued, so that a clean shutdown loses nothing.

        The flush task is asked to finish, not cancelled: cancelling it inside a write would roll
        back a batch it had already taken off the queue.
        """
        if self._retention is not None:
            self._retention.cancel()
            await asyncio.gather(self._retention, return_exceptions=True)
            self._retention = None
        if self._flusher is not None:
            self._stopping = True
            self._wake.set()
            await self._flusher
            self._flusher = None
        await self.flush()

    # --- the tap ----------------------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        """Dispatch hook: queue a message that some data config wants; never blocks, never raises."""
        if not self._extractors:
            return  # no enabled data config: the device path pays one attribute test
        route = self._routes.get(message.topic)
        if route is None:
            route = self._route(message.topic)
        if not route[1]:
            return  # no data config matches (each has at least one field)
        queue = self._queue
        if len(queue) >= self._max_queued:
            # Writing fell behind: lose this message, counted, rather than memory without bound.
            # Dropping the newest (as Mosquitto's max_queued_messages does) costs the device path
            # nothing; dropping the oldest freed a long-queued, cache-cold message per message.
            self.dropped += 1
            return
        queue.append(message)
        waiting = self._waiting_points
        self._waiting_points = waiting + route[1]
        if waiting < self._flush_points <= waiting + route[1]:
            self._wake.set()  # once, when the batch fills up

    def _route(self, topic: str) -> Route:
        """The data configs matching ``topic`` and the points a message can give; cached per topic."""
        matched = self._trie.match(topic)
        route = matched, sum(self._fields.get(config_id, 0) for config_id, _ in matched)
        if len(self._routes) >= ROUTE_CACHE_SIZE:
            self._routes.clear()
        self._routes[topic] = route
        return route

    async def _flush_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.flush_interval)
            self._wake.clear()
            try:
                await self.flush(defer_to_devices=True)
            except Exception:
                logger.exception("timeseries flush failed")

    async def flush(self, *, defer_to_devices: bool = False) -> int:
        """Extract and store what is queued now, in batches of about ``flush_points`` points.

        Return the points stored. The event loop runs between batches, so that a backlog never
        holds up the device path for more than one batch (a few milliseconds); what arrives
        meanwhile waits for the next flush. With ``defer_to_devices`` (the background flush),
        each batch after the first also waits for the device path to catch up (module docstring).
        """
        stored = 0
        remaining = len(self._queue)
        self._waiting_points = 0
        while remaining > 0 and self._queue:
            started = time.perf_counter()
            entries = self._take(remaining)
            remaining -= len(entries)
            batch = self._extract(entries)
            written = 0
            try:
                written = await self.store.write(batch)
                # A few seals a batch: heads filled together (a fleet started together) are sealed
                # over many batches rather than in one long stall.
                await self.store.seal(self.store.due_for_sealing()[:SEALS_PER_BATCH])
                over = self.store.over_budget(SEALS_PER_BATCH * 32)
                if over:
                    await self.store.seal(over, whole=True)
            except Exception as exc:
                lost = len(batch) - written
                self.write_failures += 1
                self.lost_points += lost
                self.last_flush_error = str(exc)
                logger.error("timeseries: writing %d points failed: %s", lost, exc)
            self.points += written
            stored += written
            self.flush_seconds.observe(time.perf_counter() - started)
            if defer_to_devices:
                await self._device_turns()
            else:
                await asyncio.sleep(0)  # the device path's turn
        try:
            await self.store.maintain()
        except Exception:
            logger.exception("timeseries: trimming the log failed")
        return stored

    async def _device_turns(self) -> None:
        """Let the event loop run until one turn comes back quickly, or ``flush_interval`` passed."""
        clock = time.perf_counter
        deadline = clock() + self.settings.flush_interval
        while not self._stopping:
            started = clock()
            await asyncio.sleep(0)
            finished = clock()
            if finished - started < IDLE_TURN or finished >= deadline:
                return

    def _take(self, limit: int) -> list[Message]:
        """Up to ``limit`` queued messages, the oldest first, holding about ``flush_points`` points."""
        queue, goal, routes = self._queue, self._flush_points, self._routes
        taken: list[Message] = []
        points = 0
        while queue and len(taken) < limit and points < goal:
            message = queue.popleft()
            taken.append(message)
            route = routes.get(message.topic)
            points += (route or self._route(message.topic))[1]
        return taken

    def _extract(self, messages: list[Message]) -> Batch:
        # Messages carry the event loop's clock; turn it into wall-clock milliseconds.
        offset = time.time() - asyncio.get_running_loop().time()
        batch = Batch()
        keys, timestamps, values = batch.keys, batch.timestamps, batch.values
        extractors, routes = self._extractors, self._routes
        for message in messages:
            received_ms = int((message.received_at + offset) * 1000)
            route = routes.get(message.topic) or self._route(message.topic)
            for config_id, _ in route[0]:
                extractor = extractors.get(config_id)
                if extractor is None:
                    continue  # deleted since the message was queued
                found, readings, when, failures = extractor.read(message.topic, message.payload, received_ms)
                stats = self.stats[config_id]
                stats.messages += 1
                stats.points += len(found)
                for reason in failures:
                    stats.failures[reason] += 1
                keys += found
                values += readings
                timestamps += [when] * len(found)
        return batch

    def config_counters(self) -> list[tuple[str, int, int, Counter[str]]]:
        return [
            (config_id, item.messages, item.points, item.failures) for config_id, item in self.stats.items()
        ]

    @property
    def bytes_on_disk(self) -> int:
        return self.store.bytes_on_disk

    # --- retention --------------------------------------------------------------------------

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.apply_retention()
            except Exception:
                logger.exception("timeseries retention pass failed")
            await asyncio.sleep(self.settings.retention_interval)

    def retention_days(self) -> dict[str, float]:
        """Days to keep, per metric: the longest any data config asks for."""
        days: dict[str, float] = {}
        for config in self._configs.values():
            for item in config.fields:
                days[item.metric] = max(days.get(item.metric, 0.0), item.retention_days)
        return days

    async def apply_retention(self, now_ms: int | None = None) -> int:
        """Drop whole chunks, and unsealed samples, past their metric's retention; return how many went."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        days = self.retention_days()
        dropped = 0
        for metric, keep in days.items():
            dropped += await self.store.drop_before(metric, now_ms - int(keep * DAY_MS))
        default_cutoff = now_ms - int(self.settings.default_retention_days * DAY_MS)
        dropped += await self.store.drop_before(None, default_cutoff, keep=list(days))
        if dropped:
            logger.info("timeseries retention: dropped %d chunks and unsealed samples", dropped)
        return dropped

    # --- data configs -----------------------------------------------------------------------

    def configs(self) -> list[DataConfig]:
        return sorted(self._configs.values(), key=lambda config: config.id)

    def config(self, config_id: str) -> DataConfig:
        try:
            return self._configs[config_id]
        except KeyError:
            raise DataConfigNotFound(config_id) from None

    async def add_config(self, config: DataConfig) -> None:
        if config.id in self._configs:
            raise DataConfigExists(config.id)
        await self.store.save_config(config, create=True)
        self._install(config)
        logger.info("timeseries: data config %s added (topic %s)", config.id, config.topic)

    async def update_config(self, config: DataConfig) -> None:
        self.config(config.id)
        await self.store.save_config(config, create=False)
        self._install(config)
        logger.info("timeseries: data config %s updated", config.id)

    async def delete_config(self, config_id: str) -> None:
        """Stop recording for a data config; series it recorded stay until their retention."""
        self.config(config_id)
        await self.store.delete_config(config_id)
        del self._configs[config_id]
        self.stats.pop(config_id, None)
        self._rebuild()
        logger.info("timeseries: data config %s deleted", config_id)

    def _install(self, config: DataConfig) -> None:
        self._configs[config.id] = config
        self.stats.setdefault(config.id, ConfigStats())
        self._rebuild()

    def _rebuild(self) -> None:
        max_future_ms = int(self.settings.max_future * 1000)
        self._extractors = {
            config.id: Extractor(config, max_future_ms=max_future_ms)
            for config in self._configs.values()
            if config.enabled
        }
        self._fields = {config_id: len(self._configs[config_id].fields) for config_id in self._extractors}
        trie: SubscriptionTrie[str] = SubscriptionTrie()
        for config_id in self._extractors:
            trie.subscribe(self._configs[config_id].filter, config_id, 0)
        self._trie = trie
        self._routes = {}

    # --- queries ----------------------------------------------------------------------------

    async def series(
        self, *, metric: str | None = None, labels: dict[str, str] | None = None, limit: int = 1000
    ) -> list[Series]:
        return await self.store.series(metric=metric, labels=labels, limit=limit)

    async def one_series(self, series_id: int) -> Series | None:
        return await self.store.one_series(series_id)

    async def samples(self, series_id: int, start_ms: int, end_ms: int) -> Samples:
        return await self.store.samples(series_id, start_ms, end_ms)

    async def aggregate(
        self, series_id: int, *, start_ms: int, end_ms: int, step_ms: int, functions: list[str]
    ) -> list[tuple[int, dict[str, float]]]:
        return await self.store.aggregate(
            series_id, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms, functions=functions
        )

    @staticmethod
    def bucket_count(start_ms: int, end_ms: int, step_ms: int) -> int:
        return bucket_count(start_ms, end_ms, step_ms)
