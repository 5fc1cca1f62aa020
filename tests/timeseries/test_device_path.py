"""The recorder never holds up delivery: devices and upstreams go on while its storage is stuck.

Throughput with and without a matching data config is measured by bench/timeseries_throughput.py;
this test checks the property behind it with real parts: a device, the gateway, a Mosquitto
upstream, and a database another process has locked.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mqttproxy.timeseries import DataConfig
from tests.helpers import ThreadedGateway, paho_client, wait_until
from tests.mosquitto import Mosquitto
from tests.upstream.util import add, record, upstream_subscriber, wait_state

COUNT = 500
TELEMETRY = DataConfig.model_validate(
    {
        "id": "telemetry",
        "topic": "devices/{device}/telemetry",
        "fields": [{"metric": "seq", "pointer": "/seq"}],
    }
)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


def stored_points(gateway: ThreadedGateway) -> int:
    assert gateway.gateway is not None
    recorder = gateway.gateway.recorder
    return gateway.call(lambda: recorder.points)


def test_a_locked_database_does_not_hold_up_devices_or_upstreams(
    gateway: ThreadedGateway, upstream: Mosquitto
) -> None:
    assert gateway.gateway is not None
    recorder = gateway.gateway.recorder
    gateway.run(recorder.add_config(TELEMETRY))
    subscriber = upstream_subscriber(upstream)
    add(gateway, record("cloud", upstream))
    wait_state(gateway, "cloud")
    device = paho_client(gateway.port, "sensor-1")

    # Another process takes the write lock: every write of the recorder now waits on it.
    blocker = sqlite3.connect(gateway.config.data_dir / "mqttproxy.db", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        for seq in range(COUNT):
            device.publish("devices/d1/telemetry", json.dumps({"seq": seq}).encode(), qos=1)
        received = [json.loads(subscriber.get().payload)["seq"] for _ in range(COUNT)]
        assert received == list(range(COUNT))
        assert stored_points(gateway) == 0  # nothing could be written yet, and delivery went on
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()

    # The lock gone, what was queued is stored: late, but not lost.
    wait_until(lambda: stored_points(gateway) == COUNT, 10.0, "the queued points to be stored")
    series = gateway.run(recorder.series(metric="seq"))
    assert [item.labels for item in series] == [{"device": "d1"}]
    samples = gateway.run(recorder.samples(series[0].id, 0, 2**62))
    assert sorted(samples.values) == [float(seq) for seq in range(COUNT)]
    assert recorder.lost_points == 0
    device.disconnect()
    subscriber.disconnect()
