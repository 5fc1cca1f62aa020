"""GET /metrics: the names DESIGN.md promises, with values that follow the traffic."""

from __future__ import annotations

import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ThreadedGateway, paho_client, require_binary, wait_until
from tests.mosquitto import Mosquitto
from tests.upstream.util import add, record, status, upstream_subscriber, wait_state


def _scrape(gateway: ThreadedGateway) -> str:
    port = gateway.gateway.web.port  # type: ignore[union-attr]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return str(response.read().decode())


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_follow_device_and_upstream_traffic(gateway: ThreadedGateway, upstream: Mosquitto) -> None:
    watcher = upstream_subscriber(upstream)
    add(gateway, record("cloud", upstream))
    wait_state(gateway, "cloud")
    device = paho_client(gateway.port, "device")
    for seq in range(50):
        device.publish("devices/d1/t", str(seq), qos=1)
    for _ in range(50):
        watcher.get()
    wait_until(lambda: status(gateway, "cloud")["forwarded"] == 50)
    samples = _samples(_scrape(gateway))
    cloud = (("broker", "cloud"),)
    assert samples[("mqtt_messages_received_total", ())] == 50
    assert samples[("mqtt_messages_forwarded_total", cloud)] == 50
    assert samples[("mqtt_broker_connection_status", cloud)] == 1
    assert samples[("mqtt_active_connections", ())] == 1
    assert samples[("mqtt_upstream_queue_depth", cloud)] == 0
    assert samples[("mqtt_message_latency_seconds_count", cloud)] == 50
    assert samples[("mqtt_message_latency_seconds_bucket", (("broker", "cloud"), ("le", "+Inf")))] == 50
    assert ("process_resident_memory_bytes", ()) in samples
    upstream.stop()
    wait_state(gateway, "cloud", "backoff")
    samples = _samples(_scrape(gateway))
    assert samples[("mqtt_broker_connection_status", cloud)] == 0
    device.disconnect()
    watcher.disconnect()


def test_promtool_accepts_the_metrics(gateway: ThreadedGateway, upstream: Mosquitto) -> None:
    promtool = require_binary("promtool")
    add(gateway, record("cloud", upstream))
    wait_state(gateway, "cloud")
    paho_client(gateway.port, "device").publish("t", b"x", qos=1)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=_scrape(gateway), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
