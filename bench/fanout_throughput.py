"""Upstream fan-out benchmark: the mqttproxy gateway and Mosquitto as a bridge, side by side in one run.

The path measured: devices publish to the system under test (SUT), which
forwards every message to N upstream brokers. Each upstream is its own
Mosquitto process with one subscriber (``bench/<trial>/#``) counting what
arrives. Cases: fan-out 1->1, 1->3 and 1->5 (``--fanouts``) at QoS 0 and QoS 1
(``--qos``: devices publish at it and the SUT forwards at it), with
``--payload-size``-byte payloads (100). The upstream subscribers subscribe at
QoS 0 (``--subscriber-qos case`` for the case's QoS): the SUT -> upstream hop is
what is measured, and QoS 1 acknowledgements between an upstream and its
subscriber would only load the core the load side shares.

SUTs (``--suts``), each started afresh for every case:

- ``gateway``: ``mqttproxy run`` (MQTT only, ``[web] enabled = false``) with one
  record per upstream in ``data/brokers.json`` (route ``#`` out, ``max_qos 1``,
  ``queue_max_messages`` ``--gateway-queue``, ``max_inflight`` ``--gateway-inflight``).
- ``mosquitto``: one Mosquitto with a local listener and one ``connection`` bridge
  per upstream (``topic # out <qos>``, ``bridge_protocol_version mqttv311``,
  ``cleansession true``, ``try_private false``) and Mosquitto's default queue
  limits (``max_inflight_messages 20``, ``max_queued_messages 1000``).
- ``mosquitto-tuned``: the same with ``max_inflight_messages`` ``--gateway-inflight``
  and ``max_queued_messages 0`` (unlimited: this Debian build loses QoS 1 messages
  with any other value, see the broker section of RESULTS.md).

Both Mosquitto variants also get ``set_tcp_nodelay true`` and ``persistence false``.
The upstream Mosquittos get ``max_inflight_messages 1000`` and ``max_queued_messages
0`` so that they are never where a message is lost (their logs are checked too).

What is measured per case:

1. Latency device -> upstream subscriber at ``--latency-rate`` (5,000 msg/s in):
   every payload starts with ``time.monotonic_ns()`` taken just before the send;
   each subscriber subtracts it from its own ``monotonic_ns()`` after ``recv``
   (CLOCK_MONOTONIC is one clock system-wide). p50/p99/max over all upstreams'
   deliveries in the window (``--latency-warmup`` + ``--latency-duration`` s).
   Publishers send each message when it is due; subscribers read as data comes.
2. The maximum sustained rate in with no loss. ``--publishers`` device processes
   publish, paced, at a total offered rate; a trial at a rate passes
   ("sustained") when (a) the devices got at least 98% of the offered rate
   accepted (written at QoS 0, PUBACKed at QoS 1) over the window, (b) every
   upstream subscriber received every message published (counted after it
   drained), (c) each subscriber's delivery rate over the window was at least
   97% of that, and (d) the last message reached each subscriber within
   ``--max-lag`` s after the devices stopped (no backlog). The latency run is the
   first trial; then ``--floor-rate`` (10,000, always run), doubling until a trial
   fails (or ``--max-rate``), then geometric bisection until the failing and
   passing rates are within ``--precision``; if 5,000 fails, halving down to
   ``--min-rate``. The result is the highest passing rate; deliveries/s = in x N.
   Search trials are ``--warmup`` + ``--duration`` s; their publishers write and
   their subscribers read at most once per ``--tick`` (1 ms; what fell due
   meanwhile goes in one write), which keeps the shared load core's wake-ups down.
3. Loss per case: every trial's loss, in particular at the floor rate (10,000 msg/s).
4. Memory of the SUT: VmRSS once it is connected to every upstream and idle;
   VmHWM after the last trial before the first one that failed (the peak while
   sustained, before any overload) and after the whole case (overload included).
5. CPU over each window, from /proc/PID/stat (exact, not tick-sampled): the SUT;
   the load side (upstreams, load generators, this script); every other
   process on the machine. A trial in which other processes used more than
   ``--max-foreign`` % of a core is run again (``--retries``) on fresh topics.
   "msg/s in per SUT core" is the best rate divided by the SUT's CPU share there.

Placement: the SUT (the gateway, or the bridging Mosquitto) is pinned to
``--sut-cpu`` (0); the upstream Mosquittos, their subscribers, the device
publishers and this script share ``--load-cpu`` (1). On a 2-core machine the load
side saturates its core first at higher rates and fan-outs: a failed trial with
the load side at >= 95% of its core says more about the load side than the SUT.

Every process started here is stopped on the way out, also on errors and Ctrl-C.

Run from the repository root::

    .venv/bin/python bench/fanout_throughput.py                  # table on stdout (~5 min)
    .venv/bin/python bench/fanout_throughput.py --write          # and add/update bench/RESULTS.md
    .venv/bin/python bench/fanout_throughput.py --suts gateway,mosquitto,mosquitto-tuned --fanouts 3
    .venv/bin/python bench/fanout_throughput.py --suts gateway --fanouts 3 --qos 1 \\
        --py-spy /tmp/fanout.raw                                  # and profile 1->3 QoS 1
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata
import itertools
import math
import multiprocessing
import os
import platform
import re
import select
import shlex
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NoReturn

from common import (
    HOST,
    PACKET_IDS,
    RECV_SIZE,
    RESULTS_PATH,
    STAMP_SIZE,
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
    free_port,
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
    usage_snapshot,
    window_rate,
    write_section,
)

from mqttproxy.protocol.codec import publish_bytes
from mqttproxy.upstream.models import BrokerRecord
from mqttproxy.upstream.store import BrokerStore

TOPIC = "bench"
SUTS = ("gateway", "mosquitto", "mosquitto-tuned")
MAX_BATCH = 64  # messages a behind-schedule publisher writes at once
ACCEPT_SHARE = 0.98  # (a): share of the offered rate the devices must get accepted
DELIVER_SHARE = 0.97  # (c): share of the accepted rate each upstream must receive
LOAD_SATURATED = 95.0  # % of its core the load side uses from which a failure is not the SUT's alone
MOSQUITTO_DEFAULT_INFLIGHT = 20
MOSQUITTO_DEFAULT_QUEUED = 1000
UPSTREAM_INFLIGHT = 1000  # subscribers read once per --tick in the search


@dataclass(frozen=True)
class Case:
    """One system under test at one fan-out and QoS."""

    sut: str  # one of SUTS
    fanout: int
    qos: int

    @property
    def label(self) -> str:
        return f"{self.sut} 1→{self.fanout} QoS {self.qos}"

    @property
    def slug(self) -> str:
        return f"{self.sut}-1to{self.fanout}-qos{self.qos}"


@dataclass(frozen=True)
class TrialSpec:
    """One paced run at one offered rate, on its own topics."""

    trial_id: int
    qos: int  # devices publish at it and the SUT forwards at it
    sub_qos: int  # the upstream subscribers subscribe at it
    rate: float  # total msg/s offered by all publishers
    publishers: int
    payload_size: int
    window: int  # QoS 1 PUBLISHes a publisher may have awaiting PUBACK
    warmup: float
    duration: float
    timed: bool  # subscribers record latencies over the window
    tick: float  # s between writes of a publisher and reads of a subscriber (0: as they come)
    drain_idle: float  # subscribers stop once idle this long after the window...
    drain_max: float  # ...or this long after it at the latest

    @property
    def prefix(self) -> str:
        return f"{TOPIC}/t{self.trial_id}"


@dataclass
class PubResult:
    sent: int  # PUBLISH packets written
    published: int  # written (QoS 0) or PUBACKed (QoS 1)
    points: list[tuple[float, int]]  # `published` at the window's start and end


@dataclass
class SubResult:
    received: int
    points: list[tuple[float, int]]  # `received` at the window's start and end
    latencies_ns: list[int]
    last_at: float  # CLOCK_MONOTONIC of the last PUBLISH received; 0.0 if none


# --- load generators (forked processes, blocking sockets) ------------------------------


def run_subscriber(port: int, spec: TrialSpec, conn: Connection) -> SubResult:
    sock, decoder = mqtt_connect(port, f"fanout-sub-{os.getpid()}")
    mqtt_subscribe(sock, decoder, f"{spec.prefix}/#", spec.sub_qos)
    if decoder.buffered:
        raise BenchError("unexpected data after SUBACK")
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    try:
        return _subscribe_loop(sock, spec, schedule, conn)
    finally:
        mqtt_close(sock)


def _subscribe_loop(sock: socket.socket, spec: TrialSpec, schedule: Schedule, conn: Connection) -> SubResult:
    """Count (and time) PUBLISHes until all expected arrived, the stream went idle, or drain_max."""
    marks = Marks.window(schedule)
    stamps: list[int] = []
    received = 0
    expected: int | None = None  # sent by the parent once the publishers have finished
    rest = b""
    last_at = 0.0
    hard_stop = schedule.measure_end + spec.drain_max
    while True:
        chunk = recv_ready(sock, 0.02)
        now_ns = time.monotonic_ns()
        now = now_ns / 1e9
        marks.observe(now, received)
        if chunk == b"":
            raise BenchError("the upstream closed the subscriber's connection")
        if chunk:
            data = rest + chunk if rest else chunk
            in_window = spec.timed and schedule.warm_end <= now < schedule.measure_end
            used, count, acks = scan_publishes(data, spec.sub_qos > 0, stamps if in_window else None, now_ns)
            rest = data[used:]
            if count:
                received += count
                last_at = now
            if acks:
                sock.sendall(acks)
            if spec.tick:
                time.sleep(spec.tick)  # let more arrive: fewer wake-ups on the shared load core
        if now >= schedule.measure_end:
            if expected is None and conn.poll():
                expected = conn.recv()
            done = expected is not None and received >= expected
            idle = expected is not None and now - max(last_at, schedule.measure_end) >= spec.drain_idle
            if done or idle or now >= hard_stop:
                break
    return SubResult(received=received, points=marks.points, latencies_ns=stamps, last_at=last_at)


def run_publisher(port: int, spec: TrialSpec, index: int, conn: Connection) -> PubResult:
    sock, _ = mqtt_connect(port, f"fanout-dev-{index}-{os.getpid()}")
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    try:
        return _publish_paced(sock, spec, index, schedule)
    finally:
        mqtt_close(sock)


class PacketMaker:
    """Stamped PUBLISH packets of one topic: header, [packet id], timestamp, padding."""

    def __init__(self, topic: bytes, qos: int, payload_size: int) -> None:
        full = publish_bytes(topic, bytes(payload_size), qos, False, False, 1 if qos else None)
        self._head = full[: len(full) - payload_size - (2 if qos else 0)]
        self._padding = bytes(payload_size - STAMP_SIZE)
        self._qos = qos

    def make(self, first: int, count: int) -> bytes:
        """``count`` packets stamped now; QoS 1 packet ids follow on from message number ``first``."""
        body = time.monotonic_ns().to_bytes(STAMP_SIZE, "big") + self._padding
        if not self._qos:
            return (self._head + body) * count
        head = self._head
        return b"".join(head + ((first + i) % PACKET_IDS + 1).to_bytes(2, "big") + body for i in range(count))


def _publish_paced(sock: socket.socket, spec: TrialSpec, index: int, schedule: Schedule) -> PubResult:
    """``rate / publishers`` msg/s on schedule: message n is due at t0 + n / rate_each.

    With ``spec.tick``, at most one write per tick: what fell due meanwhile goes in one batch.
    """
    qos = spec.qos
    rate_each = spec.rate / spec.publishers
    t0 = schedule.start + index / spec.publishers / rate_each  # staggered publishers
    maker = PacketMaker(f"{spec.prefix}/{index}".encode(), qos, spec.payload_size)
    marks = Marks.window(schedule)
    acks = AckCounter()
    sent = 0
    last_send = -math.inf
    sleep_until(schedule.start)
    while True:
        now = time.monotonic()
        marks.observe(now, acks.acked if qos else sent)
        if now >= schedule.measure_end:
            break
        due = int((now - t0) * rate_each) + 1 if now >= t0 else 0
        room = spec.window - (sent - acks.acked) if qos else MAX_BATCH
        count = min(due - sent, MAX_BATCH, room)
        if count > 0 and now >= last_send + spec.tick:
            sock.sendall(maker.make(sent, count))
            sent += count
            last_send = now
            continue
        wake = max(t0 + sent / rate_each, last_send + spec.tick) if room > 0 else now + 0.05
        readable, _, _ = select.select([sock], [], [], max(0.0, min(wake, schedule.measure_end) - now))
        if readable:
            acks.feed(sock.recv(RECV_SIZE))
    if qos:
        acks.wait_all(sock, sent, 5.0)
    return PubResult(sent=sent, published=acks.acked if qos else sent, points=marks.points)


def _child_main(role: str, index: int, port: int, spec: TrialSpec, cpu: int, conn: Connection) -> None:
    """Entry point of a load generator process: report ("result", ...) or ("error", traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    os.sched_setaffinity(0, {cpu})
    try:
        result: PubResult | SubResult
        if role == "subscriber":
            result = run_subscriber(port, spec, conn)
        else:
            result = run_publisher(port, spec, index, conn)
        conn.send(("result", result))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def spawn(role: str, index: int, port: int, spec: TrialSpec, cpu: int) -> Child:
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    process = ctx.Process(
        target=_child_main,
        args=(role, index, port, spec, cpu, child_end),
        name=f"{role} {index}",
        daemon=True,
    )
    process.start()
    child_end.close()
    return Child(f"{role} {index}", process, parent_end)


# --- the processes under test and the upstreams ------------------------------------------


class Upstream(Mosquitto):
    """One upstream broker: a plain Mosquitto that never drops (unlimited queue)."""

    def __init__(self, *, workdir: Path, cpu: int, index: int) -> None:
        self.name = f"upstream-{index}"
        super().__init__(workdir=workdir, cpu=cpu, inflight=UPSTREAM_INFLIGHT, queued=0)


class Gateway(Mqttproxy):
    """``mqttproxy run`` with one upstream record per upstream Mosquitto."""

    def __init__(
        self, *, workdir: Path, cpu: int, case: Case, upstream_ports: list[int], queue: int, inflight: int
    ) -> None:
        self.name = case.slug
        super().__init__(workdir=workdir, cpu=cpu, inflight=inflight, queued=queue)
        self.upstream_ports = upstream_ports

    def command(self) -> list[str]:
        config = self.workdir / "gateway.toml"
        config.write_text(
            f'[auth]\nallow_anonymous = true\n[mqtt]\nhost = "{HOST}"\n[web]\nenabled = false\n'
        )
        records = [
            BrokerRecord(
                id=f"up{k}",
                name=f"up{k}",
                address=HOST,
                port=port,
                max_qos=1,
                queue_max_messages=self.queued,
                max_inflight=self.inflight,
            )
            for k, port in enumerate(self.upstream_ports)
        ]
        BrokerStore(self.workdir / "data" / "brokers.json", secret_key=None).save(records)
        return [
            *(self.executable, "run", "--config", str(config), "--data-dir", "data"),
            *("--mqtt-port", "0", "--web-port", "0"),
        ]

    def _wait_ready(self, deadline: float) -> int:
        port = super()._wait_ready(deadline)
        pattern = re.compile(r"upstream (up\d+): connected to")
        while time.monotonic() < deadline:
            self.check_alive()
            if len(set(pattern.findall(self.log_text()))) == len(self.upstream_ports):
                return port
            time.sleep(0.05)
        raise BenchError(f"{self.name}: not every upstream link connected in time:\n{self.log_tail()}")


class Bridge(Mosquitto):
    """One Mosquitto bridging its local listener to every upstream (``topic # out <qos>``)."""

    def __init__(
        self, *, workdir: Path, cpu: int, case: Case, upstream_ports: list[int], inflight: int
    ) -> None:
        self.name = case.slug
        tuned = case.sut == "mosquitto-tuned"
        super().__init__(
            workdir=workdir,
            cpu=cpu,
            inflight=inflight if tuned else MOSQUITTO_DEFAULT_INFLIGHT,
            queued=0 if tuned else MOSQUITTO_DEFAULT_QUEUED,
        )
        self.tuned = tuned
        self.qos = case.qos
        self.upstream_ports = upstream_ports

    def command(self) -> list[str]:
        self.port = free_port()
        lines = [f"listener {self.port} {HOST}", "allow_anonymous true", "set_tcp_nodelay true"]
        lines += ["persistence false", "log_dest stderr", "log_type error", "log_type warning"]
        lines += ["log_type notice"]
        if self.tuned:  # else Mosquitto's defaults, 20 and 1000
            lines += [f"max_inflight_messages {self.inflight}", f"max_queued_messages {self.queued}"]
        for k, port in enumerate(self.upstream_ports):
            lines += [
                "",
                f"connection up{k}",
                f"address {HOST}:{port}",
                f"topic # out {self.qos}",
                "bridge_protocol_version mqttv311",
                "cleansession true",
                "try_private false",
            ]
        config = self.workdir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return [self.executable, "-c", str(config)]


def probe(sut_port: int, upstream_ports: list[int], timeout: float = 20.0) -> None:
    """Publish to the SUT until a message has come out at every upstream: the path is up."""
    subscribers = []
    try:
        for port in upstream_ports:
            sock, decoder = mqtt_connect(port, f"fanout-probe-{port}")
            mqtt_subscribe(sock, decoder, "probe/#", 0)
            subscribers.append(sock)
        device, _ = mqtt_connect(sut_port, "fanout-probe-device")
        subscribers_waiting = set(subscribers)
        deadline = time.monotonic() + timeout
        while subscribers_waiting and time.monotonic() < deadline:
            device.sendall(publish_bytes(b"probe/x", b"probe", 0, False, False, None))
            readable, _, _ = select.select(list(subscribers_waiting), [], [], 0.1)
            for sock in readable:
                if sock.recv(RECV_SIZE):
                    subscribers_waiting.discard(sock)
        mqtt_close(device)
        if subscribers_waiting:
            raise BenchError(f"no message reached {len(subscribers_waiting)} upstream(s) in {timeout:g}s")
    finally:
        for sock in subscribers:
            mqtt_close(sock, linger=0.2)


# --- one trial -------------------------------------------------------------------------------


@dataclass
class TrialResult:
    spec: TrialSpec
    accepted: float  # msg/s in: written (QoS 0) or PUBACKed (QoS 1) over the window
    published: int  # whole run
    received: list[int]  # per upstream, whole run including the drain
    delivered: list[float]  # per upstream, msg/s over the window
    lags: list[float]  # per upstream: s after the devices stopped until the last message arrived
    latencies_ms: list[float]  # sorted, all upstreams
    usage: Usage  # of the SUT
    load_share: float  # % of a core used by the upstreams, load generators and this script
    foreign: float  # % of a core used by every other process on the machine
    hwm_kb: int  # the SUT's VmHWM right after the trial
    disturbed: bool  # foreign > --max-foreign
    reasons: list[str] = field(default_factory=list)  # why it is not sustained; empty: it is
    profiled: bool = False

    @property
    def lost(self) -> int:
        return sum(max(0, self.published - count) for count in self.received)

    @property
    def duplicates(self) -> int:
        return sum(max(0, count - self.published) for count in self.received)

    @property
    def sustained(self) -> bool:
        return not self.reasons

    @property
    def load_saturated(self) -> bool:
        return self.load_share >= LOAD_SATURATED

    def percentile(self, fraction: float) -> float:
        values = self.latencies_ms
        return values[min(len(values) - 1, int(fraction * len(values)))] if values else math.nan


def judge(result: TrialResult, max_lag: float) -> list[str]:
    """The criteria (a)-(d) of the docstring that ``result`` misses."""
    reasons = []
    rate = result.spec.rate
    if result.accepted < ACCEPT_SHARE * rate:
        reasons.append(f"accepted {result.accepted:,.0f} msg/s of {rate:,.0f}")
    if result.lost:
        total = result.published * len(result.received)
        reasons.append(f"lost {result.lost:,} of {total:,} deliveries ({result.lost / max(1, total):.1%})")
    slowest = min(result.delivered, default=0.0)
    if slowest < DELIVER_SHARE * result.accepted:
        reasons.append(f"delivered {slowest:,.0f} msg/s per upstream")
    late = max(result.lags, default=0.0)
    if math.isinf(late):
        reasons.append("nothing arrived at an upstream")
    elif late > max_lag:
        reasons.append(f"last message {late:.1f} s after the devices stopped")
    return reasons


class TrialRunner:
    """Runs paced trials against one started SUT and its upstreams."""

    def __init__(self, sut: BrokerProcess, upstreams: list[Upstream], case: Case, args: argparse.Namespace):
        self.sut = sut
        self.upstreams = upstreams
        self.case = case
        self.args = args

    def spec(self, rate: float, *, timed: bool = False, duration: float | None = None) -> TrialSpec:
        args = self.args
        return TrialSpec(
            trial_id=next(_TRIAL_IDS),
            qos=self.case.qos,
            sub_qos=self.case.qos if args.subscriber_qos == "case" else 0,
            rate=rate,
            publishers=args.publishers,
            payload_size=args.payload_size,
            window=args.window,
            warmup=args.latency_warmup if timed else args.warmup,
            duration=duration or (args.latency_duration if timed else args.duration),
            timed=timed,
            tick=0.0 if timed else args.tick,
            drain_idle=args.drain_idle,
            drain_max=args.drain_max,
        )

    def run(self, spec: TrialSpec, profiler: Profiler | None = None) -> TrialResult:
        """One trial; again on fresh topics (up to ``--retries`` times) while other processes disturb it."""
        for attempt in range(self.args.retries + 1):
            result = self._run_once(spec, profiler)
            if not result.disturbed or attempt == self.args.retries:
                return result
            log(f"  [{self.case.label}] other processes used {result.foreign:.0f}% of a core: again")
            time.sleep(self.args.retry_pause)
            spec = dataclasses.replace(spec, trial_id=next(_TRIAL_IDS))
        raise AssertionError("unreachable")

    def _run_once(self, spec: TrialSpec, profiler: Profiler | None) -> TrialResult:
        cpu = self.args.load_cpu
        ports = [upstream.port for upstream in self.upstreams]
        children: list[Child] = []
        try:
            children += [spawn("subscriber", k, port, spec, cpu) for k, port in enumerate(ports)]
            children += [spawn("publisher", i, self.sut.port, spec, cpu) for i in range(spec.publishers)]
            for child in children:
                child.expect("ready", 15)
            start = time.monotonic() + 0.2
            schedule = Schedule(start, start + spec.warmup, start + spec.warmup + spec.duration)
            for child in children:
                child.conn.send(schedule)
            usage, shares = self._watch(schedule, children, profiler)
            pubs: list[PubResult] = [child.expect("result", 20) for child in children[len(ports) :]]
            published = sum(p.published for p in pubs)
            for child in children[: len(ports)]:
                child.conn.send(published)
            subs: list[SubResult] = [
                child.expect("result", spec.drain_max + 20) for child in children[: len(ports)]
            ]
        finally:
            for child in children:
                child.stop()
        self.sut.check_alive()
        result = TrialResult(
            spec=spec,
            accepted=sum(window_rate(p.points) for p in pubs),
            published=published,
            received=[s.received for s in subs],
            delivered=[window_rate(s.points) for s in subs],
            lags=[max(0.0, s.last_at - schedule.measure_end) if s.received else math.inf for s in subs],
            latencies_ms=sorted(ns / 1e6 for s in subs for ns in s.latencies_ns),
            usage=usage,
            load_share=shares[0],
            foreign=shares[1],
            hwm_kb=proc_status_kb(self.sut.pid, "VmHWM"),
            disturbed=shares[1] > self.args.max_foreign,
            profiled=profiler is not None,
        )
        result.reasons = judge(result, self.args.max_lag)
        log(f"  [{self.case.label}] {describe(result)}")
        return result

    def _watch(
        self, schedule: Schedule, children: list[Child], profiler: Profiler | None
    ) -> tuple[Usage, tuple[float, float]]:
        """The SUT's CPU use over the measurement window, and (load side, other processes) in % of a core."""
        sleep_until(schedule.warm_end)
        ours = {os.getpid(), *(u.pid for u in self.upstreams), *(c.process.pid for c in children)}
        start = usage_snapshot(self.sut.pid)
        before = cpu_seconds_by_pid()
        try:
            if profiler is not None:
                profiler.start(self.sut.pid, schedule.measure_end - schedule.warm_end)
                if profiler.process is not None:
                    ours.add(profiler.process.pid)
            sleep_until(schedule.measure_end)
            usage = Usage.between(self.sut.pid, start)
            after = cpu_seconds_by_pid()
        finally:
            if profiler is not None:
                profiler.finish(timeout=30)
        elapsed = max(1e-9, time.monotonic() - start[0])
        used = {pid: max(0.0, seconds - before.get(pid, 0.0)) for pid, seconds in after.items()}
        load = sum(seconds for pid, seconds in used.items() if pid in ours)
        foreign = sum(seconds for pid, seconds in used.items() if pid not in ours and pid != self.sut.pid)
        return usage, (100 * load / elapsed, 100 * foreign / elapsed)


_TRIAL_IDS = itertools.count(1)
PF_KTHREAD = 0x00200000


def cpu_seconds_by_pid() -> dict[int, float]:
    """CPU time of every user-space process, its reaped children's included, from /proc/PID/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    times = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[6]) & PF_KTHREAD:
            continue  # kernel threads (softirq work for our own traffic among them)
        times[int(entry.name)] = sum(int(value) for value in fields[11:15]) / tick
    return times


def describe(result: TrialResult) -> str:
    spec = result.spec
    text = (
        f"{spec.rate:,.0f} msg/s: {'sustained' if result.sustained else 'FAILED'}; "
        f"accepted {result.accepted:,.0f}/s, delivered per upstream "
        f"{' '.join(f'{d:,.0f}' for d in result.delivered)}/s, lost {result.lost:,}, "
        f"dup {result.duplicates:,}, lag {max(result.lags, default=0):.2f} s, "
        f"CPU: SUT {result.usage.broker_cpu:.0f}%, load side {result.load_share:.0f}%, "
        f"others {result.foreign:.0f}%, SUT VmHWM {result.hwm_kb / 1024:.0f} MB"
    )
    if spec.timed:
        text += f", p50 {result.percentile(0.5):.2f} ms, p99 {result.percentile(0.99):.2f} ms"
    if result.reasons:
        text += f" [{'; '.join(result.reasons)}]"
    return text


# --- the search for the highest sustained rate -------------------------------------------------


def _round_rate(rate: float) -> float:
    step = 500 if rate >= 5000 else 100
    return max(step, round(rate / step) * step)


def search_max_rate(
    run_at: Callable[[float], TrialResult], seed: TrialResult, args: argparse.Namespace
) -> None:
    """Trials from ``seed`` (the latency run) up (or down) and then bisecting; ``run_at`` records them."""
    passed: float | None = seed.spec.rate if seed.sustained else None
    failed: float | None = None if seed.sustained else seed.spec.rate
    floor = run_at(args.floor_rate)  # always run: the floor, and loss at that rate
    if floor.sustained:
        passed, failed = args.floor_rate, None
        rate = args.floor_rate * 2
        while failed is None and rate <= args.max_rate:
            if run_at(rate).sustained:
                passed, rate = rate, rate * 2
            else:
                failed = rate
    else:
        failed = min(failed or math.inf, args.floor_rate)
        rate = seed.spec.rate / 2 if not seed.sustained else None
        while passed is None and rate is not None and rate >= args.min_rate:
            if run_at(rate).sustained:
                passed = rate
            else:
                failed, rate = rate, _round_rate(rate / 2) if rate / 2 >= args.min_rate else None
    while passed is not None and failed is not None and failed / passed > 1 + args.precision:
        mid = _round_rate(math.sqrt(passed * failed))
        if not passed < mid < failed:
            break
        if run_at(mid).sustained:
            passed = mid
        else:
            failed = mid


# --- one case ----------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    case: Case
    version: str
    uvloop: bool | None
    rss_idle_kb: int
    rss_peak_kb: int = 0
    trials: list[TrialResult] = field(default_factory=list)  # latency run first
    profile: TrialResult | None = None
    findings: list[str] = field(default_factory=list)  # SUT log lines worth a look
    upstream_findings: list[str] = field(default_factory=list)
    returncode: int | None = None

    @property
    def latency(self) -> TrialResult | None:
        return next((t for t in self.trials if t.spec.timed), None)

    @property
    def best(self) -> TrialResult | None:
        """The highest sustained rate."""
        return max((t for t in self.trials if t.sustained), key=lambda t: t.spec.rate, default=None)

    @property
    def next_failed(self) -> TrialResult | None:
        """The lowest failing rate above the best (or the lowest failing one if none passed)."""
        best = self.best.spec.rate if self.best else 0.0
        failed = [t for t in self.trials if not t.sustained and t.spec.rate > best]
        return min(failed, key=lambda t: t.spec.rate, default=None)

    @property
    def rss_sustained_kb(self) -> int | None:
        """VmHWM after the last trial before the first one that was not sustained (no overload yet)."""
        peak = None
        for trial in self.trials:
            if not trial.sustained:
                break
            peak = trial.hwm_kb
        return peak

    @property
    def per_core(self) -> float | None:
        """msg/s in per SUT core at the best rate: the rate divided by the SUT's CPU share."""
        best = self.best
        return best.spec.rate / (best.usage.broker_cpu / 100) if best and best.usage.broker_cpu else None

    def at_rate(self, rate: float) -> TrialResult | None:
        return next((t for t in self.trials if t.spec.rate == rate and not t.spec.timed), None)


def make_sut(case: Case, upstream_ports: list[int], args: argparse.Namespace, workdir: Path) -> BrokerProcess:
    if case.sut == "gateway":
        return Gateway(
            workdir=workdir,
            cpu=args.sut_cpu,
            case=case,
            upstream_ports=upstream_ports,
            queue=args.gateway_queue,
            inflight=args.gateway_inflight,
        )
    return Bridge(
        workdir=workdir,
        cpu=args.sut_cpu,
        case=case,
        upstream_ports=upstream_ports,
        inflight=args.gateway_inflight,
    )


def benchmark_case(case: Case, args: argparse.Namespace, workdir: Path) -> CaseResult:
    log(f"[{case.label}]")
    upstreams = [
        Upstream(workdir=workdir / case.slug, cpu=args.load_cpu, index=k) for k in range(case.fanout)
    ]
    with contextlib.ExitStack() as stack:
        for upstream in upstreams:
            stack.enter_context(running(upstream))
        ports = [upstream.port for upstream in upstreams]
        sut = make_sut(case, ports, args, workdir)
        stack.enter_context(running(sut))  # stopped first, before the upstreams
        probe(sut.port, ports)
        time.sleep(args.idle_settle)
        result = CaseResult(case, sut.version(), sut.uses_uvloop(), proc_status_kb(sut.pid, "VmRSS"))
        runner = TrialRunner(sut, upstreams, case, args)
        seed = runner.run(runner.spec(args.latency_rate, timed=True))
        result.trials.append(seed)
        if not args.latency_only:
            search_max_rate(lambda rate: _record(result, runner.run(runner.spec(rate))), seed, args)
        if args.py_spy and case == args.py_spy_case:
            profiler = Profiler(args.py_spy, case.slug, native=args.py_spy_native)
            spec = runner.spec(args.py_spy_rate, duration=args.py_spy_seconds)
            result.profile = runner.run(spec, profiler)
        result.rss_peak_kb = proc_status_kb(sut.pid, "VmHWM")
        log(
            f"[{case.label}] RSS idle {result.rss_idle_kb / 1024:.1f} MB, "
            f"peak {result.rss_peak_kb / 1024:.1f} MB; max sustained "
            f"{result.best.spec.rate if result.best else 0:,.0f} msg/s in"
        )
    result.returncode = sut.returncode
    result.findings = sut.log_findings()
    result.upstream_findings = [line for upstream in upstreams for line in upstream.log_findings()]
    return result


def _record(result: CaseResult, trial: TrialResult) -> TrialResult:
    result.trials.append(trial)
    return trial


# --- reporting -----------------------------------------------------------------------------------------


def _mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def _mb_or_dash(kb: int | None) -> str:
    return "-" if kb is None else _mb(kb)


def _max_cell(result: CaseResult) -> str:
    best = result.best
    if best is None:
        lowest = min(t.spec.rate for t in result.trials)
        return f"< {lowest:,.0f}"
    above = result.next_failed
    if above is None:
        return f"≥ {best.spec.rate:,.0f}"
    return f"{best.spec.rate:,.0f}{' (L)' if above.load_saturated else ''}"


def _next_cell(result: CaseResult) -> str:
    trial = result.next_failed
    if trial is None:
        return "none failed"
    why = "; ".join(trial.reasons)
    if trial.load_saturated:
        why += f"; load side at {trial.load_share:.0f}% of its core"
    return f"{trial.spec.rate:,.0f}: {why}"


def _loss_cell(trial: TrialResult | None) -> str:
    if trial is None:
        return "not run"
    total = trial.published * len(trial.received)
    if not trial.lost:
        return f"0 of {total:,}"
    return f"**{trial.lost:,} of {total:,} ({trial.lost / max(1, total):.1%})**"


def _lossy(result: CaseResult) -> str:
    lossy = [t for t in result.trials if t.lost]
    if not lossy:
        return f"none of {len(result.trials)}"
    rates = ", ".join(f"{t.spec.rate / 1000:g}k" for t in sorted(lossy, key=lambda t: t.spec.rate))
    return f"{len(lossy)} of {len(result.trials)} ({rates})"


def _latency_cell(result: CaseResult) -> str:
    lat = result.latency
    if lat is None or not lat.latencies_ms:
        return "n/a"
    cell = f"{lat.percentile(0.5):.2f} / {lat.percentile(0.99):.2f} / {lat.percentile(1.0):.1f}"
    return cell if lat.sustained else f"{cell} (not sustained)"


def render_cases(results: list[CaseResult], args: argparse.Namespace) -> str:
    header = [
        "case",
        "max msg/s in, no loss ((L): load side saturated at the next rate)",
        "deliveries/s at that rate",
        "next rate tried: why it failed",
        f"lost at {args.floor_rate:,.0f} msg/s in",
        "trials with loss",
        f"latency p50 / p99 / max at {args.latency_rate:,.0f} msg/s (ms)",
        "SUT CPU at max; msg/s in per SUT core",
        "SUT RSS idle / peak sustained / peak with overload (MB)",
    ]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for r in results:
        best = r.best
        cells = [
            r.case.label,
            _max_cell(r),
            f"{best.spec.rate * r.case.fanout:,.0f}" if best else "-",
            _next_cell(r),
            _loss_cell(r.at_rate(args.floor_rate)),
            _lossy(r),
            _latency_cell(r),
            f"{best.usage.broker_cpu:.0f}%; {r.per_core:,.0f}" if best and r.per_core else "-",
            f"{_mb(r.rss_idle_kb)} / {_mb_or_dash(r.rss_sustained_kb)} / {_mb(r.rss_peak_kb)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _find(results: list[CaseResult], sut: str, fanout: int, qos: int) -> CaseResult | None:
    return next((r for r in results if r.case == Case(sut, fanout, qos)), None)


def render_ratios(results: list[CaseResult]) -> str:
    """Gateway / Mosquitto per fan-out and QoS: max sustained rate, p99, peak RSS."""
    bases = [sut for sut in SUTS[1:] if any(r.case.sut == sut for r in results)]
    header = ["fan-out, QoS"]
    for base in bases:
        header += [
            f"max in: gateway / {base}",
            f"msg/s in per SUT core: gateway / {base}",
            f"p99: gateway / {base}",
            f"peak RSS: gateway / {base}",
        ]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    keys = sorted({(r.case.fanout, r.case.qos) for r in results})
    for fanout, qos in keys:
        ours = _find(results, "gateway", fanout, qos)
        if ours is None:
            continue
        cells = [f"1→{fanout}, QoS {qos}"]
        for base in bases:
            theirs = _find(results, base, fanout, qos)
            cells += _ratio_cells(ours, theirs)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio_cells(ours: CaseResult, theirs: CaseResult | None) -> list[str]:
    if theirs is None:
        return ["", "", "", ""]
    cells = []
    a, b = ours.best, theirs.best
    if a and b:
        cells.append(f"{a.spec.rate / b.spec.rate:.2f} ({_max_cell(ours)} / {_max_cell(theirs)})")
    else:
        cells.append(f"{_max_cell(ours)} / {_max_cell(theirs)}")
    ca, cb = ours.per_core, theirs.per_core
    cells.append(f"{ca / cb:.2f} ({ca:,.0f} / {cb:,.0f})" if ca and cb else "")
    la, lb = ours.latency, theirs.latency
    if la and lb and la.latencies_ms and lb.latencies_ms:
        pa, pb = la.percentile(0.99), lb.percentile(0.99)
        cells.append(f"{pa / pb:.2f} ({pa:.2f} / {pb:.2f} ms)")
    else:
        cells.append("")
    cells.append(
        f"{ours.rss_peak_kb / max(1, theirs.rss_peak_kb):.1f} "
        f"({_mb(ours.rss_peak_kb)} / {_mb(theirs.rss_peak_kb)} MB)"
    )
    return cells


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render_targets(results: list[CaseResult], args: argparse.Namespace) -> str:
    lines = ["| target | case | measured | result |", "| --- | --- | --- | --- |"]
    ours = [r for r in results if r.case.sut == "gateway"]
    floor = args.floor_rate
    for r in ours:
        if r.case.fanout == 3:
            best = r.best.spec.rate if r.best else 0.0
            lines.append(
                f"| ≥ {floor:,.0f} msg/s in ({floor * 3:,.0f} deliveries/s) at 1→3 with no loss "
                f"| {r.case.label} "
                f"| {_max_cell(r)} msg/s in, {best * 3:,.0f} deliveries/s | {_verdict(best >= floor)} |"
            )
    for r in ours:
        lat = r.latency
        if lat is not None and lat.latencies_ms:
            p99 = lat.percentile(0.99)
            lines.append(
                f"| p99 < 5 ms at {args.latency_rate:,.0f} msg/s | {r.case.label} | {p99:.2f} ms "
                f"| {_verdict(p99 < 5 and lat.sustained)} |"
            )
    for r in ours:
        limit = 50 + 10 * r.case.fanout
        sustained = r.rss_sustained_kb
        peak = (sustained if sustained is not None else r.rss_peak_kb) / 1024
        lines.append(
            f"| RSS < 50 MB + 10 MB x {r.case.fanout} = {limit} MB (peak while sustained) | {r.case.label} "
            f"| idle {_mb(r.rss_idle_kb)} MB, peak while sustained {_mb_or_dash(sustained)} MB "
            f"(with overload trials {_mb(r.rss_peak_kb)} MB) | {_verdict(peak < limit)} |"
        )
    lines += _aim_rows(results)
    return "\n".join(lines)


def _aim_rows(results: list[CaseResult]) -> list[str]:
    rows = []
    ours = _find(results, "gateway", 3, 0)
    for base in SUTS[1:]:
        theirs = _find(results, base, 3, 0)
        if ours and theirs and ours.best and theirs.best:
            ratio = ours.best.spec.rate / theirs.best.spec.rate
            rows.append(
                f"| aim: match Mosquitto's QoS 0 rate at 1→3 | gateway vs {base} 1→3 QoS 0 | {ratio:.2f}x "
                f"({_max_cell(ours)} vs {_max_cell(theirs)} msg/s) | {_verdict(ratio >= 1.0)} |"
            )
    qos1 = [r for r in results if r.case.sut == "gateway" and r.case.qos == 1]
    if qos1:
        trials = [t for r in qos1 for t in r.trials]
        lost = sum(t.lost for t in trials)
        rows.append(
            f"| aim: lose nothing at QoS 1 | every gateway QoS 1 trial ({len(trials)}, overload included) "
            f"| {lost:,} lost | {_verdict(lost == 0)} |"
        )
    return rows


def render_trials(results: list[CaseResult]) -> str:
    lines = [
        "Every trial, in order (msg/s in: ✓ sustained / ✗ why not; L: load side used ≥ "
        f"{LOAD_SATURATED:.0f}% of its core; D: other processes used > --max-foreign):",
        "",
    ]
    for r in results:
        parts = []
        for t in r.trials:
            mark = "✓" if t.sustained else f"✗ {'; '.join(t.reasons)}"
            flags = (" L" if t.load_saturated else "") + (" D" if t.disturbed else "")
            parts.append(f"{t.spec.rate / 1000:g}k {mark}{flags}")
        lines.append(f"- {r.case.label}: " + ", ".join(parts))
    return "\n".join(lines)


def render_findings(results: list[CaseResult]) -> str:
    lines = ["Logs (warnings, errors, drops) of the SUT and of the upstreams:", ""]
    for r in results:
        status = f"exit status {r.returncode}"
        if not r.findings and not r.upstream_findings:
            lines.append(f"- {r.case.label}: nothing ({status})")
            continue
        counts = Counter(_normalise(line) for line in r.findings)
        lines.append(f"- {r.case.label}: {len(r.findings)} lines ({status}):")
        lines += [f"    - {n}x `{line}`" for line, n in counts.most_common(4)]
        if r.upstream_findings:
            lines.append(
                f"    - upstreams: {len(r.upstream_findings)} lines, first `{r.upstream_findings[0]}`"
            )
    return "\n".join(lines)


def _normalise(line: str) -> str:
    """A log line without its time stamp, so repeated lines count as one."""
    return re.sub(r"^\S*\d+:\s*|^\d{4}-\d\d-\d\d[ T][\d:,.]+\s*", "", line.strip())


def environment(results: list[CaseResult], background: dict[int, float], revision: str) -> list[str]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    gateway = next((r for r in results if r.case.sut == "gateway"), None)
    mosquitto = next((r for r in results if r.case.sut != "gateway"), None)
    loop = "n/a" if gateway is None else ("uvloop" if gateway.uvloop else "asyncio")
    busy = ", ".join(f"core {core} {value:.0f}%" for core, value in background.items())
    return [
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, Linux {platform.release()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}; uvloop "
        f"{version('uvloop')} (gateway's event loop: {loop}); gmqtt {version('gmqtt')}",
        f"- Mosquitto {mosquitto.version if mosquitto else 'not run'}; mqttproxy "
        f"{gateway.version if gateway else version('mqttproxy')} at {revision} (when the run started)",
        f"- Background load just before the run (1 s, nothing of ours running): {busy}; "
        f"load average {Path('/proc/loadavg').read_text().split()[0]}",
        f"- Other processes during the measured windows (CPU time from /proc, kernel threads aside): at "
        f"most {_foreign_load(results):.0f}% of a core in a recorded trial",
    ]


def _foreign_load(results: list[CaseResult]) -> float:
    return max([0.0, *(t.foreign for r in results for t in r.trials)])


def render_report(
    results: list[CaseResult],
    args: argparse.Namespace,
    command: str,
    background: dict[int, float],
    revision: str,
) -> str:
    parts = [
        *environment(results, background, revision),
        f"- Placement: SUT pinned to core {args.sut_cpu}; upstream Mosquittos, their subscribers, the device "
        f"publishers and the script share core {args.load_cpu}",
        f"- Gateway upstream records: `max_qos 1`, `queue_max_messages {args.gateway_queue:,}`, "
        f"`max_inflight {args.gateway_inflight}`, route `#` out; MQTT only (`[web] enabled = false`)",
        "- Mosquitto bridge: `topic # out <qos>`, `bridge_protocol_version mqttv311`, `cleansession true`, "
        "`try_private false`, `set_tcp_nodelay true`, `persistence false`; `mosquitto`: default queue limits "
        f"(`max_inflight_messages {MOSQUITTO_DEFAULT_INFLIGHT}`, "
        f"`max_queued_messages {MOSQUITTO_DEFAULT_QUEUED}`)"
        f"; `mosquitto-tuned`: `max_inflight_messages {args.gateway_inflight}`, `max_queued_messages 0`",
        f"- Upstreams: one Mosquitto each (`max_inflight_messages {UPSTREAM_INFLIGHT}`, "
        "`max_queued_messages 0`), "
        "one subscriber each at the case's QoS",
        f"- Load: {args.publishers} device publishers, {args.payload_size}-byte payloads, paced. "
        "Search trials "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured; sustained = devices got ≥ "
        f"{ACCEPT_SHARE:.0%} of the offered rate accepted, no loss at any upstream, each upstream received "
        f"≥ {DELIVER_SHARE:.0%} of it over the window and the last message ≤ {args.max_lag:g} s after the "
        f"devices stopped. Search: {args.latency_rate:,.0f}, {args.floor_rate:,.0f}, doubling up to "
        f"{args.max_rate:,.0f}, then bisecting to within {args.precision:.0%}. Latency run "
        f"{args.latency_warmup:g} s + {args.latency_duration:g} s at {args.latency_rate:,.0f} msg/s in; "
        "QoS 1 "
        f"window {args.window} per device publisher",
        f"- Command (from the repository root): `{command}`",
        "",
        render_cases(results, args),
        "",
        render_ratios(results),
        "",
        render_targets(results, args),
        "",
        render_trials(results),
        "",
        render_findings(results),
    ]
    if any(r.profile for r in results):
        parts += ["", *(_profile_line(r) for r in results if r.profile)]
    return "\n".join(parts)


def _profile_line(result: CaseResult) -> str:
    assert result.profile is not None
    return f"py-spy was attached to {result.case.label} in an extra trial: {describe(result.profile)}"


# --- py-spy raw output --------------------------------------------------------------------------------


def summarize_profile(path: Path, top: int = 15) -> str:
    """Self and total share of samples per function from a ``py-spy record -f raw`` file."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame_name(frame) for frame in stack.split(";")]
        weight = int(count)
        samples += weight
        own[frames[-1]] += weight
        for name in set(frames):
            total[name] += weight
    rows = [f"{samples:,} samples", "| self % | total % | function |", "| ---: | ---: | --- |"]
    for name, hits in own.most_common(top):
        rows.append(f"| {100 * hits / samples:.1f} | {100 * total[name] / samples:.1f} | `{name}` |")
    rows += ["", "By total:", "| total % | function |", "| ---: | --- |"]
    rows += [f"| {100 * c / samples:.1f} | `{n}` |" for n, c in total.most_common(top + 10)]
    return "\n".join(rows)


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: lines of one function count together."""
    match = re.match(r"(.*) \((.*?):\d+\)$", frame.strip())
    if not match:
        return frame.strip()
    name, file = match.groups()
    parts = Path(file).parts
    short = "/".join(parts[parts.index("mqttproxy") :]) if "mqttproxy" in parts else Path(file).name
    return f"{name} ({short})"


# --- command line ----------------------------------------------------------------------------------------


def _csv(kind: Callable[[str], object], choices: Sequence[object]) -> Callable[[str], list[object]]:
    def parse(text: str) -> list[object]:
        try:
            items = [kind(item.strip()) for item in text.split(",") if item.strip()]
        except ValueError:
            items = []
        if not items or any(item not in choices for item in items):
            raise argparse.ArgumentTypeError(f"comma-separated, of {', '.join(map(str, choices))}")
        return items

    return parse


def _case(text: str) -> Case:
    sut, fanout, qos = text.split(":")
    if sut not in SUTS or qos not in ("0", "1"):
        raise argparse.ArgumentTypeError("SUT:FANOUT:QOS, e.g. gateway:3:1")
    return Case(sut, int(fanout), int(qos))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    d = " (default %(default)s)"
    add("--suts", type=_csv(str, SUTS), default="gateway,mosquitto", help=f"of {SUTS}" + d)
    add("--fanouts", type=_csv(int, range(1, 17)), default="1,3,5", help="upstreams per case" + d)
    add("--qos", type=_csv(int, (0, 1)), default="0,1", help="QoS levels" + d)
    add(
        "--subscriber-qos",
        choices=("0", "case"),
        default="0",
        help="QoS of the upstream subscribers: 0, or the case's (QoS 1 also upstream -> subscriber)" + d,
    )
    add("--publishers", type=int, default=4, help="device publisher processes" + d)
    add("--payload-size", type=int, default=100, help="bytes per payload" + d)
    add("--window", type=int, default=100, help="QoS 1 PUBLISHes in flight per device publisher" + d)
    add("--warmup", type=float, default=0.5, help="search trials: warm-up seconds" + d)
    add("--duration", type=float, default=2.0, help="search trials: measured seconds" + d)
    add("--latency-rate", type=float, default=5000, help="latency run: msg/s in" + d)
    add("--latency-warmup", type=float, default=1.0, help="latency run: warm-up seconds" + d)
    add("--latency-duration", type=float, default=3.0, help="latency run: measured seconds" + d)
    add("--tick", type=float, default=0.001, help="search trials: s between load generator writes/reads" + d)
    add("--latency-only", action="store_true", help="skip the search for the maximum rate")
    add("--floor-rate", type=float, default=10000, help="msg/s in always tried (the issue's floor)" + d)
    add("--max-rate", type=float, default=160000, help="highest msg/s in tried" + d)
    add("--min-rate", type=float, default=600, help="lowest msg/s in tried when going down" + d)
    add("--precision", type=float, default=0.25, help="stop bisecting at failed/passed <= 1 + this" + d)
    add("--max-lag", type=float, default=0.5, help="s after the devices stop for the last message" + d)
    add("--drain-idle", type=float, default=1.0, help="s without data after which a subscriber is done" + d)
    add("--drain-max", type=float, default=20.0, help="max s a subscriber waits after the window" + d)
    add("--gateway-queue", type=int, default=100_000, help="queue_max_messages per upstream record" + d)
    add("--gateway-inflight", type=int, default=100, help="max_inflight (and tuned Mosquitto's)" + d)
    add("--max-foreign", type=float, default=10.0, help="%% of a core others may use in a window" + d)
    add("--retries", type=int, default=2, help="times a disturbed trial is run again" + d)
    add("--retry-pause", type=float, default=2.0, help="s to wait before running it again" + d)
    add("--sut-cpu", type=int, default=0, help="core the SUT is pinned to" + d)
    add("--load-cpu", type=int, default=1, help="core of everything else" + d)
    add("--idle-settle", type=float, default=0.5, help="s after the path is up before idle RSS" + d)
    add("--mqttproxy", default=str(Path(sys.executable).parent / "mqttproxy"), help="executable" + d)
    add("--mosquitto", default="/usr/sbin/mosquitto", help="executable" + d)
    add("--py-spy", type=Path, metavar="FILE", help="profile one gateway case with py-spy (raw) into FILE")
    add("--py-spy-case", type=_case, default="gateway:3:1", help="SUT:FANOUT:QOS to profile" + d)
    add("--py-spy-rate", type=float, default=10000, help="msg/s in while profiling" + d)
    add("--py-spy-seconds", type=float, default=10.0, help="seconds profiled" + d)
    add("--py-spy-native", action="store_true", help="include native frames in the profile")
    add("--keep-logs", type=Path, metavar="DIR", help="keep configs and logs in DIR")
    add("--write", action="store_true", help=f"add/update this benchmark's section of {RESULTS_PATH.name}")
    args = parser.parse_args(argv)
    if args.py_spy and args.py_spy_case not in cases(args):
        parser.error(f"--py-spy-case {args.py_spy_case.slug} is not among the cases run")
    if args.payload_size < STAMP_SIZE:
        parser.error(f"--payload-size must be at least {STAMP_SIZE} (room for the timestamp)")
    if not 1 <= args.window < PACKET_IDS // 2:
        parser.error(f"--window must be between 1 and {PACKET_IDS // 2 - 1}")
    return args


def cases(args: argparse.Namespace) -> list[Case]:
    """Grouped by fan-out and QoS, so each SUT's case runs right after the other's."""
    return [Case(sut, fanout, qos) for fanout in args.fanouts for qos in args.qos for sut in args.suts]


def _on_signal(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _workdir(args: argparse.Namespace) -> Iterator[Path]:
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        yield args.keep_logs
        return
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as path:
        yield Path(path)


def run(args: argparse.Namespace) -> list[CaseResult]:
    available = os.sched_getaffinity(0)
    if {args.sut_cpu, args.load_cpu} - available or args.sut_cpu == args.load_cpu:
        raise BenchError(f"--sut-cpu and --load-cpu must be two different cores of {sorted(available)}")
    os.sched_setaffinity(0, {args.load_cpu})
    Mqttproxy.executable = args.mqttproxy
    Mosquitto.executable = args.mosquitto
    for path in (args.mqttproxy, args.mosquitto):
        if not os.access(path, os.X_OK):
            raise BenchError(f"{path} is not an executable (see --mqttproxy, --mosquitto)")
    with _workdir(args) as workdir:
        return [benchmark_case(case, args, workdir) for case in cases(args)]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    command = shlex.join([".venv/bin/python", "bench/fanout_throughput.py", *sys.argv[1:]])
    started = time.monotonic()
    try:
        revision = source_revision()
        background = background_busy()
        results = run(args)
    except KeyboardInterrupt:
        log("interrupted: every process started here was stopped")
        return 130
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    log(f"finished in {time.monotonic() - started:.0f} s")
    section = render_report(results, args, command, background, revision)
    print(section)
    if args.py_spy and args.py_spy.exists():
        print(f"\nProfile of {args.py_spy_case.label} ({args.py_spy}):\n\n{summarize_profile(args.py_spy)}")
    if args.write:
        write_section("fanout_throughput", "# Fan-out benchmark: gateway vs Mosquitto as a bridge", section)
        log(f"updated {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
