"""Device registry benchmark: token CONNECTs, the cost of topic ACLs, memory with 100k devices.

Set-up. One tenant (``fleet``, token authentication, default ACL) with
``--devices`` devices (100,000) is registered in a fresh data directory before
any gateway starts, in-process through the registry service
(``mqttproxy.registry.Registry`` on ``mqttproxy.storage.Database``, as the
gateway opens them): the tenants and the first ``--via-service`` devices (1,000)
with ``Registry.create_device``; the rest, because that takes about 0.8 ms a
device, as rows inserted in one transaction with the columns
``RegistryStore.insert_device`` writes and token hashes from
``mqttproxy.registry.tokens`` (``new_token``, ``token_hash`` under the
installation's ``registry.key``). A device of each kind is then read back
through the service and authenticated in-process, so a bulk row that differed
from a service-made one stops the run. A second tenant, ``ops``, has one device
(``ops-monitor``) whose tenant ACL allows subscribing to ``devices/#``: the
subscriber of the publish runs. The tokens are kept for the load generators.

Gateways: ``mqttproxy run`` processes on that data directory, MQTT only
(``[web] enabled = false``), default log level (``info``: one line per connect
and disconnect, two per refusal), pinned to ``--gateway-cpu`` (0):

- ``registry``: ``allow_anonymous = false``; every CONNECT is decided by the registry.
- ``anonymous``: ``allow_anonymous = true``, the same data directory; CONNECTs without
  credentials are accepted as anonymous (no ACL), devices still authenticate with
  their tokens and get their ACLs. (The gateway has no per-client switch, so the
  publish comparison below runs here, with both kinds of client on one process.)
- ``empty``: ``allow_anonymous = false`` on an empty data directory, started only for
  its idle RSS, the reference for the 100k-device figure.

What is measured:

1. Connect rate. ``--connectors`` load generator processes (8), each a loop over
   raw blocking sockets: TCP connect, send a CONNECT pre-encoded with
   ``mqttproxy.protocol.codec`` (clean session, keep-alive 60), read the 4-byte
   CONNACK, send DISCONNECT if accepted, read until the gateway closes, close.
   Each attempt uses the next identity of the connector's own slice of the fleet,
   so no device connects twice in a run (unless a connector runs through its
   slice of ``--max-attempts`` at most; the log then says "identities wrapped").
   Reported: CONNACKs per second over a window of ``--connect-duration`` s after
   ``--connect-warmup`` s (and per second, min - max), CONNECT -> CONNACK latency
   (from the ``send`` of the CONNECT to the CONNACK read, ``perf_counter_ns``)
   p50 / p99 / max of the attempts started in the window, every return code seen
   in the whole run, socket errors. Runs:

   - ``token``: distinct registered devices with their tokens (``registry``).
   - ``anonymous``: no credentials, distinct client ids (``anonymous``): the TCP and
     CONNECT path without authentication, the baseline.
   - ``wrong``: distinct devices, each token one character off (``registry``). The
     registry's login throttle counts failures per device *and per client address*
     (10 a minute each): from one address it would refuse everything after the
     tenth failure without looking at a token. So each attempt here comes from its
     own source address in 127.0.0.0/8 (the socket is bound to e.g. 127.3.0.17
     before connecting to 127.0.0.1): every attempt reaches the token check, as
     with a fleet of misconfigured devices behind distinct addresses.
   - ``wrong-one``: the same from one address (127.0.0.1): after 10 failures the
     throttle refuses (return code 5) without a database lookup. Afterwards a
     *valid* device connects once from 127.0.0.1 and once from a fresh address, to
     show what the address throttle does to it.

   The connectors of ``token`` and ``anonymous`` connect from
   ``--source-addresses`` (``many``: one per attempt as above, which also keeps
   the loopback from running short of ephemeral ports; ``one``: 127.0.0.1).

2. ACL check cost, in-process (this script, pinned to the load core, nothing
   else of ours running): ``TopicAcl.may_publish`` with the rules
   ``mqttproxy.registry.service.acl_for`` gives a device of ``fleet`` (its own
   rules and the tenant's are empty, so the two defaults ``devices/{id}/#`` and
   ``$aws/things/{id}/#``), timed with ``timeit`` (best of 5) over 4,096 topics
   per loop: cached (the same topic again: the per-connection decision cache)
   allowed and denied, and uncached (4,096 distinct topics, more than the
   1,024-entry cache holds, so every check misses) allowed and denied. "net" is
   minus the same loop with no call.

3. Publish throughput with ACLs on and off, on the ``anonymous`` gateway, like
   ``broker_throughput.py``'s QoS 0 bounded scenario and with its load code
   (``_publish_flood``, ``_subscribe_loop``, ``Gate``): ``--publishers`` (4)
   publishers write pre-encoded QoS 0 PUBLISHes with ``--payload-size``-byte
   payloads (100) in batches, all together keeping at most ``--bound`` (4,000)
   written and not yet received; one subscriber counts deliveries. Publisher i
   publishes to ``devices/dev-00000i/telemetry``. ``acl-on``: publisher i is
   device ``dev-00000i`` with its token, so every PUBLISH passes
   ``TopicAcl.may_publish``; ``acl-off``: anonymous publishers (no policy) on the
   same topics. The subscriber is the ``ops-monitor`` device (subscribe ACL
   ``devices/#``) in both. ``--rounds`` (3) pairs, alternating the order (on, off,
   off, on, ...); each ``--warmup`` + ``--duration`` s. Reported per run and as
   the ratio of the means (ACL cost = 1 - on/off). Before the rounds a probe
   checks the ACL is live: a device publishing to another device's topic is not
   delivered, to its own is; an anonymous client's is.

4. Memory: VmRSS of each gateway once started and idle (``--idle-settle`` s),
   VmHWM after its runs.

Targets (from the issue): 1,000+ token connects/s; ACLs cost under 5% of
publish throughput.

Placement: gateways pinned to ``--gateway-cpu`` (0); load generators and this
script to ``--load-cpu`` (1). The gateway's CPU use and both cores' busy share
are reported for every window (a load core at 100% means the load side, not the
gateway, may be the limit), and so is the CPU time every other process on the
machine used meanwhile (from /proc, kernel threads aside): a run in which that
was over ``--max-foreign`` % of a core (10) is made again, up to ``--retries``
(2) more times, and the least disturbed one is kept; not the wrong-token runs,
whose throttle state carries over. Every gateway, load generator and profiler
started here is stopped on the way out, also on errors and Ctrl-C.

Run from the repository root::

    .venv/bin/python bench/registry_throughput.py            # table on stdout (about 2 minutes)
    .venv/bin/python bench/registry_throughput.py --write    # and add/update bench/RESULTS.md
    .venv/bin/python bench/registry_throughput.py --py-spy /tmp/token.raw --py-spy-scenario token

``--py-spy`` samples only the thread holding the GIL (``py-spy --gil``): the
gateway's idle threads (aiosqlite's worker waiting for a query) would otherwise
count as busy; ``--py-spy-all-threads`` samples them all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import importlib.metadata
import math
import multiprocessing
import os
import platform
import re
import shlex
import signal
import socket
import statistics
import sys
import tempfile
import time
import timeit
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NoReturn, TypeVar

from broker_throughput import (
    Gate,
    LoadSpec,
    PublisherResult,
    Shared,
    SubscriberResult,
    _publish_flood,
    _subscribe_loop,
)
from common import (
    DISCONNECT,
    HOST,
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
    mqtt_subscribe,
    proc_status_kb,
    recv_ready,
    running,
    sleep_until,
    source_revision,
    step_rates,
    usage_snapshot,
    window_rate,
    write_section,
)
from fanout_throughput import cpu_seconds_by_pid, summarize_profile

from mqttproxy.broker.auth import ConnectRequest
from mqttproxy.protocol.codec import Decoder, encode_connect, publish_bytes
from mqttproxy.protocol.packets import Connect, Publish
from mqttproxy.registry import Registry
from mqttproxy.registry.acl import TopicAcl
from mqttproxy.registry.models import AclRuleModel, DeviceCreate, Tenant
from mqttproxy.registry.service import acl_for
from mqttproxy.registry.tokens import ALPHABET, load_key, new_token, token_hash
from mqttproxy.storage import Database

TENANT = "fleet"
OPS_TENANT = "ops"
SUBSCRIBER = "ops-monitor"
SUBSCRIPTION = "devices/#"
KEEP_ALIVE = 60
CONNACK_SIZE = 4
CONNECT_TIMEOUT = 10.0  # seconds for one attempt's socket operations
MAX_ERRORS = 200  # socket errors per connector before it gives up
CONNECT_SCENARIOS = ("token", "anonymous", "wrong", "wrong-one")
PUBLISH_MODES = ("acl-on", "acl-off")
SCENARIOS = CONNECT_SCENARIOS + PUBLISH_MODES
RETURN_CODES = {
    0: "accepted",
    1: "bad protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
TARGET_CONNECTS = 1000.0  # token connects/s
TARGET_ACL_COST = 0.05  # share of publish throughput
LOAD_SATURATED = 95.0  # % busy of the load core from which the load side may be the limit


def device_id(index: int) -> str:
    return f"dev-{index:06d}"


def telemetry_topic(device: str) -> str:
    return f"devices/{device}/telemetry"


def wrong_token(token: str) -> str:
    """The token with its last character replaced: a typo, same format."""
    last = token[-1]
    return token[:-1] + (ALPHABET[0] if last != ALPHABET[0] else ALPHABET[1])


# --- the fleet: 100k devices in a fresh data directory ------------------------------------------


@dataclass
class Fleet:
    data_dir: Path
    ids: list[str]
    tokens: list[str]
    subscriber_token: str
    via_service: int
    service_seconds: float
    bulk_seconds: float
    db_bytes: int


_INSERT_DEVICE = (
    "INSERT INTO devices (id, tenant_id, name, labels, notes, metadata, acl, enabled, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_HASH = "INSERT INTO device_tokens (device_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)"


async def _populate(data_dir: Path, count: int, via_service: int) -> Fleet:
    database = Database(data_dir / "mqttproxy.db")
    await database.open()
    try:
        registry = Registry(
            database,
            key_path=data_dir / "registry.key",
            disconnect=lambda *_: 0,
            trust_ca=lambda pem: None,
        )
        await registry.start()
        try:
            return await _register(registry, database, data_dir, count, via_service)
        finally:
            await registry.stop()
    finally:
        await database.close()


async def _register(
    registry: Registry, database: Database, data_dir: Path, count: int, via_service: int
) -> Fleet:
    await registry.create_tenant(Tenant(id=TENANT, name="Benchmark fleet"))
    ops_acl = [AclRuleModel(action="subscribe", topic=SUBSCRIPTION)]
    await registry.create_tenant(Tenant(id=OPS_TENANT, name="Operations", acl=ops_acl))
    _, subscriber_token = await registry.create_device(DeviceCreate(id=SUBSCRIBER, tenant_id=OPS_TENANT))
    assert subscriber_token is not None
    ids = [device_id(i) for i in range(count)]
    tokens: list[str] = []
    started = time.perf_counter()
    for device in ids[:via_service]:
        _, token = await registry.create_device(DeviceCreate(id=device, tenant_id=TENANT))
        assert token is not None
        tokens.append(token)
    service_seconds = time.perf_counter() - started
    started = time.perf_counter()
    key = load_key(data_dir / "registry.key")
    bulk = ids[via_service:]
    bulk_tokens = [new_token() for _ in bulk]
    now = time.time()
    # The columns and values RegistryStore.insert_device writes for a DeviceCreate with defaults.
    async with database.transaction() as connection:
        await connection.executemany(
            _INSERT_DEVICE, [(device, TENANT, "", "[]", "", "{}", "[]", 1, now) for device in bulk]
        )
        await connection.executemany(
            _INSERT_HASH,
            [
                (device, token_hash(key, token), now, None)
                for device, token in zip(bulk, bulk_tokens, strict=True)
            ],
        )
    tokens += bulk_tokens
    bulk_seconds = time.perf_counter() - started
    await _check_fleet(registry, ids, tokens, via_service)
    return Fleet(
        data_dir=data_dir,
        ids=ids,
        tokens=tokens,
        subscriber_token=subscriber_token,
        via_service=min(via_service, count),
        service_seconds=service_seconds,
        bulk_seconds=bulk_seconds,
        db_bytes=_database_bytes(data_dir),
    )


def _database_bytes(data_dir: Path) -> int:
    return sum(path.stat().st_size for path in data_dir.glob("mqttproxy.db*"))


async def _check_fleet(registry: Registry, ids: list[str], tokens: list[str], via_service: int) -> None:
    """A service-made and a bulk-made device must read back alike and authenticate alike."""
    if await registry.count() != len(ids) + 1:
        raise BenchError(f"registered {await registry.count()} devices, expected {len(ids) + 1}")
    samples = sorted({0, min(via_service, len(ids) - 1), len(ids) - 1})
    shapes = []
    for index in samples:
        device = await registry.device(ids[index])
        shapes.append(device.model_dump(exclude={"id", "created_at"}))
        request = ConnectRequest(
            client_id=ids[index],
            username=ids[index],
            password=tokens[index].encode(),
            peer="127.0.0.1:1",
            tls=False,
        )
        decision = await registry.authenticate(request)
        if decision is None or not decision.accepted:
            raise BenchError(f"device {ids[index]} does not authenticate with its token: {decision}")
    if any(shape != shapes[0] for shape in shapes):
        raise BenchError(f"bulk-inserted devices differ from service-made ones: {shapes}")


def populate(data_dir: Path, count: int, via_service: int) -> Fleet:
    data_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_populate(data_dir, count, via_service))


# --- ACL check cost, in-process ------------------------------------------------------------------


@dataclass
class AclCheck:
    name: str
    ns: float  # per check, loop included
    net_ns: float  # minus the empty loop


def acl_microbench(loop_size: int = 4096, repeat: int = 5) -> tuple[list[AclCheck], list[str]]:
    """ns per ``TopicAcl.may_publish`` with a fleet device's default rules; and those rules."""
    tenant = Tenant(id=TENANT, name="Benchmark fleet")
    device = device_id(42)
    acl = acl_for(device, [], tenant)
    rules = [
        f"{'allow' if r.allow else 'deny'} {r.topic} "
        f"({'+'.join(a for a, on in (('publish', r.publish), ('subscribe', r.subscribe)) if on)})"
        for r in acl._rules
    ]

    def best(statement: str, topics: list[str], policy: TopicAcl) -> float:
        timer = timeit.Timer(statement, globals={"topics": topics, "policy": policy})
        number, _ = timer.autorange()
        return min(timer.repeat(repeat=repeat, number=number)) / (number * len(topics)) * 1e9

    cases = {
        "cached, allowed (own topic again)": [telemetry_topic(device)] * loop_size,
        "cached, denied (another device's topic again)": [telemetry_topic("other-1")] * loop_size,
        "uncached, allowed (4,096 own topics in turn)": [
            f"devices/{device}/sensor/{i}" for i in range(loop_size)
        ],
        "uncached, denied (4,096 other devices' topics in turn)": [
            telemetry_topic(f"other-{i}") for i in range(loop_size)
        ],
    }
    empty = best("for topic in topics: pass", cases["cached, allowed (own topic again)"], acl)
    results = []
    for name, topics in cases.items():
        fresh: TopicAcl = acl_for(device, [], tenant)
        for topic in topics:  # fills the cache for the cached cases
            fresh.may_publish(topic)
        # As ClientConnection._publish calls it: an attribute lookup and a call per message.
        ns = best("for topic in topics: policy.may_publish(topic)", topics, fresh)
        results.append(AclCheck(name, ns, ns - empty))
    results.append(AclCheck("reference: the empty loop", empty, 0.0))
    return results, rules


# --- load generator processes ----------------------------------------------------------------------


def _child_main(target: Callable[[Connection], object], cpu: int, niceness: int, conn: Connection) -> None:
    """Entry point of a load generator: report ("result", ...) or ("error", traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    os.sched_setaffinity(0, {cpu})
    if niceness:
        os.nice(niceness)
    try:
        conn.send(("result", target(conn)))
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def spawn(name: str, target: Callable[[Connection], object], cpu: int, niceness: int = 0) -> Child:
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    process = ctx.Process(target=_child_main, args=(target, cpu, niceness, child_end), name=name, daemon=True)
    process.start()
    child_end.close()
    return Child(name, process, parent_end)


def stop_all(children: Sequence[Child]) -> None:
    for child in children:
        child.stop()


# --- connectors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectSpec:
    key: str  # one of CONNECT_SCENARIOS
    title: str
    credentials: str  # "token", "wrong" or "none"
    many_sources: bool  # a source address of its own for every attempt
    connectors: int
    warmup: float
    duration: float


Identity = tuple[str, str | None, bytes | None]  # client id, user name, password


@dataclass
class ConnectorResult:
    attempts: int
    codes: dict[int, int]
    errors: dict[str, int]
    accepted_points: list[tuple[float, int]]
    refused_points: list[tuple[float, int]]
    latencies_ns: list[int]  # CONNECT -> CONNACK of the attempts started in the window
    wrapped: bool  # ran out of identities and started again


def source_addresses(connector: int, count: int) -> list[str]:
    """``count`` loopback addresses of this connector's own: 127.<connector+1>.x.y."""
    return [f"127.{connector + 1}.{j // 254 % 254}.{j % 254 + 1}" for j in range(count)]


def one_connect(port: int, packet: bytes, source: str | None) -> tuple[int, int]:
    """One attempt: (CONNACK return code, ns from sending CONNECT to reading CONNACK)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source is not None:
            sock.bind((source, 0))
        sock.connect((HOST, port))
        started = time.perf_counter_ns()
        sock.sendall(packet)
        answer = b""
        while len(answer) < CONNACK_SIZE:
            chunk = sock.recv(CONNACK_SIZE - len(answer))
            if not chunk:
                raise BenchError("closed before CONNACK")
            answer += chunk
        latency = time.perf_counter_ns() - started
        if answer[:2] != b"\x20\x02":
            raise BenchError(f"not a CONNACK: {answer!r}")
        code = answer[3]
        if code == 0:
            sock.sendall(DISCONNECT)
        while sock.recv(64):  # the gateway closes: after DISCONNECT, or after a refusal
            pass
        return code, latency
    finally:
        sock.close()


def run_connector(
    port: int, spec: ConnectSpec, identities: list[Identity], sources: list[str], conn: Connection
) -> ConnectorResult:
    packets = [
        encode_connect(
            Connect(
                client_id=client_id,
                clean_session=True,
                keep_alive=KEEP_ALIVE,
                username=username,
                password=password,
            )
        )
        for client_id, username, password in identities
    ]
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    accepted_marks = Marks.window(schedule, step=1.0)
    refused_marks = Marks.window(schedule, step=1.0)
    accepted = refused = attempts = 0
    codes: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[int] = []
    sleep_until(schedule.start)
    while True:
        now = time.monotonic()
        accepted_marks.observe(now, accepted)
        refused_marks.observe(now, refused)
        if now >= schedule.measure_end:
            break
        index = attempts % len(packets)
        attempts += 1
        try:
            code, latency = one_connect(port, packets[index], sources[index] if sources else None)
        except (OSError, BenchError) as exc:
            errors[f"{type(exc).__name__}: {exc}"] += 1
            if sum(errors.values()) >= MAX_ERRORS:
                raise BenchError(f"{MAX_ERRORS} failed attempts, last: {exc}") from exc
            time.sleep(0.01)
            continue
        codes[code] += 1
        if code == 0:
            accepted += 1
        else:
            refused += 1
        if schedule.warm_end <= now < schedule.measure_end:
            latencies.append(latency)
    return ConnectorResult(
        attempts=attempts,
        codes=dict(codes),
        errors=dict(errors),
        accepted_points=accepted_marks.points,
        refused_points=refused_marks.points,
        latencies_ns=latencies,
        wrapped=attempts > len(packets),
    )


@dataclass
class ConnectResult:
    spec: ConnectSpec
    gateway: str
    accepted: float  # CONNACK 0 per second over the window
    refused: float  # other CONNACKs per second over the window
    steps: list[float]  # CONNACKs (any code) in each second of the window
    codes: Counter[int]
    errors: Counter[str]
    latencies_ms: list[float]  # sorted
    usage: Usage
    foreign: float  # % of a core used by other processes on the machine during the window
    attempts: int
    wrapped: bool
    rss_kb: int  # the gateway's VmRSS right after the run
    tries: int = 1  # runs made: more when other processes disturbed the earlier ones

    def percentile(self, fraction: float) -> float:
        values = self.latencies_ms
        return values[min(len(values) - 1, int(fraction * len(values)))] if values else float("nan")


def watch_window(
    gateway: RegistryGateway, schedule: Schedule, profiler: Profiler | None, children: Sequence[Child]
) -> tuple[Usage, float]:
    """The gateway's CPU use over the window, and the % of a core every other process used meanwhile."""
    sleep_until(schedule.warm_end)
    ours = {os.getpid(), gateway.pid, *(child.process.pid for child in children)}
    start = usage_snapshot(gateway.pid)
    before = cpu_seconds_by_pid()
    try:
        if profiler is not None:
            profiler.start(gateway.pid, schedule.measure_end - schedule.warm_end)
            if profiler.process is not None:
                ours.add(profiler.process.pid)
        sleep_until(schedule.measure_end)
        usage = Usage.between(gateway.pid, start)
        after = cpu_seconds_by_pid()
    finally:
        if profiler is not None:
            profiler.finish(timeout=30)
    elapsed = max(1e-9, time.monotonic() - start[0])
    others = sum(max(0.0, used - before.get(pid, 0.0)) for pid, used in after.items() if pid not in ours)
    return usage, 100 * others / elapsed


def _sum_steps(point_lists: Sequence[list[tuple[float, int]]]) -> list[float]:
    per_connector = [step_rates(points) for points in point_lists]
    length = min((len(steps) for steps in per_connector), default=0)
    return [sum(steps[i] for steps in per_connector) for i in range(length)]


def connect_identities(
    spec: ConnectSpec, fleet: Fleet, pool: range, args: argparse.Namespace
) -> list[list[Identity]]:
    """Per connector: its own identities, from its own slice of the fleet's connect pool."""
    per = len(pool) // spec.connectors
    count = min(per, args.max_attempts)
    offset = {"token": 0, "wrong": per // 3, "wrong-one": 2 * per // 3}.get(spec.key, 0)
    result: list[list[Identity]] = []
    for k in range(spec.connectors):
        if spec.credentials == "none":
            result.append([(f"anon-{k}-{i}", None, None) for i in range(count)])
            continue
        indices = [pool[k * per + (offset + i) % per] for i in range(count)]
        if spec.credentials == "token":
            result.append([(fleet.ids[i], fleet.ids[i], fleet.tokens[i].encode()) for i in indices])
        else:
            result.append(
                [(fleet.ids[i], fleet.ids[i], wrong_token(fleet.tokens[i]).encode()) for i in indices]
            )
    return result


def run_connect_scenario(
    gateway: RegistryGateway,
    spec: ConnectSpec,
    identities: list[list[Identity]],
    load_cpu: int,
    profiler: Profiler | None,
) -> ConnectResult:
    children: list[Child] = []
    try:
        for k in range(spec.connectors):
            sources = source_addresses(k, len(identities[k])) if spec.many_sources else []
            target = functools.partial(run_connector, gateway.port, spec, identities[k], sources)
            children.append(spawn(f"connector {k}", target, load_cpu))
        for child in children:
            child.expect("ready", 60)
        start = time.monotonic() + 0.3
        schedule = Schedule(start, start + spec.warmup, start + spec.warmup + spec.duration)
        for child in children:
            child.conn.send(schedule)
        usage, foreign = watch_window(gateway, schedule, profiler, children)
        results: list[ConnectorResult] = [
            child.expect("result", schedule.measure_end + 2 * CONNECT_TIMEOUT + 5 - time.monotonic())
            for child in children
        ]
    finally:
        stop_all(children)
    gateway.check_alive()
    codes: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    for result in results:
        codes.update(result.codes)
        errors.update(result.errors)
    accepted_steps = _sum_steps([r.accepted_points for r in results])
    refused_steps = _sum_steps([r.refused_points for r in results])
    return ConnectResult(
        spec=spec,
        gateway=gateway.name,
        accepted=sum(window_rate(r.accepted_points) for r in results),
        refused=sum(window_rate(r.refused_points) for r in results),
        steps=[a + b for a, b in zip(accepted_steps, refused_steps, strict=False)],
        codes=codes,
        errors=errors,
        latencies_ms=sorted(ns / 1e6 for r in results for ns in r.latencies_ns),
        usage=usage,
        foreign=foreign,
        attempts=sum(r.attempts for r in results),
        wrapped=any(r.wrapped for r in results),
        rss_kb=proc_status_kb(gateway.pid, "VmRSS"),
    )


# --- publishers and subscriber (broker_throughput.py's QoS 0 bounded load) --------------------------


def run_subscriber(
    port: int, spec: LoadSpec, token: str, shared: Shared, conn: Connection
) -> SubscriberResult:
    sock, decoder = mqtt_connect(port, SUBSCRIBER, username=SUBSCRIBER, password=token)
    mqtt_subscribe(sock, decoder, SUBSCRIPTION, 0)
    if decoder.buffered:
        raise BenchError("unexpected data after SUBACK")
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    try:
        return _subscribe_loop(sock, spec, schedule, shared)
    finally:
        mqtt_close(sock)


def run_publisher(
    port: int,
    spec: LoadSpec,
    index: int,
    device: str,
    token: str | None,
    shared: Shared,
    conn: Connection,
) -> PublisherResult:
    if token is None:
        sock, _ = mqtt_connect(port, f"anon-pub-{index}")
    else:
        sock, _ = mqtt_connect(port, device, username=device, password=token)
    conn.send(("ready", None))
    schedule: Schedule = conn.recv()
    try:
        topic = telemetry_topic(device).encode()
        return _publish_flood(sock, schedule, topic, spec.payload_size, Gate(shared, index, spec.bound))
    finally:
        mqtt_close(sock)


@dataclass
class PublishResult:
    mode: str  # one of PUBLISH_MODES
    round: int
    delivered: float  # msg/s at the subscriber over the window
    steps: list[float]
    accepted: float  # msg/s written by the publishers over the window
    published: int
    received: int
    stalls: int  # times a publisher went past the bound after waiting
    usage: Usage
    foreign: float  # % of a core used by other processes on the machine during the window
    tries: int = 1

    @property
    def lost(self) -> int:
        return self.published - self.received


def run_publish_scenario(
    gateway: RegistryGateway,
    spec: LoadSpec,
    mode: str,
    number: int,
    fleet: Fleet,
    load_cpu: int,
    profiler: Profiler | None,
) -> PublishResult:
    shared = Shared.create(spec.publishers)
    children: list[Child] = []
    try:
        subscriber = functools.partial(run_subscriber, gateway.port, spec, fleet.subscriber_token, shared)
        children.append(spawn("subscriber", subscriber, load_cpu))
        children[0].expect("ready", 15)
        for i in range(spec.publishers):
            token = fleet.tokens[i] if mode == "acl-on" else None
            publisher = functools.partial(run_publisher, gateway.port, spec, i, fleet.ids[i], token, shared)
            children.append(spawn(f"publisher {i}", publisher, load_cpu, niceness=5))
        for child in children[1:]:
            child.expect("ready", 15)
        start = time.monotonic() + 0.5
        schedule = Schedule(start, start + spec.warmup, start + spec.warmup + spec.duration)
        for child in children:
            child.conn.send(schedule)
        usage, foreign = watch_window(gateway, schedule, profiler, children)
        timeout = schedule.measure_end + spec.drain_max + 20 - time.monotonic()
        sub: SubscriberResult = children[0].expect("result", timeout)
        pubs: list[PublisherResult] = [child.expect("result", 10) for child in children[1:]]
    finally:
        stop_all(children)
    gateway.check_alive()
    return PublishResult(
        mode=mode,
        round=number,
        delivered=window_rate(sub.points),
        steps=step_rates(sub.points),
        accepted=sum(window_rate(p.points) for p in pubs),
        published=sum(p.published for p in pubs),
        received=sub.received,
        stalls=sum(p.stalls for p in pubs),
        usage=usage,
        foreign=foreign,
    )


def _read_publishes(
    sock: socket.socket, decoder: Decoder, want: int, timeout: float
) -> list[tuple[str, bytes]]:
    """PUBLISHes arriving within ``timeout`` s, and for 0.3 s after the ``want``-th."""
    got: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        data = recv_ready(sock, min(left, 0.05))
        if data is None:
            continue
        if not data:
            raise BenchError("the gateway closed the probe subscriber")
        decoder.receive_data(data)
        while (packet := decoder.next_packet()) is not None:
            if isinstance(packet, Publish):
                got.append((packet.topic, packet.payload))
        if len(got) >= want:
            deadline = min(deadline, time.monotonic() + 0.3)
    return got


def acl_probe(port: int, fleet: Fleet) -> tuple[bool, str]:
    """Whether a device's PUBLISH to another device's topic is dropped and an anonymous one is not."""
    own, other = fleet.ids[0], fleet.ids[1]
    sub, decoder = mqtt_connect(
        port, f"{SUBSCRIBER}-probe", username=SUBSCRIBER, password=fleet.subscriber_token
    )
    socks = [sub]
    try:
        mqtt_subscribe(sub, decoder, SUBSCRIPTION, 0)
        device, _ = mqtt_connect(port, own, username=own, password=fleet.tokens[0])
        socks.append(device)
        device.sendall(
            publish_bytes(
                telemetry_topic(other).encode(), b"device to another's topic", 0, False, False, None
            )
            + publish_bytes(telemetry_topic(own).encode(), b"device to its own topic", 0, False, False, None)
        )
        anonymous, _ = mqtt_connect(port, "anon-probe")
        socks.append(anonymous)
        anonymous.sendall(
            publish_bytes(telemetry_topic(other).encode(), b"anonymous client", 0, False, False, None)
        )
        got = _read_publishes(sub, decoder, 2, 3.0)
    finally:
        for sock in socks:
            mqtt_close(sock, linger=0.5)
    expected = {
        (telemetry_topic(own), b"device to its own topic"),
        (telemetry_topic(other), b"anonymous client"),
    }
    ok = len(got) == 2 and set(got) == expected
    seen = ", ".join(f"{payload.decode()} ({topic})" for topic, payload in got) or "nothing"
    return ok, f"subscriber received: {seen}"


def lockout_probe(port: int, fleet: Fleet) -> tuple[int, int]:
    """CONNACK codes of a valid device from 127.0.0.1 (just throttled) and from a fresh address."""
    device, token = fleet.ids[-1], fleet.tokens[-1]
    packet = encode_connect(
        Connect(
            client_id=device,
            clean_session=True,
            keep_alive=KEEP_ALIVE,
            username=device,
            password=token.encode(),
        )
    )
    throttled, _ = one_connect(port, packet, None)
    fresh, _ = one_connect(port, packet, "127.254.254.254")
    return throttled, fresh


# --- gateways -------------------------------------------------------------------------------------------


class RegistryGateway(Mqttproxy):
    """``mqttproxy run`` on the fleet's data directory, MQTT only."""

    def __init__(self, *, name: str, workdir: Path, cpu: int, data_dir: Path, allow_anonymous: bool) -> None:
        self.name = name
        self.data_dir = data_dir
        self.allow_anonymous = allow_anonymous
        super().__init__(workdir=workdir, cpu=cpu, inflight=20, queued=1000)  # the gateway's defaults

    def command(self) -> list[str]:
        config = self.workdir / "gateway.toml"
        config.write_text(
            f"[auth]\nallow_anonymous = {'true' if self.allow_anonymous else 'false'}\n"
            f'[mqtt]\nhost = "{HOST}"\n'
            "[web]\nenabled = false\n"
        )
        return [
            *(self.executable, "run", "--config", str(config), "--data-dir", str(self.data_dir)),
            *("--mqtt-port", "0", "--web-port", "0"),
        ]


@dataclass
class GatewayReport:
    name: str
    allow_anonymous: bool
    devices: int
    version: str
    uvloop: bool | None
    rss_idle_kb: int
    rss_peak_kb: int = 0
    findings: list[str] = field(default_factory=list)
    returncode: int | None = None


def start_report(gateway: RegistryGateway, devices: int, settle: float) -> GatewayReport:
    time.sleep(settle)
    report = GatewayReport(
        name=gateway.name,
        allow_anonymous=gateway.allow_anonymous,
        devices=devices,
        version=gateway.version(),
        uvloop=gateway.uses_uvloop(),
        rss_idle_kb=proc_status_kb(gateway.pid, "VmRSS"),
    )
    log(
        f"[{gateway.name}] pid {gateway.pid} port {gateway.port}, idle RSS {report.rss_idle_kb / 1024:.1f} MB"
    )
    return report


def finish_report(gateway: RegistryGateway, report: GatewayReport) -> None:
    report.returncode = gateway.returncode
    report.findings = gateway.log_findings()


# --- one whole run ------------------------------------------------------------------------------------------


@dataclass
class RunResults:
    fleet: Fleet
    acl_checks: list[AclCheck]
    acl_rules: list[str]
    gateways: list[GatewayReport] = field(default_factory=list)
    connects: list[ConnectResult] = field(default_factory=list)
    publishes: list[PublishResult] = field(default_factory=list)
    probe_ok: bool = False
    probe_text: str = ""
    lockout: tuple[int, int] | None = None


def connect_specs(args: argparse.Namespace) -> dict[str, ConnectSpec]:
    many = args.source_addresses == "many"
    common = {"connectors": args.connectors, "warmup": args.connect_warmup, "duration": args.connect_duration}
    return {
        "token": ConnectSpec("token", "valid tokens, distinct devices", "token", many, **common),
        "anonymous": ConnectSpec("anonymous", "no credentials (anonymous), baseline", "none", many, **common),
        "wrong": ConnectSpec(
            "wrong", "wrong tokens, distinct devices and addresses", "wrong", True, **common
        ),
        "wrong-one": ConnectSpec(
            "wrong-one", "wrong tokens, distinct devices, one address", "wrong", False, **common
        ),
    }


def publish_spec(args: argparse.Namespace) -> LoadSpec:
    return LoadSpec(
        key="qos0",
        title="QoS 0 bounded",
        qos=0,
        publishers=args.publishers,
        payload_size=args.payload_size,
        rate=0,
        window=0,
        bound=args.bound,
        timed=False,
        warmup=args.warmup,
        duration=args.duration,
        drain_idle=0.5,
        drain_max=args.drain_max,
    )


def publish_order(rounds: int) -> list[tuple[str, int]]:
    """Pairs alternating their order: on, off, off, on, on, off, ..."""
    order = []
    for number in range(rounds):
        pair = PUBLISH_MODES if number % 2 == 0 else PUBLISH_MODES[::-1]
        order += [(mode, number + 1) for mode in pair]
    return order


class ProfileSlot:
    """Hands out the profiler once, to the first run of the scenario asked for."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._path: Path | None = args.py_spy
        self._scenario: str = args.py_spy_scenario
        self._native: bool = args.py_spy_native
        # Only samples holding the GIL: the gateway's idle threads (aiosqlite's worker waiting for
        # a query, the default executor) would otherwise show up as busy.
        self._extra = () if args.py_spy_all_threads else ("--gil",)

    def take(self, scenario: str) -> Profiler | None:
        if self._path is None or scenario != self._scenario:
            return None
        profiler = Profiler(self._path, scenario, native=self._native, extra=self._extra)
        self._path = None
        return profiler


def run(args: argparse.Namespace) -> RunResults:
    available = os.sched_getaffinity(0)
    if {args.gateway_cpu, args.load_cpu} - available or args.gateway_cpu == args.load_cpu:
        raise BenchError(f"--gateway-cpu and --load-cpu must be two different cores of {sorted(available)}")
    os.sched_setaffinity(0, {args.load_cpu})
    if not os.access(args.mqttproxy, os.X_OK):
        raise BenchError(f"{args.mqttproxy} is not an executable (see --mqttproxy)")
    Mqttproxy.executable = args.mqttproxy
    with _workdir(args) as workdir:
        started = time.monotonic()
        fleet = populate(workdir / "data", args.devices, args.via_service)
        log(
            f"registered {args.devices:,} devices in {time.monotonic() - started:.1f} s "
            f"({fleet.via_service:,} via create_device in {fleet.service_seconds:.1f} s, the rest in bulk in "
            f"{fleet.bulk_seconds:.1f} s); database {fleet.db_bytes / 1e6:.0f} MB"
        )
        checks, rules = acl_microbench()
        for check in checks:
            log(f"ACL {check.name}: {check.ns:.0f} ns ({check.net_ns:.0f} net)")
        results = RunResults(fleet=fleet, acl_checks=checks, acl_rules=rules)
        _run_gateways(args, workdir, results)
    return results


def _run_gateways(args: argparse.Namespace, workdir: Path, results: RunResults) -> None:
    fleet = results.fleet
    specs = connect_specs(args)
    profiles = ProfileSlot(args)
    # The devices the load generators connect as: all but the publishers and the probe's last one.
    pool = range(args.publishers, len(fleet.ids) - 1)
    settle = args.idle_settle

    empty = RegistryGateway(
        name="empty",
        workdir=workdir,
        cpu=args.gateway_cpu,
        data_dir=workdir / "empty-data",
        allow_anonymous=False,
    )
    with running(empty):
        report = start_report(empty, 0, settle)
        report.rss_peak_kb = proc_status_kb(empty.pid, "VmHWM")
    finish_report(empty, report)
    results.gateways.append(report)

    registry = RegistryGateway(
        name="registry", workdir=workdir, cpu=args.gateway_cpu, data_dir=fleet.data_dir, allow_anonymous=False
    )
    with running(registry):
        report = start_report(registry, len(fleet.ids) + 1, settle)
        results.gateways.append(report)
        for key in ("token", "wrong", "wrong-one"):
            spec = specs[key]
            identities = connect_identities(spec, fleet, pool, args)
            profiler = profiles.take(key)
            result = measured(
                functools.partial(run_connect_scenario, registry, spec, identities, args.load_cpu, profiler),
                describe_connect,
                registry.name,
                args,
                # The throttle remembers failures for a minute: a second wrong-token run is not the same run.
                retry=key == "token",
            )
            results.connects.append(result)
        results.lockout = lockout_probe(registry.port, fleet)
        throttled, fresh = results.lockout
        log(f"[registry] valid device after wrong-one: CONNACK {throttled} from 127.0.0.1, {fresh} elsewhere")
        report.rss_peak_kb = proc_status_kb(registry.pid, "VmHWM")
    finish_report(registry, report)

    anonymous = RegistryGateway(
        name="anonymous", workdir=workdir, cpu=args.gateway_cpu, data_dir=fleet.data_dir, allow_anonymous=True
    )
    with running(anonymous):
        report = start_report(anonymous, len(fleet.ids) + 1, settle)
        results.gateways.append(report)
        spec = specs["anonymous"]
        identities = connect_identities(spec, fleet, pool, args)
        profiler = profiles.take("anonymous")
        result = measured(
            functools.partial(run_connect_scenario, anonymous, spec, identities, args.load_cpu, profiler),
            describe_connect,
            anonymous.name,
            args,
            retry=True,
        )
        results.connects.append(result)
        results.probe_ok, results.probe_text = acl_probe(anonymous.port, fleet)
        log(f"[anonymous] ACL probe {'passed' if results.probe_ok else 'FAILED'}: {results.probe_text}")
        load = publish_spec(args)
        for mode, number in publish_order(args.rounds):
            profiler = profiles.take(mode)
            published = measured(
                functools.partial(
                    run_publish_scenario, anonymous, load, mode, number, fleet, args.load_cpu, profiler
                ),
                describe_publish,
                anonymous.name,
                args,
                retry=True,
            )
            results.publishes.append(published)
        report.rss_peak_kb = proc_status_kb(anonymous.pid, "VmHWM")
    finish_report(anonymous, report)


Result = TypeVar("Result", ConnectResult, PublishResult)


def measured(
    run_once: Callable[[], Result],
    describe: Callable[[Result], str],
    label: str,
    args: argparse.Namespace,
    *,
    retry: bool,
) -> Result:
    """Run, and again (up to --retries times) while other processes used over --max-foreign % of a core.

    Keeps the run that other processes disturbed least.
    """
    runs: list[Result] = []
    while True:
        result = run_once()
        runs.append(result)
        result.tries = len(runs)
        log(f"[{label}] {describe(result)}")
        if result.foreign <= args.max_foreign or not retry or len(runs) > args.retries:
            return min(runs, key=lambda run: run.foreign)
        log(f"[{label}] other processes used {result.foreign:.0f}% of a core during the window: again")


@contextlib.contextmanager
def _workdir(args: argparse.Namespace) -> Iterator[Path]:
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
        if any(args.keep_logs.iterdir()):
            raise BenchError(f"--keep-logs {args.keep_logs} is not empty (the fleet needs a fresh directory)")
        yield args.keep_logs
        return
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as path:
        yield Path(path)


# --- reporting ---------------------------------------------------------------------------------------------


def _cpu(usage: Usage, foreign: float, args: argparse.Namespace) -> str:
    busy = usage.core_busy
    return (
        f"{usage.broker_cpu:.0f}% (sys {usage.broker_sys:.0f}%) / {busy.get(args.gateway_cpu, 0):.0f}% / "
        f"{busy.get(args.load_cpu, 0):.0f}% / {foreign:.0f}%"
    )


def _cpu_header(args: argparse.Namespace) -> str:
    return (
        f"CPU: gateway (kernel part) / core {args.gateway_cpu} / core {args.load_cpu} / other processes "
        "(% of a core)"
    )


def _flags(usage: Usage, foreign: float, tries: int, args: argparse.Namespace) -> str:
    flags = " (L)" if usage.core_busy.get(args.load_cpu, 0) >= LOAD_SATURATED else ""
    flags += " (D)" if foreign > args.max_foreign else ""
    return flags + (f" (run {tries} kept)" if tries > 1 else "")


def _legend(args: argparse.Namespace) -> str:
    return (
        f"(L): the load core was at least {LOAD_SATURATED:.0f}% busy, the load side may be the limit; "
        f"(D): other processes used more than {args.max_foreign:g}% of a core in the window; (run N kept): "
        f"run again because of (D), up to {args.retries} more times, and the least disturbed run kept (not "
        "for wrong tokens: the throttle remembers failures for a minute)."
    )


def _codes(codes: Counter[int]) -> str:
    return ", ".join(f"{code} ({RETURN_CODES.get(code, '?')}): {n:,}" for code, n in sorted(codes.items()))


def describe_connect(result: ConnectResult) -> str:
    usage = result.usage
    return (
        f"{result.spec.title}: {result.accepted:,.0f} accepted/s, {result.refused:,.0f} refused/s, "
        f"CONNECT->CONNACK p50 {result.percentile(0.5):.2f} ms p99 {result.percentile(0.99):.2f} ms, "
        f"codes {_codes(result.codes)}, errors {sum(result.errors.values())}, "
        f"gateway CPU {usage.broker_cpu:.0f}%, cores "
        f"{', '.join(f'{c}: {b:.0f}%' for c, b in sorted(usage.core_busy.items()))}, "
        f"other processes {result.foreign:.0f}%, per second {' '.join(f'{s:,.0f}' for s in result.steps)}"
        + (" (identities wrapped)" if result.wrapped else "")
    )


def describe_publish(result: PublishResult) -> str:
    usage = result.usage
    return (
        f"round {result.round} {result.mode}: delivered {result.delivered:,.0f} msg/s, accepted "
        f"{result.accepted:,.0f} msg/s, lost {result.lost:,} of {result.published:,} "
        f"(bound overridden {result.stalls}x), gateway CPU {usage.broker_cpu:.0f}%, cores "
        f"{', '.join(f'{c}: {b:.0f}%' for c, b in sorted(usage.core_busy.items()))}, other processes "
        f"{result.foreign:.0f}%, per second "
        f"{' '.join(f'{s / 1000:.0f}k' for s in result.steps)}"
    )


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def render_connects(results: RunResults, args: argparse.Namespace) -> str:
    lines = [
        f"| connect run | gateway | CONNACKs/s over {args.connect_duration:g} s | per second, min - max | "
        "CONNECT → CONNACK p50 / p99 / max (ms) | CONNACK return codes, whole run | socket errors | "
        f"{_cpu_header(args)} | gateway VmRSS after (MB) |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in results.connects:
        rate = " + ".join(
            f"{value:,.0f} {label}"
            for value, label in ((r.accepted, "accepted"), (r.refused, "refused"))
            if value
        )
        rate = (rate or "0") + _flags(r.usage, r.foreign, r.tries, args)
        steps = f"{min(r.steps):,.0f} - {max(r.steps):,.0f}" if r.steps else ""
        latency = " / ".join(_ms(r.percentile(f)) for f in (0.5, 0.99, 1.0))
        errors = sum(r.errors.values())
        lines.append(
            f"| {r.spec.title} | {r.gateway} | {rate} | {steps} | {latency} | {_codes(r.codes)} | "
            f"{errors:,} | {_cpu(r.usage, r.foreign, args)} | {r.rss_kb / 1024:.1f} |"
        )
    return "\n".join(lines)


def render_acl(results: RunResults, acl_on_off: tuple[float, float] | None) -> str:
    lines = [
        "| `TopicAcl.may_publish`, default rules of a `fleet` device | ns per check | net of the loop |",
        "| --- | ---: | ---: |",
    ]
    for check in results.acl_checks:
        net = f"{check.net_ns:.0f}" if check.net_ns else ""
        lines.append(f"| {check.name} | {check.ns:.0f} | {net} |")
    lines.append("")
    lines.append(
        f"Rules (from `acl_for`, first match decides): {'; '.join(f'`{r}`' for r in results.acl_rules)}."
    )
    if acl_on_off is not None:
        cached = results.acl_checks[0].net_ns
        off_rate = acl_on_off[1]
        lines.append(
            f"At the ACL-off rate above ({off_rate:,.0f} msg/s) a cached check every message would take "
            f"{cached * off_rate / 1e7:.1f}% of the gateway's core."
        )
    return "\n".join(lines)


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def acl_means(results: RunResults) -> tuple[float, float] | None:
    on = [r.delivered for r in results.publishes if r.mode == "acl-on"]
    off = [r.delivered for r in results.publishes if r.mode == "acl-off"]
    if not on or not off:
        return None
    return _mean(on), _mean(off)


def render_publishes(results: RunResults, args: argparse.Namespace) -> str:
    lines = [
        "| run | mode | delivered (msg/s) | per second, min - max | accepted (msg/s) | lost | "
        f"bound overridden | {_cpu_header(args)} |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, r in enumerate(results.publishes, start=1):
        steps = f"{min(r.steps):,.0f} - {max(r.steps):,.0f}" if r.steps else ""
        share = r.lost / r.published * 100 if r.published else 0.0
        flags = _flags(r.usage, r.foreign, r.tries, args)
        lines.append(
            f"| {i} (round {r.round}) | {r.mode} | {r.delivered:,.0f}{flags} | {steps} | "
            f"{r.accepted:,.0f} | {r.lost:,} ({share:.2f}%) | {r.stalls} | {_cpu(r.usage, r.foreign, args)} |"
        )
    means = acl_means(results)
    if means is not None:
        on, off = means
        pairs = _pair_ratios(results)
        spread = f"; per round {', '.join(f'{p:.3f}' for p in pairs)}" if pairs else ""
        lines += [
            "",
            f"Mean delivered: ACL on {on:,.0f} msg/s, ACL off {off:,.0f} msg/s; on/off {on / off:.3f} "
            f"(ACL cost {100 * (1 - on / off):.1f}%){spread}.",
        ]
    return "\n".join(lines)


def _pair_ratios(results: RunResults) -> list[float]:
    by_round: dict[int, dict[str, float]] = {}
    for r in results.publishes:
        by_round.setdefault(r.round, {})[r.mode] = r.delivered
    return [pair["acl-on"] / pair["acl-off"] for _, pair in sorted(by_round.items()) if len(pair) == 2]


def render_memory(results: RunResults) -> str:
    lines = [
        "| gateway | devices registered | RSS idle (MB) | VmHWM after its runs (MB) |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {g.name} | {g.devices:,} | {g.rss_idle_kb / 1024:.1f} | {g.rss_peak_kb / 1024:.1f} |"
        for g in results.gateways
    ]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def render_targets(results: RunResults) -> str:
    lines = ["| target | measured | result |", "| --- | --- | --- |"]
    token = next((r for r in results.connects if r.spec.key == "token"), None)
    if token is not None:
        verdict = _verdict(token.accepted >= TARGET_CONNECTS)
        lines.append(f"| 1,000+ token connects/s | {token.accepted:,.0f}/s | {verdict} |")
        bad = sum(n for code, n in token.codes.items() if code != 0) + sum(token.errors.values())
        total = sum(token.codes.values()) + sum(token.errors.values())
        lines.append(
            f"| every CONNACK with a valid token is 0 | {total - bad:,} of {total:,} | {_verdict(bad == 0)} |"
        )
    means = acl_means(results)
    if means is not None:
        on, off = means
        cost = 1 - on / off
        lines.append(
            f"| ACLs cost under 5% of publish throughput | {100 * cost:.1f}% ({on:,.0f} vs {off:,.0f} msg/s, "
            f"means of {len(_pair_ratios(results))} rounds) | {_verdict(cost < TARGET_ACL_COST)} |"
        )
    lines.append(
        f"| ACL probe: denied topic dropped, own and anonymous delivered | {results.probe_text} | "
        f"{_verdict(results.probe_ok)} |"
    )
    return "\n".join(lines)


_MASKS = (
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "ADDR"),
    (re.compile(r"\bdev-\d{6}\b"), "dev-N"),
    (re.compile(r"\banon-(?:\d+-\d+|pub-\d+)\b"), "anon-N"),
    (re.compile(r"^\S*\d+:\s*|^\d{4}-\d\d-\d\d[ T][\d:,.]+\s*"), ""),
)


def _normalise(line: str) -> str:
    """A log line without time stamp, addresses and ids, so lines of one kind count together."""
    text = line.strip()
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def render_findings(results: RunResults) -> str:
    lines = ["Gateway logs (warnings and errors, grouped with addresses and ids masked):", ""]
    for g in results.gateways:
        status = f"exit status {g.returncode}"
        if not g.findings:
            lines.append(f"- {g.name}: nothing ({status})")
            continue
        counts = Counter(_normalise(line) for line in g.findings)
        lines.append(f"- {g.name}: {len(g.findings):,} lines ({status}):")
        lines += [f"    - {n:,}x `{text}`" for text, n in counts.most_common(6)]
        if len(counts) > 6:
            lines.append(f"    - and {len(counts) - 6} other kinds")
    return "\n".join(lines)


def environment(results: RunResults, background: dict[int, float], revision: str) -> list[str]:
    try:
        uvloop_version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = "not installed"
    loops = ", ".join(f"{g.name}: {'uvloop' if g.uvloop else 'asyncio'}" for g in results.gateways)
    version = results.gateways[0].version if results.gateways else importlib.metadata.version("mqttproxy")
    busy = ", ".join(f"core {core} {value:.0f}%" for core, value in background.items())
    return [
        f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, Linux {platform.release()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}; uvloop {uvloop_version} "
        f"(event loop in use: {loops}); SQLite {_sqlite_version()}",
        f"- mqttproxy {version} at {revision} (when the run started)",
        f"- Background load just before the run (1 s, nothing of ours running): {busy}; "
        f"load average {Path('/proc/loadavg').read_text().split()[0]}",
    ]


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def render_report(
    results: RunResults, args: argparse.Namespace, command: str, background: dict[int, float], revision: str
) -> str:
    fleet = results.fleet
    lockout = ""
    if results.lockout is not None:
        throttled, fresh = results.lockout
        lockout = (
            f"- After the one-address run, a valid device with its right token got CONNACK {throttled} "
            f"({RETURN_CODES.get(throttled, '?')}) from 127.0.0.1 and {fresh} "
            f"({RETURN_CODES.get(fresh, '?')}) from a fresh address"
        )
    parts = [
        *environment(results, background, revision),
        f"- Placement: gateway pinned to core {args.gateway_cpu}; load generators and the script to core "
        f"{args.load_cpu}",
        f"- Registry: tenant `{TENANT}` (token authentication, default ACL) with {len(fleet.ids):,} devices: "
        f"{fleet.via_service:,} created with `Registry.create_device` ({fleet.service_seconds:.1f} s), "
        f"{len(fleet.ids) - fleet.via_service:,} inserted in one transaction ({fleet.bulk_seconds:.1f} s; "
        f"same columns, `token_hash` under the installation key); tenant `{OPS_TENANT}` with the subscriber "
        f"`{SUBSCRIBER}` (ACL: subscribe `{SUBSCRIPTION}`). Database {fleet.db_bytes / 1e6:.0f} MB",
        "- Gateways: `mqttproxy run`, `[web] enabled = false`, log level info; `registry` `allow_anonymous = "
        "false`, `anonymous` `allow_anonymous = true` (same data directory), `empty` an empty data directory",
        f"- Connect runs: {args.connectors} connector processes, {args.connect_warmup:g} s warm-up + "
        f"{args.connect_duration:g} s measured; valid-token and anonymous runs from "
        f"{'one source address per attempt (127.k.x.y)' if args.source_addresses == 'many' else '127.0.0.1'}",
        f"- Publish runs: {args.publishers} publishers + 1 subscriber, QoS 0, {args.payload_size}-byte "
        f"payloads, at most {args.bound:,} written and not yet received; {args.warmup:g} s warm-up + "
        f"{args.duration:g} s measured; {args.rounds} rounds of ACL on / off in alternating order",
        f"- Command (from the repository root): `{command}`",
    ]
    if args.py_spy:
        parts.append(
            f"- py-spy was attached to the gateway during `{args.py_spy_scenario}`: that figure is perturbed"
        )
    if lockout:
        parts.append(lockout)
    parts += [
        "",
        render_connects(results, args),
        "",
        render_publishes(results, args),
        "",
        _legend(args),
        "",
        render_acl(results, acl_means(results)),
        "",
        render_memory(results),
        "",
        render_targets(results),
        "",
        render_findings(results),
    ]
    return "\n".join(parts)


# --- command line ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    d = " (default %(default)s)"
    add("--devices", type=int, default=100_000, help="devices registered in the fleet tenant" + d)
    add("--via-service", type=int, default=1000, help="of them created with Registry.create_device" + d)
    add("--connectors", type=int, default=8, help="connector processes per connect run" + d)
    add("--connect-warmup", type=float, default=1.0, help="connect runs: warm-up seconds" + d)
    add("--connect-duration", type=float, default=5.0, help="connect runs: measured seconds" + d)
    add("--max-attempts", type=int, default=12_000, help="CONNECTs pre-encoded per connector" + d)
    add(
        "--source-addresses",
        choices=("many", "one"),
        default="many",
        help="valid-token and anonymous runs: a loopback address per attempt, or 127.0.0.1" + d,
    )
    add("--publishers", type=int, default=4, help="publisher processes" + d)
    add("--payload-size", type=int, default=100, help="bytes per payload" + d)
    add("--bound", type=int, default=4000, help="publish runs: max written and not yet received" + d)
    add("--warmup", type=float, default=1.5, help="publish runs: warm-up seconds" + d)
    add("--duration", type=float, default=5.0, help="publish runs: measured seconds" + d)
    add("--rounds", type=int, default=3, help="pairs of ACL on / off publish runs" + d)
    add("--drain-max", type=float, default=10.0, help="max seconds to drain after a publish window" + d)
    add("--gateway-cpu", type=int, default=0, help="core the gateways are pinned to" + d)
    add("--load-cpu", type=int, default=1, help="core of the load generators" + d)
    add("--max-foreign", type=float, default=10.0, help="%% of a core others may use in a window" + d)
    add("--retries", type=int, default=2, help="runs again when others used more than that" + d)
    add("--idle-settle", type=float, default=1.0, help="seconds after start before idle RSS" + d)
    add("--mqttproxy", default=str(Path(sys.executable).parent / "mqttproxy"), help="executable" + d)
    add("--py-spy", type=Path, metavar="FILE", help="record a py-spy raw profile of the gateway into FILE")
    add("--py-spy-scenario", choices=SCENARIOS, default="token", help="run to profile (its first window)" + d)
    add("--py-spy-native", action="store_true", help="include native frames in the profile")
    add(
        "--py-spy-all-threads",
        action="store_true",
        help="sample every thread, not only the one holding the GIL (py-spy --gil, the default)",
    )
    add(
        "--keep-logs", type=Path, metavar="DIR", help="keep the data, configs and logs in DIR (must be empty)"
    )
    add("--write", action="store_true", help=f"update {RESULTS_PATH.name} next to this script")
    args = parser.parse_args(argv)
    if args.devices < args.publishers + 2 + args.connectors:
        parser.error("--devices is too small for the publishers, the probe and the connectors")
    if args.payload_size < 1 or args.rounds < 1 or args.connectors < 1:
        parser.error("--payload-size, --rounds and --connectors must be positive")
    return args


def _on_signal(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    command = shlex.join([".venv/bin/python", "bench/registry_throughput.py", *sys.argv[1:]])
    started = time.monotonic()
    try:
        revision = source_revision()
        background = background_busy()
        results = run(args)
    except KeyboardInterrupt:
        log("interrupted: every gateway and load generator started here was stopped")
        return 130
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    log(f"finished in {time.monotonic() - started:.0f} s")
    section = render_report(results, args, command, background, revision)
    print(section)
    if args.py_spy and args.py_spy.exists():
        print(f"\nProfile of the gateway during {args.py_spy_scenario} ({args.py_spy}):\n")
        print(summarize_profile(args.py_spy))
    if args.write:
        write_section(
            "registry_throughput",
            "# Device registry benchmark: token connects, ACL cost, 100k devices",
            section,
        )
        log(f"updated {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
