"""Device shadow benchmark: updates/s and /update -> /update/accepted latency of the gateway.

The path measured: ``--clients`` (100) MQTT clients, each owning
``--things`` / ``--clients`` things (10 of 1,000), publish reported-state
changes to ``$aws/things/{thing}/shadow/update`` and wait for
``.../update/accepted``. Every update changes the reported state (a sequence
number and a temperature), so every one is merged, stored in SQLite and
answered with ``/update/accepted`` and ``/update/documents`` (desired stays
empty: no delta). Each client subscribes to ``update/accepted`` and
``update/rejected`` of its own things, at ``--qos`` (1, like the AWS IoT
device SDKs; requests are published at it too). Clients take their things
in turn.

The gateway is ``mqttproxy run --config ... --mqtt-port 0 --web-port 0``
(anonymous allowed, ``[web] enabled = false``), started once for all runs,
with its data directory (the shadows' SQLite file) in a temporary directory.

Runs, in order (each ``--warmup`` + ``--duration`` s; the first run's warm-up
creates the 1,000 shadows):

1. Paced, at each rate of ``--rates`` (updates/s in total; 1,000 to 4,000
   in steps of 1,000): client c sends its n-th update at t0 + c / rate + n / (rate /
   clients), with at most ``--window`` (10, the contract's limit per
   connection) unanswered; a client at its window waits, and so falls behind.
   A rate is *sustained* when, over the measured window, updates were
   accepted at >= 98% of the offered rate, nothing was rejected and nothing
   was left unanswered ``--drain`` s after the clients stopped.
2. Closed loop (unless ``--no-closed-loop``): every client keeps
   ``--closed-window`` (1) update unanswered at all times: it sends the next
   as soon as the previous is accepted. The accepted rate is the gateway's
   throughput with 100 devices waiting on it.

Latency: each update's ``clientToken`` is ``time.monotonic_ns()`` taken just
before the send; the client subtracts it from its own ``monotonic_ns()`` when
the ``/update/accepted`` carrying it arrives (CLOCK_MONOTONIC is one clock
system-wide). p50/p99/max over the updates sent inside the measured window.

CPU over each window from /proc/PID/stat: the gateway process, the load
side (load processes and this script), every other process on the machine,
and each core. A run in which other processes used more than
``--max-foreign`` % of a core is done again (``--retries``).
Placement: the gateway is pinned to ``--gateway-cpu`` (0); the load processes
(``--processes``, 4, each driving clients/processes clients over blocking
sockets and one selector) and this script to ``--load-cpu`` (1).

Targets (from the issue): >= 2,000 updates/s sustained on one core, and p99 <
20 ms (at 2,000 updates/s). The throughput target is met when the paced run at
2,000 is sustained or the closed loop reaches 2,000; the latency target is the
p99 of the paced run at 2,000.

Every process started here is stopped on the way out, also on errors and Ctrl-C.

Run from the repository root::

    .venv/bin/python bench/shadow_throughput.py                  # table on stdout (~1.5 min)
    .venv/bin/python bench/shadow_throughput.py --write          # and add/update bench/RESULTS.md
    .venv/bin/python bench/shadow_throughput.py --rates 2000 --no-closed-loop \\
        --py-spy /tmp/shadow.raw                                  # profile the paced run at 2,000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import math
import multiprocessing
import os
import platform
import re
import selectors
import shlex
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NoReturn

from common import (
    RECV_SIZE,
    RESULTS_PATH,
    BenchError,
    Child,
    Marks,
    Mqttproxy,
    Profiler,
    Schedule,
    Usage,
    background_busy,
    cpu_model,
    log,
    mqtt_close,
    mqtt_connect,
    proc_status_kb,
    running,
    sleep_until,
    source_revision,
    usage_snapshot,
    window_rate,
    write_section,
)

from mqttproxy.protocol.codec import Decoder, encode_subscribe, publish_bytes
from mqttproxy.protocol.packets import Suback, Subscribe

TITLE = "# Device shadow benchmark: update throughput and latency"
TARGET_RATE = 2000.0  # updates/s on one core
TARGET_P99_MS = 20.0
ACCEPT_SHARE = 0.98  # of the offered rate, for a paced run to count as sustained
PACKET_IDS = 0xFFFF
TOKEN = re.compile(rb'"clientToken"\s*:\s*"(\d+)"')
CODE = re.compile(rb'"code"\s*:\s*(\d+)')
ACCEPTED = b"/accepted"
PF_KTHREAD = 0x00200000


def thing_name(index: int) -> str:
    return f"bench-{index:05}"


@dataclass(frozen=True)
class RunSpec:
    """One run: paced at ``rate`` updates/s in total, or a closed loop (``rate`` None)."""

    label: str
    rate: float | None
    window: int  # updates a client may have unanswered
    clients: int
    things: int
    processes: int
    qos: int
    warmup: float
    duration: float
    drain: float

    def clients_of(self, process: int) -> range:
        return range(process, self.clients, self.processes)

    def things_of(self, client: int) -> list[str]:
        each = self.things // self.clients
        return [thing_name(client * each + k) for k in range(each)]


@dataclass
class LoadResult:
    """What one load process saw."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    points: list[tuple[float, int]] = field(default_factory=list)  # accepted at the window's edges
    latencies_ns: list[int] = field(default_factory=list)
    unanswered: int = 0  # after the drain


# --- the load processes ----------------------------------------------------------------------


class Device:
    """One client: its socket, its things' update topics, its unanswered count."""

    def __init__(self, index: int, port: int, spec: RunSpec) -> None:
        self.index = index
        self.sock, decoder = mqtt_connect(port, f"shadow-bench-{index}-{os.getpid()}")
        things = spec.things_of(index)
        filters = [
            f"$aws/things/{t}/shadow/update/{kind}" for t in things for kind in ("accepted", "rejected")
        ]
        subscribe_all(self.sock, decoder, filters, spec.qos)
        if decoder.buffered:
            raise BenchError("unexpected data after SUBACK")
        self.topics = [f"$aws/things/{t}/shadow/update".encode() for t in things]
        self.qos = spec.qos
        self.sent = 0
        self.outstanding = 0
        self.rest = b""

    def updates(self, count: int) -> bytes:
        """``count`` update requests, each for the next thing and stamped now."""
        packets = []
        for _ in range(count):
            n = self.sent
            payload = (
                f'{{"state":{{"reported":{{"seq":{n},"temp":{20 + n % 17}}}}},'
                f'"clientToken":"{time.monotonic_ns()}"}}'
            ).encode()
            packet_id = n % PACKET_IDS + 1 if self.qos else None
            packets.append(
                publish_bytes(self.topics[n % len(self.topics)], payload, self.qos, False, False, packet_id)
            )
            self.sent += 1
        self.outstanding += count
        return b"".join(packets)


def subscribe_all(sock: socket.socket, decoder: Decoder, filters: list[str], qos: int) -> None:
    sock.sendall(encode_subscribe(Subscribe(packet_id=1, subscriptions=tuple((f, qos) for f in filters))))
    while (packet := decoder.next_packet()) is None:
        data = sock.recv(4096)
        if not data:
            raise BenchError("the gateway closed the connection during SUBSCRIBE")
        decoder.receive_data(data)
    if not isinstance(packet, Suback) or packet.return_codes != (qos,) * len(filters):
        raise BenchError(f"SUBSCRIBE at QoS {qos} not granted: {packet}")


def _remaining_length(buf: bytes, index: int) -> tuple[int, int]:
    """(length, index after it) of the remaining length at ``buf[index]``; (-1, -1) if cut off."""
    length = shift = 0
    while index < len(buf):
        digit = buf[index]
        index += 1
        length |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return length, index
        shift += 7
    return -1, -1


def scan_responses(
    device: Device, data: bytes, now_ns: int, stamps: tuple[int, int], result: LoadResult
) -> bytes:
    """Handle the whole packets in ``data``: answers counted and timed; the PUBACKs to send back."""
    buf = device.rest + data if device.rest else data
    pos, size = 0, len(buf)
    acks: list[bytes] = []
    while pos + 2 <= size:
        length, index = _remaining_length(buf, pos + 1)
        if index < 0 or index + length > size:
            break
        end = index + length
        first = buf[pos]
        if first & 0xF0 == 0x30:
            topic_end = index + 2 + ((buf[index] << 8) | buf[index + 1])
            body = topic_end
            if first & 0x06:
                acks.append(b"\x40\x02" + buf[body : body + 2])
                body += 2
            payload = buf[body:end]
            device.outstanding -= 1
            match = TOKEN.search(payload)
            if buf[topic_end - len(ACCEPTED) : topic_end] == ACCEPTED:
                result.accepted += 1
                if match is not None:
                    sent_ns = int(match.group(1))
                    if stamps[0] <= sent_ns < stamps[1]:
                        result.latencies_ns.append(now_ns - sent_ns)
            else:
                result.rejected += 1
                code = CODE.search(payload)
                result.codes[int(code.group(1)) if code else 0] += 1
        pos = end  # PUBACKs of our own requests need nothing
    device.rest = buf[pos:]
    return b"".join(acks)


def run_load(process: int, port: int, spec: RunSpec, conn: Connection) -> LoadResult:
    devices = [Device(index, port, spec) for index in spec.clients_of(process)]
    selector = selectors.DefaultSelector()
    for device in devices:
        selector.register(device.sock, selectors.EVENT_READ, device)
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    try:
        return _load_loop(devices, selector, spec, schedule)
    finally:
        for device in devices:
            mqtt_close(device.sock, linger=0.5)


def _load_loop(
    devices: list[Device], selector: selectors.BaseSelector, spec: RunSpec, schedule: Schedule
) -> LoadResult:
    result = LoadResult()
    marks = Marks.window(schedule)
    stamps = (int(schedule.warm_end * 1e9), int(schedule.measure_end * 1e9))
    rate_each = spec.rate / spec.clients if spec.rate else 0.0
    starts = {d.index: schedule.start + d.index / spec.rate for d in devices} if spec.rate else {}
    sleep_until(schedule.start)
    stop_at = schedule.measure_end + spec.drain
    while True:
        now = time.monotonic()
        marks.observe(now, result.accepted)
        sending = now < schedule.measure_end
        if not sending and (now >= stop_at or all(d.outstanding == 0 for d in devices)):
            break
        wake = now + 0.05
        if sending:
            for device in devices:
                room = spec.window - device.outstanding
                if spec.rate:
                    t0 = starts[device.index]
                    due = int((now - t0) * rate_each) + 1 - device.sent if now >= t0 else 0
                    if room > due:  # else it waits for an answer, not for the clock
                        wake = min(wake, t0 + (device.sent + max(due, 0)) / rate_each)
                else:
                    due = room
                count = min(due, room)
                if count > 0:
                    device.sock.sendall(device.updates(count))
                    result.sent += count
        timeout = max(0.0, min(wake, schedule.measure_end if sending else stop_at) - time.monotonic())
        for key, _ in selector.select(timeout):
            device = key.data
            data = device.sock.recv(RECV_SIZE)
            if not data:
                raise BenchError(f"the gateway closed client {device.index}'s connection")
            acks = scan_responses(device, data, time.monotonic_ns(), stamps, result)
            if acks:
                device.sock.sendall(acks)
    result.points = marks.points
    result.unanswered = sum(d.outstanding for d in devices)
    return result


def _child_main(process: int, port: int, spec: RunSpec, cpu: int, conn: Connection) -> None:
    """Entry point of a load process: report ("result", ...) or ("error", traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    os.sched_setaffinity(0, {cpu})
    try:
        conn.send(("result", run_load(process, port, spec, conn)))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def spawn(process: int, port: int, spec: RunSpec, cpu: int) -> Child:
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    worker = ctx.Process(
        target=_child_main, args=(process, port, spec, cpu, child_end), name=f"load {process}", daemon=True
    )
    worker.start()
    child_end.close()
    return Child(f"load {process}", worker, parent_end)


# --- one run ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    spec: RunSpec
    sent: int
    accepted: int
    rejected: int
    codes: Counter[int]
    unanswered: int
    rate: float  # accepted per second over the measured window
    latencies_ms: list[float]
    usage: Usage
    load_cpu: float  # % of a core: the load processes and this script
    foreign: float  # % of a core: every other process on the machine
    attempts: int = 1

    @property
    def offered(self) -> float | None:
        return self.spec.rate

    @property
    def sustained(self) -> bool:
        if self.rejected or self.unanswered:
            return False
        return self.spec.rate is None or self.rate >= ACCEPT_SHARE * self.spec.rate

    def percentile(self, fraction: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


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


def run_once(gateway: Mqttproxy, spec: RunSpec, load_cpu: int, profiler: Profiler | None) -> RunResult:
    children = [spawn(p, gateway.port, spec, load_cpu) for p in range(spec.processes)]
    try:
        for child in children:
            child.expect("ready", 60)
        start = time.monotonic() + 0.3
        schedule = Schedule(start, start + spec.warmup, start + spec.warmup + spec.duration)
        for child in children:
            child.conn.send(schedule)
        sleep_until(schedule.warm_end)
        if profiler is not None:
            profiler.start(gateway.pid, spec.duration)
        snapshot = usage_snapshot(gateway.pid)
        cpu_before = cpu_seconds_by_pid()
        sleep_until(schedule.measure_end)
        usage = Usage.between(gateway.pid, snapshot)
        cpu_after = cpu_seconds_by_pid()
        ours = {os.getpid(), *(child.process.pid for child in children)}
        if profiler is not None and profiler.process is not None:
            ours.add(profiler.process.pid)  # py-spy: ours, though not load
        used = {pid: seconds - cpu_before.get(pid, 0.0) for pid, seconds in cpu_after.items()}
        load = sum(seconds for pid, seconds in used.items() if pid in ours)
        foreign = sum(seconds for pid, seconds in used.items() if pid not in ours and pid != gateway.pid)
        results: list[LoadResult] = [child.expect("result", spec.drain + 30) for child in children]
        if profiler is not None:
            profiler.finish(30)
        gateway.check_alive()
    finally:
        for child in children:
            child.stop()
    codes: Counter[int] = Counter()
    for result in results:
        codes.update(result.codes)
    return RunResult(
        spec=spec,
        sent=sum(r.sent for r in results),
        accepted=sum(r.accepted for r in results),
        rejected=sum(r.rejected for r in results),
        codes=codes,
        unanswered=sum(r.unanswered for r in results),
        rate=sum(window_rate(r.points) for r in results),
        latencies_ms=[ns / 1e6 for r in results for ns in r.latencies_ns],
        usage=usage,
        load_cpu=100 * load / spec.duration,
        foreign=100 * foreign / spec.duration,
    )


def describe(result: RunResult) -> str:
    return (
        f"{result.spec.label}: {result.rate:,.0f} accepted/s, p50 {result.percentile(0.5):.2f} ms, "
        f"p99 {result.percentile(0.99):.2f} ms, rejected {result.rejected}, unanswered {result.unanswered}, "
        f"gateway CPU {result.usage.broker_cpu:.0f}%, load {result.load_cpu:.0f}%, "
        f"others {result.foreign:.0f}%"
    )


# --- the report ---------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _cell_ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"  # NaN: no samples


def render_runs(results: list[RunResult], args: argparse.Namespace) -> str:
    rows = [
        "| run | offered (updates/s) | accepted (updates/s) | p50 (ms) | p99 (ms) | max (ms) | rejected "
        "| unanswered | sustained | gateway CPU % (kernel) | load CPU % | others CPU % | core "
        f"{args.gateway_cpu} / core {args.load_cpu} busy % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        offered = f"{r.offered:,.0f}" if r.offered else f"closed loop, {r.spec.window} per client"
        rejected = str(r.rejected) + (
            " (" + ", ".join(f"{code}: {n}" for code, n in sorted(r.codes.items())) + ")" if r.codes else ""
        )
        busy = r.usage.core_busy
        label = r.spec.label + (f" (attempt {r.attempts})" if r.attempts > 1 else "")
        rows.append(
            f"| {label} | {offered} | {r.rate:,.0f} | {_cell_ms(r.percentile(0.5))} | "
            f"{_cell_ms(r.percentile(0.99))} | {_cell_ms(max(r.latencies_ms, default=float('nan')))} | "
            f"{rejected} | {r.unanswered} | {'yes' if r.sustained else 'no'} | "
            f"{r.usage.broker_cpu:.0f} ({r.usage.broker_sys:.0f}) | {r.load_cpu:.0f} | {r.foreign:.0f} | "
            f"{busy.get(args.gateway_cpu, 0):.0f} / {busy.get(args.load_cpu, 0):.0f} |"
        )
    return "\n".join(rows)


def _at_target(results: list[RunResult]) -> RunResult | None:
    return next((r for r in results if r.spec.rate == TARGET_RATE), None)


def render_targets(results: list[RunResult]) -> str:
    rows = ["| target | measured | result |", "| --- | --- | --- |"]
    paced = _at_target(results)
    closed = next((r for r in results if r.spec.rate is None), None)
    measured = []
    ok = False
    if paced is not None:
        measured.append(
            f"paced {TARGET_RATE:,.0f}/s: {paced.rate:,.0f} accepted/s, sustained: {paced.sustained}"
        )
        ok = ok or paced.sustained
    if closed is not None:
        measured.append(f"closed loop: {closed.rate:,.0f} accepted/s")
        ok = ok or (closed.sustained and closed.rate >= TARGET_RATE)
    rows.append(
        f"| >= {TARGET_RATE:,.0f} updates/s sustained on one core | {'; '.join(measured)} | {_verdict(ok)} |"
    )
    if paced is None:
        rows.append(f"| p99 < {TARGET_P99_MS:g} ms at {TARGET_RATE:,.0f} updates/s | not run | FAIL |")
    else:
        p99 = paced.percentile(0.99)
        rows.append(
            f"| p99 < {TARGET_P99_MS:g} ms at {TARGET_RATE:,.0f} updates/s | {_cell_ms(p99)} ms "
            f"| {_verdict(p99 < TARGET_P99_MS and paced.sustained)} |"
        )
    return "\n".join(rows)


def render_report(
    results: list[RunResult],
    args: argparse.Namespace,
    gateway: GatewayFacts,
    command: str,
    background: dict[int, float],
    revision: str,
) -> str:
    busy = ", ".join(f"core {core} {value:.0f}%" for core, value in background.items())
    try:
        uvloop = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop = "not installed"
    findings = gateway.findings
    log_lines = "nothing" if not findings else f"{len(findings)} lines, e.g. `{findings[0].strip()[:160]}`"
    parts = [
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, Linux {platform.release()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}; uvloop {uvloop} "
        f"(gateway's event loop: {gateway.loop})",
        f"- mqttproxy {gateway.version} at {revision} (when the run started)",
        f"- Background load just before the run (1 s, nothing of ours running): {busy}; "
        f"load average {Path('/proc/loadavg').read_text().split()[0]}",
        f"- Placement: gateway pinned to core {args.gateway_cpu}; {args.processes} load processes and the "
        f"script on core {args.load_cpu}",
        "- Gateway: `mqttproxy run --config bench.toml --mqtt-port 0 --web-port 0 --data-dir data` "
        "(anonymous allowed, `[web] enabled = false`, shadow limits at their defaults); one gateway for "
        "every run",
        f"- Load: {args.clients} MQTT clients, {args.things:,} things ({args.things // args.clients} per "
        f"client, taken in turn), requests and subscriptions (`update/accepted`, `update/rejected` of the "
        f"client's things) at QoS {args.qos}; each update changes the reported state (about 80-byte "
        f"payload). Runs {args.warmup:g} s warm-up + {args.duration:g} s measured; paced runs at most "
        f"{args.window} unanswered per client; sustained = accepted >= {ACCEPT_SHARE:.0%} of the offered "
        f"rate, nothing rejected, nothing unanswered {args.drain:g} s after the clients stopped",
        f"- Other processes during the measured windows (CPU time from /proc, kernel threads aside): at "
        f"most {max([0.0, *(r.foreign for r in results)]):.0f}% of a core in a recorded run; a run in which "
        f"they used more than {args.max_foreign:g}% is done again (up to {args.retries} times)",
        f"- Gateway RSS: {gateway.rss_idle_kb / 1024:.1f} MB idle after start, "
        f"{gateway.hwm_kb / 1024:.1f} MB peak (VmHWM) after the last run",
        f"- Gateway log (warnings, errors): {log_lines}; exit status {gateway.returncode}",
        f"- Command (from the repository root): `{command}`",
        "",
        render_runs(results, args),
        "",
        render_targets(results),
    ]
    if args.py_spy:
        parts += ["", f"py-spy was attached to the run `{args.py_spy_run}` for its measured window."]
    return "\n".join(parts)


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
        samples += int(count)
        own[frames[-1]] += int(count)
        for name in set(frames):
            total[name] += int(count)
    rows = [f"{samples:,} samples", "| self % | total % | function |", "| ---: | ---: | --- |"]
    rows += [
        f"| {100 * n / samples:.1f} | {100 * total[f] / samples:.1f} | `{f}` |"
        for f, n in own.most_common(top)
    ]
    rows += ["", "By total:", "| total % | function |", "| ---: | --- |"]
    rows += [f"| {100 * n / samples:.1f} | `{f}` |" for f, n in total.most_common(top + 10)]
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


# --- command line -------------------------------------------------------------------------------


@dataclass
class GatewayFacts:
    version: str = ""
    loop: str = "unknown"
    rss_idle_kb: int = 0
    hwm_kb: int = 0
    findings: list[str] = field(default_factory=list)
    returncode: int | None = None


def _rates(text: str) -> list[float]:
    try:
        rates = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        rates = []
    if any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError("comma-separated updates/s, each > 0")
    return rates


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    d = " (default %(default)s)"
    add("--clients", type=int, default=100, help="MQTT clients" + d)
    add("--things", type=int, default=1000, help="things, shared out evenly among the clients" + d)
    add("--processes", type=int, default=4, help="load processes the clients are spread over" + d)
    add("--rates", type=_rates, default="1000,2000,3000,4000", help="paced runs: updates/s in total" + d)
    add("--window", type=int, default=10, help="paced runs: updates unanswered per client at most" + d)
    add("--no-closed-loop", action="store_true", help="skip the closed-loop run")
    add("--closed-window", type=int, default=1, help="closed loop: updates unanswered per client" + d)
    add("--qos", type=int, choices=(0, 1), default=1, help="QoS of requests and subscriptions" + d)
    add("--warmup", type=float, default=2.0, help="seconds before each measured window" + d)
    add("--duration", type=float, default=8.0, help="measured seconds per run" + d)
    add("--drain", type=float, default=5.0, help="s the clients wait for answers after a run" + d)
    add("--max-foreign", type=float, default=10.0, help="%% of a core others may use in a window" + d)
    add("--retries", type=int, default=2, help="times a disturbed run is done again" + d)
    add("--retry-pause", type=float, default=5.0, help="s to wait before doing it again" + d)
    add("--gateway-cpu", type=int, default=0, help="core the gateway is pinned to" + d)
    add("--load-cpu", type=int, default=1, help="core of the load processes and this script" + d)
    add("--mqttproxy", default=str(Path(sys.executable).parent / "mqttproxy"), help="executable" + d)
    add("--py-spy", type=Path, metavar="FILE", help="profile one run's window with py-spy (raw) into FILE")
    add("--py-spy-run", default="2000", help="the run to profile: a rate of --rates, or 'closed'" + d)
    add("--py-spy-native", action="store_true", help="include native frames in the profile")
    add("--keep-logs", type=Path, metavar="DIR", help="keep the gateway's config, data and log in DIR")
    add("--write", action="store_true", help=f"add/update this benchmark's section of {RESULTS_PATH.name}")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.things < args.clients or args.things % args.clients:
        parser.error("--things must be a positive multiple of --clients")
    if not 1 <= args.processes <= args.clients:
        parser.error("--processes must be between 1 and --clients")
    if not 1 <= args.window <= 100 or not 1 <= args.closed_window <= 100:
        parser.error("--window and --closed-window must be between 1 and 100")
    if args.py_spy and args.py_spy_run not in [_label_key(r) for r in args.rates] + ["closed"]:
        parser.error("--py-spy-run must be one of the --rates or 'closed'")
    return args


def _label_key(rate: float) -> str:
    return f"{rate:g}"


def specs(args: argparse.Namespace) -> list[RunSpec]:
    common = {
        "clients": args.clients,
        "things": args.things,
        "processes": args.processes,
        "qos": args.qos,
        "warmup": args.warmup,
        "duration": args.duration,
        "drain": args.drain,
    }
    runs = [RunSpec(f"paced {rate:,.0f}/s", rate, args.window, **common) for rate in args.rates]
    if not args.no_closed_loop:
        runs.append(RunSpec("closed loop", None, args.closed_window, **common))
    return runs


def _on_signal(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _workdir(args: argparse.Namespace) -> Iterator[Path]:
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        yield args.keep_logs
        return
    with tempfile.TemporaryDirectory(prefix="shadow-bench-") as path:
        yield Path(path)


def run(args: argparse.Namespace, facts: GatewayFacts) -> list[RunResult]:
    available = os.sched_getaffinity(0)
    if {args.gateway_cpu, args.load_cpu} - available or args.gateway_cpu == args.load_cpu:
        raise BenchError(f"--gateway-cpu and --load-cpu must be two different cores of {sorted(available)}")
    os.sched_setaffinity(0, {args.load_cpu})
    Mqttproxy.executable = args.mqttproxy
    results: list[RunResult] = []
    with _workdir(args) as workdir:
        gateway = Mqttproxy(workdir=workdir, cpu=args.gateway_cpu, inflight=100, queued=0)
        with running(gateway):
            time.sleep(0.5)  # settle before the idle reading
            facts.version = gateway.version()
            facts.loop = "uvloop" if gateway.uses_uvloop() else "asyncio"
            facts.rss_idle_kb = proc_status_kb(gateway.pid, "VmRSS")
            for spec in specs(args):
                key = "closed" if spec.rate is None else _label_key(spec.rate)
                profiler = None
                if args.py_spy and key == args.py_spy_run:
                    profiler = Profiler(args.py_spy, spec.label, native=args.py_spy_native)
                for attempt in range(1, args.retries + 2):
                    log(f"{spec.label}: {spec.warmup:g} s + {spec.duration:g} s ...")
                    result = run_once(gateway, spec, args.load_cpu, profiler)
                    result.attempts = attempt
                    log(describe(result))
                    if result.foreign <= args.max_foreign or attempt > args.retries:
                        break
                    log(f"  other processes used {result.foreign:.0f}% of a core: again")
                    time.sleep(args.retry_pause)
                results.append(result)
            facts.hwm_kb = proc_status_kb(gateway.pid, "VmHWM")
        facts.findings = gateway.log_findings()
        facts.returncode = gateway.returncode
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    command = shlex.join([".venv/bin/python", "bench/shadow_throughput.py", *sys.argv[1:]])
    started = time.monotonic()
    facts = GatewayFacts()
    try:
        revision = source_revision()
        background = background_busy()
        results = run(args, facts)
    except KeyboardInterrupt:
        log("interrupted: every process started here was stopped")
        return 130
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    log(f"finished in {time.monotonic() - started:.0f} s")
    section = render_report(results, args, facts, command, background, revision)
    print(section)
    if args.py_spy and args.py_spy.exists():
        print(f"\nProfile of the run {args.py_spy_run} ({args.py_spy}):\n\n{summarize_profile(args.py_spy)}")
    if args.write:
        write_section("shadow_throughput", TITLE, section)
        log(f"updated {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
