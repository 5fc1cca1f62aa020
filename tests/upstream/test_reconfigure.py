"""Live reconfiguration while devices publish, and brokers.json across restarts."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from mqttproxy.upstream.models import BrokerRecord, Route
from mqttproxy.upstream.store import BrokerStore
from tests.helpers import (
    TIMEOUT,
    PahoClient,
    ThreadedGateway,
    make_config,
    paho_client,
    running_gateway,
    wait_until,
)
from tests.mosquitto import Mosquitto
from tests.upstream.util import add, record, status, upstream_subscriber, wait_state

MosquittoFactory = Callable[..., Mosquitto]
LINK_CLIENT_ID = "mqttproxy-test-gateway"  # {client_id_prefix}-{gateway_id}


class Publisher(threading.Thread):
    """A device publishing numbered QoS 1 messages until stopped."""

    def __init__(self, port: int, topic: str = "devices/d1/seq") -> None:
        super().__init__()
        self.client = paho_client(port, "publisher")
        self.topic = topic
        self.sent = 0
        self._stopping = threading.Event()
        self._last: paho.MQTTMessageInfo | None = None

    def run(self) -> None:
        while not self._stopping.is_set():
            self._last = info = self.client.client.publish(self.topic, str(self.sent), qos=1)
            self.sent += 1
            if self.sent % 50 == 0:
                info.wait_for_publish(TIMEOUT)

    def finish(self) -> int:
        self._stopping.set()
        self.join(TIMEOUT)
        # paho holds back what is past its in-flight window; a DISCONNECT now would drop it.
        if self._last is not None:
            self._last.wait_for_publish(TIMEOUT)
        self.client.disconnect()
        return self.sent


def take_until(subscriber: PahoClient, last: int) -> list[tuple[str, int]]:
    """(topic, sequence number) of each message up to the one numbered ``last``."""
    received: list[tuple[str, int]] = []
    while not received or received[-1][1] != last:
        try:
            message = subscriber.get()
        except queue.Empty:
            numbers = [seq for _, seq in received]
            missing = sorted(set(range(last + 1)) - set(numbers))
            raise AssertionError(
                f"waited for {last}: got {len(received)} messages, the last {received[-3:]}, "
                f"missing {len(missing)}: {missing[:10]}"
            ) from None
        received.append((message.topic, int(message.payload)))
    return received


def take_all(subscriber: PahoClient) -> list[paho.MQTTMessage]:
    """Every message that arrives until none has for a moment."""
    messages = []
    while True:
        try:
            messages.append(subscriber.get(0.3))
        except queue.Empty:
            return messages


def test_add_update_toggle_delete_while_publishing(
    gateway: ThreadedGateway, mosquitto_factory: MosquittoFactory
) -> None:
    steady, added, paused, removed = (mosquitto_factory() for _ in range(4))
    brokers = {"steady": steady, "added": added, "paused": paused, "removed": removed}
    watchers = {name: upstream_subscriber(broker) for name, broker in brokers.items()}
    add(gateway, record("steady", steady), record("paused", paused), record("removed", removed))
    for name in ("steady", "paused", "removed"):
        wait_state(gateway, name)
    fanout = gateway.gateway.fanout  # type: ignore[union-attr]
    publisher = Publisher(gateway.port)
    publisher.start()
    wait_until(lambda: status(gateway, "steady")["forwarded"] > 200)

    gateway.run(fanout.add(record("added", added)))
    # A new route for "steady": the link reconnects with it and keeps its queue.
    new_settings = record("steady", steady, routes=[Route(filter="devices/#", remap="v2/{topic}")]).settings()
    gateway.run(fanout.update("steady", new_settings))
    gateway.run(fanout.toggle("paused"))
    assert status(gateway, "paused")["state"] == "disabled"
    gateway.run(fanout.delete("removed"))
    wait_until(lambda: status(gateway, "steady")["forwarded"] > 600)
    gateway.run(fanout.toggle("paused"))
    wait_state(gateway, "paused")
    wait_until(lambda: status(gateway, "paused")["forwarded"] > 100)
    last = publisher.finish() - 1

    steady_seen = take_until(watchers["steady"], last)
    # Not one message lost or reordered across the update, under either topic
    # (a message whose ack was overdue when it reconnected may come twice).
    first_copies = list(dict.fromkeys(seq for _, seq in steady_seen))
    assert first_copies == list(range(last + 1))
    assert len(steady_seen) - len(first_copies) <= 100  # at most the in-flight window
    topics = [topic for topic, _ in steady_seen]
    switch = topics.index("v2/devices/d1/seq")
    assert set(topics[:switch]) == {"devices/d1/seq"}
    assert set(topics[switch:]) == {"v2/devices/d1/seq"}

    added_seen = [seq for _, seq in take_until(watchers["added"], last)]
    assert added_seen == list(range(added_seen[0], last + 1))  # complete from when it was added

    paused_seen = [seq for _, seq in take_until(watchers["paused"], last)]
    gap = next(i for i in range(1, len(paused_seen)) if paused_seen[i] != paused_seen[i - 1] + 1)
    assert paused_seen[:gap] == list(range(gap))  # before the pause
    assert paused_seen[gap:] == list(range(paused_seen[gap], last + 1))  # after the resume
    assert status(gateway, "paused")["dropped"]["disabled"] == paused_seen[gap] - paused_seen[gap - 1] - 1

    removed_count = len(take_all(watchers["removed"]))
    assert removed_count < last  # it stopped getting messages when deleted
    assert [item.id for item in gateway.call(fanout.records)] == ["steady", "paused", "added"]

    # Each change touched only its own upstream: one reconnect for the updated
    # and for the paused-and-resumed link, none for the added one.
    reconnects = {name: status(gateway, name)["reconnects"] for name in ("steady", "paused", "added")}
    assert reconnects == {"steady": 1, "paused": 1, "added": 0}
    connects = {name: broker.log().count(f"as {LINK_CLIENT_ID} ") for name, broker in brokers.items()}
    assert connects == {"steady": 2, "added": 1, "paused": 2, "removed": 1}
    # Update, pause and delete say goodbye with DISCONNECT, not by dropping the connection.
    goodbyes = {
        name: broker.log().count(f"Client {LINK_CLIENT_ID} disconnected.") for name, broker in brokers.items()
    }
    assert goodbyes == {"steady": 1, "added": 0, "paused": 1, "removed": 1}
    assert not any(
        f"Client {LINK_CLIENT_ID} closed its connection" in broker.log() for broker in brokers.values()
    )
    for watcher in watchers.values():
        watcher.disconnect()


def test_brokers_json_survives_restart_with_encrypted_password(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    upstream = mosquitto_factory()
    config = make_config(tmp_path, upstream={"secret_key": "a long random test secret key 123456"})
    with running_gateway(config) as gateway:
        add(gateway, record("cloud", upstream, username="gw", password="sup3r-secret"))
        wait_state(gateway, "cloud")
    stored = (config.data_dir / "brokers.json").read_text()
    assert "sup3r-secret" not in stored
    assert json.loads(stored)["brokers"][0]["password"]["encrypted"]
    with running_gateway(config) as gateway:
        wait_state(gateway, "cloud")  # reconnects on start, from the file
        restored = gateway.call(lambda: gateway.gateway.fanout.record("cloud"))  # type: ignore[union-attr]
        assert restored.password is not None
        assert restored.password.get_secret_value() == "sup3r-secret"


def test_corrupt_brokers_json_stops_start_and_is_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    good = BrokerRecord(id="cloud", name="Cloud", address="127.0.0.1")
    BrokerStore(data / "brokers.json", secret_key=None).save([good])
    path = data / "brokers.json"
    broken = path.read_text().replace('"port": 1883', '"port": "eighteen"')
    path.write_text(broken)
    line = next(number for number, text in enumerate(broken.splitlines(), 1) if '"port"' in text)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mqttproxy",
            "run",
            "--data-dir",
            str(data),
            "--mqtt-port",
            "0",
            "--web-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert f"{path}:{line}: brokers[0].port" in result.stderr
    assert "listening" not in result.stderr  # nothing was bound
    assert path.read_text() == broken


def test_check_config_checks_brokers_json(tmp_path: Path) -> None:
    """As the README says: a hand-edited brokers.json can be checked with the gateway stopped."""
    data = tmp_path / "data"
    path = data / "brokers.json"
    BrokerStore(path, secret_key=None).save([BrokerRecord(id="cloud", name="Cloud", address="127.0.0.1")])
    config = tmp_path / "proxy.toml"
    config.write_text(f"data_dir = {str(data)!r}\n")

    def check_config() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mqttproxy", "check-config", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=tmp_path,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"},
        )

    result = check_config()
    assert result.returncode == 0, result.stderr
    assert f"{path}: 1 upstream broker(s), ok" in result.stdout
    broken = path.read_text().replace('"address": "127.0.0.1"', '"address": "127.0.0.1", "colour": "red"')
    path.write_text(broken)
    line = next(number for number, text in enumerate(broken.splitlines(), 1) if '"colour"' in text)
    result = check_config()
    assert result.returncode == 2
    assert f"{path}:{line}: brokers[0].colour: unknown field" in result.stderr
    assert path.read_text() == broken


@pytest.mark.parametrize("reachable", [True, False])
def test_test_connection_saves_nothing(
    gateway: ThreadedGateway, upstream: Mosquitto, reachable: bool
) -> None:
    fanout = gateway.gateway.fanout  # type: ignore[union-attr]
    port = upstream.port if reachable else 1
    settings = record("probe", upstream, port=port).settings()
    result = gateway.run(fanout.test_connection(settings))
    assert result.ok is reachable
    assert (result.address == f"127.0.0.1:{port}") is reachable
    assert gateway.call(fanout.records) == []
    assert not (gateway.config.data_dir / "brokers.json").exists()
