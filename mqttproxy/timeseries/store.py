"""Timeseries in SQLite: data configs, series, and compressed chunks of samples.

A series is one metric with one label set. Its samples live in chunks (see
``codec.py``): every flush adds one small chunk per series it touched, so
that flushed data is durable at once; when a series has gathered
``chunk_samples`` samples in small chunks they are merged, in time order,
into sealed chunks of that size (never spanning a UTC day), which compress
far better. Retention drops whole chunks whose newest sample is older than
the cut-off.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mqttproxy.storage import Database
from mqttproxy.timeseries.codec import decode_chunk, encode_chunk
from mqttproxy.timeseries.models import DataConfig

DAY_MS = 86_400_000
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


class TimeseriesStore:
    def __init__(self, database: Database, *, chunk_samples: int = 2048) -> None:
        self._db = database
        self.chunk_samples = chunk_samples
        self._ids: dict[SeriesKey, int] = {}
        # Samples per series in unsealed chunks, to know when to merge them.
        self._unsealed: dict[int, int] = {}
        self.bytes_on_disk = 0

    async def open(self) -> None:
        row = await self._db.fetch_one("SELECT COALESCE(SUM(LENGTH(data)), 0) AS size FROM ts_chunks")
        self.bytes_on_disk = int(row["size"]) if row else 0
        rows = await self._db.fetch_all(
            "SELECT series_id, SUM(samples) AS samples FROM ts_chunks WHERE sealed = 0 GROUP BY series_id"
        )
        self._unsealed = {int(row["series_id"]): int(row["samples"]) for row in rows}

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

    async def write(self, batch: dict[SeriesKey, tuple[list[int], list[float]]]) -> int:
        """Store one flush's samples (one small chunk per series) in one transaction; return the count."""
        if not batch:
            return 0
        ids = await self._series_ids(batch.keys())
        rows = []
        written = 0
        for key, (arrived, arrived_values) in batch.items():
            order = sorted(range(len(arrived)), key=arrived.__getitem__)  # stable: ties keep arrival order
            timestamps = [arrived[i] for i in order]
            values = [arrived_values[i] for i in order]
            data = encode_chunk(timestamps, values)
            rows.append((ids[key], timestamps[0], timestamps[-1], len(timestamps), data))
            written += len(timestamps)
        async with self._db.transaction() as connection:
            await connection.executemany(
                "INSERT INTO ts_chunks (series_id, start_ms, end_ms, samples, sealed, data) "
                "VALUES (?, ?, ?, ?, 0, ?)",
                rows,
            )
        for series_id, _, _, samples, data in rows:
            self.bytes_on_disk += len(data)
            self._unsealed[series_id] = self._unsealed.get(series_id, 0) + samples
        return written

    def due_for_sealing(self) -> list[int]:
        return [series for series, samples in self._unsealed.items() if samples >= self.chunk_samples]

    async def seal(self, series_id: int) -> None:
        """Merge a series' small chunks, in time order, into sealed chunks of ``chunk_samples``."""
        rows = await self._db.fetch_all(
            "SELECT rowid, data FROM ts_chunks WHERE series_id = ? AND sealed = 0", (series_id,)
        )
        merged = _merge([decode_chunk(row["data"]) for row in rows])
        timestamps, values = merged.timestamps, merged.values
        sealed, tail = [], len(timestamps)
        for start, end, complete in _pieces(timestamps, self.chunk_samples):
            if not complete:
                tail = start  # merged with the samples still to come
                break
            chunk = encode_chunk(timestamps[start:end], values[start:end])
            sealed.append((series_id, timestamps[start], timestamps[end - 1], end - start, 1, chunk))
        if tail < len(timestamps):
            chunk = encode_chunk(timestamps[tail:], values[tail:])
            sealed.append((series_id, timestamps[tail], timestamps[-1], len(timestamps) - tail, 0, chunk))
        async with self._db.transaction() as connection:
            await connection.executemany(
                "DELETE FROM ts_chunks WHERE rowid = ?", [(row["rowid"],) for row in rows]
            )
            await connection.executemany(
                "INSERT INTO ts_chunks (series_id, start_ms, end_ms, samples, sealed, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                sealed,
            )
        self.bytes_on_disk += sum(len(row[5]) for row in sealed) - sum(len(row["data"]) for row in rows)
        self._unsealed[series_id] = len(timestamps) - tail

    async def _series_ids(self, keys: Iterable[SeriesKey]) -> dict[SeriesKey, int]:
        missing = [key for key in keys if key not in self._ids]
        if missing:
            params = [(metric, labels_text(labels)) for metric, labels in missing]
            async with self._db.transaction() as connection:
                await connection.executemany(
                    "INSERT OR IGNORE INTO ts_series (metric, labels) VALUES (?, ?)", params
                )
            for key, (metric, text) in zip(missing, params, strict=True):
                row = await self._db.fetch_one(
                    "SELECT id FROM ts_series WHERE metric = ? AND labels = ?", (metric, text)
                )
                assert row is not None
                self._ids[key] = int(row["id"])
        return self._ids

    async def drop_before(self, metric: str | None, cutoff_ms: int, *, keep: Sequence[str] = ()) -> int:
        """Delete chunks entirely older than ``cutoff_ms``: of ``metric``, or of metrics not in ``keep``."""
        if metric is not None:
            which, params = "metric = ?", [metric]
        else:
            which, params = f"metric NOT IN ({','.join('?' * len(keep))})", list(keep)
        # Only placeholders are formatted into the statement; every value is a parameter.
        condition = f"end_ms < ? AND series_id IN (SELECT id FROM ts_series WHERE {which})"  # noqa: S608
        totals = "SELECT COUNT(*) AS chunks, COALESCE(SUM(LENGTH(data)), 0) AS size FROM ts_chunks"
        row = await self._db.fetch_one(f"{totals} WHERE {condition}", (cutoff_ms, *params))
        if not row or not row["chunks"]:
            return 0
        await self._db.execute(f"DELETE FROM ts_chunks WHERE {condition}", (cutoff_ms, *params))  # noqa: S608
        self.bytes_on_disk -= int(row["size"])
        return int(row["chunks"])

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
        rows = await self._db.fetch_all(
            "SELECT data FROM ts_chunks WHERE series_id = ? AND end_ms >= ? AND start_ms < ? "
            "ORDER BY start_ms",
            (series_id, start_ms, end_ms),
        )
        merged = _merge([decode_chunk(row["data"]) for row in rows])
        timestamps = merged.timestamps
        # Sorted: the range is two binary searches, then slices.
        low = bisect_left(timestamps, start_ms)
        high = bisect_left(timestamps, end_ms)
        return Samples(timestamps[low:high], merged.values[low:high])

    async def last(self, series_id: int) -> tuple[int, float] | None:
        row = await self._db.fetch_one(
            "SELECT MAX(end_ms) AS newest FROM ts_chunks WHERE series_id = ?", (series_id,)
        )
        if row is None or row["newest"] is None:
            return None
        newest = int(row["newest"])
        found = await self.samples(series_id, newest, newest + 1)
        return found.timestamps[-1], found.values[-1]

    async def span(self, series_id: int) -> tuple[int, int, int] | None:
        """(first timestamp, last timestamp, sample count) of a series, or None if it has none."""
        row = await self._db.fetch_one(
            "SELECT MIN(start_ms) AS first, MAX(end_ms) AS last, SUM(samples) AS samples "
            "FROM ts_chunks WHERE series_id = ?",
            (series_id,),
        )
        if row is None or row["samples"] is None:
            return None
        return int(row["first"]), int(row["last"]), int(row["samples"])


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
