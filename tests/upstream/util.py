"""Shared pieces of the upstream tests: records for test brokers, waiting on links, /metrics."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mqttproxy.upstream.models import BrokerRecord
from tests.helpers import PahoClient, ThreadedGateway, paho_client, wait_until
from tests.mosquitto import Mosquitto


def record(broker_id: str, upstream: Mosquitto, **fields: Any) -> BrokerRecord:
    """A record pointing at ``upstream`` that reconnects quickly."""
    fields.setdefault("reconnect_min_delay", 0.05)
    fields.setdefault("reconnect_max_delay", 0.2)
    fields.setdefault("port", upstream.port)
    return BrokerRecord(id=broker_id, name=broker_id, address="127.0.0.1", **fields)


def add(gateway: ThreadedGateway, *records: BrokerRecord) -> None:
    for item in records:
        gateway.run(gateway.gateway.fanout.add(item))  # type: ignore[union-attr]


def status(gateway: ThreadedGateway, broker_id: str) -> dict[str, Any]:
    result: dict[str, Any] = gateway.call(lambda: gateway.gateway.fanout.status(broker_id))  # type: ignore[union-attr]
    return result


def wait_state(
    gateway: ThreadedGateway, broker_id: str, state: str = "connected", timeout: float = 5.0
) -> None:
    wait_until(lambda: status(gateway, broker_id)["state"] == state, timeout, f"{broker_id} {state}")


def upstream_subscriber(
    upstream: Mosquitto, topic_filter: str = "#", qos: int = 1, **options: Any
) -> PahoClient:
    """A paho client subscribed on the upstream broker itself."""
    client = paho_client(upstream.port, options.pop("client_id", ""), **options)
    assert client.subscribe(topic_filter, qos) == [qos]
    return client


def sequence(subscriber: PahoClient, count: int) -> list[int]:
    """The integer payloads of the next ``count`` messages."""
    return [int(subscriber.get().payload) for _ in range(count)]


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(gateway: ThreadedGateway) -> str:
    """The text of GET /metrics."""
    port = gateway.gateway.web.port  # type: ignore[union-attr]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return str(response.read().decode())


def samples(text: str) -> Samples:
    """(sample name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
