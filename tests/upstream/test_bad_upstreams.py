"""Bad upstreams: one misbehaving upstream broker must not hurt the others or the devices.

Each bad kind is configured as one link next to a healthy, real Mosquitto
upstream:

- ``auth``: a real Mosquitto that refuses the link's (wrong) password;
- ``dead-port``: nothing listens (TCP connection refused);
- ``close``: a fake server that accepts and closes at once;
- ``reset``: a fake server that accepts and resets (SO_LINGER 0);
- ``blackhole``: a fake server that accepts and reads but never answers;
- ``random`` / ``http``: fake servers that answer CONNECT with random bytes or
  an HTTP response.

The bad link must show the failure in its status (``state``, ``last_error``),
keep retrying with backoff (not in a tight loop), keep what it could not
forward in its bounded queue, while the healthy link delivers every QoS 1
message a paho device publishes, in order and exactly once, and local
subscribers keep receiving. Further tests cover a flapping upstream (CONNACK,
then the connection drops), failover, ``test_connection``, and removing or
pausing a bad link.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mqttproxy.config import UpstreamConfig
from mqttproxy.upstream.fanout import FanOut
from mqttproxy.upstream.models import BrokerRecord, BrokerSettings
from tests.helpers import (
    TIMEOUT,
    PahoClient,
    ThreadedGateway,
    make_config,
    paho_client,
    require_binary,
    wait_until,
)
from tests.mosquitto import Mosquitto, free_port
from tests.upstream.fake_servers import Behaviour, FakeServer

CONNECT_TIMEOUT = 0.5  # the gateway's [upstream] connect_timeout in these tests
MIN_DELAY = 0.1  # the bad links' reconnect_min_delay
MAX_DELAY = 0.4  # and reconnect_max_delay
TOPIC = "fleet/seq"
USER, PASSWORD = "gateway", "right-password"

FAKE_KINDS = {
    "close": Behaviour.CLOSE,
    "reset": Behaviour.RESET,
    "blackhole": Behaviour.BLACKHOLE,
    "random": Behaviour.RANDOM,
    "http": Behaviour.HTTP,
}
KINDS = ["auth", "dead-port", *FAKE_KINDS]


# --- bad upstreams -------------------------------------------------------------------------


@dataclass
class BadUpstream:
    """One misbehaving upstream and what the gateway should say about it."""

    kind: str
    port: int
    state: str  # the state a failed attempt leaves the link in
    error: tuple[str, ...]  # fragments that last_error and test_connection's message contain
    credentials: dict[str, Any] = field(default_factory=dict)
    attempts: Callable[[], int] | None = None  # connections the server accepted (None: nothing listens)
    server: FakeServer | None = None

    def settings(self, **overrides: Any) -> BrokerSettings:
        return BrokerSettings(
            name=f"bad upstream ({self.kind})",
            address="127.0.0.1",
            port=self.port,
            reconnect_min_delay=MIN_DELAY,
            reconnect_max_delay=MAX_DELAY,
            **{**self.credentials, **overrides},
        )

    def record(self, broker_id: str = "bad", **overrides: Any) -> BrokerRecord:
        return BrokerRecord.create(broker_id, self.settings(**overrides))


def password_mosquitto(mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> Mosquitto:
    """A real Mosquitto that accepts only ``USER``/``PASSWORD``."""
    password_file = tmp_path / "mosquitto.passwd"
    subprocess.run(
        [require_binary("mosquitto_passwd"), "-b", "-c", str(password_file), USER, PASSWORD],
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    password_file.chmod(0o600)
    return mosquitto_factory(f"allow_anonymous false\npassword_file {password_file}\n")


def refusals(broker: Mosquitto) -> int:
    """How many CONNECTs ``broker`` refused for bad credentials (from its log)."""
    return broker.log().count("not authorised")


@contextmanager
def bad_upstream(
    kind: str, mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> Iterator[BadUpstream]:
    if kind == "auth":
        broker = password_mosquitto(mosquitto_factory, tmp_path)
        yield BadUpstream(
            kind,
            broker.port,
            "error",
            ("refused the connection", "not authorised"),
            credentials={"username": USER, "password": SecretStr("wrong-password")},
            attempts=lambda: refusals(broker),
        )
    elif kind == "dead-port":
        port = free_port()
        yield BadUpstream(kind, port, "backoff", (f"cannot connect to 127.0.0.1:{port}",))
    else:
        with FakeServer(FAKE_KINDS[kind]) as server:
            error = (f"no CONNACK from 127.0.0.1:{server.port} within {CONNECT_TIMEOUT:g}s",)
            if kind in ("close", "reset", "http"):
                # They closed the connection; what that should read is pinned down by
                # test_closed_during_connect_is_reported_at_once.
                error = (f"127.0.0.1:{server.port}",)
            yield BadUpstream(
                kind, server.port, "backoff", error, attempts=lambda: server.accepted, server=server
            )


@pytest.fixture(params=KINDS, ids=KINDS)
def bad(
    request: pytest.FixtureRequest, mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> Iterator[BadUpstream]:
    with bad_upstream(request.param, mosquitto_factory, tmp_path) as upstream:
        yield upstream


@pytest.fixture
def gateway(gateway_factory: Callable[..., ThreadedGateway], tmp_path: Path) -> ThreadedGateway:
    """A gateway whose upstream connect timeout is short."""
    config = make_config(tmp_path).model_copy(
        update={"upstream": UpstreamConfig(connect_timeout=CONNECT_TIMEOUT)}
    )
    return gateway_factory(config)


# --- gateway helpers ---------------------------------------------------------------------


def fanout(gateway: ThreadedGateway) -> FanOut:
    assert gateway.gateway is not None
    return gateway.gateway.fanout


def add(gateway: ThreadedGateway, record: BrokerRecord) -> None:
    gateway.run(fanout(gateway).add(record))


def healthy_record(upstream: Mosquitto, broker_id: str = "healthy") -> BrokerRecord:
    return BrokerRecord(
        id=broker_id,
        name="healthy mosquitto",
        address="127.0.0.1",
        port=upstream.port,
        reconnect_min_delay=MIN_DELAY,
        reconnect_max_delay=MAX_DELAY,
    )


def status(gateway: ThreadedGateway, broker_id: str) -> dict[str, Any]:
    result: dict[str, Any] = gateway.call(lambda: fanout(gateway).status(broker_id))
    return result


def wait_for_state(gateway: ThreadedGateway, broker_id: str, state: str, timeout: float = TIMEOUT) -> None:
    last: dict[str, Any] = {}

    def reached() -> bool:
        last.update(status(gateway, broker_id))
        return bool(last["state"] == state)

    try:
        wait_until(reached, timeout, f"{broker_id} to be {state}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; status: {last}") from None


def wait_connected(gateway: ThreadedGateway, broker_id: str) -> None:
    wait_for_state(gateway, broker_id, "connected")


# --- paho helpers ------------------------------------------------------------------------


@contextmanager
def paho(port: int, client_id: str, **options: Any) -> Iterator[PahoClient]:
    client = paho_client(port, client_id, **options)
    try:
        yield client
    finally:
        client.disconnect()


@contextmanager
def subscriber(port: int, client_id: str, topic: str = "fleet/#", **options: Any) -> Iterator[PahoClient]:
    """A paho client subscribed to ``topic`` at QoS 1."""
    with paho(port, client_id, **options) as client:
        assert client.subscribe(topic, qos=1) == [1]
        yield client


def publish_sequence(device: PahoClient, numbers: range) -> None:
    """Publish each number as one QoS 1 message, pipelined, and wait for every PUBACK."""
    infos = [device.client.publish(TOPIC, str(number).encode(), qos=1) for number in numbers]
    for info in infos:
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()


def receive_sequence(client: PahoClient, count: int, timeout: float = TIMEOUT) -> list[int]:
    """The next ``count`` sequence numbers ``client`` receives on ``TOPIC``."""
    received: list[int] = []
    deadline = time.monotonic() + timeout
    while len(received) < count:
        try:
            message = client.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(
                f"received {len(received)} of {count} messages; last ones: {received[-5:]}"
            ) from None
        assert message.topic == TOPIC
        received.append(int(message.payload))
    return received


def assert_received_exactly(client: PahoClient, numbers: range) -> None:
    """``client`` receives exactly ``numbers``: each once, in order, nothing more."""
    received = receive_sequence(client, len(numbers))
    assert received == list(numbers), first_difference(received, list(numbers))
    client.assert_no_message(0.2)


def first_difference(received: list[int], expected: list[int]) -> str:
    for index, (got, want) in enumerate(zip(received, expected, strict=False)):
        if got != want:
            return f"at position {index}: got {got}, expected {want}"
    return f"got {len(received)} messages, expected {len(expected)}"


def drain_states(watcher: PahoClient) -> list[str]:
    """The link states published on ``$SYS/mqttproxy/brokers/<id>/state`` so far."""
    states = []
    while True:
        try:
            message = watcher.messages.get_nowait()
        except queue.Empty:
            return states
        states.append(json.loads(message.payload)["state"])


def max_attempts(elapsed: float) -> int:
    """The most connection attempts a link may make in ``elapsed`` seconds with our backoff.

    Before attempt n+1 the link sleeps at least half of min(MAX_DELAY,
    MIN_DELAY * 2**n): 0.05 s, then 0.1 s, then 0.2 s each time. Two extra
    attempts allow for the window catching one in progress.
    """
    floors = [MIN_DELAY / 2, MIN_DELAY]
    attempts, spent = 1, 0.0
    while True:
        floor = floors[attempts - 1] if attempts <= len(floors) else MAX_DELAY / 2
        spent += floor
        if spent > elapsed:
            return attempts + 2
        attempts += 1


# --- the bad link fails visibly; everyone else is served -----------------------------------


def test_bad_upstream_leaves_healthy_upstream_and_devices_unaffected(
    upstream: Mosquitto, bad: BadUpstream, gateway: ThreadedGateway
) -> None:
    count = 300
    with (
        subscriber(upstream.port, "upstream-reader") as upstream_reader,
        subscriber(gateway.port, "local-reader") as local_reader,
        subscriber(gateway.port, "state-watcher", "$SYS/mqttproxy/brokers/bad/state") as watcher,
        paho(gateway.port, "device") as device,
    ):
        add(gateway, healthy_record(upstream))
        wait_connected(gateway, "healthy")
        started = time.monotonic()
        add(gateway, bad.record())

        # The failure shows in the bad link's status.
        wait_for_state(gateway, "bad", bad.state)
        bad_status = status(gateway, "bad")
        assert bad_status["address"] == f"127.0.0.1:{bad.port}"
        for fragment in bad.error:
            assert fragment in (bad_status["last_error"] or ""), bad_status

        # Devices publish; the healthy upstream and local subscribers get everything.
        publish_sequence(device, range(count))
        assert_received_exactly(upstream_reader, range(count))
        assert_received_exactly(local_reader, range(count))

        healthy = status(gateway, "healthy")
        assert healthy["state"] == "connected"
        assert healthy["last_error"] is None
        assert (healthy["forwarded"], healthy["reconnects"], healthy["dropped"]) == (count, 0, {})
        assert (healthy["queue_depth"], healthy["inflight"]) == (0, 0)

        # The bad link keeps what it could not forward.
        bad_status = status(gateway, "bad")
        assert bad_status["state"] in ("connecting", bad.state)
        assert (bad_status["forwarded"], bad_status["dropped"]) == (0, {})
        assert bad_status["queue_depth"] == count

        # It keeps retrying, with backoff: a few attempts, not a tight loop.
        attempts = bad.attempts
        if attempts is not None:
            wait_until(lambda: attempts() >= 3, message="three connection attempts")
            elapsed = time.monotonic() - started
            assert attempts() <= max_attempts(elapsed), f"{attempts()} attempts in {elapsed:.2f}s"
        states: list[str] = []

        def tried(times: int) -> bool:
            states.extend(drain_states(watcher))
            return states.count("connecting") >= times

        wait_until(lambda: tried(3), message="three attempts in the published states")
        tries = states.count("connecting")
        assert tries <= max_attempts(time.monotonic() - started), states
        assert "connected" not in states
        # Each attempt is "connecting" followed by the failure state.
        transitions = states
        assert set(transitions[0::2]) == {"connecting"}, states
        assert set(transitions[1::2]) == {bad.state}, states
        assert status(gateway, "bad")["reconnects"] == 0
        server = bad.server
        if server is not None:
            # Each failed attempt's socket was closed: at most the current one stays open.
            wait_until(lambda: server.open_connections <= 1, message="at most one open connection")


def test_bad_upstream_queue_is_bounded_and_counts_drops(bad: BadUpstream, gateway: ThreadedGateway) -> None:
    add(gateway, bad.record(queue_max_messages=10))
    wait_for_state(gateway, "bad", bad.state)
    with paho(gateway.port, "device") as device:
        publish_sequence(device, range(10))
        wait_until(lambda: status(gateway, "bad")["queue_depth"] == 10, message="10 queued messages")
        assert status(gateway, "bad")["dropped"] == {}

        publish_sequence(device, range(10, 15))
        wait_until(lambda: status(gateway, "bad")["dropped"] == {"queue_full": 5}, message="5 drops")
        bad_status = status(gateway, "bad")
        assert bad_status["queue_depth"] == 10
        assert bad_status["forwarded"] == 0


# --- refusing auth, then fixed ----------------------------------------------------------


def test_refused_auth_shows_error_until_password_is_fixed(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path, gateway: ThreadedGateway
) -> None:
    with (
        bad_upstream("auth", mosquitto_factory, tmp_path) as bad,
        subscriber(bad.port, "upstream-reader", username=USER, password=PASSWORD) as upstream_reader,
        paho(gateway.port, "device") as device,
    ):
        add(gateway, bad.record(queue_max_messages=10))
        wait_for_state(gateway, "bad", "error")
        last_error = status(gateway, "bad")["last_error"] or ""
        assert f"127.0.0.1:{bad.port} refused the connection" in last_error
        assert "not authorised" in last_error

        # Refused: messages wait in the bounded queue, the oldest dropped and counted.
        publish_sequence(device, range(15))
        wait_until(lambda: status(gateway, "bad")["dropped"] == {"queue_full": 5}, message="5 drops")
        assert status(gateway, "bad")["queue_depth"] == 10
        assert bad.attempts is not None
        wait_until(lambda: bad.attempts() >= 2, message="a second attempt after the refusal")
        assert status(gateway, "bad")["state"] in ("connecting", "error")

        fanout_service = fanout(gateway)
        gateway.run(fanout_service.update("bad", bad.settings(password=SecretStr(PASSWORD))))
        wait_connected(gateway, "bad")
        assert status(gateway, "bad")["last_error"] is None

        # What was queued goes first, then new messages.
        publish_sequence(device, range(15, 20))
        assert_received_exactly(upstream_reader, range(5, 20))
        fixed = status(gateway, "bad")
        assert (fixed["forwarded"], fixed["queue_depth"], fixed["inflight"]) == (15, 0, 0)
        assert fixed["dropped"] == {"queue_full": 5}


# --- blackhole: the connect timeout, and no slowdown for the others -----------------------


@pytest.mark.parametrize("connect_timeout", [0.3, 0.8], ids=["timeout-0.3s", "timeout-0.8s"])
def test_blackhole_times_out_after_connect_timeout(
    gateway_factory: Callable[..., ThreadedGateway], tmp_path: Path, connect_timeout: float
) -> None:
    config = make_config(tmp_path).model_copy(
        update={"upstream": UpstreamConfig(connect_timeout=connect_timeout)}
    )
    gateway = gateway_factory(config)
    with FakeServer(Behaviour.BLACKHOLE) as server:
        record = BrokerRecord(
            id="blackhole",
            name="blackhole",
            address="127.0.0.1",
            port=server.port,
            reconnect_min_delay=MIN_DELAY,
            reconnect_max_delay=MAX_DELAY,
        )
        started = time.monotonic()
        add(gateway, record)
        wait_for_state(gateway, "blackhole", "backoff")
        elapsed = time.monotonic() - started

        assert connect_timeout * 0.9 <= elapsed <= connect_timeout + 1.0
        assert server.accepted >= 1
        assert server.received.startswith(b"\x10")  # it did send its CONNECT
        assert b"MQTT" in server.received
        last_error = status(gateway, "blackhole")["last_error"]
        assert last_error == f"no CONNACK from 127.0.0.1:{server.port} within {connect_timeout:g}s"
        # The timed-out connection is closed, and the link tries again.
        wait_until(lambda: server.accepted >= 2, message="a second attempt")
        wait_until(lambda: server.open_connections <= 1, message="at most one open connection")


def test_blackhole_does_not_slow_the_healthy_upstream(upstream: Mosquitto, gateway: ThreadedGateway) -> None:
    count = 2000

    def best_time(first: int) -> float:
        """The fastest of three runs of ``count`` messages through to the healthy upstream."""
        times = []
        for run in range(3):
            numbers = range(first + run * count, first + (run + 1) * count)
            started = time.monotonic()
            publish_sequence(device, numbers)
            assert_received_exactly(upstream_reader, numbers)
            times.append(time.monotonic() - started)
        return min(times)

    with (
        FakeServer(Behaviour.BLACKHOLE) as blackhole,
        subscriber(upstream.port, "upstream-reader") as upstream_reader,
        paho(gateway.port, "device") as device,
    ):
        add(gateway, healthy_record(upstream))
        wait_connected(gateway, "healthy")
        publish_sequence(device, range(200))  # warm up
        assert_received_exactly(upstream_reader, range(200))

        alone = best_time(1_000)
        add(gateway, BadUpstream("blackhole", blackhole.port, "backoff", ()).record())
        wait_until(lambda: blackhole.accepted >= 1, message="the blackhole's first connection")
        beside_blackhole = best_time(10_000)

        assert beside_blackhole <= 2 * alone + 0.1, (
            f"{count} messages took {beside_blackhole:.3f}s beside a blackhole, {alone:.3f}s alone"
        )
        assert status(gateway, "healthy")["forwarded"] == 200 + 6 * count
        assert status(gateway, "bad")["queue_depth"] == 3 * count  # kept, not lost


# --- failover ------------------------------------------------------------------------------


@pytest.mark.parametrize("primary", ["dead-port", "blackhole"], ids=["dead-port", "blackhole"])
def test_failover_to_the_healthy_upstream(
    upstream: Mosquitto,
    mosquitto_factory: Callable[..., Mosquitto],
    tmp_path: Path,
    gateway: ThreadedGateway,
    primary: str,
) -> None:
    with (
        bad_upstream(primary, mosquitto_factory, tmp_path) as bad,
        subscriber(upstream.port, "upstream-reader") as upstream_reader,
        paho(gateway.port, "device") as device,
    ):
        failover = f"127.0.0.1:{upstream.port}"
        settings = bad.settings(failover=[failover])

        result = gateway.run(fanout(gateway).test_connection(settings))
        assert (result.ok, result.address) == (True, failover), result

        add(gateway, BrokerRecord.create("failover", settings))
        wait_connected(gateway, "failover")
        assert status(gateway, "failover")["address"] == failover

        publish_sequence(device, range(20))
        assert_received_exactly(upstream_reader, range(20))
        linked = status(gateway, "failover")
        assert (linked["forwarded"], linked["queue_depth"], linked["last_error"]) == (20, 0, None)


# --- test_connection -------------------------------------------------------------------------


def configured(gateway: ThreadedGateway) -> tuple[list[BrokerRecord], list[int], list[dict[str, Any]]]:
    """The configured records, link objects and their statuses, to compare before and after."""
    service = fanout(gateway)
    return gateway.call(lambda: (service.records(), [id(link) for link in service.links], service.statuses()))


def test_test_connection_fails_for_bad_upstream(
    upstream: Mosquitto, bad: BadUpstream, gateway: ThreadedGateway, tmp_path: Path
) -> None:
    add(gateway, healthy_record(upstream))
    wait_connected(gateway, "healthy")
    brokers_json = tmp_path / "data" / "brokers.json"
    saved = brokers_json.read_bytes()
    before = configured(gateway)
    attempts_before = bad.attempts() if bad.attempts is not None else 0

    result = gateway.run(fanout(gateway).test_connection(bad.settings()))

    assert result.ok is False
    assert result.address == ""
    for fragment in bad.error:
        assert fragment in result.message, result
    assert result.seconds <= CONNECT_TIMEOUT + 0.5
    # It tried, once, and left nothing open behind.
    attempts = bad.attempts
    if attempts is not None:
        wait_until(lambda: attempts() == attempts_before + 1, message="one connection attempt")
    server = bad.server
    if server is not None:
        wait_until(lambda: server.open_connections == 0, message="the test connection to be closed")
    # The configured links did not change.
    assert configured(gateway) == before
    assert brokers_json.read_bytes() == saved
    assert status(gateway, "healthy")["state"] == "connected"


def test_test_connection_succeeds_for_healthy_upstream(upstream: Mosquitto, gateway: ThreadedGateway) -> None:
    add(gateway, healthy_record(upstream))
    wait_connected(gateway, "healthy")
    before = configured(gateway)

    result = gateway.run(fanout(gateway).test_connection(healthy_record(upstream).settings()))

    assert (result.ok, result.address, result.message) == (True, f"127.0.0.1:{upstream.port}", "connected")
    assert result.seconds < CONNECT_TIMEOUT
    # Its own client id: the live link was not taken over.
    after = configured(gateway)
    assert after == before
    assert after[2][0]["reconnects"] == 0


# --- the error says what went wrong ----------------------------------------------------------


@pytest.mark.parametrize("bad", ["close", "reset", "http"], indirect=True, ids=["close", "reset", "http"])
def test_closed_during_connect_is_reported_at_once(bad: BadUpstream, gateway: ThreadedGateway) -> None:
    """An upstream that closes or resets the connection before CONNACK fails the attempt at once.

    Waiting out the connect timeout (10 s by default) for a connection that is
    already gone slows every retry, and "no CONNACK within" sends whoever
    reads the status looking for a firewall or an overloaded broker.
    """
    result = gateway.run(fanout(gateway).test_connection(bad.settings()))

    assert result.ok is False
    assert re.search(r"closed|reset", result.message, re.IGNORECASE), result
    assert result.seconds < CONNECT_TIMEOUT / 2, result


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"], ids=["asyncio", "uvloop"])
def test_refused_port_is_named_in_the_error(tmp_path: Path, loop: str) -> None:
    """ "Connection refused", on the standard event loop as on uvloop (used when installed)."""
    loop_factory = asyncio.new_event_loop
    if loop == "uvloop":
        loop_factory = pytest.importorskip("uvloop").new_event_loop
    config = make_config(tmp_path).model_copy(
        update={"upstream": UpstreamConfig(connect_timeout=CONNECT_TIMEOUT)}
    )
    gateway = ThreadedGateway(config, loop_factory=loop_factory).start()
    try:
        port = free_port()
        result = gateway.run(
            fanout(gateway).test_connection(BrokerSettings(name="dead", address="127.0.0.1", port=port))
        )
    finally:
        gateway.stop()

    assert result.ok is False
    assert f"127.0.0.1:{port}" in result.message
    assert "Connection refused" in result.message, result


# --- a flapping upstream, and removing or pausing a bad one ------------------------------------


def test_flapping_upstream_counts_reconnects_and_keeps_messages(
    upstream: Mosquitto, gateway: ThreadedGateway
) -> None:
    """An upstream that accepts each CONNECT and drops the connection 20 ms later."""
    count = 50
    hold = 0.02
    with (
        FakeServer(Behaviour.FLAP, hold=hold) as server,
        subscriber(upstream.port, "upstream-reader") as upstream_reader,
        paho(gateway.port, "device") as device,
    ):
        add(gateway, healthy_record(upstream))
        wait_connected(gateway, "healthy")
        started = time.monotonic()
        add(gateway, BadUpstream("flap", server.port, "backoff", ()).record())

        publish_sequence(device, range(count))
        assert_received_exactly(upstream_reader, range(count))

        flapping: dict[str, Any] = {}

        def lost_again() -> bool:
            flapping.update(status(gateway, "bad"))
            return flapping["reconnects"] >= 5 and flapping["state"] == "backoff"

        wait_until(lost_again, message="five reconnects, and lost again")
        assert flapping["last_error"] == f"connection to 127.0.0.1:{server.port} lost"
        # Never acknowledged, so never counted as forwarded, and not lost either.
        assert flapping["forwarded"] == 0
        assert flapping["queue_depth"] + flapping["inflight"] == count
        assert flapping["dropped"] == {}
        # Reconnects wait at least reconnect_min_delay / 2 each time: no tight loop.
        elapsed = time.monotonic() - started
        assert server.accepted <= elapsed / (MIN_DELAY / 2 + hold) + 2, (server.accepted, elapsed)
        assert status(gateway, "healthy")["reconnects"] == 0


@pytest.mark.parametrize("action", ["delete", "disable"], ids=["delete", "disable"])
def test_removing_or_pausing_a_blackholed_link_stops_its_attempts(
    gateway: ThreadedGateway, action: str
) -> None:
    service = fanout(gateway)
    with FakeServer(Behaviour.BLACKHOLE) as server, paho(gateway.port, "device") as device:
        add(gateway, BadUpstream("blackhole", server.port, "backoff", ()).record())
        publish_sequence(device, range(3))
        wait_until(lambda: server.open_connections == 1, message="a CONNECT in progress")

        if action == "delete":
            gateway.run(service.delete("bad"))
            assert gateway.call(lambda: (service.records(), service.statuses())) == ([], [])
        else:
            gateway.run(service.set_enabled("bad", False))
            paused = status(gateway, "bad")
            assert (paused["state"], paused["enabled"]) == ("disabled", False)
            assert paused["dropped"] == {"disabled": 3}
            publish_sequence(device, range(3, 5))
            assert status(gateway, "bad")["dropped"] == {"disabled": 5}
            assert status(gateway, "bad")["queue_depth"] == 0

        # The half-open connection is closed and no new attempt follows.
        wait_until(lambda: server.open_connections == 0, message="the pending connection to close")
        accepted = server.accepted
        time.sleep(MAX_DELAY + 0.2)  # longer than any backoff: a retry would have come by now
        assert server.accepted == accepted
