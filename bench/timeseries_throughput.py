"""Timeseries recorder benchmark: ingest, bytes per sample, aggregate queries, and the device path.

Every figure is set side by side with a baseline: the same samples as rows of a
plain SQLite table ``bench_plain (series INTEGER, ts INTEGER, value REAL)`` with
an index on ``(series, ts)``, in the gateway's own database (WAL,
``synchronous=FULL``, 4 KiB pages; the series ids are the store's).

The sensors. Each MQTT message is one sensor's reading, published to
``devices/dev-NNNN/sensors/sK`` with a JSON payload such as
``{"ts":1764800000123,"temperature":21.53,"humidity":45.2,"energy":123456,"vibration":0.51234...}``:
four numbers, each its own series (metric + the labels ``device`` and
``sensor``). Per sensor: temperature a random walk in 0.01 steps, humidity a
random walk in 0.1 steps, energy a monotonically growing counter (integer Wh),
vibration a noisy full-precision double (0.5 + N(0, 0.05)). One data config
(``sensors``, topic ``devices/{device}/sensors/{sensor}``, the four fields by
JSON Pointer, the timestamp from ``/ts`` in ms) records them.

Parts (``--parts``, all by default), run in the order below; before the device
and ingest parts the kernel is made to write dirty pages out (``sync``): its
writeback runs in kernel threads, which the CPU accounting below leaves out.

``ingest``: points stored per second, end to end. A real gateway
(``mqttproxy run``, ``[web]`` enabled on 127.0.0.1 for ``/metrics``, the
``[timeseries]`` settings at their defaults) is pinned to ``--gateway-cpu``;
``--publishers`` (4) MQTT publisher processes and this script share
``--load-cpu``. Before it starts, its data directory gets the data config and a
random backlog per series (0 to ``chunk_samples`` - 1 samples, written with the
project's own store), so that series reach a full chunk at staggered times and
sealing runs at its steady rate inside short runs, as on a gateway that has
been up for a while. The publishers send QoS 0 PUBLISHes, paced at each rate
of ``--rates`` (points/s in total; a message is 4 points) over ``--topics``
topics (1,000, ``--sensors`` (4) per device: 4,000 series) in turn. The stored rate is
``mqtt_timeseries_points_total`` from ``/metrics``, read as the measured
window (``--warmup`` + ``--duration`` s) opens and closes. A rate is
*sustained* when the stored rate is >= 98% of it, and within ``--drain`` s of
the publishers stopping every point they sent is stored, with no message
dropped by the recorder's queue, no point lost to a failed write and no
extraction failure. After the last rate the gateway is stopped and the
database opened with the project's store: it must hold exactly the backlog plus
every point ``/metrics`` counted as stored (nothing lost silently, nothing
twice; what an overloaded recorder drops is counted as dropped). The baseline
runs the same gateway with the store's writes swapped for one ``executemany``
INSERT of each batch into the plain table, rows sorted by (series, ts) so that
they walk the index (nothing sealed): ``python bench/timeseries_throughput.py
serve-plain run ...`` replaces ``TimeseriesStore.write``, creates the table at
open and turns sealing off, then runs ``mqttproxy``'s own ``main``; its backlog
is the same rows in the plain table.

``bytes`` (first): bytes per sample on disk. ``--bytes-devices`` (10) sensors report
every 10 s (+-100 ms jitter) for ``--bytes-days`` (7) days, 4 series each,
through the real recorder in-process (``Recorder.on_message`` with the JSON
payloads, ``Recorder.flush`` every 1,000 points, which seals as the gateway
does). Reported per metric: chunk bytes (``SUM(LENGTH(data))``) per sample in
sealed chunks; and the whole database file per sample after a WAL checkpoint
and ``VACUUM`` (everything: unsealed samples, series, configs, indexes, the
other subsystems' empty tables). Baseline: the same samples in the plain table
of a file of their own, its size after ``VACUUM`` per row. Also, on the first
sensor's series in chunks of 2,048, how the codec's schemes compare with
Gorilla (Pelkonen et al., VLDB 2015: delta-of-delta timestamps, XOR values;
the exact bit count of that encoding, computed here): the codec as it stores
the series, the codec forced to store the values as IEEE bits (the
``_pack_ints`` path it takes for values that are not decimals), and Gorilla.

``query``: one series of ``--query-samples`` (1,000,000) samples over one UTC
day (a temperature random walk, 86.4 ms apart +-10 ms), written through the
store in batches of 10,000 and sealed. Timed, in a process pinned to
``--gateway-cpu``: ``Recorder.aggregate`` (what the REST API calls) over the
day in 1-minute buckets (1,440), for min,max,avg and for all seven aggregates,
with the range starting at midnight and at an unaligned time (+12.345 s);
``cold`` is the median of the first query after each of 3 fresh opens of the
database, ``warm`` the median of ``--query-runs`` (7) more after the first.
Baseline: ``SELECT (ts - start) / 60000, MIN, MAX, AVG, SUM, COUNT ... GROUP BY
1`` over the plain table through the same
``Database`` (first and last need two more GROUP BY queries taking the value
at ``MIN(ts)`` / ``MAX(ts)``, SQLite's bare-column rule). Then a gateway on
that data directory answers ``GET /api/timeseries/series/1/aggregate`` with an
API token, timed from this script (JSON included).

``device`` (before ``ingest``): the device path with and without recording. One gateway
(``[web]`` enabled to switch the data config on and off through
``PUT /api/timeseries/configs/sensors``); ``--publishers`` publishers flood
QoS 0 sensor messages (a pool of pre-encoded PUBLISHes over the same 1,000
topics) keeping at most ``--bound`` (4,000) written and not yet received, and a
subscriber to ``devices/#`` counts deliveries, as in ``broker_throughput.py``'s
bounded scenario. ``--device-routes`` says where that subscriber is:

- ``upstream`` (the issue's measure: upstream throughput): on a Mosquitto the
  gateway forwards every message to (one broker record, route ``#`` out, as in
  ``fanout_throughput.py``), on the load core;
- ``local``: on the gateway itself. Local delivery costs the gateway less per
  message than forwarding, so the flood saturates its core: the strictest case.

``--rounds`` (5) pairs of runs per route, alternating the order; reported per
run and as the ratio of the means (recording on / off), with what the recorder
stored and dropped meanwhile.

CPU over each window from /proc: the gateway process, both cores, and every
other process on the machine (kernel threads aside). A run in which other
processes used more than ``--max-foreign`` % of a core (10) is made again, up
to ``--retries`` (2) times, and the least disturbed one kept; the in-process
parts report the figure for their whole duration. Every process started here
is stopped on the way out, also on errors and Ctrl-C.

Targets (issue 7): >= 100,000 points/s ingest, <= 4 bytes/sample, aggregate
query < 100 ms. The device path should stay within a few percent.

Run from the repository root::

    .venv/bin/python bench/timeseries_throughput.py                     # all parts (about 7 minutes)
    .venv/bin/python bench/timeseries_throughput.py --write             # and add/update bench/RESULTS.md
    .venv/bin/python bench/timeseries_throughput.py --parts ingest --stores real --rates 100000 \\
        --py-spy /tmp/ingest.raw --py-spy-run real:100000               # profile one ingest run
    .venv/bin/python bench/timeseries_throughput.py --parts device --rounds 1 \
        --py-spy /tmp/device.raw --py-spy-run device-local:on           # profile a run with recording on

py-spy samples only the thread holding the GIL (``--gil``): the database
thread waiting for work would otherwise count as busy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import importlib.metadata
import itertools
import json
import multiprocessing
import os
import platform
import random
import re
import shlex
import shutil
import signal
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from array import array
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from broker_throughput import Gate, LoadSpec, Shared, SubscriberResult, _subscribe_loop
from common import (
    HOST,
    RESULTS_PATH,
    BenchError,
    Child,
    Marks,
    Mosquitto,
    Mqttproxy,
    Profiler,
    Schedule,
    Usage,
    background_busy,
    cpu_model,
    log,
    mqtt_close,
    mqtt_connect,
    mqtt_subscribe,
    proc_status_kb,
    running,
    sleep_until,
    source_revision,
    step_rates,
    usage_snapshot,
    window_rate,
    write_section,
)
from fanout_throughput import UPSTREAM_INFLIGHT, Upstream, cpu_seconds_by_pid, summarize_profile

from mqttproxy.broker.message import Message
from mqttproxy.protocol.codec import publish_bytes
from mqttproxy.storage import Database
from mqttproxy.timeseries import DataConfig, Recorder, RecorderSettings
from mqttproxy.timeseries import codec as chunk_codec
from mqttproxy.timeseries.store import Batch, SeriesKey, TimeseriesStore
from mqttproxy.upstream.models import BrokerRecord
from mqttproxy.upstream.store import BrokerStore

TITLE = "# Timeseries recorder benchmark: ingest, bytes per sample, aggregate queries"
PARTS = ("ingest", "bytes", "query", "device")
STORES = ("real", "plain")
DEVICE_ROUTES = ("upstream", "local")  # where the device part's subscriber counts deliveries
TARGET_INGEST = 100_000.0  # points/s
TARGET_BYTES = 4.0  # per sample
TARGET_QUERY_S = 0.100
TARGET_DEVICE_COST = 0.05  # "within a few percent" of delivered msg/s
SUSTAIN_SHARE = 0.98
LOAD_SATURATED = 95.0  # % busy of the load core from which the load side may be the limit
ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 - a throwaway operator of a temporary gateway
DAY_MS = 86_400_000
MINUTE_MS = 60_000
FIELDS = ("temperature", "humidity", "energy", "vibration")
TOPIC_FILTER = "devices/{device}/sensors/{sensor}"
DATA_CONFIG = DataConfig.model_validate(
    {
        "id": "sensors",
        "topic": TOPIC_FILTER,
        "fields": [
            {"metric": "temperature", "pointer": "/temperature", "unit": "°C"},
            {"metric": "humidity", "pointer": "/humidity", "unit": "%"},
            {"metric": "energy", "pointer": "/energy", "type": "counter", "unit": "Wh"},
            {"metric": "vibration", "pointer": "/vibration", "unit": "g"},
        ],
        "timestamp": {"pointer": "/ts", "unit": "ms"},
    }
)
AGGREGATES_3 = ["min", "max", "avg"]
AGGREGATES_7 = ["min", "max", "avg", "sum", "count", "first", "last"]
PLAIN_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bench_plain (series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT "
    "NULL)",
    "CREATE INDEX IF NOT EXISTS bench_plain_by_series_time ON bench_plain (series, ts)",
)
PLAIN_INSERT = "INSERT INTO bench_plain (series, ts, value) VALUES (?, ?, ?)"
MAX_SEND_BATCH = 256  # messages per sendall() of a paced publisher
FLOOD_BATCH = 128
FLOOD_POOL = 8192  # distinct pre-encoded messages a flooding publisher cycles through

T = TypeVar("T")


# --- the sensors -----------------------------------------------------------------------------------


class Sensor:
    """One sensor's readings: the four realistic series of the module docstring."""

    __slots__ = ("energy", "humidity", "rng", "temperature")

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.temperature = self.rng.randint(1800, 2600)  # hundredths of a degree
        self.humidity = self.rng.randint(300, 700)  # tenths of a percent
        self.energy = self.rng.randint(0, 1_000_000)  # Wh

    def step(self) -> tuple[float, float, float, float]:
        rng = self.rng
        move = rng.random()
        self.temperature += -1 if move < 0.25 else 1 if move >= 0.75 else 0
        move = rng.random()
        humidity = self.humidity + (-1 if move < 0.2 else 1 if move >= 0.8 else 0)
        self.humidity = min(950, max(50, humidity))
        self.energy += int(rng.random() * 8)
        return self.temperature / 100, self.humidity / 10, float(self.energy), 0.5 + rng.gauss(0.0, 0.05)

    def payload(self, ts_ms: int) -> bytes:
        temperature, humidity, energy, vibration = self.step()
        return b'{"ts":%d,"temperature":%.2f,"humidity":%.1f,"energy":%d,"vibration":%r}' % (
            ts_ms,
            temperature,
            humidity,
            int(energy),
            vibration,
        )


def topic_of(index: int, sensors: int) -> str:
    return f"devices/dev-{index // sensors:04}/sensors/s{index % sensors}"


def series_key(metric: str, topic: str) -> SeriesKey:
    """The key the recorder gives a point of ``metric`` from ``topic`` (labels sorted by name)."""
    levels = topic.split("/")
    return metric, (("device", levels[1]), ("sensor", levels[3]))


# --- child processes ----------------------------------------------------------------------------------


def _child_main(target: Callable[[Connection], object], cpu: int, conn: Connection) -> None:
    """Entry point of a child process: report ("result", ...) or ("error", traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    os.sched_setaffinity(0, {cpu})
    try:
        conn.send(("result", target(conn)))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def spawn(name: str, target: Callable[[Connection], object], cpu: int) -> Child:
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    process = ctx.Process(target=_child_main, args=(target, cpu, child_end), name=name, daemon=True)
    process.start()
    child_end.close()
    return Child(name, process, parent_end)


def run_async(coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run in a fresh event loop of the kind the gateway uses (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine())


@dataclass
class InProcess:
    """What an in-process part returned, and the CPU others used while it ran."""

    result: Any
    seconds: float
    foreign: float  # % of a core used by other processes meanwhile


def in_child(name: str, work: Callable[[], Any], cpu: int, timeout: float) -> InProcess:
    """``work()`` in a forked process pinned to ``cpu``, with the CPU of other processes meanwhile."""
    child = spawn(name, lambda conn: work(), cpu)
    started = time.monotonic()
    before = cpu_seconds_by_pid()
    try:
        result = child.expect("result", timeout)
    finally:
        child.stop()
    elapsed = time.monotonic() - started
    after = cpu_seconds_by_pid()
    ours = {os.getpid(), child.process.pid}
    foreign = sum(max(0.0, used - before.get(pid, 0.0)) for pid, used in after.items() if pid not in ours)
    return InProcess(result, elapsed, 100 * foreign / max(elapsed, 1e-9))


# --- the plain-table baseline ---------------------------------------------------------------------------


async def create_plain_table(database: Database) -> None:
    async with database.transaction() as connection:
        for statement in PLAIN_SCHEMA:
            await connection.execute(statement)


async def _plain_write(store: TimeseriesStore, batch: Batch) -> int:
    """The baseline's write: the same batch as rows of the plain table, in one transaction."""
    if not batch.keys:
        return 0
    ids = store._ids
    missing = {key for key in batch.keys if key not in ids}
    if missing:
        await store._create_series(missing)
    # Sorted by the index's order: the inserts walk the index instead of jumping about in it.
    rows = sorted(zip(map(ids.__getitem__, batch.keys), batch.timestamps, batch.values, strict=True))
    async with store._db.transaction() as connection:
        await connection.executemany(PLAIN_INSERT, rows)
    return len(rows)


def serve_plain(argv: list[str]) -> int:
    """``mqttproxy`` with the timeseries store's writes going to the plain table, nothing sealed."""
    from mqttproxy.__main__ import main as mqttproxy_main

    original_open = TimeseriesStore.open

    async def open_with_plain_table(self: TimeseriesStore) -> None:
        await original_open(self)
        await create_plain_table(self._db)

    TimeseriesStore.open = open_with_plain_table  # type: ignore[method-assign]
    TimeseriesStore.write = _plain_write  # type: ignore[method-assign]
    TimeseriesStore.due_for_sealing = lambda self: []  # type: ignore[method-assign]
    return mqttproxy_main(argv)


# --- gateways ----------------------------------------------------------------------------------------


class Gateway(Mqttproxy):
    """``mqttproxy run`` with the web listener on (for /metrics and the API), or the plain-table runner."""

    web = True

    def __init__(
        self, *, name: str, workdir: Path, cpu: int, plain: bool = False, upstream_port: int | None = None
    ) -> None:
        self.name = name
        super().__init__(workdir=workdir, cpu=cpu, inflight=100, queued=0)
        self.plain = plain
        self.upstream_port = upstream_port
        self.http_port = 0

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "mqttproxy.db"

    def command(self) -> list[str]:
        config = self.workdir / "bench.toml"
        config.write_text(
            "[auth]\nallow_anonymous = true\n"
            f'[mqtt]\nhost = "{HOST}"\nmax_inflight_messages = 100\nmax_queued_messages = 1000000000\n'
            f'[web]\nenabled = true\nhost = "{HOST}"\nadmin_password = "{ADMIN_PASSWORD}"\n'
        )
        if self.upstream_port is not None:
            # As in fanout_throughput.py: everything out (route "#"), QoS 1 at most, a deep queue.
            record = BrokerRecord(
                id="up0",
                name="up0",
                address=HOST,
                port=self.upstream_port,
                max_qos=1,
                queue_max_messages=100_000,
            )
            BrokerStore(self.data_dir / "brokers.json", secret_key=None).save([record])
        tail = ["run", "--config", str(config), "--mqtt-port", "0", "--web-port", "0", "--data-dir", "data"]
        if self.plain:
            return [sys.executable, str(Path(__file__).resolve()), "serve-plain", *tail]
        return [self.executable, *tail]

    def _wait_ready(self, deadline: float) -> int:
        mqtt = re.compile(r"listening mqtt tcp [\d.]+:(\d+)")
        http = re.compile(r"listening http [\d.]+:(\d+)")
        while time.monotonic() < deadline:
            self.check_alive()
            text = self.log_text()
            linked = self.upstream_port is None or "upstream up0: connected to" in text
            if (found := mqtt.search(text)) and (web := http.search(text)) and linked:
                self.http_port = int(web.group(1))
                return int(found.group(1))
            time.sleep(0.05)
        waited = "listeners" if self.upstream_port is None else "listeners and upstream link"
        raise BenchError(f"{self.name} did not log its {waited} in time:\n{self.log_tail()}")

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.http_port}{path}"


def http(gateway: Gateway, method: str, path: str, token: str | None = None, body: Any = None) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    # http:// to the gateway on 127.0.0.1, built here: no other scheme can come in.
    request = urllib.request.Request(gateway.url(path), data=data, method=method)  # noqa: S310
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        raise BenchError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from exc


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape(gateway: Gateway) -> tuple[float, dict[str, float]]:
    """(monotonic time of the answer, metric -> value, labelled samples summed by name)."""
    text = http(gateway, "GET", "/metrics").decode()
    now = time.monotonic()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            values[match.group(1)] = values.get(match.group(1), 0.0) + float(match.group(3))
    return now, values


POINTS = "mqtt_timeseries_points_total"
DROPPED = "mqtt_timeseries_messages_dropped_total"
LOST = "mqtt_timeseries_points_lost_total"
FAILURES = "mqtt_timeseries_extraction_failures_total"
RECEIVED = "mqtt_messages_received_total"


async def _token(database: Database) -> str:
    from mqttproxy.operators import Operators

    operators = Operators(database, session_ttl=3600.0)
    await operators.ensure_admin(ADMIN_PASSWORD)
    operator = await operators.verify("admin", ADMIN_PASSWORD)
    assert operator is not None
    _, secret = await operators.create_token(operator, "bench")
    return secret


# --- ingest --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestSpec:
    store: str  # one of STORES
    rate: float  # points/s offered, all publishers together
    publishers: int
    topics: int
    sensors: int  # per device
    warmup: float
    duration: float
    drain: float

    @property
    def label(self) -> str:
        return f"{self.store}:{self.rate:g}"

    @property
    def message_rate(self) -> float:
        return self.rate / len(FIELDS)


@dataclass
class PublisherStats:
    sent: int
    points: list[tuple[float, int]]  # `sent` at the window's edges
    behind: int  # messages due but not yet sent when the window closed


def ingest_publisher(port: int, spec: IngestSpec, index: int, seed: int, conn: Connection) -> PublisherStats:
    sock, _ = mqtt_connect(port, f"ts-bench-{index}-{os.getpid()}")
    mine = range(index, spec.topics, spec.publishers)
    sensors = [(topic_of(n, spec.sensors).encode(), Sensor(seed * 1_000_003 + n)) for n in mine]
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    rate = spec.message_rate / spec.publishers
    t0 = schedule.start + index / spec.message_rate
    marks = Marks.window(schedule)
    sent = due = 0
    sleep_until(schedule.start)
    try:
        while True:
            now = time.monotonic()
            marks.observe(now, sent)
            if now >= schedule.measure_end:
                break
            due = int((now - t0) * rate) + 1 - sent if now >= t0 else 0
            if due <= 0:
                time.sleep(min(0.002, max(0.0, t0 + sent / rate - now)))
                continue
            count = min(due, MAX_SEND_BATCH)
            ts_ms = time.time_ns() // 1_000_000
            packets = []
            for k in range(sent, sent + count):
                topic, sensor = sensors[k % len(sensors)]
                packets.append(publish_bytes(topic, sensor.payload(ts_ms), 0, False, False, None))
            sock.sendall(b"".join(packets))
            sent += count
    finally:
        mqtt_close(sock)
    return PublisherStats(sent, marks.points, max(0, due - MAX_SEND_BATCH))


@dataclass
class IngestResult:
    spec: IngestSpec
    sent: int  # messages, whole run
    offered: float  # points/s the publishers sent over the window
    stored: float  # points/s stored over the window
    stored_steps: list[float]  # points/s stored in each second of the window
    stored_total: int  # points stored from the start of the run until the drain ended
    drain_seconds: float | None  # after the publishers stopped, until all was stored (None: never)
    dropped: int
    lost: int
    failures: int
    behind: int
    usage: Usage
    foreign: float
    rss_kb: int
    tries: int = 1

    @property
    def expected(self) -> int:
        return self.sent * len(FIELDS)

    @property
    def sustained(self) -> bool:
        return (
            self.stored >= SUSTAIN_SHARE * self.spec.rate
            and self.offered >= SUSTAIN_SHARE * self.spec.rate
            and self.stored_total == self.expected
            and not (self.dropped or self.lost or self.failures)
        )


async def _prefill(data_dir: Path, spec: IngestSpec, chunk_samples: int, seed: int) -> int:
    """The data config, and a backlog of 0 to chunk_samples - 1 samples per series, written by the store."""
    database = Database(data_dir / "mqttproxy.db")
    await database.open()
    try:
        store = TimeseriesStore(database, chunk_samples=chunk_samples)
        await store.open()
        await store.save_config(DATA_CONFIG, create=True)
        if spec.store == "plain":
            await create_plain_table(database)
        write = functools.partial(_plain_write, store) if spec.store == "plain" else store.write
        rng = random.Random(seed)
        now_ms = int(time.time() * 1000)
        total = 0
        batch = Batch()
        for n in range(spec.topics):
            topic = topic_of(n, spec.sensors)
            sensor = Sensor(rng.randrange(1 << 30))
            backlog = rng.randrange(chunk_samples)
            start = now_ms - 60_000 - backlog * 40  # 25 samples a second, just before the run
            if not backlog:
                continue
            readings = [sensor.step() for _ in range(backlog)]
            for position, metric in enumerate(FIELDS):
                batch.keys += [series_key(metric, topic)] * backlog
                batch.timestamps += [start + i * 40 for i in range(backlog)]
                batch.values += [reading[position] for reading in readings]
            total += backlog * len(FIELDS)
            if len(batch) >= 400_000:
                await write(batch)
                batch = Batch()
        await write(batch)
        return total
    finally:
        await database.close()


def run_ingest_rate(
    gateway: Gateway, spec: IngestSpec, load_cpu: int, profiler: Profiler | None
) -> IngestResult:
    _, before = scrape(gateway)
    children: list[Child] = []
    try:
        for index in range(spec.publishers):
            target = functools.partial(ingest_publisher, gateway.port, spec, index, random.randrange(1 << 30))
            children.append(spawn(f"publisher {index}", target, load_cpu))
        for child in children:
            child.expect("ready", 30)
        start = time.monotonic() + 0.3
        schedule = Schedule(start, start + spec.warmup, start + spec.warmup + spec.duration)
        for child in children:
            child.conn.send(schedule)
        sleep_until(schedule.warm_end)
        ours = {os.getpid(), gateway.pid, *(child.process.pid for child in children)}
        snapshot = usage_snapshot(gateway.pid)
        cpu_before = cpu_seconds_by_pid()
        if profiler is not None:
            profiler.start(gateway.pid, spec.duration)
            if profiler.process is not None:
                ours.add(profiler.process.pid)
        marks = [scrape(gateway)]
        next_mark = schedule.warm_end + 1.0
        while next_mark <= schedule.measure_end + 0.01:
            sleep_until(next_mark)
            marks.append(scrape(gateway))
            next_mark += 1.0
        usage = Usage.between(gateway.pid, snapshot)
        cpu_after = cpu_seconds_by_pid()
        elapsed = max(1e-9, time.monotonic() - snapshot[0])
        foreign = sum(
            max(0.0, used - cpu_before.get(pid, 0.0)) for pid, used in cpu_after.items() if pid not in ours
        )
        stats: list[PublisherStats] = [child.expect("result", 30) for child in children]
        if profiler is not None:
            profiler.finish(30)
    finally:
        for child in children:
            child.stop()
    sent = sum(s.sent for s in stats)
    expected = before.get(POINTS, 0.0) + sent * len(FIELDS)
    drained: float | None = None
    stop = schedule.measure_end
    after = before
    while True:
        now, after = scrape(gateway)
        if after.get(POINTS, 0.0) >= expected:
            drained = now - stop
            break
        if now - stop > spec.drain:
            break
        time.sleep(0.1)
    gateway.check_alive()
    points = [(t, int(values.get(POINTS, 0.0))) for t, values in marks]
    return IngestResult(
        spec=spec,
        sent=sent,
        offered=sum(window_rate(s.points) for s in stats) * len(FIELDS),
        stored=window_rate(points),
        stored_steps=step_rates(points),
        stored_total=int(after.get(POINTS, 0.0) - before.get(POINTS, 0.0)),
        drain_seconds=drained,
        dropped=int(after.get(DROPPED, 0.0) - before.get(DROPPED, 0.0)),
        lost=int(after.get(LOST, 0.0) - before.get(LOST, 0.0)),
        failures=int(after.get(FAILURES, 0.0) - before.get(FAILURES, 0.0)),
        behind=sum(s.behind for s in stats),
        usage=usage,
        foreign=100 * foreign / elapsed,
        rss_kb=proc_status_kb(gateway.pid, "VmRSS"),
    )


def describe_ingest(result: IngestResult) -> str:
    drain = "never" if result.drain_seconds is None else f"{result.drain_seconds:.1f} s"
    return (
        f"{result.spec.label}: {'sustained' if result.sustained else 'NOT sustained'}; offered "
        f"{result.offered:,.0f}/s, stored {result.stored:,.0f}/s, all stored after {drain}, "
        f"stored {result.stored_total:,} of {result.expected:,}, dropped {result.dropped}, lost "
        f"{result.lost}, "
        f"failures {result.failures}; gateway CPU {result.usage.broker_cpu:.0f}%, others "
        f"{result.foreign:.0f}%, "
        f"RSS {result.rss_kb / 1024:.0f} MB"
    )


async def _count_stored(data_dir: Path, store_kind: str) -> tuple[int, int]:
    """(samples held, series) in a stopped gateway's database, read through the project's store."""
    database = Database(data_dir / "mqttproxy.db")
    await database.open()
    try:
        if store_kind == "plain":
            row = await database.fetch_one(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT series) AS s FROM bench_plain"
            )
            assert row is not None
            return int(row["n"]), int(row["s"])
        store = TimeseriesStore(database)
        await store.open()
        total = 0
        every = await store.series(limit=1_000_000)
        for series in every:
            span = await store.span(series.id)
            total += span[2] if span else 0
        return total, len(every)
    finally:
        await database.close()


@dataclass
class IngestStoreReport:
    store: str
    results: list[IngestResult]
    backlog: int
    discarded: int = 0  # points stored by tries made again because others disturbed them
    held: int = 0  # samples in the database after the gateway stopped
    series: int = 0
    rss_idle_kb: int = 0
    hwm_kb: int = 0
    returncode: int | None = None
    findings: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        """What the database must hold: the backlog and every point the gateway said it stored."""
        return self.backlog + self.discarded + sum(r.stored_total for r in self.results)

    @property
    def intact(self) -> bool:
        return self.held == self.expected


def settle() -> None:
    """Write dirty pages out and let the kernel's writeback finish: it runs in kernel threads, which
    the CPU accounting of other processes leaves out, and would slow the next part."""
    os.sync()
    time.sleep(2.0)


def run_ingest(args: argparse.Namespace, workdir: Path) -> list[IngestStoreReport]:
    reports = []
    chunk_samples = RecorderSettings().chunk_samples
    for store_kind in args.stores:
        gateway = Gateway(
            name=f"ingest-{store_kind}", workdir=workdir, cpu=args.gateway_cpu, plain=store_kind == "plain"
        )
        gateway.data_dir.mkdir(parents=True, exist_ok=True)
        base = IngestSpec(
            store_kind,
            0.0,
            args.publishers,
            args.topics,
            args.sensors,
            args.warmup,
            args.duration,
            args.drain,
        )
        log(
            f"ingest {store_kind}: writing the data config and a backlog for {args.topics * len(FIELDS):,} "
            "series ..."
        )
        prefill = in_child(
            "prefill",
            functools.partial(
                run_async, functools.partial(_prefill, gateway.data_dir, base, chunk_samples, args.seed)
            ),
            args.load_cpu,
            600,
        )
        report = IngestStoreReport(store_kind, [], backlog=prefill.result)
        settle()
        with running(gateway):
            time.sleep(1.0)
            report.rss_idle_kb = proc_status_kb(gateway.pid, "VmRSS")
            for rate in args.rates:
                spec = IngestSpec(**{**base.__dict__, "rate": rate})
                profiler = (
                    Profiler(args.py_spy, spec.label, extra=("--gil",))
                    if args.py_spy and args.py_spy_run == spec.label
                    else None
                )
                runs: list[IngestResult] = []
                while True:
                    log(f"ingest {spec.label}: {spec.warmup:g} s + {spec.duration:g} s ...")
                    result = run_ingest_rate(gateway, spec, args.load_cpu, profiler)
                    runs.append(result)
                    result.tries = len(runs)
                    log("  " + describe_ingest(result))
                    if result.foreign <= args.max_foreign or len(runs) > args.retries:
                        break
                    log(f"  other processes used {result.foreign:.0f}% of a core: again")
                    profiler = None
                report.results.append(min(runs, key=lambda r: r.foreign))
                # Later runs add to the same database: what the discarded tries stored is expected too.
                report.discarded += sum(r.stored_total for r in runs if r is not report.results[-1])
            report.hwm_kb = proc_status_kb(gateway.pid, "VmHWM")
        report.returncode = gateway.returncode
        report.findings = gateway.log_findings()
        counted = in_child(
            "count",
            functools.partial(run_async, functools.partial(_count_stored, gateway.data_dir, store_kind)),
            args.load_cpu,
            600,
        )
        report.held, report.series = counted.result
        log(f"ingest {store_kind}: the database holds {report.held:,} samples; expected {report.expected:,}")
        reports.append(report)
    return reports


# --- bytes per sample -------------------------------------------------------------------------------------


@dataclass
class CodecComparison:
    metric: str
    samples: int
    ours: float  # bytes/sample, the codec as it stores the series
    ours_values_bits: float  # bytes/sample of the values alone, forced to IEEE bits (delta scheme)
    ours_values: float  # bytes/sample of the values alone, as the codec stores them
    gorilla_values: float  # bytes/sample of Gorilla's XOR values
    gorilla: float  # bytes/sample of Gorilla: delta-of-delta timestamps + XOR values
    ours_timestamps: float  # bytes/sample of the timestamps alone
    gorilla_timestamps: float


@dataclass
class BytesResult:
    per_metric: dict[str, tuple[int, int]]  # metric -> (sealed samples, chunk bytes)
    unsealed: int  # samples not (yet) in a sealed chunk
    samples: int
    file_bytes: int  # after checkpoint and VACUUM
    plain_file_bytes: int
    plain_rows: int
    comparisons: list[CodecComparison]
    seconds: float  # to record them


def sensor_series(
    seed: int, count: int, start_ms: int, period_ms: int, jitter_ms: int
) -> tuple[list[int], list[tuple[float, float, float, float]]]:
    rng = random.Random(seed)
    sensor = Sensor(seed)
    stamps = [start_ms + i * period_ms + rng.randint(-jitter_ms, jitter_ms) for i in range(count)]
    return stamps, [sensor.step() for _ in range(count)]


def gorilla_timestamp_bits(stamps: Sequence[int]) -> int:
    """Bits of Gorilla's timestamps: 64 for the first, 14 for the first delta, then deltas of deltas."""
    if not stamps:
        return 0
    bits = 64
    if len(stamps) > 1:
        bits += 14
    previous_delta = stamps[1] - stamps[0] if len(stamps) > 1 else 0
    for i in range(2, len(stamps)):
        delta = stamps[i] - stamps[i - 1]
        dod = delta - previous_delta
        previous_delta = delta
        if dod == 0:
            bits += 1
        elif -63 <= dod <= 64:
            bits += 2 + 7
        elif -255 <= dod <= 256:
            bits += 3 + 9
        elif -2047 <= dod <= 2048:
            bits += 4 + 12
        else:
            bits += 4 + 32
    return bits


def gorilla_value_bits(values: Sequence[float]) -> int:
    """Bits of Gorilla's XOR value encoding (control bits, leading-zero count, meaningful bits)."""
    if not values:
        return 0
    words = struct.unpack(f"<{len(values)}Q", struct.pack(f"<{len(values)}d", *values))
    bits = 64
    window: tuple[int, int] | None = None  # leading zeros, meaningful bits of the previous window
    for previous, word in itertools.pairwise(words):
        xor = previous ^ word
        if xor == 0:
            bits += 1
            continue
        leading = min(64 - xor.bit_length(), 31)  # 5 bits hold the count
        trailing = (xor & -xor).bit_length() - 1
        if window is not None and leading >= window[0] and trailing >= 64 - window[0] - window[1]:
            bits += 2 + window[1]
        else:
            meaningful = 64 - leading - trailing
            bits += 2 + 5 + 6 + meaningful
            window = (leading, meaningful)
    return bits


def _values_as_bits(values: Sequence[float]) -> int:
    """Bytes the codec's integer-sequence scheme takes for the values' IEEE bits (its non-decimal path)."""
    header, planes = chunk_codec._pack_ints(chunk_codec._as_ints(array("d", values).tobytes()))
    return len(chunk_codec._deflate([header, *planes]))


def compare_codecs(metric: str, stamps: list[int], values: list[float], chunk: int = 2048) -> CodecComparison:
    ours = ours_bits = ours_values = ours_stamps = 0
    gorilla_v = gorilla_t = 0
    zeros = [0] * chunk
    for start in range(0, len(stamps), chunk):
        part_t, part_v = stamps[start : start + chunk], values[start : start + chunk]
        ours += len(chunk_codec.encode_chunk(part_t, part_v))
        ours_values += len(chunk_codec.encode_chunk(zeros[: len(part_v)], part_v))
        ours_stamps += len(chunk_codec.encode_chunk(part_t, [0.0] * len(part_t)))
        ours_bits += _values_as_bits(part_v)
        gorilla_v += gorilla_value_bits(part_v)
        gorilla_t += gorilla_timestamp_bits(part_t)
    n = len(stamps)
    return CodecComparison(
        metric=metric,
        samples=n,
        ours=ours / n,
        ours_values_bits=ours_bits / n,
        ours_values=ours_values / n,
        gorilla_values=gorilla_v / 8 / n,
        gorilla=(gorilla_v + gorilla_t) / 8 / n,
        ours_timestamps=ours_stamps / n,
        gorilla_timestamps=gorilla_t / 8 / n,
    )


async def _record_sensors(workdir: Path, devices: int, days: float) -> BytesResult:
    count = int(days * DAY_MS / 10_000)
    end_ms = int(time.time() * 1000) // 10_000 * 10_000
    start_ms = end_ms - count * 10_000
    fleet = [sensor_series(1000 + d, count, start_ms, 10_000, 100) for d in range(devices)]
    topics = [topic_of(d, 1) for d in range(devices)]
    path = workdir / "bytes" / "mqttproxy.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    database = Database(path)
    await database.open()
    started = time.perf_counter()
    try:
        recorder = Recorder(database, RecorderSettings(flush_interval=3600.0, retention_interval=1e9))
        await recorder.start()
        await recorder.add_config(DATA_CONFIG)
        loop_time = asyncio.get_running_loop().time
        waiting = 0
        for i in range(count):
            for d in range(devices):
                stamps, readings = fleet[d]
                temperature, humidity, energy, vibration = readings[i]
                payload = b'{"ts":%d,"temperature":%.2f,"humidity":%.1f,"energy":%d,"vibration":%r}' % (
                    stamps[i],
                    temperature,
                    humidity,
                    int(energy),
                    vibration,
                )
                recorder.on_message(Message(topics[d], payload, 0, False, "client:bench", loop_time()))
                waiting += len(FIELDS)
            if waiting >= 1000:
                await recorder.flush()
                waiting = 0
        await recorder.stop()
        seconds = time.perf_counter() - started
        rows = await database.fetch_all(
            "SELECT s.metric AS metric, SUM(c.samples) AS samples, SUM(LENGTH(c.data)) AS size "
            "FROM ts_chunks c JOIN ts_series s ON s.id = c.series_id GROUP BY s.metric"
        )
        per_metric = {row["metric"]: (int(row["samples"]), int(row["size"])) for row in rows}
        total = devices * count * len(FIELDS)
        unsealed = total - sum(samples for samples, _ in per_metric.values())
        stored = 0
        for series in await recorder.series(limit=100_000):
            span = await recorder.store.span(series.id)
            stored += span[2] if span else 0
        if stored != total:
            raise BenchError(f"bytes: the store holds {stored:,} samples, {total:,} were recorded")
    finally:
        await database.close()
    file_bytes = _vacuumed_size(path)
    plain_bytes = _plain_file(workdir / "bytes" / "plain.db", fleet)
    stamps, readings = fleet[0]
    comparisons = [
        compare_codecs(metric, stamps, [r[position] for r in readings])
        for position, metric in enumerate(FIELDS)
    ]
    return BytesResult(per_metric, unsealed, total, file_bytes, plain_bytes, total, comparisons, seconds)


def _plain_file(path: Path, fleet: list[tuple[list[int], list[tuple[float, float, float, float]]]]) -> int:
    """The baseline: the same samples in the plain table of a file of their own; its size."""
    plain = sqlite3.connect(path, isolation_level=None)
    try:
        plain.execute("PRAGMA journal_mode=WAL")
        for statement in PLAIN_SCHEMA:
            plain.execute(statement)
        plain.execute("BEGIN")
        for d, (stamps, readings) in enumerate(fleet):
            for position in range(len(FIELDS)):
                series = d * len(FIELDS) + position + 1
                plain.executemany(
                    PLAIN_INSERT, ((series, t, r[position]) for t, r in zip(stamps, readings, strict=True))
                )
        plain.execute("COMMIT")
    finally:
        plain.close()
    return _vacuumed_size(path)


def _vacuumed_size(path: Path) -> int:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("VACUUM")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


# --- query -----------------------------------------------------------------------------------------------


@dataclass
class QueryTiming:
    label: str  # what was timed
    cold: float  # seconds, median of the first query after each fresh open of the database
    warm: list[float]  # seconds, the runs after
    buckets: int

    @property
    def median(self) -> float:
        return statistics.median(self.warm)


@dataclass
class QueryResult:
    samples: int
    timings: list[QueryTiming]
    write_seconds: float
    chunks: int
    plain_rows: int
    api: list[QueryTiming] = field(default_factory=list)
    foreign: float = 0.0
    api_foreign: float = 0.0
    mismatches: list[str] = field(default_factory=list)


def query_series(samples: int, day_start: int, seed: int) -> tuple[list[int], list[float]]:
    rng = random.Random(seed)
    period = DAY_MS / samples
    jitter = min(10, int(period / 4))
    stamps = [day_start + int(i * period) + rng.randint(0, jitter) for i in range(samples)]
    level = 2150
    values = []
    for _ in range(samples):
        move = rng.random()
        level += -1 if move < 0.25 else 1 if move >= 0.75 else 0
        values.append(level / 100)
    return stamps, values


async def _write_query_series(path: Path, samples: int, day_start: int, seed: int) -> tuple[float, int, int]:
    stamps, values = query_series(samples, day_start, seed)
    database = Database(path)
    await database.open()
    try:
        store = TimeseriesStore(database)
        await store.open()
        await store.save_config(DATA_CONFIG, create=True)
        await create_plain_table(database)
        key = series_key("temperature", topic_of(0, 1))
        started = time.perf_counter()
        for start in range(0, samples, 10_000):
            part = slice(start, start + 10_000)
            await store.write(Batch([key] * len(stamps[part]), stamps[part], values[part]))
            await store.seal(store.due_for_sealing())
        write_seconds = time.perf_counter() - started
        (series,) = await store.series()
        async with database.transaction() as connection:
            await connection.executemany(
                PLAIN_INSERT, ((series.id, t, v) for t, v in zip(stamps, values, strict=True))
            )
        row = await database.fetch_one("SELECT COUNT(*) AS n FROM ts_chunks")
        assert row is not None
        return write_seconds, int(row["n"]), samples
    finally:
        await database.close()


async def _plain_aggregate(
    database: Database, series_id: int, start: int, end: int, step: int, functions: list[str]
) -> list[tuple[int, dict[str, float]]]:
    """The baseline: GROUP BY over the plain table (first and last by SQLite's bare-column rule)."""
    where = "FROM bench_plain WHERE series = ? AND ts >= ? AND ts < ? GROUP BY b ORDER BY b"
    params = (start, step, series_id, start, end)
    rows = await database.fetch_all(
        f"SELECT (ts - ?) / ? AS b, MIN(value) AS min, MAX(value) AS max, AVG(value) AS avg, "
        f"SUM(value) AS sum, COUNT(*) AS count {where}",
        params,
    )
    buckets = {row["b"]: {name: row[name] for name in ("min", "max", "avg", "sum", "count")} for row in rows}
    if "first" in functions:
        for row in await database.fetch_all(f"SELECT (ts - ?) / ? AS b, value, MIN(ts) {where}", params):
            buckets[row["b"]]["first"] = row["value"]
    if "last" in functions:
        for row in await database.fetch_all(f"SELECT (ts - ?) / ? AS b, value, MAX(ts) {where}", params):
            buckets[row["b"]]["last"] = row["value"]
    return [
        (start + b * step, {name: values[name] for name in functions})
        for b, values in sorted(buckets.items())
    ]


COLD_OPENS = 3  # fresh opens of the database, each timed on its first query


async def _time_queries(path: Path, day_start: int, runs: int) -> tuple[list[QueryTiming], list[str]]:
    timings = []
    mismatches = []
    cases = [
        ("midnight", day_start, day_start + DAY_MS),
        ("unaligned", day_start + 12_345, day_start + DAY_MS + 12_345),
    ]
    for functions in (AGGREGATES_3, AGGREGATES_7):
        for where, start, end in cases:
            for kind in ("recorder", "plain"):
                label = f"{kind} {','.join(functions) if len(functions) < 7 else 'all 7'}, {where}"
                cold: list[float] = []
                warm: list[float] = []
                for attempt in range(COLD_OPENS):
                    answer, seconds = await _open_and_query(
                        path, kind, start, end, functions, runs + 1 if attempt == 0 else 1
                    )
                    cold.append(seconds[0])
                    warm += seconds[1:]
                    if attempt == 0 and kind == "recorder":
                        mismatches += _compare_answers(
                            label, answer, await _plain_answer(path, start, end, functions)
                        )
                timings.append(QueryTiming(label, statistics.median(cold), warm, len(answer)))
    return timings, mismatches


async def _open_and_query(
    path: Path, kind: str, start: int, end: int, functions: list[str], times: int
) -> tuple[list[tuple[int, dict[str, float]]], list[float]]:
    """Open the database afresh, run the query ``times`` times; the answer and each run's seconds."""
    database = Database(path)
    await database.open()
    try:
        recorder = Recorder(database)
        await recorder.store.open()
        (series,) = await recorder.series()
        seconds = []
        answer: list[tuple[int, dict[str, float]]] = []
        for _ in range(times):
            began = time.perf_counter()
            if kind == "recorder":
                answer = await recorder.aggregate(
                    series.id, start_ms=start, end_ms=end, step_ms=MINUTE_MS, functions=functions
                )
            else:
                answer = await _plain_aggregate(database, series.id, start, end, MINUTE_MS, functions)
            seconds.append(time.perf_counter() - began)
        return answer, seconds
    finally:
        await database.close()


async def _plain_answer(
    path: Path, start: int, end: int, functions: list[str]
) -> list[tuple[int, dict[str, float]]]:
    answer, _ = await _open_and_query(path, "plain", start, end, functions, 1)
    return answer


def _compare_answers(
    label: str, got: list[tuple[int, dict[str, float]]], expected: list[tuple[int, dict[str, float]]]
) -> list[str]:
    if [at for at, _ in got] != [at for at, _ in expected]:
        return [f"{label}: bucket starts differ from the plain table's"]
    for (at, values), (_, wanted) in zip(got, expected, strict=True):
        for name, value in values.items():
            if abs(value - wanted[name]) > 1e-9 * max(1.0, abs(wanted[name])):
                return [f"{label}: bucket {at} {name} = {value!r}, the plain table says {wanted[name]!r}"]
    return []


def run_query(args: argparse.Namespace, workdir: Path) -> QueryResult:
    day_start = (int(time.time() * 1000) // DAY_MS - 2) * DAY_MS
    gateway = Gateway(name="query", workdir=workdir, cpu=args.gateway_cpu)
    gateway.data_dir.mkdir(parents=True, exist_ok=True)
    path = gateway.database_path
    log(f"query: writing {args.query_samples:,} samples of one series over one day ...")
    written = in_child(
        "query-write",
        lambda: run_async(lambda: _write_query_series(path, args.query_samples, day_start, args.seed)),
        args.gateway_cpu,
        900,
    )
    write_seconds, chunks, rows = written.result
    log(f"query: written in {write_seconds:.1f} s ({chunks} chunks); timing ...")
    timed = in_child(
        "query",
        lambda: run_async(lambda: _time_queries(path, day_start, args.query_runs)),
        args.gateway_cpu,
        900,
    )
    timings, mismatches = timed.result
    result = QueryResult(
        args.query_samples, timings, write_seconds, chunks, rows, foreign=timed.foreign, mismatches=mismatches
    )
    for timing in timings:
        log(
            f"  {timing.label}: cold {timing.cold * 1000:.1f} ms, warm median {timing.median * 1000:.1f} "
            f"ms ({timing.buckets} buckets)"
        )
    token = in_child("token", lambda: run_async(lambda: _open_and_token(path)), args.load_cpu, 120).result
    with running(gateway):
        started = time.monotonic()
        before = cpu_seconds_by_pid()
        for functions in (AGGREGATES_3, AGGREGATES_7):
            for where, start in (("midnight", day_start), ("unaligned", day_start + 12_345)):
                query = (
                    f"/api/timeseries/series/1/aggregate?from={start}&to={start + DAY_MS}&step=1m"
                    f"&agg={','.join(functions)}"
                )
                seconds = []
                body = b""
                for _ in range(args.query_runs + 1):
                    began = time.perf_counter()
                    body = http(gateway, "GET", query, token)
                    seconds.append(time.perf_counter() - began)
                buckets = len(json.loads(body)["buckets"])
                label = f"API {','.join(functions) if len(functions) < 7 else 'all 7'}, {where}"
                result.api.append(QueryTiming(label, seconds[0], seconds[1:], buckets))
                log(
                    f"  {label}: first {seconds[0] * 1000:.1f} ms, median "
                    f"{statistics.median(seconds[1:]) * 1000:.1f} ms"
                )
        elapsed = time.monotonic() - started
        after = cpu_seconds_by_pid()
        ours = {os.getpid(), gateway.pid}
        result.api_foreign = (
            100 * sum(max(0.0, u - before.get(p, 0.0)) for p, u in after.items() if p not in ours) / elapsed
        )
    return result


async def _open_and_token(path: Path) -> str:
    database = Database(path)
    await database.open()
    try:
        return await _token(database)
    finally:
        await database.close()


# --- the device path ------------------------------------------------------------------------------------


@dataclass
class DeviceRun:
    route: str  # one of DEVICE_ROUTES
    mode: str  # "on" or "off"
    round: int
    delivered: float  # msg/s at the subscriber over the window
    steps: list[float]
    published: int
    received: int
    stored: float  # points/s the recorder stored over the window
    dropped: int  # messages the recorder's queue dropped in the run
    usage: Usage
    foreign: float
    tries: int = 1

    @property
    def lost(self) -> int:
        return self.published - self.received


def flood_publisher(
    port: int, spec: LoadSpec, index: int, topics: int, sensors: int, shared: Shared, conn: Connection
) -> int:
    sock, _ = mqtt_connect(port, f"ts-flood-{index}-{os.getpid()}")
    ts_ms = int(time.time() * 1000)
    pool = []
    readers = [Sensor(index * 7919 + n) for n in range(topics)]
    for k in range(FLOOD_POOL):
        n = (index + k * spec.publishers) % topics
        topic = topic_of(n, sensors).encode()
        pool.append(publish_bytes(topic, readers[n].payload(ts_ms + k), 0, False, False, None))
    blobs = [b"".join(pool[i : i + FLOOD_BATCH]) for i in range(0, FLOOD_POOL, FLOOD_BATCH)]
    gate = Gate(shared, index, spec.bound)
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    sent = 0
    sleep_until(schedule.start)
    try:
        while True:
            now = time.monotonic()
            if now >= schedule.measure_end:
                break
            if not gate.has_room(FLOOD_BATCH, now):
                time.sleep(0.0005)
                continue
            sock.sendall(blobs[(sent // FLOOD_BATCH) % len(blobs)])
            sent += FLOOD_BATCH
            gate.add(FLOOD_BATCH)
    finally:
        mqtt_close(sock)
    return sent


def flood_subscriber(port: int, spec: LoadSpec, shared: Shared, conn: Connection) -> SubscriberResult:
    sock, decoder = mqtt_connect(port, f"ts-sub-{os.getpid()}")
    mqtt_subscribe(sock, decoder, "devices/#", 0)
    if decoder.buffered:
        raise BenchError("unexpected data after SUBACK")
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    try:
        return _subscribe_loop(sock, spec, schedule, shared)
    finally:
        mqtt_close(sock)


def run_device_once(
    gateway: Gateway,
    upstream: Upstream | None,
    spec: LoadSpec,
    mode: str,
    number: int,
    args: argparse.Namespace,
    profiler: Profiler | None,
) -> DeviceRun:
    """One run; the subscriber counting deliveries connects to the upstream if there is one."""
    delivery_port = gateway.port if upstream is None else upstream.port
    shared = Shared.create(spec.publishers)
    children: list[Child] = []
    try:
        children.append(
            spawn(
                "subscriber", functools.partial(flood_subscriber, delivery_port, spec, shared), args.load_cpu
            )
        )
        children[0].expect("ready", 15)
        for i in range(spec.publishers):
            target = functools.partial(
                flood_publisher, gateway.port, spec, i, args.topics, args.sensors, shared
            )
            children.append(spawn(f"publisher {i}", target, args.load_cpu))
        for child in children[1:]:
            child.expect("ready", 30)
        _, before = scrape(gateway)
        start = time.monotonic() + 0.5
        schedule = Schedule(start, start + spec.warmup, start + spec.warmup + spec.duration)
        for child in children:
            child.conn.send(schedule)
        sleep_until(schedule.warm_end)
        ours = {os.getpid(), gateway.pid, *(child.process.pid for child in children)}
        if upstream is not None:
            ours.add(upstream.pid)
        snapshot = usage_snapshot(gateway.pid)
        cpu_before = cpu_seconds_by_pid()
        if profiler is not None:
            profiler.start(gateway.pid, spec.duration)
            if profiler.process is not None:
                ours.add(profiler.process.pid)
        t0, m0 = scrape(gateway)
        sleep_until(schedule.measure_end)
        t1, m1 = scrape(gateway)
        usage = Usage.between(gateway.pid, snapshot)
        cpu_after = cpu_seconds_by_pid()
        elapsed = max(1e-9, time.monotonic() - snapshot[0])
        foreign = sum(max(0.0, u - cpu_before.get(p, 0.0)) for p, u in cpu_after.items() if p not in ours)
        subscriber: SubscriberResult = children[0].expect("result", spec.drain_max + 30)
        published = sum(child.expect("result", 10) for child in children[1:])
        _, after = scrape(gateway)
        if profiler is not None:
            profiler.finish(30)
    finally:
        for child in children:
            child.stop()
    gateway.check_alive()
    return DeviceRun(
        route="local" if upstream is None else "upstream",
        mode=mode,
        round=number,
        delivered=window_rate(subscriber.points),
        steps=step_rates(subscriber.points),
        published=published,
        received=subscriber.received,
        stored=(m1.get(POINTS, 0.0) - m0.get(POINTS, 0.0)) / max(1e-9, t1 - t0),
        dropped=int(after.get(DROPPED, 0.0) - before.get(DROPPED, 0.0)),
        usage=usage,
        foreign=100 * foreign / elapsed,
    )


def describe_device(run: DeviceRun) -> str:
    return (
        f"{run.route}, recording {run.mode} (round {run.round}): delivered {run.delivered:,.0f} msg/s, "
        f"lost {run.lost}, "
        f"recorder stored {run.stored:,.0f} points/s, dropped {run.dropped:,} messages; gateway CPU "
        f"{run.usage.broker_cpu:.0f}%, others {run.foreign:.0f}%"
    )


def run_device(args: argparse.Namespace, workdir: Path) -> list[DeviceRun]:
    runs: list[DeviceRun] = []
    for route in args.device_routes:
        if route == "local":
            gateway = Gateway(name="device-local", workdir=workdir, cpu=args.gateway_cpu)
            runs += _device_rounds(gateway, None, args)
            continue
        upstream = Upstream(workdir=workdir, cpu=args.load_cpu, index=0)
        with running(upstream):
            gateway = Gateway(
                name="device-upstream", workdir=workdir, cpu=args.gateway_cpu, upstream_port=upstream.port
            )
            runs += _device_rounds(gateway, upstream, args)
    return runs


def _device_rounds(gateway: Gateway, upstream: Upstream | None, args: argparse.Namespace) -> list[DeviceRun]:
    """``--rounds`` pairs of runs on one gateway, recording switched on and off through the REST API."""
    gateway.data_dir.mkdir(parents=True, exist_ok=True)

    async def prepare() -> str:
        database = Database(gateway.database_path)
        await database.open()
        try:
            store = TimeseriesStore(database)
            await store.open()
            await store.save_config(DATA_CONFIG, create=True)
            return await _token(database)
        finally:
            await database.close()

    token = in_child("device-prepare", lambda: run_async(prepare), args.load_cpu, 120).result
    spec = LoadSpec(
        key="device",
        title="device path",
        qos=0,
        publishers=args.publishers,
        payload_size=0,
        rate=0.0,
        window=0,
        bound=args.bound,
        timed=False,
        warmup=args.device_warmup,
        duration=args.device_duration,
        drain_idle=1.0,
        drain_max=10.0,
    )
    body = DATA_CONFIG.model_dump(mode="json")
    runs: list[DeviceRun] = []
    profiled: set[str] = set()
    with running(gateway):
        route = "local" if upstream is None else "upstream"
        time.sleep(0.5)
        for number in range(1, args.rounds + 1):
            order = ("on", "off") if number % 2 else ("off", "on")
            for mode in order:
                http(
                    gateway,
                    "PUT",
                    "/api/timeseries/configs/sensors",
                    token,
                    {**body, "enabled": mode == "on"},
                )
                tries: list[DeviceRun] = []
                while True:
                    label = f"device-{route}:{mode}"
                    profiler = None
                    if args.py_spy and args.py_spy_run == label and label not in profiled:
                        profiler = Profiler(args.py_spy, label, extra=("--gil",))
                        profiled.add(label)
                    run = run_device_once(gateway, upstream, spec, mode, number, args, profiler)
                    tries.append(run)
                    run.tries = len(tries)
                    log("device: " + describe_device(run))
                    if run.foreign <= args.max_foreign or len(tries) > args.retries:
                        break
                    log(f"  other processes used {run.foreign:.0f}% of a core: again")
                runs.append(min(tries, key=lambda r: r.foreign))
                wait_recorder_idle(gateway)
    return runs


def wait_recorder_idle(gateway: Gateway, timeout: float = 60.0) -> None:
    """Until the recorder has stored what it had queued (its point count stands still for 0.5 s)."""
    deadline = time.monotonic() + timeout
    _, last = scrape(gateway)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        _, now = scrape(gateway)
        if now.get(POINTS) == last.get(POINTS):
            return
        last = now
    raise BenchError("the recorder did not finish its queue within a minute")


# --- the report -------------------------------------------------------------------------------------------


@dataclass
class Results:
    ingest: list[IngestStoreReport] = field(default_factory=list)
    bytes: InProcess | None = None
    query: QueryResult | None = None
    device: list[DeviceRun] = field(default_factory=list)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _cpu(usage: Usage, foreign: float, args: argparse.Namespace) -> str:
    busy = usage.core_busy
    return (
        f"{usage.broker_cpu:.0f}% (sys {usage.broker_sys:.0f}%) / {busy.get(args.gateway_cpu, 0):.0f}% / "
        f"{busy.get(args.load_cpu, 0):.0f}% / {foreign:.0f}%"
    )


def _flags(usage: Usage, foreign: float, tries: int, args: argparse.Namespace) -> str:
    flags = " (L)" if usage.core_busy.get(args.load_cpu, 0) >= LOAD_SATURATED else ""
    flags += " (D)" if foreign > args.max_foreign else ""
    return flags + (f" (try {tries} kept)" if tries > 1 else "")


def _cpu_header(args: argparse.Namespace) -> str:
    return f"CPU: gateway (kernel part) / core {args.gateway_cpu} / core {args.load_cpu} / other processes"


def best_sustained(report: IngestStoreReport) -> float:
    return max((r.spec.rate for r in report.results if r.sustained), default=0.0)


def _us_per_point(result: IngestResult) -> float:
    return result.usage.broker_cpu / 100 / max(result.stored, 1e-9) * 1e6


def render_ingest(reports: list[IngestStoreReport], args: argparse.Namespace) -> str:
    rows = [
        "| store | offered (points/s) | stored (points/s) | per second, min - max | all stored after | "
        "dropped / lost / failed | sustained | gateway CPU per point (µs) | "
        f"{_cpu_header(args)} | gateway RSS (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for report in reports:
        for r in report.results:
            steps = f"{min(r.stored_steps):,.0f} - {max(r.stored_steps):,.0f}" if r.stored_steps else "-"
            drain = "never" if r.drain_seconds is None else f"{r.drain_seconds:.1f} s"
            rows.append(
                f"| {report.store} | {r.spec.rate:,.0f} ({r.offered:,.0f}) | {r.stored:,.0f} | {steps} | "
                f"{drain} | "
                f"{r.dropped:,} / {r.lost:,} / {r.failures:,} | {'yes' if r.sustained else 'no'} | "
                f"{_us_per_point(r):.1f} | {_cpu(r.usage, r.foreign, args)}"
                f"{_flags(r.usage, r.foreign, r.tries, args)} | {r.rss_kb / 1024:.0f} |"
            )
    lines = ["\n".join(rows), ""]
    for report in reports:
        check = "matches" if report.intact else "DOES NOT MATCH"
        lines.append(
            f"- `{report.store}`: after the runs the database holds {report.held:,} samples in "
            f"{report.series:,} series; the backlog ({report.backlog:,}) plus every point `/metrics` counted "
            f"as stored makes {report.expected:,}: {check}. Gateway RSS {report.rss_idle_kb / 1024:.0f} MB "
            "after start, "
            f"{report.hwm_kb / 1024:.0f} MB peak; exit status {report.returncode}; log: "
            + (
                f"{len(report.findings)} warning/error lines, e.g. `{report.findings[0][:160]}`"
                if report.findings
                else "clean"
            )
        )
    by_store = {report.store: report for report in reports}
    if "real" in by_store and "plain" in by_store:
        real, plain = by_store["real"], by_store["plain"]
        lines.append(
            f"- Highest sustained rate: recorder {best_sustained(real):,.0f} points/s, plain table "
            f"{best_sustained(plain):,.0f} points/s"
        )
        pairs = [
            (a, b)
            for a in real.results
            for b in plain.results
            if a.spec.rate == b.spec.rate and a.sustained and b.sustained
        ]
        if pairs:
            lines.append(
                "- Gateway CPU per stored point, recorder / plain table, at the rates both sustained: "
                + ", ".join(
                    f"{a.spec.rate:,.0f}: {_us_per_point(a) / _us_per_point(b):.2f}" for a, b in pairs
                )
            )
    return "\n".join(lines)


def render_bytes(result: InProcess, args: argparse.Namespace) -> str:
    b: BytesResult = result.result
    rows = ["| metric | samples in sealed chunks | chunk bytes per sample |", "| --- | ---: | ---: |"]
    sealed = sum(n for n, _ in b.per_metric.values())
    size = sum(s for _, s in b.per_metric.values())
    for metric in FIELDS:
        n, s = b.per_metric.get(metric, (0, 0))
        rows.append(f"| {metric} | {n:,} | {s / max(n, 1):.2f} |")
    rows.append(f"| all four | {sealed:,} | {size / max(sealed, 1):.2f} |")
    lines = [
        f"Bytes: {args.bytes_devices} sensors x 4 series, every 10 s (+-100 ms) for {args.bytes_days:g} "
        "days: "
        f"{b.samples:,} samples recorded in {b.seconds:.1f} s in-process ({b.samples / b.seconds:,.0f} "
        "points/s, "
        f"payloads parsed); {b.unsealed:,} not (yet) in a sealed chunk. Others used {result.foreign:.0f}% "
        "of a core.",
        "",
        "\n".join(rows),
        "",
        f"- Database file after checkpoint and VACUUM: {b.file_bytes:,} bytes, "
        f"{b.file_bytes / b.samples:.2f} "
        f"bytes per sample (everything in the file)",
        "- Plain table (`series, ts, value` + index), same samples, own file after VACUUM: "
        f"{b.plain_file_bytes:,} "
        f"bytes, {b.plain_file_bytes / b.plain_rows:.2f} bytes per row; ratio file / plain file "
        f"{b.file_bytes / b.plain_file_bytes:.3f} ({b.plain_file_bytes / b.file_bytes:.1f}x smaller)",
        "",
        "Codec schemes on the first sensor's series (chunks of 2,048 samples; bytes per sample):",
        "",
        "| series | codec as stored | values: codec as stored | values: codec on IEEE bits | values: "
        "Gorilla XOR "
        "| timestamps: codec | timestamps: Gorilla | Gorilla (both) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines.extend(
        f"| {c.metric} | {c.ours:.2f} | {c.ours_values:.2f} | {c.ours_values_bits:.2f} | "
        f"{c.gorilla_values:.2f} | "
        f"{c.ours_timestamps:.2f} | {c.gorilla_timestamps:.2f} | {c.gorilla:.2f} |"
        for c in b.comparisons
    )
    return "\n".join(lines)


def render_query(q: QueryResult) -> str:
    by_label = {t.label: t for t in q.timings}
    rows = [
        "| aggregates, range start | buckets | recorder cold, median (ms) | recorder warm, median (ms) "
        "| plain table cold, median (ms) "
        "| plain table warm, median (ms) | plain / recorder (warm) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for timing in q.timings:
        if not timing.label.startswith("recorder "):
            continue
        case = timing.label.removeprefix("recorder ")
        plain = by_label.get(f"plain {case}")
        plain_cells = (
            f"{_ms(plain.cold)} | {_ms(plain.median)} | {plain.median / timing.median:.1f}"
            if plain
            else "- | - | -"
        )
        rows.append(
            f"| {case} | {timing.buckets:,} | {_ms(timing.cold)} | {_ms(timing.median)} | {plain_cells} |"
        )
    lines = [
        f"Query: {q.samples:,} samples of one series over one UTC day in {q.chunks} chunks (written in "
        f"{q.write_seconds:.1f} s through the store); 1-minute buckets; cold = median of the first query "
        "after 3 fresh opens, warm = median of the runs after the first. Others used "
        f"{q.foreign:.0f}% of a core while the recorder and plain queries ran, {q.api_foreign:.0f}% during "
        "the API runs.",
        "",
        "\n".join(rows),
    ]
    if q.api:
        lines += [
            "",
            "| through the REST API (JSON), range start | buckets | first request (ms) | median (ms) |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {t.label.removeprefix('API ')} | {t.buckets:,} | {_ms(t.cold)} | {_ms(t.median)} |"
            for t in q.api
        ]
    lines.append("")
    lines.append(
        "Every recorder answer equals the plain table's (bucket starts; values within 1e-9 relative)."
        if not q.mismatches
        else "MISMATCHES: " + "; ".join(q.mismatches)
    )
    return "\n".join(lines)


def device_means(runs: list[DeviceRun], route: str) -> tuple[float, float] | None:
    on = [r.delivered for r in runs if r.mode == "on" and r.route == route]
    off = [r.delivered for r in runs if r.mode == "off" and r.route == route]
    if not on or not off:
        return None
    return statistics.mean(on), statistics.mean(off)


def render_device(runs: list[DeviceRun], args: argparse.Namespace) -> str:
    rows = [
        "| delivered at | run | recording | delivered (msg/s) | per second, min - max | lost | "
        f"recorder stored (points/s) | recorder queue drops | {_cpu_header(args)} |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, r in enumerate(runs, 1):
        steps = f"{min(r.steps):,.0f} - {max(r.steps):,.0f}" if r.steps else "-"
        rows.append(
            f"| {r.route} | {i} (round {r.round}) | {r.mode} | {r.delivered:,.0f} | {steps} | {r.lost:,} | "
            f"{r.stored:,.0f} | "
            f"{r.dropped:,} | {_cpu(r.usage, r.foreign, args)}{_flags(r.usage, r.foreign, r.tries, args)} |"
        )
    text = "\n".join(rows) + "\n"
    for route in DEVICE_ROUTES:
        means = device_means(runs, route)
        if means:
            text += (
                f"\nMean delivered at the {route} subscriber: recording on {means[0]:,.0f} msg/s, off "
                f"{means[1]:,.0f} msg/s; on/off {means[0] / means[1]:.4f}\n"
            )
    return text.rstrip("\n")


def render_targets(results: Results) -> str:
    rows = ["| target | measured | result |", "| --- | --- | --- |"]
    real = next((r for r in results.ingest if r.store == "real"), None)
    if real is not None:
        best = best_sustained(real)
        rows.append(
            f"| >= {TARGET_INGEST:,.0f} points/s ingest, end to end, nothing lost | highest sustained rate "
            f"{best:,.0f} points/s; database check {'passed' if real.intact else 'FAILED'} "
            f"| {_verdict(best >= TARGET_INGEST and real.intact)} |"
        )
    if results.bytes is not None:
        b: BytesResult = results.bytes.result
        per_metric = {m: s / max(n, 1) for m, (n, s) in b.per_metric.items()}
        temperature = per_metric.get("temperature", float("nan"))
        rows.append(
            f"| <= {TARGET_BYTES:g} bytes/sample for a realistic sensor series | temperature "
            f"{temperature:.2f}; "
            + ", ".join(f"{m} {v:.2f}" for m, v in per_metric.items() if m != "temperature")
            + f"; whole file {b.file_bytes / b.samples:.2f} | {_verdict(temperature <= TARGET_BYTES)} |"
        )
    if results.query is not None:
        timings = [t for t in results.query.timings if t.label.startswith("recorder ")]
        worst = max((max(t.cold, t.median) for t in timings), default=float("nan"))
        rows.append(
            f"| aggregate query (1 day, 1-minute buckets, {results.query.samples:,} samples) < "
            f"{TARGET_QUERY_S * 1000:.0f} ms | slowest of the recorder's cases, cold or warm: "
            f"{_ms(worst)} ms | "
            f"{_verdict(worst < TARGET_QUERY_S and not results.query.mismatches)} |"
        )
    means = device_means(results.device, "upstream")
    if means:
        rows.append(
            "| device path not slowed: a publish storm keeps upstream throughput within a few percent, "
            f"taken as at most {TARGET_DEVICE_COST:.0%} | recording on costs {1 - means[0] / means[1]:.2%} "
            "of the msg/s the upstream delivered "
            f"| {_verdict(1 - means[0] / means[1] <= TARGET_DEVICE_COST)} |"
        )
    means = device_means(results.device, "local")
    if means:
        rows.append(
            "| (not a target) local delivery with the gateway's core saturated | recording on costs "
            f"{1 - means[0] / means[1]:.2%} of the msg/s the local subscriber received | - |"
        )
    return "\n".join(rows)


def _sqlite_version() -> str:
    return sqlite3.sqlite_version


def render_report(
    results: Results,
    args: argparse.Namespace,
    command: str,
    background: dict[int, float],
    load_average: str,
    revision: str,
) -> str:
    try:
        uvloop_version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = "not installed"
    busy = ", ".join(f"core {core} {value:.0f}%" for core, value in background.items())
    settings = RecorderSettings()
    parts = [
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, Linux {platform.release()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}; uvloop {uvloop_version}; "
        f"SQLite {_sqlite_version()}",
        f"- mqttproxy {importlib.metadata.version('mqttproxy')} at {revision} (when the run started)",
        f"- Background load just before the run (1 s, nothing of ours running): {busy}; "
        f"load average {load_average}",
        f"- Placement: gateways and the in-process parts pinned to core {args.gateway_cpu}; publishers, "
        f"subscriber and the script on core {args.load_cpu}",
        f"- Recorder settings (defaults): flush every {settings.flush_interval:g} s or "
        f"{settings.flush_points:,} "
        f"points, queue {settings.max_queued_messages:,} messages, {settings.chunk_samples:,} samples per "
        "sealed chunk",
        f"- Ingest: {args.publishers} publishers, QoS 0, {args.topics:,} topics "
        f"({args.topics * len(FIELDS):,} "
        f"series), {args.warmup:g} s warm-up + {args.duration:g} s measured per rate, up to {args.drain:g} s "
        "for the rest to be stored",
        f"- Device path: {args.publishers} publishers flooding QoS 0 with at most {args.bound:,} messages "
        "written and not yet received, 1 subscriber counting deliveries: at an upstream Mosquitto "
        f"(max_inflight_messages {UPSTREAM_INFLIGHT:,}, unlimited queue, on core {args.load_cpu}) the "
        "gateway forwards everything to (record `up0`: route `#` out, max_qos 1), or at the gateway "
        f"itself (local); routes run: {', '.join(args.device_routes)}; {args.device_warmup:g} s + "
        f"{args.device_duration:g} s per run, {args.rounds} rounds of on/off in alternating order",
        f"- Command (from the repository root): `{command}`",
    ]
    if args.py_spy:
        parts.append(
            f"- py-spy was attached to the gateway during `{args.py_spy_run}`: that figure is perturbed"
        )
    parts += [
        "",
        f"(L): the load core was at least {LOAD_SATURATED:.0f}% busy, the load side may be the limit; (D): "
        "other "
        f"processes used more than {args.max_foreign:g}% of a core in the window; (try N kept): run again "
        f"because of (D), up to {args.retries} more times, and the least disturbed run kept.",
    ]
    if results.ingest:
        parts += ["", render_ingest(results.ingest, args)]
    if results.bytes is not None:
        parts += ["", render_bytes(results.bytes, args)]
    if results.query is not None:
        parts += ["", render_query(results.query)]
    if results.device:
        parts += ["", render_device(results.device, args)]
    parts += ["", render_targets(results)]
    return "\n".join(parts)


# --- command line -------------------------------------------------------------------------------------------


def _csv_of(kind: Callable[[str], T], choices: Sequence[str] | None = None) -> Callable[[str], list[T]]:
    def parse(text: str) -> list[T]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if choices is not None and any(item not in choices for item in items):
            raise argparse.ArgumentTypeError(f"comma-separated, each one of {', '.join(choices)}")
        try:
            return [kind(item) for item in items]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    d = " (default %(default)s)"
    add("--parts", type=_csv_of(str, PARTS), default=list(PARTS), help="comma-separated parts to run" + d)
    add("--stores", type=_csv_of(str, STORES), default=list(STORES), help="ingest: stores to run" + d)
    add(
        "--rates",
        type=_csv_of(float),
        default=[50_000.0, 100_000.0, 150_000.0, 200_000.0],
        help="ingest: points/s" + d,
    )
    add("--publishers", type=int, default=4, help="publisher processes" + d)
    add("--topics", type=int, default=1000, help="sensor topics (4 series each)" + d)
    add("--sensors", type=int, default=4, help="sensors per device (topics per device)" + d)
    add("--warmup", type=float, default=3.0, help="ingest: seconds before each measured window" + d)
    add("--duration", type=float, default=10.0, help="ingest: measured seconds per rate" + d)
    add("--drain", type=float, default=20.0, help="ingest: seconds for the rest to be stored" + d)
    add("--bytes-devices", type=int, default=10, help="bytes: sensors" + d)
    add("--bytes-days", type=float, default=7.0, help="bytes: days of 10 s readings" + d)
    add("--query-samples", type=int, default=1_000_000, help="query: samples in the day" + d)
    add("--query-runs", type=int, default=7, help="query: warm runs per case" + d)
    add("--bound", type=int, default=4000, help="device: messages written and not yet received, at most" + d)
    add("--rounds", type=int, default=5, help="device: pairs of runs, recording on and off" + d)
    add(
        "--device-routes",
        type=_csv_of(str, DEVICE_ROUTES),
        default=list(DEVICE_ROUTES),
        help="device: where the subscriber counts deliveries" + d,
    )
    add("--device-warmup", type=float, default=1.5, help="device: seconds before each window" + d)
    add("--device-duration", type=float, default=5.0, help="device: measured seconds per run" + d)
    add("--max-foreign", type=float, default=10.0, help="%% of a core others may use in a window" + d)
    add("--retries", type=int, default=2, help="times a disturbed run is made again" + d)
    add("--gateway-cpu", type=int, default=0, help="core of the gateway and the in-process parts" + d)
    add("--load-cpu", type=int, default=1, help="core of the load processes and this script" + d)
    add("--seed", type=int, default=7, help="seed of the generated readings" + d)
    add("--mqttproxy", default=str(Path(sys.executable).parent / "mqttproxy"), help="executable" + d)
    add("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto", help="executable" + d)
    add("--py-spy", type=Path, metavar="FILE", help="profile one run of the gateway with py-spy (raw)")
    add("--py-spy-run", default="real:100000", help="run to profile: STORE:RATE or device-ROUTE:on|off" + d)
    add("--keep", type=Path, metavar="DIR", help="keep the gateways' configs, data and logs in DIR")
    add("--write", action="store_true", help=f"add/update this benchmark's section of {RESULTS_PATH.name}")
    args = parser.parse_args(argv)
    if not 1 <= args.publishers <= args.topics or args.topics % args.sensors:
        parser.error("--topics must be a multiple of --sensors and at least --publishers")
    if args.query_samples < 1_000 or args.query_runs < 1:
        parser.error("--query-samples must be at least 1,000 and --query-runs at least 1")
    return args


def _on_signal(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _workdir(args: argparse.Namespace) -> Iterator[Path]:
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        if any(args.keep.iterdir()):
            raise BenchError(f"--keep {args.keep} is not empty")
        yield args.keep
        return
    with tempfile.TemporaryDirectory(prefix="timeseries-bench-") as path:
        yield Path(path)


def run(args: argparse.Namespace) -> Results:
    available = os.sched_getaffinity(0)
    if {args.gateway_cpu, args.load_cpu} - available or args.gateway_cpu == args.load_cpu:
        raise BenchError(f"--gateway-cpu and --load-cpu must be two different cores of {sorted(available)}")
    os.sched_setaffinity(0, {args.load_cpu})
    Mqttproxy.executable = args.mqttproxy
    Mosquitto.executable = args.mosquitto
    results = Results()
    with _workdir(args) as workdir:
        if "bytes" in args.parts:
            log(f"bytes: recording {args.bytes_devices} sensors for {args.bytes_days:g} days ...")
            results.bytes = in_child(
                "bytes",
                lambda: run_async(lambda: _record_sensors(workdir, args.bytes_devices, args.bytes_days)),
                args.gateway_cpu,
                1800,
            )
        if "query" in args.parts:
            results.query = run_query(args, workdir)
        if "device" in args.parts:
            settle()
            results.device = run_device(args, workdir)
        if "ingest" in args.parts:
            results.ingest = run_ingest(args, workdir)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve-plain"]:
        return serve_plain(arguments[1:])
    args = parse_args(arguments)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    command = shlex.join([".venv/bin/python", "bench/timeseries_throughput.py", *arguments])
    started = time.monotonic()
    try:
        revision = source_revision()
        background = background_busy()
        load_average = Path("/proc/loadavg").read_text().split()[0]
        results = run(args)
    except KeyboardInterrupt:
        log("interrupted: every process started here was stopped")
        return 130
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    log(f"finished in {time.monotonic() - started:.0f} s")
    section = render_report(results, args, command, background, load_average, revision)
    print(section)
    if args.py_spy and args.py_spy.exists():
        print(
            f"\nProfile of the ingest run {args.py_spy_run} "
            f"({args.py_spy}):\n\n{summarize_profile(args.py_spy)}"
        )
    if args.write:
        write_section("timeseries_throughput", TITLE, section)
        log(f"updated {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
