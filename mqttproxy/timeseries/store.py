"""Timeseries in SQLite: data configs, series, compressed chunks of samples, and the heads' log.

A series is one metric with one label set. Its newest samples are its head,
in memory and in the log (``heads.py``): a flush writes one log row, whatever
the number of series it touched. When a head holds ``chunk_samples`` samples
it is sealed: sorted by time and cut into chunks of that size (never spanning
a UTC day), which the codec (``codec.py``) compresses to a few bytes a sample;
the newest day's incomplete piece stays in the head. Retention drops whole
chunks whose newest sample is older than the cut-off, and head samples older
than it.

Readers see the chunks and the heads together. A seal moves samples from a
head into chunks within one transaction of the shared connection, which a
concurrent read could see half done; a lock keeps reads and seals apart.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise, repeat
from typing import Any

from mqttproxy.storage import Database
from mqttproxy.timeseries.codec import ChunkReader, decode_chunk, encode_chunk
from mqttproxy.timeseries.heads import Head, decode_log_row, encode_log_row
from mqttproxy.timeseries.models import DataConfig
from mqttproxy.timeseries.query import Bucket, aggregate, aggregate_chunks

DAY_MS = 86_400_000
LOG_PAGE = 64  # log rows read at a time when the heads are rebuilt
RELOG_SAMPLES = 100_000  # head samples written again to the log per call of maintain(), about
RELOG_ROW_SAMPLES = 5_000  # of them in one log row (encoding 100,000 at once held the loop 40 ms)
# The event loop also runs the device path: long seals and relogs give it a turn after this much work.
SLICE = 0.002  # seconds
SERIES_PER_QUERY = 400  # (metric, labels) pairs looked up in one statement (2 parameters each)
MAINTAIN_INTERVAL = 1.0  # seconds between looks at the log's size
_SET_SINCE = (
    "INSERT INTO ts_heads (series_id, since) VALUES (?, ?) "
    "ON CONFLICT (series_id) DO UPDATE SET since = excluded.since"
)
Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]  # (metric, labels)


@dataclass(frozen=True, slots=True)
class Series:
    id: int
    metric: str
    labels: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "metric": self.metric, "labels": self.labels}


@dataclass(frozen=True, slots=True)
class Samples:
    """Samples of one series in time order (ties in arrival order)."""

    timestamps: list[int]
    values: list[float]


def labels_text(labels: Labels) -> str:
    # Canonical (sorted, compact) so that one label set is one row.
    return json.dumps(dict(labels), separators=(",", ":"), ensure_ascii=False, sort_keys=True)


@dataclass(slots=True)
class Batch:
    """Points to store, in arrival order: point ``i`` is ``values[i]`` at ``timestamps[i]`` of ``keys[i]``."""

    keys: list[SeriesKey] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


class TimeseriesStore:
    def __init__(
        self, database: Database, *, chunk_samples: int = 2048, max_head_samples: int = 2_000_000
    ) -> None:
        self._db = database
        self.chunk_samples = chunk_samples
        self.max_head_samples = max_head_samples
        self._ids: dict[SeriesKey, int] = {}
        self._metrics: dict[int, str] = {}
        self._heads: dict[int, Head] = {}
        self._due: set[int] = set()  # series whose head is full
        self._log: deque[tuple[int, int]] = deque()  # (row id, samples) of the rows kept
        self._log_samples = 0
        self._last_log_id = 0
        self._maintained = 0.0
        # Held by whatever moves samples (write, seal, relog, retention) and by readers taking
        # a consistent view of chunks and heads: a seal must not miss samples a write adds while
        # its transaction is on the way, nor a reader see them in both places or neither.
        self._lock = asyncio.Lock()
        self.bytes_on_disk = 0  # of the chunks
        self.head_samples = 0

    async def open(self) -> None:
        row = await self._db.fetch_one("SELECT COALESCE(SUM(LENGTH(data)), 0) AS size FROM ts_chunks")
        self.bytes_on_disk = int(row["size"]) if row else 0
        for row in await self._db.fetch_all("SELECT id, metric FROM ts_series"):
            self._metrics[int(row["id"])] = row["metric"]
        since = {
            int(row["series_id"]): int(row["since"])
            for row in await self._db.fetch_all("SELECT series_id, since FROM ts_heads")
        }
        await self._replay_log(since)
        self._due = {series_id for series_id, head in self._heads.items() if len(head) >= self.chunk_samples}

    async def _replay_log(self, since: dict[int, int]) -> None:
        """Rebuild the heads: each series' samples in the log rows from its ``since`` on."""
        row = await self._db.fetch_one("SELECT seq FROM sqlite_sequence WHERE name = 'ts_log'")
        self._last_log_id = int(row["seq"]) if row else 0
        after = 0
        while rows := await self._db.fetch_all(
            "SELECT id, data FROM ts_log WHERE id > ? ORDER BY id LIMIT ?", (after, LOG_PAGE)
        ):
            for row in rows:
                after = int(row["id"])
                series_ids, timestamps, values = decode_log_row(row["data"])
                self._log.append((after, len(series_ids)))
                self._log_samples += len(series_ids)
                for series_id, stamp, value in zip(series_ids, timestamps, values, strict=True):
                    if after >= since.get(series_id, 0):
                        head = self._head(series_id, after)
                        head.timestamps.append(stamp)
                        head.values.append(value)
        self.head_samples = sum(len(head) for head in self._heads.values())

    def _head(self, series_id: int, row_id: int) -> Head:
        head = self._heads.get(series_id)
        if head is None:
            head = self._heads[series_id] = Head(since=row_id)
        return head

    @staticmethod
    async def _log_row(connection: Any, columns: _Columns) -> int:
        data = encode_log_row(columns.series_ids, columns.timestamps, columns.values)
        cursor = await connection.execute("INSERT INTO ts_log (data) VALUES (?)", (data,))
        row_id: int = cursor.lastrowid
        return row_id

    def _logged(self, row_id: int, samples: int) -> None:
        self._log.append((row_id, samples))
        self._log_samples += samples
        self._last_log_id = row_id

    # --- data configs -----------------------------------------------------------------------

    async def configs(self) -> list[DataConfig]:
        rows = await self._db.fetch_all("SELECT body FROM ts_configs ORDER BY id")
        return [DataConfig.model_validate_json(row["body"]) for row in rows]

    async def save_config(self, config: DataConfig, *, create: bool) -> None:
        body = config.model_dump_json()
        now = time.time()
        if create:
            await self._db.execute(
                "INSERT INTO ts_configs (id, body, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (config.id, body, now, now),
            )
        else:
            await self._db.execute(
                "UPDATE ts_configs SET body = ?, updated_at = ? WHERE id = ?", (body, now, config.id)
            )

    async def delete_config(self, config_id: str) -> None:
        await self._db.execute("DELETE FROM ts_configs WHERE id = ?", (config_id,))

    # --- writing ----------------------------------------------------------------------------

    async def write(self, batch: Batch) -> int:
        """Store one flush's points: one log row, and the heads in memory; return the count."""
        if not batch.keys:
            return 0
        async with self._lock:
            try:
                series_ids = list(map(self._ids.__getitem__, batch.keys))
            except KeyError:  # a series seen for the first time
                await self._create_series(set(batch.keys))
                series_ids = list(map(self._ids.__getitem__, batch.keys))
            data = encode_log_row(series_ids, batch.timestamps, batch.values)
            row_id = await self._db.execute("INSERT INTO ts_log (data) VALUES (?)", (data,))
            self._logged(row_id, len(series_ids))
            heads, full, due = self._heads, self.chunk_samples, self._due
            for series_id, stamp, value in zip(series_ids, batch.timestamps, batch.values, strict=True):
                head = heads.get(series_id)
                if head is None:
                    head = heads[series_id] = Head(since=row_id)
                head.timestamps.append(stamp)
                head.values.append(value)
                if len(head.timestamps) >= full:
                    due.add(series_id)
            self.head_samples += len(series_ids)
        return len(series_ids)

    def due_for_sealing(self) -> list[int]:
        """Series whose head is full, the fullest first."""
        return sorted(self._due, key=lambda series_id: -len(self._heads[series_id]))

    def over_budget(self, limit: int) -> list[int]:
        """The largest heads (at most ``limit``) to seal whole to get under ``max_head_samples``.

        Many series filling slowly would otherwise hold ``chunk_samples`` each in memory; sealed
        early, their chunks are smaller and compress a little worse, but memory stays bounded.
        Enough heads to free a quarter of the budget, so that it is not due again at once, unless
        ``limit`` comes first: with thousands of small heads a call frees less, and the heads then
        stay near the budget, a few heads sealed whenever a batch takes them over it.
        """
        excess = self.head_samples - self.max_head_samples * 3 // 4
        if self.head_samples <= self.max_head_samples:
            return []
        chosen = []
        for series_id in heapq.nlargest(
            limit, self._heads, key=lambda series_id: len(self._heads[series_id])
        ):
            if excess <= 0:
                break
            chosen.append(series_id)
            excess -= len(self._heads[series_id])
        return chosen

    async def seal(self, series_ids: Iterable[int], *, whole: bool = False) -> None:
        """Cut the heads of ``series_ids`` into sealed chunks of ``chunk_samples``, in one transaction.

        The newest day's incomplete piece stays in the head, unless ``whole`` seals it too.
        """
        async with self._lock:
            chunks = []
            kept = _Columns()
            remaining: dict[int, tuple[list[int], list[float]]] = {}
            sliced = time.perf_counter()
            for series_id in series_ids:
                if time.perf_counter() - sliced > SLICE:
                    # Sealing many heads (over budget) encodes for tens of milliseconds: in slices.
                    # The lock is held, so the heads stay as they are meanwhile.
                    await asyncio.sleep(0)
                    sliced = time.perf_counter()
                head = self._heads.get(series_id)
                if not head:
                    continue
                timestamps, values = head.in_order()
                tail = len(timestamps)
                for start, end, complete in _pieces(timestamps, self.chunk_samples):
                    if not complete and not whole:
                        tail = start  # stays in the head, with the samples still to come
                        break
                    data = encode_chunk(timestamps[start:end], values[start:end])
                    chunks.append((series_id, timestamps[start], timestamps[end - 1], end - start, data))
                remaining[series_id] = timestamps[tail:], values[tail:]
                kept.add(series_id, *remaining[series_id])
            if not remaining:
                return
            async with self._db.transaction() as connection:
                await connection.executemany(
                    "INSERT INTO ts_chunks (series_id, start_ms, end_ms, samples, data) "
                    "VALUES (?, ?, ?, ?, ?)",
                    chunks,
                )
                # What stays is logged again, so that no row before ``since`` holds anything of these
                # heads any more (log ids only grow).
                since = await self._log_row(connection, kept) if kept.series_ids else self._last_log_id + 1
                await connection.executemany(_SET_SINCE, [(series_id, since) for series_id in remaining])
            if kept.series_ids:
                self._logged(since, len(kept.series_ids))
            for series_id, (timestamps, values) in remaining.items():
                head = self._heads[series_id]
                self.head_samples += len(timestamps) - len(head)
                if timestamps:
                    head.replace(timestamps, values, since)
                else:
                    del self._heads[series_id]  # its next sample starts a head at its own log row
                if len(timestamps) < self.chunk_samples:
                    self._due.discard(series_id)
            self.bytes_on_disk += sum(len(chunk[4]) for chunk in chunks)

    async def maintain(self, *, force: bool = False) -> None:
        """Delete the log rows no head needs; relog slow heads that keep old rows (at most once a second)."""
        now = time.monotonic()
        if not force and now - self._maintained < MAINTAIN_INTERVAL:
            return
        self._maintained = now
        if self._log_samples > 4 * self.head_samples + 16 * self.chunk_samples:
            await self._relog_oldest()
        async with self._lock:
            needed = min((head.since for head in self._heads.values() if head), default=self._last_log_id + 1)
            if self._log and self._log[0][0] < needed:
                await self._db.execute("DELETE FROM ts_log WHERE id < ?", (needed,))
                while self._log and self._log[0][0] < needed:
                    self._log_samples -= self._log.popleft()[1]

    async def _relog_oldest(self) -> None:
        """Write again the heads that keep the oldest log rows, about ``RELOG_SAMPLES`` samples a call.

        Slow series fill their heads over hours while fast ones seal every few minutes; without
        this the log would keep every sample of those hours. When every series is as fast as the
        others the log holds about twice the heads, under the threshold of ``maintain``. Rows of
        about ``RELOG_ROW_SAMPLES`` samples, each with its own transaction, the loop running
        between them.
        """
        async with self._lock:
            pinning = sorted((head.since, series_id) for series_id, head in self._heads.items() if head)
            relogged = 0
            index = 0
            while index < len(pinning) and relogged < RELOG_SAMPLES:
                columns = _Columns()
                chosen = []
                while index < len(pinning) and len(columns.series_ids) < RELOG_ROW_SAMPLES:
                    series_id = pinning[index][1]
                    index += 1
                    head = self._heads[series_id]  # the lock is held: no head changed meanwhile
                    columns.add(series_id, head.timestamps, head.values)
                    chosen.append(series_id)
                async with self._db.transaction() as connection:
                    row_id = await self._log_row(connection, columns)
                    await connection.executemany(_SET_SINCE, [(series_id, row_id) for series_id in chosen])
                self._logged(row_id, len(columns.series_ids))
                for series_id in chosen:
                    self._heads[series_id].since = row_id
                relogged += len(columns.series_ids)
                await asyncio.sleep(0)

    async def _create_series(self, keys: set[SeriesKey]) -> None:
        """Give ids to series seen for the first time: a few statements, not one per series."""
        missing = {
            (metric, labels_text(labels)): (metric, labels) for metric, labels in keys - self._ids.keys()
        }
        pairs = list(missing)
        async with self._db.transaction() as connection:
            await connection.executemany(
                "INSERT OR IGNORE INTO ts_series (metric, labels) VALUES (?, ?)", pairs
            )
        for start in range(0, len(pairs), SERIES_PER_QUERY):
            part = pairs[start : start + SERIES_PER_QUERY]
            rows = await self._db.fetch_all(
                "SELECT id, metric, labels FROM ts_series WHERE (metric, labels) IN "  # noqa: S608
                f"(VALUES {', '.join(['(?, ?)'] * len(part))})",
                [item for pair in part for item in pair],
            )
            for row in rows:
                self._ids[missing[row["metric"], row["labels"]]] = int(row["id"])
                self._metrics[int(row["id"])] = row["metric"]

    async def drop_before(self, metric: str | None, cutoff_ms: int, *, keep: Sequence[str] = ()) -> int:
        """Delete chunks entirely older than ``cutoff_ms``, and older head samples: of ``metric``, or
        of metrics not in ``keep``. Return the number of chunks and head samples deleted."""
        if metric is not None:
            which, params = "metric = ?", [metric]
        else:
            which, params = f"metric NOT IN ({','.join('?' * len(keep))})", list(keep)
        # Only placeholders are formatted into the statement; every value is a parameter.
        condition = f"end_ms < ? AND series_id IN (SELECT id FROM ts_series WHERE {which})"  # noqa: S608
        totals = "SELECT COUNT(*) AS chunks, COALESCE(SUM(LENGTH(data)), 0) AS size FROM ts_chunks"
        async with self._lock:
            row = await self._db.fetch_one(f"{totals} WHERE {condition}", (cutoff_ms, *params))
            chunks = int(row["chunks"]) if row else 0
            if chunks:
                await self._db.execute(f"DELETE FROM ts_chunks WHERE {condition}", (cutoff_ms, *params))  # noqa: S608
                self.bytes_on_disk -= int(row["size"]) if row else 0
            # The log keeps these samples until the heads move on; a restart brings them back
            # into the heads until the retention pass that runs at start.
            samples = 0
            for series_id, head in self._heads.items():
                name = self._metrics.get(series_id)
                if (name == metric if metric is not None else name not in keep) and len(head):
                    samples += _drop_head_before(head, cutoff_ms)
                    if len(head) < self.chunk_samples:
                        self._due.discard(series_id)
            self.head_samples -= samples
        return chunks + samples

    # --- reading ----------------------------------------------------------------------------

    async def series(
        self, *, metric: str | None = None, labels: dict[str, str] | None = None, limit: int = 1000
    ) -> list[Series]:
        where, params = ["1 = 1"], []
        if metric is not None:
            where.append("metric = ?")
            params.append(metric)
        for name, value in (labels or {}).items():
            where.append("json_extract(labels, ?) = ?")
            params += [f'$."{name}"', value]
        rows = await self._db.fetch_all(
            f"SELECT id, metric, labels FROM ts_series WHERE {' AND '.join(where)} "  # noqa: S608
            "ORDER BY metric, labels LIMIT ?",
            (*params, limit),
        )
        return [Series(row["id"], row["metric"], json.loads(row["labels"])) for row in rows]

    async def one_series(self, series_id: int) -> Series | None:
        row = await self._db.fetch_one("SELECT id, metric, labels FROM ts_series WHERE id = ?", (series_id,))
        return Series(row["id"], row["metric"], json.loads(row["labels"])) if row else None

    async def samples(self, series_id: int, start_ms: int, end_ms: int) -> Samples:
        """The series' samples with ``start_ms <= timestamp < end_ms``, in time order."""
        async with self._lock:
            rows = await self._db.fetch_all(
                "SELECT data FROM ts_chunks WHERE series_id = ? AND end_ms >= ? AND start_ms < ? "
                "ORDER BY start_ms, rowid",
                (series_id, start_ms, end_ms),
            )
            head = self._head_between(series_id, start_ms, end_ms)
        chunks = [decode_chunk(row["data"]) for row in rows]
        if head[0]:
            chunks.append(head)
        merged = _merge(chunks)
        timestamps = merged.timestamps
        # Sorted: the range is two binary searches, then slices.
        low = bisect_left(timestamps, start_ms)
        high = bisect_left(timestamps, end_ms)
        return Samples(timestamps[low:high], merged.values[low:high])

    async def aggregate(
        self, series_id: int, *, start_ms: int, end_ms: int, step_ms: int, functions: Sequence[str]
    ) -> list[Bucket]:
        """Bucketed aggregates of the series over [start_ms, end_ms) (see ``query.py``)."""
        async with self._lock:
            rows = await self._db.fetch_all(
                "SELECT start_ms, end_ms, data FROM ts_chunks WHERE series_id = ? AND end_ms >= ? "
                "AND start_ms < ? ORDER BY start_ms, rowid",
                (series_id, start_ms, end_ms),
            )
            head = self._head_between(series_id, start_ms, end_ms)
        chunks = [ChunkReader(row["data"]) for row in rows]
        spans = [(row["start_ms"], row["end_ms"]) for row in rows]
        if head[0]:
            spans.append((head[0][0], head[0][-1]))
        ordered = all(chunk.ordered for chunk in chunks)
        if ordered and all(later[0] >= earlier[1] for earlier, later in pairwise(spans)):
            return aggregate_chunks(
                chunks, head, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms, functions=functions
            )
        # Late samples: chunks overlap in time, so every sample is decoded and merged.
        merged = _merge([*(chunk.decode() for chunk in chunks), head])
        return aggregate(
            merged.timestamps,
            merged.values,
            start_ms=start_ms,
            end_ms=end_ms,
            step_ms=step_ms,
            functions=functions,
        )

    def _head_between(self, series_id: int, start_ms: int, end_ms: int) -> tuple[list[int], list[float]]:
        head = self._heads.get(series_id)
        if not head:
            return [], []
        timestamps, values = head.in_order()
        low = bisect_left(timestamps, start_ms)
        high = bisect_left(timestamps, end_ms)
        return timestamps[low:high], values[low:high]

    async def last(self, series_id: int) -> tuple[int, float] | None:
        row = await self._db.fetch_one(
            "SELECT MAX(end_ms) AS newest FROM ts_chunks WHERE series_id = ?", (series_id,)
        )
        newest = row["newest"] if row else None
        head = self._heads.get(series_id)
        if head:
            newest = max(head.timestamps) if newest is None else max(newest, *head.timestamps)
        if newest is None:
            return None
        found = await self.samples(series_id, newest, newest + 1)
        return found.timestamps[-1], found.values[-1]

    async def span(self, series_id: int) -> tuple[int, int, int] | None:
        """(first timestamp, last timestamp, sample count) of a series, or None if it has none."""
        async with self._lock:
            row = await self._db.fetch_one(
                "SELECT MIN(start_ms) AS first, MAX(end_ms) AS last, SUM(samples) AS samples "
                "FROM ts_chunks WHERE series_id = ?",
                (series_id,),
            )
            head = self._heads.get(series_id)
            spans = (
                [(int(row["first"]), int(row["last"]), int(row["samples"]))] if row and row["samples"] else []
            )
            if head:
                spans.append((min(head.timestamps), max(head.timestamps), len(head)))
        if not spans:
            return None
        return min(s[0] for s in spans), max(s[1] for s in spans), sum(s[2] for s in spans)


@dataclass(slots=True)
class _Columns:
    """Samples of several series for a log row, in arrays (16 bytes a sample, as in the heads)."""

    series_ids: array[int] = field(default_factory=lambda: array("q"))
    timestamps: array[int] = field(default_factory=lambda: array("q"))
    values: array[float] = field(default_factory=lambda: array("d"))

    def add(self, series_id: int, timestamps: Sequence[int], values: Sequence[float]) -> None:
        self.series_ids.extend(repeat(series_id, len(timestamps)))
        self.timestamps.extend(timestamps)
        self.values.extend(values)


def _drop_head_before(head: Head, cutoff_ms: int) -> int:
    kept = [(t, v) for t, v in zip(head.timestamps, head.values, strict=True) if t >= cutoff_ms]
    dropped = len(head) - len(kept)
    if dropped:
        head.replace([t for t, _ in kept], [v for _, v in kept], head.since)
    return dropped


def _pieces(timestamps: list[int], size: int) -> list[tuple[int, int, bool]]:
    """Index ranges of sealed chunks for sorted ``timestamps``: ``size`` samples, never across a UTC day.

    Keeping days apart lets retention drop whole chunks on the day they expire.
    The newest day's remainder comes last, marked incomplete.
    """
    pieces = []
    start, count = 0, len(timestamps)
    while start < count:
        day_end = bisect_left(timestamps, (timestamps[start] // DAY_MS + 1) * DAY_MS, start)
        while day_end - start >= size:
            pieces.append((start, start + size, True))
            start += size
        if start < day_end:
            pieces.append((start, day_end, day_end < count))
        start = day_end
    return pieces


def _merge(chunks: list[tuple[list[int], list[float]]]) -> Samples:
    """Chunks, each in time order, as one sequence in time order."""
    timestamps: list[int] = []
    values: list[float] = []
    ordered = True
    for chunk_timestamps, chunk_values in chunks:
        if timestamps and chunk_timestamps and chunk_timestamps[0] < timestamps[-1]:
            ordered = False  # late samples: chunks overlap in time
        timestamps += chunk_timestamps
        values += chunk_values
    if not ordered:
        order = sorted(range(len(timestamps)), key=timestamps.__getitem__)  # stable: ties keep arrival order
        timestamps = [timestamps[i] for i in order]
        values = [values[i] for i in order]
    return Samples(timestamps, values)
