"""Fan-out to real Mosquitto upstreams: delivery, routes, bridge-in, outages."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from mqttproxy.upstream.models import Route
from tests.helpers import ThreadedGateway, paho_client, wait_until
from tests.mosquitto import Mosquitto
from tests.upstream.util import add, record, sequence, status, upstream_subscriber, wait_state

MosquittoFactory = Callable[..., Mosquitto]


@pytest.mark.parametrize("qos", [0, 1])
def test_every_message_reaches_every_upstream_once_in_order(
    gateway: ThreadedGateway, mosquitto_factory: MosquittoFactory, qos: int
) -> None:
    count = 2_000
    upstreams = [mosquitto_factory() for _ in range(3)]
    subscribers = [upstream_subscriber(upstream) for upstream in upstreams]
    add(gateway, *(record(f"up{index}", upstream) for index, upstream in enumerate(upstreams)))
    for index in range(3):
        wait_state(gateway, f"up{index}")
    device = paho_client(gateway.port, "device")
    for seq in range(count):
        device.client.publish("devices/d1/seq", str(seq), qos=qos)
    for subscriber in subscribers:
        assert sequence(subscriber, count) == list(range(count))
        subscriber.assert_no_message()  # exactly once
        subscriber.disconnect()
    for index in range(3):
        assert status(gateway, f"up{index}")["forwarded"] == count
    # Each link introduces itself as {client_id_prefix}-{gateway_id}.
    assert "as mqttproxy-test-gateway " in upstreams[0].log()
    device.disconnect()


def test_routes_filter_exclude_remap_and_cap_qos(gateway: ThreadedGateway, upstream: Mosquitto) -> None:
    routes = [
        Route(filter="devices/+/telemetry", remap="site7/{1}/t", max_qos=1),
        Route(filter="alerts/#", exclude=["alerts/debug/#"]),
    ]
    subscriber = upstream_subscriber(upstream, qos=2)
    add(gateway, record("cloud", upstream, routes=routes, max_qos=2))
    wait_state(gateway, "cloud")
    device = paho_client(gateway.port, "device")
    device.publish("devices/d1/status", b"not routed", qos=1)
    device.publish("alerts/debug/trace", b"excluded", qos=1)
    device.publish("devices/d1/telemetry", b"21.5", qos=2)
    device.publish("alerts/fire/hall", b"fire", qos=2)
    first = subscriber.get()
    assert (first.topic, first.payload, first.qos) == ("site7/d1/t", b"21.5", 1)  # remapped, capped
    second = subscriber.get()
    assert (second.topic, second.payload, second.qos) == ("alerts/fire/hall", b"fire", 2)
    subscriber.assert_no_message()
    device.disconnect()
    subscriber.disconnect()


def test_retain_passthrough_is_per_route(gateway: ThreadedGateway, upstream: Mosquitto) -> None:
    routes = [Route(filter="keep/#"), Route(filter="strip/#", retain=False)]
    add(gateway, record("cloud", upstream, routes=routes))
    wait_state(gateway, "cloud")
    device = paho_client(gateway.port, "device")
    device.publish("keep/config", b"kept", qos=1, retain=True)
    device.publish("strip/config", b"not retained upstream", qos=1, retain=True)
    wait_until(lambda: status(gateway, "cloud")["forwarded"] == 2)
    late = upstream_subscriber(upstream, "#", qos=1)
    message = late.get()
    assert (message.topic, message.retain) == ("keep/config", True)
    late.assert_no_message()
    late.disconnect()
    device.disconnect()


def test_bridge_in_reaches_local_subscribers_and_other_upstreams_only(
    gateway: ThreadedGateway, mosquitto_factory: MosquittoFactory
) -> None:
    cloud, backup = mosquitto_factory(), mosquitto_factory()
    routes = [Route(filter="#"), Route(direction="in", filter="cmd/#", remap="devices/{1}/cmd")]
    add(gateway, record("cloud", cloud, routes=routes), record("backup", backup))
    wait_state(gateway, "cloud")
    wait_state(gateway, "backup")
    local = paho_client(gateway.port, "device-d1")
    local.subscribe("devices/+/cmd", 1)
    cloud_watch = upstream_subscriber(cloud, "devices/#")
    backup_watch = upstream_subscriber(backup, "devices/#")
    application = paho_client(cloud.port, "application")
    application.publish("cmd/d1", b"reboot", qos=1)
    message = local.get()
    assert (message.topic, message.payload) == ("devices/d1/cmd", b"reboot")
    assert backup_watch.get().topic == "devices/d1/cmd"  # fanned out to the other upstream
    cloud_watch.assert_no_message()  # never sent back where it came from
    assert status(gateway, "cloud")["received"] == 1
    for client in (local, cloud_watch, backup_watch, application):
        client.disconnect()


def test_an_upstream_restarted_mid_stream_gets_its_queue_in_order(
    gateway: ThreadedGateway, mosquitto_factory: MosquittoFactory
) -> None:
    upstream = mosquitto_factory(persistence=True)
    healthy = mosquitto_factory()
    # Persistent sessions on the upstream, so its subscriber is sure to get
    # what the gateway delivers while it reconnects itself.
    watcher = upstream_subscriber(upstream, client_id="watcher", clean_session=False)
    healthy_watcher = upstream_subscriber(healthy)
    add(gateway, record("flaky", upstream), record("healthy", healthy))
    wait_state(gateway, "flaky")
    wait_state(gateway, "healthy")
    device = paho_client(gateway.port, "device")
    count = 3_000
    stopped = threading.Event()

    def publish_all() -> None:
        for seq in range(count):
            device.client.publish("telemetry", str(seq), qos=1)
            if seq == count // 3:
                stopped.wait(5)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    wait_until(lambda: status(gateway, "flaky")["forwarded"] >= count // 4)
    upstream.stop(graceful=True)
    stopped.set()
    wait_until(lambda: status(gateway, "flaky")["state"] != "connected")
    wait_until(lambda: status(gateway, "flaky")["queue_depth"] > 0)
    upstream.start()
    publisher.join(10)
    # Messages in flight when it went down may come twice; none is missing
    # and the first copies are in order.
    first_copies: dict[int, None] = {}
    while len(first_copies) < count:
        first_copies.setdefault(int(watcher.get().payload))
    assert list(first_copies) == list(range(count))
    assert sequence(healthy_watcher, count) == list(range(count))
    final = status(gateway, "flaky")
    assert final["reconnects"] >= 1
    assert final["dropped"] == {}
    for client in (device, watcher, healthy_watcher):
        client.disconnect()


def test_link_status_is_published_retained_on_sys(gateway: ThreadedGateway, upstream: Mosquitto) -> None:
    before = time.time()
    add(gateway, record("cloud", upstream))
    wait_state(gateway, "cloud")
    observer = paho_client(gateway.port, "observer")
    observer.subscribe("$SYS/mqttproxy/brokers/+/state", 0)
    message = observer.get()
    assert message.topic == "$SYS/mqttproxy/brokers/cloud/state"
    assert message.retain
    state = json.loads(message.payload)
    assert (state["id"], state["state"], state["address"]) == (
        "cloud",
        "connected",
        f"127.0.0.1:{upstream.port}",
    )
    assert before <= state["connected_since"] <= time.time()
    assert (state["last_error"], state["reconnects"], state["queue_depth"]) == (None, 0, 0)
    upstream.stop()
    changes = [json.loads(observer.get().payload) for _ in range(2)]
    assert changes[0]["state"] == "backoff"
    assert changes[0]["connected_since"] is None
    assert changes[0]["last_error"] == f"connection to 127.0.0.1:{upstream.port} lost"
    gateway.run(gateway.gateway.fanout.delete("cloud"))  # type: ignore[union-attr]
    late = paho_client(gateway.port, "late")
    late.subscribe("$SYS/mqttproxy/brokers/#", 0)
    late.assert_no_message()  # the retained status went with the broker
    observer.disconnect()
    late.disconnect()
