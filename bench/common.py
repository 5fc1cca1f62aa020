"""Helpers shared by the benchmarks in this directory (``broker_throughput.py``, ``fanout_throughput.py``,
``registry_throughput.py``).

Blocking-socket MQTT client plumbing for load generators (connect, subscribe,
scan received PUBLISHes, count PUBACKs), clocks shared between processes,
/proc readings (RSS, CPU time, per-core busy share), process pinning, the
broker processes under test (started pinned, always stopped), py-spy, and
facts about the machine for the results.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import os
import platform
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkProcess
from pathlib import Path
from typing import Any

from mqttproxy.protocol.codec import Decoder, encode_connect, encode_subscribe
from mqttproxy.protocol.packets import Connack, Connect, ConnectReturnCode, Packet, Suback, Subscribe

HOST = "127.0.0.1"
DISCONNECT = b"\xe0\x00"
PUBACK = 0x40
PUBACK_SIZE = 4
PACKET_IDS = 0xFFFF
RECV_SIZE = 1 << 18
STAMP_SIZE = 8
UNLIMITED_QUEUE = 1_000_000_000  # mqttproxy's stand-in for Mosquitto's max_queued_messages 0


class BenchError(Exception):
    """The benchmark could not run as asked (a broker or load generator failed)."""


@dataclass(frozen=True)
class Schedule:
    """Absolute CLOCK_MONOTONIC times shared by every process of a scenario."""

    start: float  # publishers begin
    warm_end: float  # the measurement window opens
    measure_end: float  # the window closes and publishers stop


class Marks:
    """Snapshots of a running count as a clock passes given times."""

    def __init__(self, times: Sequence[float]) -> None:
        self._times = list(times)
        self._next = 0
        self.points: list[tuple[float, int]] = []

    @classmethod
    def window(cls, schedule: Schedule, step: float | None = None) -> Marks:
        times = [schedule.warm_end]
        if step:
            t = schedule.warm_end + step
            while t < schedule.measure_end - step / 2:
                times.append(t)
                t += step
        times.append(schedule.measure_end)
        return cls(times)

    def observe(self, now: float, count: int) -> None:
        if self._next < len(self._times) and now >= self._times[self._next]:
            self.points.append((now, count))
            while self._next < len(self._times) and now >= self._times[self._next]:
                self._next += 1


def window_rate(points: Sequence[tuple[float, int]]) -> float:
    """Count per second between the first and the last snapshot."""
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return 0.0
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def step_rates(points: Sequence[tuple[float, int]]) -> list[float]:
    """Count per second between consecutive snapshots."""
    return [window_rate(pair) for pair in itertools.pairwise(points)]


# --- MQTT client plumbing (blocking sockets) ---------------------------------


def sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _read_packet(sock: socket.socket, decoder: Decoder) -> Packet:
    while True:
        packet = decoder.next_packet()
        if packet is not None:
            return packet
        data = sock.recv(4096)
        if not data:
            raise BenchError("the broker closed the connection during the handshake")
        decoder.receive_data(data)


def mqtt_connect(
    port: int, client_id: str, *, username: str | None = None, password: str | None = None
) -> tuple[socket.socket, Decoder]:
    """A connected, CONNACKed blocking socket (clean session, no keep-alive), with credentials if given."""
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    secret = password.encode() if password is not None else None
    connect = Connect(
        client_id=client_id, clean_session=True, keep_alive=0, username=username, password=secret
    )
    sock.sendall(encode_connect(connect))
    decoder = Decoder()
    packet = _read_packet(sock, decoder)
    if not isinstance(packet, Connack) or packet.return_code != ConnectReturnCode.ACCEPTED:
        raise BenchError(f"{client_id}: CONNECT refused: {packet}")
    sock.settimeout(None)
    return sock, decoder


def mqtt_subscribe(sock: socket.socket, decoder: Decoder, topic_filter: str, qos: int) -> None:
    sock.sendall(encode_subscribe(Subscribe(packet_id=1, subscriptions=((topic_filter, qos),))))
    packet = _read_packet(sock, decoder)
    if not isinstance(packet, Suback) or packet.return_codes != (qos,):
        raise BenchError(f"SUBSCRIBE {topic_filter} at QoS {qos} not granted: {packet}")


def mqtt_close(sock: socket.socket, linger: float = 2.0) -> None:
    """DISCONNECT, then wait (a little) for the broker to close, so nothing is reset."""
    with contextlib.suppress(OSError):
        sock.sendall(DISCONNECT)
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + linger
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], left)
            if readable and not sock.recv(RECV_SIZE):
                break
    sock.close()


def recv_ready(sock: socket.socket, timeout: float) -> bytes | None:
    """Bytes already received, else wait up to ``timeout`` s; None if none came."""
    try:
        return sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
    except BlockingIOError:
        pass
    readable, _, _ = select.select([sock], [], [], timeout)
    return sock.recv(RECV_SIZE) if readable else None


def _long_length(buf: bytes, index: int) -> tuple[int, int]:
    """A multi-byte remaining length at ``buf[index]``: (length, end), or (-1, -1) if cut off."""
    length = shift = 0
    while index < len(buf):
        digit = buf[index]
        index += 1
        length |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return length, index
        shift += 7
        if shift > 21:
            raise BenchError("malformed remaining length from the broker")
    return -1, -1


def scan_publishes(buf: bytes, ack: bool, stamps: list[int] | None, now_ns: int) -> tuple[int, int, bytes]:
    """Walk the whole packets in ``buf``: (bytes used, PUBLISHes seen, PUBACKs to send).

    With ``stamps``, append ``now_ns`` minus the timestamp leading each payload.
    """
    size = len(buf)
    pos = count = 0
    acks: list[bytes] = []
    look_inside = ack or stamps is not None
    while pos + 2 <= size:
        length = buf[pos + 1]
        index = pos + 2
        if length & 0x80:
            length, index = _long_length(buf, pos + 1)
            if index < 0:
                break
        end = index + length
        if end > size:
            break
        first = buf[pos]
        if first & 0xF0 == 0x30:
            count += 1
            if look_inside:
                body = index + 2 + ((buf[index] << 8) | buf[index + 1])
                if first & 0x06:
                    if ack:
                        acks.append(b"\x40\x02" + buf[body : body + 2])
                    body += 2
                if stamps is not None:
                    stamps.append(now_ns - int.from_bytes(buf[body : body + STAMP_SIZE], "big"))
        pos = end
    return pos, count, b"".join(acks)


class AckCounter:
    """Counts PUBACKs in a byte stream that arrives in arbitrary pieces."""

    def __init__(self) -> None:
        self.acked = 0
        self._partial = 0

    def feed(self, data: bytes) -> int:
        if not data:
            raise BenchError("the broker closed a publisher's connection")
        if not self._partial and data[0] != PUBACK:
            raise BenchError(f"publisher expected PUBACK, got packet type {data[0] >> 4}")
        total = self._partial + len(data)
        self._partial = total % PUBACK_SIZE
        count = total // PUBACK_SIZE
        self.acked += count
        return count

    def wait_all(self, sock: socket.socket, sent: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < sent and time.monotonic() < deadline:
            data = recv_ready(sock, 0.05)
            if data is not None:
                self.feed(data)


@dataclass
class Child:
    name: str
    process: ForkProcess
    conn: Connection

    def expect(self, kind: str, timeout: float) -> Any:
        """The next message, which must be ``kind``; a child's error becomes BenchError."""
        if not self.conn.poll(timeout):
            raise BenchError(f"{self.name}: no {kind!r} within {timeout:.0f}s")
        try:
            got, value = self.conn.recv()
        except EOFError as exc:
            raise BenchError(f"{self.name} died (exit code {self.process.exitcode})") from exc
        if got == "error":
            raise BenchError(f"{self.name} failed:\n{value}")
        if got != kind:
            raise BenchError(f"{self.name}: expected {kind!r}, got {got!r}")
        return value

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self.conn.close()


# --- /proc readings --------------------------------------------------------------


def proc_status_kb(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/PID/status, e.g. VmRSS or VmHWM."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/{pid}/status")


def process_cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def core_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) jiffies from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(v) for v in values[:8]]  # guest time is already part of user
            idle = ticks[3] + ticks[4]
            times[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return times


def pin_process(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (threads created later inherit the mask); gone is fine."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), cpus)


@dataclass
class Usage:
    broker_cpu: float  # % of one core used by the broker process
    broker_sys: float  # the part of it spent in the kernel
    core_busy: dict[int, float]  # % busy per core

    @classmethod
    def between(cls, pid: int, start: UsageSnapshot) -> Usage:
        then, (user0, sys0), cores_then = start
        elapsed = time.monotonic() - then
        user, system = process_cpu_seconds(pid)
        busy = {}
        for core, (used, total) in core_times().items():
            used0, total0 = cores_then[core]
            busy[core] = 100 * (used - used0) / max(1, total - total0)
        return cls((user - user0 + system - sys0) / elapsed * 100, (system - sys0) / elapsed * 100, busy)


UsageSnapshot = tuple[float, tuple[float, float], dict[int, tuple[int, int]]]


def usage_snapshot(pid: int) -> UsageSnapshot:
    return time.monotonic(), process_cpu_seconds(pid), core_times()


# --- the brokers -------------------------------------------------------------------


class BrokerProcess:
    """A broker under test: started pinned to one core, and always stopped."""

    name = "broker"

    def __init__(self, *, workdir: Path, cpu: int, inflight: int, queued: int) -> None:
        self.workdir = workdir / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "broker.log"
        self.cpu = cpu
        self.inflight = inflight
        self.queued = queued
        self.port = 0
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self, deadline: float) -> int:
        """The port once the broker accepts connections."""
        raise NotImplementedError

    def start(self) -> None:
        command = self.command()
        if not os.access(command[0], os.X_OK):
            raise BenchError(
                f"{self.name}: {command[0]} is not an executable (see --{self.name.split('-')[0]})"
            )
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # Ctrl-C reaches us, and we stop the broker
            )
        pin_process(self._proc.pid, {self.cpu})
        self.port = self._wait_ready(time.monotonic() + 15)
        pin_process(self._proc.pid, {self.cpu})

    def check_alive(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise BenchError(f"{self.name} exited with {self._proc.returncode}:\n{self.log_tail()}")

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.returncode = proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_findings(self) -> list[str]:
        """Log lines worth a look: warnings, errors, dropped messages."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def uses_uvloop(self) -> bool | None:
        return None


class Mqttproxy(BrokerProcess):
    name = "mqttproxy"
    executable = ""
    web = False

    def command(self) -> list[str]:
        config = self.workdir / "bench.toml"
        config.write_text(
            "[auth]\nallow_anonymous = true\n"
            f'[mqtt]\nhost = "{HOST}"\n'
            f"max_inflight_messages = {self.inflight}\n"
            f"max_queued_messages = {self.queued or UNLIMITED_QUEUE}\n"
            # Like Mosquitto, MQTT only; mqttproxy-web measures the whole gateway.
            f"[web]\nenabled = {'true' if self.web else 'false'}\n"
        )
        return [
            *(self.executable, "run", "--config", str(config)),
            *("--mqtt-port", "0", "--web-port", "0", "--data-dir", "data"),
        ]

    def _wait_ready(self, deadline: float) -> int:
        pattern = re.compile(r"listening mqtt tcp [\d.]+:(\d+)")
        while time.monotonic() < deadline:
            self.check_alive()
            if match := pattern.search(self.log_text()):
                return int(match.group(1))
            time.sleep(0.05)
        raise BenchError(f"mqttproxy did not log 'listening mqtt tcp' in time:\n{self.log_tail()}")

    def log_findings(self) -> list[str]:
        return [
            line
            for line in self.log_text().splitlines()
            if re.search(r"WARNING|ERROR|CRITICAL|Traceback", line)
        ]

    def version(self) -> str:
        return importlib.metadata.version("mqttproxy")

    def uses_uvloop(self) -> bool | None:
        """Whether the running broker has uvloop's extension loaded."""
        with contextlib.suppress(OSError):
            return "uvloop" in Path(f"/proc/{self.pid}/maps").read_text()
        return None


class Mosquitto(BrokerProcess):
    name = "mosquitto"
    executable = ""

    def command(self) -> list[str]:
        self.port = free_port()
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} {HOST}\n"
            "allow_anonymous true\n"
            f"max_inflight_messages {self.inflight}\n"
            f"max_queued_messages {self.queued}\n"
            "set_tcp_nodelay true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        return [self.executable, "-c", str(config)]

    def _wait_ready(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=1):
                return self.port
            time.sleep(0.05)
        raise BenchError(f"mosquitto did not accept connections in time:\n{self.log_tail()}")

    def log_findings(self) -> list[str]:
        return [
            line
            for line in self.log_text().splitlines()
            if re.search(r"(?i)error|warning|dropp|out of memory", line)
        ]

    def version(self) -> str:
        out = subprocess.run([self.executable, "-h"], capture_output=True, text=True, check=False).stdout
        match = re.search(r"mosquitto version (\S+)", out)
        return match.group(1) if match else "unknown"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(broker: BrokerProcess) -> Iterator[BrokerProcess]:
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@dataclass
class Profiler:
    """py-spy attached to the broker during one scenario's window."""

    output: Path
    scenario: str
    native: bool = False
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()  # more py-spy options, e.g. ("--gil",)

    def start(self, pid: int, seconds: float) -> None:
        """Sample 200 times a second; py-spy pauses the broker for each sample (accurate stacks)."""
        executable = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        command = [executable, "record", "-o", str(self.output), "-f", "raw", "--pid", str(pid)]
        command += ["--duration", str(max(1, int(seconds))), "--rate", "200"]
        if self.native:
            command.append("--native")
        command += self.extra
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise BenchError(f"cannot run py-spy ({exc}): .venv/bin/pip install py-spy") from exc

    def finish(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(5)
        finally:
            self.process = None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def background_busy(seconds: float = 1.0) -> dict[int, float]:
    """% busy per core while nothing of ours runs: other load on the machine skews the figures."""
    before = core_times()
    time.sleep(seconds)
    after = core_times()
    return {
        core: 100 * (after[core][0] - before[core][0]) / max(1, after[core][1] - before[core][1])
        for core in sorted(after)
    }


def source_revision() -> str:
    """The commit of this checkout, and whether mqttproxy/ differs from it (read-only git)."""
    git = ["git", "--no-optional-locks", "-C", str(Path(__file__).resolve().parent.parent)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        diff = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "mqttproxy"], check=False)
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"commit {head.stdout.strip()}" + (
        " + uncommitted changes in mqttproxy/" if diff.returncode else ""
    )


RESULTS_PATH = Path(__file__).with_name("RESULTS.md")


def write_section(script: str, title: str, section: str, path: Path = RESULTS_PATH) -> None:
    """Replace ``script``'s part of RESULTS.md between its markers, or add it at the end; the rest is kept."""
    start, end = f"<!-- {script}:start -->", f"<!-- {script}:end -->"
    block = f"{start}\n{section}\n{end}"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        path.write_text(before + block + rest.split(end, 1)[1])
        return
    path.write_text(
        text.rstrip("\n") + f"\n\n{title}\n\n"
        f"Generated by `bench/{script}.py` (its docstring says what is measured and how).\n"
        "`--write` rewrites the part between the markers; notes outside it are kept.\n\n"
        f"{block}\n"
    )
