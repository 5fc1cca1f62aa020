"""Side-by-side MQTT 3.1.1 broker benchmark: mqttproxy and Mosquitto, in one run.

What is measured, for each broker in turn (same machine, same load, same limits):

1. Throughput, local publish -> subscribe. ``--publishers`` publisher processes
   (default 4) publish ``--payload-size``-byte payloads (default 100) to
   ``bench/<n>``; one subscriber process subscribed to ``bench/#`` counts what
   arrives. Three runs:

   - ``qos0`` (QoS 0, bounded): publishers write pre-encoded PUBLISH packets as
     fast as they can, but all of them together keep at most ``--bound``
     messages written and not yet received by the subscriber (shared counters
     between the processes). This measures what a broker delivers when it is
     kept busy, without turning the run into a test of how it sheds overload.
   - ``qos0-flood`` (QoS 0, unbounded): the same without the bound; shows what
     a broker does when publishers outrun it (what it delivers, what it drops).
   - ``qos1`` (QoS 1, bounded): each publisher also keeps at most ``--window``
     PUBLISHes awaiting PUBACK; the subscriber subscribes at QoS 1 and sends a
     PUBACK for every delivery.

   "Delivered" is PUBLISHes received by the subscriber per second, "accepted" is
   what publishers wrote (QoS 0) or got PUBACKs for (QoS 1) per second, "lost"
   is written (QoS 0) or PUBACKed (QoS 1) minus received over the whole run,
   counted after the subscriber has drained. Rates are steady state: counted over
   ``--duration`` seconds starting after ``--warmup`` seconds of traffic; the
   subscriber's rate in each second of the window gives the spread (min - max).

2. Latency. The publishers together offer ``--latency-rate`` msg/s (default
   5,000), paced and evenly staggered; every payload starts with
   ``time.monotonic_ns()`` taken just before the send, and the subscriber
   subtracts it from its own ``monotonic_ns()`` right after ``recv`` returns
   (CLOCK_MONOTONIC is one system-wide clock on Linux). p50/p99/max over the
   window, at QoS 0 (``lat0``) and at QoS 1 (``lat1``: publish and subscribe QoS 1).

3. Memory of the broker process: VmRSS from ``/proc/PID/status`` right after it
   is ready (idle), and VmHWM (peak RSS) after all the load.

Placement: the broker under test runs pinned to ``--broker-cpu`` (0; "one
core"), the load generators and this script to ``--load-cpu`` (1). Load
generators are separate processes (multiprocessing, fork) using blocking
sockets and pre-encoded packets; publishers run at nice +5 so the subscriber
gets the load core first whenever both want it. The broker's own CPU use and
the busy share of both cores during each window are reported, so a saturated
load core (the load generator, not the broker, being the limit) shows, and the
busy share of both cores just before the run shows other load on the machine.

Brokers: ``mqttproxy`` (as installed: uvloop when importable; MQTT only,
``[web] enabled = false``, like Mosquitto), optionally ``mqttproxy-asyncio``
(the same with uvloop made unimportable, so the standard library's event loop
runs) and ``mqttproxy-web`` (the whole gateway, HTTP listener included), and
``mosquitto``. Both get the same
``max_inflight_messages`` (``--inflight``, 100) and ``max_queued_messages``
(``--queued``, default 0 = unlimited; mqttproxy has no "unlimited" and gets
1e9). Unlimited because the Debian build of Mosquitto 2.0.11 this was written
against (2.0.11-1.2+deb12u2) drops QoS 1 messages to a subscriber once it has
sent it about ``max_queued_messages`` of them in total, however few are queued
(with 300,000 its delivery fell to 0 after ~300k messages); with 0 it does not.
The bounded runs keep every queue far below any limit anyway. In the flood run
neither broker drops QoS 0: both read a publisher no faster than they deliver. Mosquitto also gets
``set_tcp_nodelay true`` (asyncio sets TCP_NODELAY on every connection) and
``persistence false``.

Every broker, load generator and profiler started here is stopped on the way
out, also on errors and Ctrl-C.

Run from the repository root::

    .venv/bin/python bench/broker_throughput.py            # table on stdout
    .venv/bin/python bench/broker_throughput.py --write    # and update bench/RESULTS.md
    .venv/bin/python bench/broker_throughput.py --brokers mqttproxy,mqttproxy-asyncio,mosquitto
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import importlib.metadata
import math
import multiprocessing
import os
import platform
import select
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NoReturn

from common import (
    PACKET_IDS,
    RECV_SIZE,
    RESULTS_PATH,
    STAMP_SIZE,
    UNLIMITED_QUEUE,
    AckCounter,
    BenchError,
    BrokerProcess,
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
    recv_ready,
    running,
    scan_publishes,
    sleep_until,
    source_revision,
    step_rates,
    usage_snapshot,
    window_rate,
    write_section,
)

from mqttproxy.protocol.codec import publish_bytes

TOPIC = "bench"
FLOOD_BATCH = 128  # QoS 0 packets per send() when flooding
SCENARIOS = ("qos0", "qos0-flood", "qos1", "lat0", "lat1")
BROKERS = ("mqttproxy", "mqttproxy-asyncio", "mqttproxy-web", "mosquitto")
GATE_POLL = 0.0005  # seconds a bounded publisher sleeps while waiting for room
GATE_STALL = 0.5  # seconds without room after which a bounded publisher goes on anyway
DRAIN_IDLE = 2.0  # seconds without data after which the subscriber has drained


# --- what one scenario asks of the load generators ---------------------------


@dataclass(frozen=True)
class LoadSpec:
    """One scenario: the load the publishers offer and what the subscriber records."""

    key: str  # one of SCENARIOS
    title: str  # for the table
    qos: int
    publishers: int
    payload_size: int
    rate: float  # total msg/s offered by all publishers; 0 = as fast as possible
    window: int  # QoS 1 PUBLISHes a publisher may have awaiting PUBACK
    bound: int  # messages written by all publishers and not yet received; 0 = no bound
    timed: bool  # payloads carry a timestamp and the subscriber records latencies
    warmup: float
    duration: float
    drain_idle: float  # after the window, the subscriber stops once idle this long...
    drain_max: float  # ...or this long after the window at the latest


@dataclass
class PublisherResult:
    sent: int  # PUBLISH packets written
    published: int  # written (QoS 0) or acknowledged (QoS 1)
    points: list[tuple[float, int]]  # `published` at the window's start and end
    stalls: int = 0  # times the end-to-end bound was overridden after GATE_STALL


@dataclass
class SubscriberResult:
    received: int
    points: list[tuple[float, int]]  # `received` each second of the window
    latencies_ns: list[int]


# --- load generator processes --------------------------------------------------


@dataclass
class Shared:
    """Counters shared by a scenario's processes (fork inherits them)."""

    sent: ctypes.Array[ctypes.c_longlong]  # per publisher: PUBLISHes written
    received: ctypes.c_longlong  # PUBLISHes the subscriber has received

    @classmethod
    def create(cls, publishers: int) -> Shared:
        ctx = multiprocessing.get_context("fork")
        return cls(ctx.RawArray(ctypes.c_longlong, publishers), ctx.RawValue(ctypes.c_longlong, 0))


class Gate:
    """The end-to-end bound of one publisher: all written - received <= limit.

    Keeps the brokers' queues short so a throughput run measures what a broker
    delivers, not how it sheds an overload. A publisher that has found no room
    for ``GATE_STALL`` seconds goes on anyway, so a broker that drops messages
    slows the load down instead of stopping it.
    """

    def __init__(self, shared: Shared, index: int, limit: int) -> None:
        self._shared = shared
        self._index = index
        self._limit = limit
        self._blocked_since: float | None = None
        self.stalls = 0

    def add(self, count: int) -> None:
        self._shared.sent[self._index] += count

    def room(self) -> int:
        if not self._limit:
            return 1 << 30
        return self._limit - (sum(self._shared.sent) - self._shared.received.value)

    def has_room(self, need: int, now: float) -> bool:
        if self.room() >= need:
            self._blocked_since = None
            return True
        if self._blocked_since is None:
            self._blocked_since = now
        elif now - self._blocked_since >= GATE_STALL:
            self._blocked_since = None
            self.stalls += 1
            return True
        return False


def run_subscriber(port: int, spec: LoadSpec, conn: Connection, shared: Shared) -> SubscriberResult:
    sock, decoder = mqtt_connect(port, f"bench-sub-{os.getpid()}")
    mqtt_subscribe(sock, decoder, f"{TOPIC}/#", spec.qos)
    if decoder.buffered:
        raise BenchError("unexpected data after SUBACK")
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    try:
        return _subscribe_loop(sock, spec, schedule, shared)
    finally:
        mqtt_close(sock)


def _subscribe_loop(
    sock: socket.socket, spec: LoadSpec, schedule: Schedule, shared: Shared
) -> SubscriberResult:
    marks = Marks.window(schedule, step=1.0)
    stamps: list[int] = []
    received = 0
    rest = b""
    last_data = time.monotonic()
    hard_stop = schedule.measure_end + spec.drain_max
    while True:
        chunk = recv_ready(sock, 0.05)
        now_ns = time.monotonic_ns()
        now = now_ns / 1e9
        marks.observe(now, received)
        if chunk is None:
            if now >= schedule.measure_end and (now - last_data >= spec.drain_idle or now >= hard_stop):
                break
            continue
        if not chunk:
            raise BenchError("the broker closed the subscriber's connection")
        last_data = now
        data = rest + chunk if rest else chunk
        in_window = spec.timed and schedule.warm_end <= now < schedule.measure_end
        used, count, acks = scan_publishes(data, spec.qos > 0, stamps if in_window else None, now_ns)
        rest = data[used:]
        received += count
        shared.received.value = received
        if acks:
            sock.sendall(acks)
        if now >= hard_stop:
            break
    return SubscriberResult(received=received, points=marks.points, latencies_ns=stamps)


def run_publisher(port: int, spec: LoadSpec, index: int, conn: Connection, shared: Shared) -> PublisherResult:
    sock, _ = mqtt_connect(port, f"bench-pub-{index}-{os.getpid()}")
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    topic = f"{TOPIC}/{index}".encode()
    gate = Gate(shared, index, spec.bound)
    try:
        if spec.rate:
            return _publish_paced(sock, spec, index, schedule, topic)
        if spec.qos == 0:
            return _publish_flood(sock, schedule, topic, spec.payload_size, gate)
        return _publish_window(sock, spec, schedule, topic, gate)
    finally:
        mqtt_close(sock)


def _publish_flood(
    sock: socket.socket, schedule: Schedule, topic: bytes, payload_size: int, gate: Gate
) -> PublisherResult:
    """QoS 0 as fast as the socket (and the gate) take it, in batches of pre-encoded packets."""
    blob = publish_bytes(topic, b"x" * payload_size, 0, False, False, None) * FLOOD_BATCH
    marks = Marks.window(schedule)
    sent = 0
    sleep_until(schedule.start)
    while True:
        now = time.monotonic()
        marks.observe(now, sent)
        if now >= schedule.measure_end:
            break
        if not gate.has_room(FLOOD_BATCH, now):
            time.sleep(GATE_POLL)
            continue
        sock.sendall(blob)
        sent += FLOOD_BATCH
        gate.add(FLOOD_BATCH)
    return PublisherResult(sent=sent, published=sent, points=marks.points, stalls=gate.stalls)


def _take(packets: list[bytes], start: int, count: int) -> bytes:
    """``count`` consecutive packets from ``start``, wrapping around."""
    i = start % len(packets)
    chunk = packets[i : i + count]
    if len(chunk) < count:
        chunk += packets[: count - len(chunk)]
    return b"".join(chunk)


def _publish_window(
    sock: socket.socket, spec: LoadSpec, schedule: Schedule, topic: bytes, gate: Gate
) -> PublisherResult:
    """QoS 1 with up to ``spec.window`` PUBLISHes awaiting PUBACK, topped up in batches."""
    payload = b"x" * spec.payload_size
    packets = [publish_bytes(topic, payload, 1, False, False, pid) for pid in range(1, PACKET_IDS + 1)]
    batch = max(1, spec.window // 4)  # fewer, larger writes: keeps the load core free
    marks = Marks.window(schedule)
    acks = AckCounter()
    sent = 0
    sleep_until(schedule.start)
    while True:
        now = time.monotonic()
        marks.observe(now, acks.acked)
        if now >= schedule.measure_end:
            break
        free = spec.window - (sent - acks.acked)
        if free >= batch and gate.has_room(batch, now):
            count = min(free, max(batch, gate.room()))
            sock.sendall(_take(packets, sent, count))
            sent += count
            gate.add(count)
            continue
        data = recv_ready(sock, 0.002 if free >= batch else 0.05)
        if data is not None:
            acks.feed(data)
    acks.wait_all(sock, sent, 2.0)
    return PublisherResult(sent=sent, published=acks.acked, points=marks.points, stalls=gate.stalls)


def _publish_paced(
    sock: socket.socket, spec: LoadSpec, index: int, schedule: Schedule, topic: bytes
) -> PublisherResult:
    """``spec.rate / publishers`` msg/s, one at a time, each stamped with monotonic_ns()."""
    qos = spec.qos
    full = publish_bytes(topic, bytes(spec.payload_size), qos, False, False, 1 if qos else None)
    head = full[: len(full) - spec.payload_size - (2 if qos else 0)]
    padding = bytes(spec.payload_size - STAMP_SIZE)
    interval = spec.publishers / spec.rate
    next_due = schedule.start + interval * index / spec.publishers
    marks = Marks.window(schedule)
    acks = AckCounter()
    sent = 0
    sleep_until(schedule.start)
    while True:
        now = time.monotonic()
        marks.observe(now, acks.acked if qos else sent)
        if now >= schedule.measure_end:
            break
        can_send = not qos or sent - acks.acked < spec.window
        if can_send and now >= next_due:
            packet_id = (sent % PACKET_IDS + 1).to_bytes(2, "big") if qos else b""
            sock.sendall(head + packet_id + time.monotonic_ns().to_bytes(STAMP_SIZE, "big") + padding)
            sent += 1
            next_due += interval
            continue
        wait = next_due - now if can_send else 0.05
        readable, _, _ = select.select([sock], [], [], wait)
        if readable:
            acks.feed(sock.recv(RECV_SIZE))
    if qos:
        acks.wait_all(sock, sent, 2.0)
    return PublisherResult(sent=sent, published=acks.acked if qos else sent, points=marks.points)


def _child_main(
    role: str, index: int, port: int, spec: LoadSpec, cpu: int, conn: Connection, shared: Shared
) -> None:
    """Entry point of a load generator process: report ("result", ...) or ("error", traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    os.sched_setaffinity(0, {cpu})
    try:
        result: PublisherResult | SubscriberResult
        if role == "subscriber":
            result = run_subscriber(port, spec, conn, shared)
        else:
            os.nice(5)
            result = run_publisher(port, spec, index, conn, shared)
        conn.send(("result", result))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def spawn(role: str, index: int, port: int, spec: LoadSpec, cpu: int, shared: Shared) -> Child:
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    name = role if role == "subscriber" else f"publisher {index}"
    process = ctx.Process(
        target=_child_main, args=(role, index, port, spec, cpu, child_end, shared), name=name, daemon=True
    )
    process.start()
    child_end.close()
    return Child(name, process, parent_end)


class MqttproxyAsyncio(Mqttproxy):
    """mqttproxy on the standard library's event loop: uvloop made unimportable."""

    name = "mqttproxy-asyncio"
    python = sys.executable
    _BOOT = "import sys; sys.modules['uvloop'] = None; from mqttproxy.__main__ import main; sys.exit(main())"

    def command(self) -> list[str]:
        return [self.python, "-c", self._BOOT, *super().command()[1:]]


class MqttproxyWeb(Mqttproxy):
    """The whole gateway: its HTTP listener (aiohttp) enabled as well."""

    name = "mqttproxy-web"
    web = True


# --- one scenario ----------------------------------------------------------------------


@dataclass
class ScenarioResult:
    spec: LoadSpec
    delivered: float  # msg/s at the subscriber over the window
    delivered_steps: list[float]  # msg/s at the subscriber in each second of the window
    accepted: float  # msg/s written (QoS 0) or PUBACKed (QoS 1) by the publishers
    published: int  # written (QoS 0) or PUBACKed (QoS 1), whole run
    received: int  # at the subscriber, whole run including the drain
    latencies_ms: list[float]  # sorted
    usage: Usage
    stalls: int  # times a publisher went past the end-to-end bound (messages were lost)
    peak_rss_kb: int = 0  # the broker's VmHWM right after this scenario

    @property
    def lost(self) -> int:
        return self.published - self.received

    def percentile(self, fraction: float) -> float:
        values = self.latencies_ms
        return values[min(len(values) - 1, int(fraction * len(values)))] if values else float("nan")


def run_scenario(
    broker: BrokerProcess, spec: LoadSpec, load_cpu: int, profiler: Profiler | None
) -> ScenarioResult:
    children: list[Child] = []
    shared = Shared.create(spec.publishers)
    try:
        children.append(spawn("subscriber", 0, broker.port, spec, load_cpu, shared))
        children[0].expect("ready", 15)
        children += [
            spawn("publisher", i, broker.port, spec, load_cpu, shared) for i in range(spec.publishers)
        ]
        for child in children[1:]:
            child.expect("ready", 15)
        start = time.monotonic() + 0.5
        schedule = Schedule(start, start + spec.warmup, start + spec.warmup + spec.duration)
        for child in children:
            child.conn.send(schedule)
        usage = _watch_window(broker, schedule, profiler)
        timeout = schedule.measure_end + spec.drain_max + 20 - time.monotonic()
        subscriber: SubscriberResult = children[0].expect("result", timeout)
        publishers: list[PublisherResult] = [child.expect("result", 10) for child in children[1:]]
    finally:
        for child in children:
            child.stop()
    broker.check_alive()
    return ScenarioResult(
        spec=spec,
        delivered=window_rate(subscriber.points),
        delivered_steps=step_rates(subscriber.points),
        accepted=sum(window_rate(p.points) for p in publishers),
        published=sum(p.published for p in publishers),
        received=subscriber.received,
        stalls=sum(p.stalls for p in publishers),
        latencies_ms=sorted(ns / 1e6 for ns in subscriber.latencies_ns),
        usage=usage,
    )


def _watch_window(broker: BrokerProcess, schedule: Schedule, profiler: Profiler | None) -> Usage:
    """CPU use over the measurement window, with the profiler attached if asked."""
    sleep_until(schedule.warm_end)
    start = usage_snapshot(broker.pid)
    try:
        if profiler is not None:
            profiler.start(broker.pid, schedule.measure_end - schedule.warm_end)
        sleep_until(schedule.measure_end)
        return Usage.between(broker.pid, start)
    finally:
        if profiler is not None:
            profiler.finish(timeout=30)


# --- a whole broker ----------------------------------------------------------------------


@dataclass
class BrokerReport:
    name: str
    version: str
    uvloop: bool | None
    rss_idle_kb: int
    rss_peak_kb: int
    results: dict[str, ScenarioResult] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    returncode: int | None = None


def benchmark_broker(broker: BrokerProcess, specs: list[LoadSpec], args: argparse.Namespace) -> BrokerReport:
    with running(broker):
        time.sleep(args.idle_settle)
        report = BrokerReport(
            name=broker.name,
            version=broker.version(),
            uvloop=broker.uses_uvloop(),
            rss_idle_kb=proc_status_kb(broker.pid, "VmRSS"),
            rss_peak_kb=0,
        )
        log(
            f"[{broker.name}] pid {broker.pid} port {broker.port}, "
            f"idle RSS {report.rss_idle_kb / 1024:.1f} MB"
        )
        for spec in specs:
            profiler = None
            if args.py_spy and broker.name == args.py_spy_broker and spec.key == args.py_spy_scenario:
                profiler = Profiler(args.py_spy, spec.key, native=args.py_spy_native)
            result = run_scenario(broker, spec, args.load_cpu, profiler)
            result.peak_rss_kb = proc_status_kb(broker.pid, "VmHWM")
            report.results[spec.key] = result
            log(f"[{broker.name}] {describe(result)}")
        report.rss_peak_kb = proc_status_kb(broker.pid, "VmHWM")
    report.returncode = broker.returncode
    report.findings = broker.log_findings()
    return report


def describe(result: ScenarioResult) -> str:
    spec = result.spec
    text = (
        f"{spec.title}: delivered {result.delivered:,.0f} msg/s, accepted {result.accepted:,.0f} msg/s, "
        f"lost {result.lost:,} of {result.published:,} (bound overridden {result.stalls}x), "
        f"broker CPU {result.usage.broker_cpu:.0f}% (sys {result.usage.broker_sys:.0f}%), "
        f"VmHWM {result.peak_rss_kb / 1024:.0f} MB, "
        f"cores busy {', '.join(f'{c}: {b:.0f}%' for c, b in sorted(result.usage.core_busy.items()))}"
    )
    if not spec.timed:
        text += f", per second: {' '.join(f'{step / 1000:.0f}k' for step in result.delivered_steps)}"
    if spec.timed:
        text += f", p50 {result.percentile(0.5):.3f} ms, p99 {result.percentile(0.99):.3f} ms"
    return text


# --- reporting -------------------------------------------------------------------------------

Cell = Callable[[BrokerReport], str]
Number = Callable[[BrokerReport], float | None]


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return ""
    return f"{a / b:.2f}"


def _compared(reports: list[BrokerReport]) -> tuple[list[BrokerReport], BrokerReport | None]:
    """The brokers that get a ratio column, and the one they are divided by (Mosquitto)."""
    base = next((r for r in reports if r.name == "mosquitto"), None)
    return ([r for r in reports if r is not base] if base else []), base


def _row(label: str, reports: list[BrokerReport], cell: Cell, number: Number | None = None) -> str:
    compared, base = _compared(reports)
    ratios = [_ratio(number(r), number(base)) if number and base else "" for r in compared]
    return "| " + " | ".join([label, *(cell(r) for r in reports), *ratios]) + " |"


def _on(key: str, fn: Callable[[ScenarioResult], str]) -> Cell:
    return lambda report: fn(report.results[key]) if key in report.results else ""


def _num(key: str, fn: Callable[[ScenarioResult], float]) -> Number:
    return lambda report: fn(report.results[key]) if key in report.results else None


def _lost(result: ScenarioResult) -> str:
    share = result.lost / result.published * 100 if result.published else 0.0
    return f"{result.lost:,} ({share:.2f}%)"


def _steps(result: ScenarioResult) -> str:
    steps = result.delivered_steps
    return f"{min(steps):,.0f} - {max(steps):,.0f}" if steps else ""


def _cpu(result: ScenarioResult, broker_cpu: int, load_cpu: int) -> str:
    busy = result.usage.core_busy
    usage = result.usage
    broker = f"{usage.broker_cpu:.0f}% (sys {usage.broker_sys:.0f}%)"
    return f"{broker} / {busy.get(broker_cpu, 0):.0f}% / {busy.get(load_cpu, 0):.0f}%"


def _throughput_rows(key: str, reports: list[BrokerReport], args: argparse.Namespace) -> list[str]:
    spec = next((r.results[key].spec for r in reports if key in r.results), None)
    if spec is None:
        return []
    t = spec.title
    return [
        _row(
            f"{t}: delivered to subscriber (msg/s)",
            reports,
            _on(key, lambda r: f"{r.delivered:,.0f}"),
            _num(key, lambda r: r.delivered),
        ),
        _row(f"{t}: delivered, per-second min - max (msg/s)", reports, _on(key, _steps)),
        _row(
            f"{t}: accepted from publishers (msg/s)",
            reports,
            _on(key, lambda r: f"{r.accepted:,.0f}"),
            _num(key, lambda r: r.accepted),
        ),
        _row(f"{t}: lost (published - received, whole run)", reports, _on(key, _lost)),
        _row(
            f"{t}: CPU % broker process (kernel part) / core {args.broker_cpu} / core {args.load_cpu}",
            reports,
            _on(key, lambda r: _cpu(r, args.broker_cpu, args.load_cpu)),
        ),
    ]


def _latency_rows(key: str, reports: list[BrokerReport]) -> list[str]:
    spec = next((r.results[key].spec for r in reports if key in r.results), None)
    if spec is None:
        return []
    rows = []
    for label, fraction in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        value = _num(key, lambda r, f=fraction: r.percentile(f))
        rows.append(
            _row(
                f"{spec.title}: {label} (ms)",
                reports,
                _on(key, lambda r, f=fraction: f"{r.percentile(f):.2f}"),
                value,
            )
        )
    rows.append(
        _row(
            f"{spec.title}: offered rate achieved (msg/s)", reports, _on(key, lambda r: f"{r.accepted:,.0f}")
        )
    )
    rows.append(_row(f"{spec.title}: lost", reports, _on(key, _lost)))
    return rows


def render_table(reports: list[BrokerReport], args: argparse.Namespace) -> str:
    compared, base = _compared(reports)
    header = ["metric", *(r.name for r in reports), *(f"{r.name}/{base.name}" for r in compared if base)]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for key in ("qos0", "qos0-flood", "qos1"):
        lines += _throughput_rows(key, reports, args)
    for key in ("lat0", "lat1"):
        lines += _latency_rows(key, reports)
    lines.append(
        _row(
            "RSS idle, after start (MB)",
            reports,
            lambda r: f"{r.rss_idle_kb / 1024:.1f}",
            lambda r: r.rss_idle_kb,
        )
    )
    lines.append(
        _row(
            "RSS peak, VmHWM after the run (MB)",
            reports,
            lambda r: f"{r.rss_peak_kb / 1024:.1f}",
            lambda r: r.rss_peak_kb,
        )
    )
    keys = [key for key in SCENARIOS if any(key in r.results for r in reports)]
    lines.append(
        _row(
            f"VmHWM after each of {' / '.join(keys)} (MB)",
            reports,
            lambda r: " / ".join(
                f"{r.results[k].peak_rss_kb / 1024:.0f}" if k in r.results else "-" for k in keys
            ),
        )
    )
    return "\n".join(lines)


def _target_rows(report: BrokerReport, base: BrokerReport | None, args: argparse.Namespace) -> list[str]:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    rows = []
    for key in ("qos0", "qos0-flood"):
        if base and key in report.results and key in base.results:
            mine, theirs = report.results[key].delivered, base.results[key].delivered
            ratio = mine / max(1e-9, theirs)
            rows.append(
                f"| {report.name} | QoS 0 throughput >= 0.5x Mosquitto on one core "
                f"({report.results[key].spec.title}) | {ratio:.2f}x ({mine:,.0f} vs {theirs:,.0f} msg/s) "
                f"| {verdict(ratio >= 0.5)} |"
            )
    for key in ("lat0", "lat1"):
        if key in report.results:
            p99 = report.results[key].percentile(0.99)
            rows.append(
                f"| {report.name} | p99 < 5 ms at {args.latency_rate:,.0f} msg/s "
                f"({report.results[key].spec.title}) | {p99:.2f} ms | {verdict(p99 < 5)} |"
            )
    idle = report.rss_idle_kb / 1024
    rows.append(f"| {report.name} | RSS < 40 MB idle | {idle:.1f} MB | {verdict(idle < 40)} |")
    return rows


def render_targets(reports: list[BrokerReport], args: argparse.Namespace) -> str:
    _, base = _compared(reports)
    lines = ["| broker | target | measured | result |", "| --- | --- | --- | --- |"]
    for report in reports:
        if report.name.startswith("mqttproxy"):
            lines += _target_rows(report, base, args)
    return "\n".join(lines)


def environment(reports: list[BrokerReport], background: dict[int, float], revision: str) -> list[str]:
    by_name = {r.name: r for r in reports}
    try:
        uvloop_version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = "not installed"
    loops = [
        f"{r.name}: {'uvloop' if r.uvloop else 'asyncio'}" for r in reports if r.name.startswith("mqttproxy")
    ]
    mosquitto = by_name["mosquitto"].version if "mosquitto" in by_name else "not run"
    proxy = next((r.version for r in reports if r.name.startswith("mqttproxy")), "not run")
    busy = ", ".join(f"core {core} {value:.0f}%" for core, value in background.items())
    return [
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, Linux {platform.release()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}; "
        f"uvloop {uvloop_version} installed; event loop in use: {', '.join(loops) or 'n/a'}",
        f"- Mosquitto {mosquitto}; mqttproxy {proxy} at {revision} (when the run started)",
        f"- Background load just before the run (1 s, nothing of ours running): {busy}; "
        f"load average {Path('/proc/loadavg').read_text().split()[0]}",
    ]


def render_report(
    reports: list[BrokerReport],
    args: argparse.Namespace,
    command: str,
    background: dict[int, float],
    revision: str,
) -> str:
    load = (
        f"{args.publishers} publishers + 1 subscriber, {args.payload_size}-byte payloads, topics "
        f"`{TOPIC}/<n>`, subscription `{TOPIC}/#`. Throughput: {args.warmup:g} s warm-up + "
        f"{args.duration:g} s measured; bounded runs keep at most {args.bound:,} messages written and "
        f"not yet received (all publishers together); QoS 1 window {args.window} per publisher. "
        f"Latency: {args.latency_rate:,.0f} msg/s in total, {args.latency_warmup:g} s warm-up + "
        f"{args.latency_duration:g} s measured."
    )
    queued = f"`max_queued_messages {args.queued}`"
    if not args.queued:
        queued = f"`max_queued_messages 0` (unlimited; for mqttproxy {UNLIMITED_QUEUE:,})"
    parts = [
        *environment(reports, background, revision),
        f"- Placement: broker pinned to core {args.broker_cpu}; load generators and the script to core "
        f"{args.load_cpu}",
        f"- Broker settings: both `max_inflight_messages {args.inflight}`, {queued}; Mosquitto also "
        "`set_tcp_nodelay true`, `persistence false`; mqttproxy `write_buffer_limit` at its default (1 MiB)",
        f"- Load: {load}",
        f"- Command (from the repository root): `{command}`",
    ]
    if args.py_spy:
        parts.append(
            f"- py-spy was attached to {args.py_spy_broker} during `{args.py_spy_scenario}`: "
            "that figure is perturbed"
        )
    parts += [
        "",
        render_table(reports, args),
        "",
        render_targets(reports, args),
        "",
        _render_findings(reports),
    ]
    return "\n".join(parts)


def _render_findings(reports: list[BrokerReport]) -> str:
    lines = ["Broker logs (warnings, errors, drops):", ""]
    for report in reports:
        status = f"exit status {report.returncode}"
        if not report.findings:
            lines.append(f"- {report.name}: nothing ({status})")
            continue
        lines.append(f"- {report.name}: {len(report.findings)} lines ({status}), first ones:")
        lines += [f"    - `{line.strip()}`" for line in report.findings[:5]]
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------------


def build_specs(args: argparse.Namespace) -> list[LoadSpec]:
    common = {"publishers": args.publishers, "payload_size": args.payload_size, "window": args.window}
    drain = {"drain_idle": DRAIN_IDLE, "drain_max": args.drain_max}
    thr = {"warmup": args.warmup, "duration": args.duration, "timed": False, **common, **drain}
    lat = {"warmup": args.latency_warmup, "duration": args.latency_duration, "timed": True, "bound": 0}
    lat |= common | drain
    rate = args.latency_rate
    specs = {
        "qos0": LoadSpec("qos0", "QoS 0 bounded", 0, rate=0, bound=args.bound, **thr),
        "qos0-flood": LoadSpec("qos0-flood", "QoS 0 flood", 0, rate=0, bound=0, **thr),
        "qos1": LoadSpec("qos1", "QoS 1 bounded", 1, rate=0, bound=args.bound, **thr),
        "lat0": LoadSpec("lat0", f"QoS 0 latency at {rate:,.0f} msg/s", 0, rate=rate, **lat),
        "lat1": LoadSpec("lat1", f"QoS 1 latency at {rate:,.0f} msg/s", 1, rate=rate, **lat),
    }
    return [specs[key] for key in args.scenarios]


def _csv(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items or any(item not in choices for item in items):
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return items

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    d = " (default %(default)s)"
    add(
        "--brokers",
        type=_csv(BROKERS),
        default="mqttproxy,mosquitto",
        help=f"comma-separated, of {BROKERS}" + d,
    )
    add("--scenarios", type=_csv(SCENARIOS), default=",".join(SCENARIOS), help="comma-separated subset" + d)
    add("--publishers", type=int, default=4, help="publisher processes" + d)
    add("--payload-size", type=int, default=100, help="bytes per payload" + d)
    add("--warmup", type=float, default=2.0, help="throughput runs: warm-up seconds" + d)
    add("--duration", type=float, default=8.0, help="throughput runs: measured seconds" + d)
    add("--bound", type=int, default=4000, help="bounded runs: max written and not yet received" + d)
    add("--window", type=int, default=100, help="QoS 1 PUBLISHes in flight per publisher" + d)
    add("--latency-rate", type=float, default=5000, help="latency runs: total msg/s" + d)
    add("--latency-warmup", type=float, default=1.0, help="latency runs: warm-up seconds" + d)
    add("--latency-duration", type=float, default=8.0, help="latency runs: measured seconds" + d)
    add("--drain-max", type=float, default=10.0, help="max seconds to drain after a window" + d)
    add("--inflight", type=int, default=100, help="max_inflight_messages of both brokers" + d)
    add("--queued", type=int, default=0, help="max_queued_messages of both brokers, 0: unlimited" + d)
    add("--broker-cpu", type=int, default=0, help="core the broker is pinned to" + d)
    add("--load-cpu", type=int, default=1, help="core of the load generators" + d)
    add("--idle-settle", type=float, default=0.5, help="seconds after start before idle RSS" + d)
    add("--mqttproxy", default=str(Path(sys.executable).parent / "mqttproxy"), help="executable" + d)
    add("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto", help="executable" + d)
    add("--py-spy", type=Path, metavar="FILE", help="record a py-spy raw profile into FILE")
    add("--py-spy-broker", choices=BROKERS[:2], default="mqttproxy", help="broker to profile" + d)
    add("--py-spy-scenario", choices=SCENARIOS, default="qos0", help="scenario to profile" + d)
    add("--py-spy-native", action="store_true", help="include native frames in the profile")
    add("--keep-logs", type=Path, metavar="DIR", help="keep broker configs and logs in DIR")
    add("--write", action="store_true", help=f"update {RESULTS_PATH.name} next to this script")
    args = parser.parse_args(argv)
    if args.payload_size < STAMP_SIZE:
        parser.error(f"--payload-size must be at least {STAMP_SIZE} (room for the timestamp)")
    if not 1 <= args.window < PACKET_IDS // 2:
        parser.error(f"--window must be between 1 and {PACKET_IDS // 2 - 1}")
    return args


def _on_signal(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


BROKER_CLASSES: dict[str, type[BrokerProcess]] = {
    "mqttproxy": Mqttproxy,
    "mqttproxy-asyncio": MqttproxyAsyncio,
    "mqttproxy-web": MqttproxyWeb,
    "mosquitto": Mosquitto,
}


def run(args: argparse.Namespace) -> list[BrokerReport]:
    available = os.sched_getaffinity(0)
    if {args.broker_cpu, args.load_cpu} - available or args.broker_cpu == args.load_cpu:
        raise BenchError(f"--broker-cpu and --load-cpu must be two different cores of {sorted(available)}")
    os.sched_setaffinity(0, {args.load_cpu})
    Mqttproxy.executable = args.mqttproxy
    Mosquitto.executable = args.mosquitto
    for name, path in (("mqttproxy", args.mqttproxy), ("mosquitto", args.mosquitto)):
        if any(broker.startswith(name) for broker in args.brokers) and not os.access(path, os.X_OK):
            raise BenchError(f"{path} is not an executable (see --{name})")
    specs = build_specs(args)
    reports = []
    with contextlib.ExitStack() as stack:
        if args.keep_logs:
            workdir = args.keep_logs
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="broker-bench-")))
        for name in args.brokers:
            broker = BROKER_CLASSES[name](
                workdir=workdir, cpu=args.broker_cpu, inflight=args.inflight, queued=args.queued
            )
            reports.append(benchmark_broker(broker, specs, args))
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    command = shlex.join([".venv/bin/python", "bench/broker_throughput.py", *sys.argv[1:]])
    try:
        revision = source_revision()
        background = background_busy()
        reports = run(args)
    except KeyboardInterrupt:
        log("interrupted: brokers and load generators stopped")
        return 130
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    section = render_report(reports, args, command, background, revision)
    print(section)
    if args.write:
        write_section("broker_throughput", "# Broker benchmark: mqttproxy vs Mosquitto", section)
        log(f"updated {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
