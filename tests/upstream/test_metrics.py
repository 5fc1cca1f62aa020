"""GET /metrics: the names DESIGN.md promises, with values that follow the traffic."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from mqttproxy.upstream.models import Route
from tests.helpers import ThreadedGateway, paho_client, require_binary, wait_until
from tests.mosquitto import Mosquitto
from tests.upstream.util import add, record, samples, scrape, status, upstream_subscriber, wait_state

CLOUD = (("broker", "cloud"),)


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
    found = samples(scrape(gateway))
    assert found[("mqtt_messages_received_total", ())] == 50
    assert found[("mqtt_messages_forwarded_total", CLOUD)] == 50
    assert found[("mqtt_broker_connection_status", CLOUD)] == 1
    assert found[("mqtt_active_connections", ())] == 1
    assert found[("mqtt_upstream_queue_depth", CLOUD)] == 0
    assert found[("mqtt_message_latency_seconds_count", CLOUD)] == 50
    assert found[("mqtt_message_latency_seconds_bucket", (("broker", "cloud"), ("le", "+Inf")))] == 50
    assert ("process_resident_memory_bytes", ()) in found
    upstream.stop()
    wait_state(gateway, "cloud", "backoff")
    found = samples(scrape(gateway))
    assert found[("mqtt_broker_connection_status", CLOUD)] == 0
    device.disconnect()
    watcher.disconnect()


def test_promtool_accepts_the_metrics(gateway: ThreadedGateway, upstream: Mosquitto) -> None:
    promtool = require_binary("promtool")
    add(gateway, record("cloud", upstream))
    wait_state(gateway, "cloud")
    paho_client(gateway.port, "device").publish("t", b"x", qos=1)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=scrape(gateway), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_count_drops_queue_and_reconnects_by_broker(
    gateway: ThreadedGateway, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    upstream = mosquitto_factory(persistence=True)
    # A persistent session: the watcher gets what arrives while it reconnects itself.
    watcher = upstream_subscriber(upstream, "devices/#", client_id="watcher", clean_session=False)
    routes = [Route(filter="devices/#"), Route(direction="in", filter="cmd/#")]
    add(gateway, record("cloud", upstream, routes=routes, queue_max_messages=5))
    wait_state(gateway, "cloud")
    application = paho_client(upstream.port, "application")
    application.publish("cmd/d1", b"on", qos=1)
    wait_until(lambda: status(gateway, "cloud")["received"] == 1)
    application.disconnect()

    upstream.stop(graceful=True)
    wait_state(gateway, "cloud", "backoff")
    device = paho_client(gateway.port, "device")
    for seq in range(8):
        device.publish("devices/d1/t", str(seq), qos=1)  # 13 bytes queued each
    wait_until(lambda: status(gateway, "cloud")["dropped"] == {"queue_full": 3})
    found = samples(scrape(gateway))
    assert found[("mqtt_messages_dropped_total", (("broker", "cloud"), ("reason", "queue_full")))] == 3
    assert found[("mqtt_upstream_queue_depth", CLOUD)] == 5
    assert found[("mqtt_upstream_queue_bytes", CLOUD)] == 5 * 13
    assert found[("mqtt_upstream_messages_received_total", CLOUD)] == 1
    assert found[("mqtt_upstream_reconnects_total", CLOUD)] == 0
    assert found[("mqtt_broker_connection_status", CLOUD)] == 0

    upstream.start()
    wait_until(lambda: status(gateway, "cloud")["forwarded"] == 5)
    assert [int(watcher.get().payload) for _ in range(5)] == [3, 4, 5, 6, 7]  # the oldest were dropped
    found = samples(scrape(gateway))
    assert found[("mqtt_upstream_reconnects_total", CLOUD)] == 1
    assert found[("mqtt_messages_forwarded_total", CLOUD)] == 5
    assert found[("mqtt_upstream_queue_depth", CLOUD)] == 0
    assert found[("mqtt_upstream_queue_bytes", CLOUD)] == 0
    assert found[("mqtt_upstream_inflight", CLOUD)] == 0
    assert found[("mqtt_broker_connection_status", CLOUD)] == 1
    assert found[("mqtt_messages_dropped_total", (("broker", "cloud"), ("reason", "queue_full")))] == 3
    device.disconnect()
    watcher.disconnect()
