"""The timeseries REST API end to end: a data config over REST, a real MQTT device, queries back."""

from __future__ import annotations

import csv
import io
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqttproxy.config import TimeseriesConfig
from tests.helpers import ThreadedGateway, paho_client, require_binary, running_gateway, wait_until
from tests.webapp.api_client import Api, gateway_config, token_api, web_port

ROOMS = {
    "id": "rooms",
    "topic": "devices/{device}/sensors/{sensor}",
    "fields": [
        {"metric": "temperature", "pointer": "/temp", "unit": "°C"},
        {"metric": "humidity", "pointer": "/hum", "unit": "%"},
    ],
    "labels": {"site": "hall-7"},
    "timestamp": {"pointer": "/ts", "unit": "ms"},
}
START = (int(time.time()) // 3600 - 2) * 3_600_000  # two whole hours ago


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[ThreadedGateway]:
    config = gateway_config(tmp_path)
    config = config.model_copy(update={"timeseries": TimeseriesConfig(flush_interval=0.05)})
    with running_gateway(config) as gateway:
        yield gateway


@pytest.fixture
def api(gw: ThreadedGateway) -> Api:
    return token_api(web_port(gw))


def publish_readings(gw: ThreadedGateway, device: str, count: int, every_ms: int = 60_000) -> None:
    client = paho_client(gw.port, f"sensor-{device}")
    try:
        for index in range(count):
            payload = (
                f'{{"temp": {20 + index / 100}, "hum": {40 + index % 7}, "ts": {START + index * every_ms}}}'
            )
            client.publish(f"devices/{device}/sensors/air", payload, qos=1)
    finally:
        client.disconnect()


def series_of(api: Api, metric: str, **labels: str) -> dict[str, Any]:
    query = "&".join([f"metric={metric}", *(f"label={name}={value}" for name, value in labels.items())])
    found = api.ok("GET", f"/api/timeseries/series?{query}")
    assert len(found) == 1, found
    result: dict[str, Any] = found[0]
    return result


def wait_for_samples(api: Api, count: int) -> dict[str, Any]:
    def stored() -> bool:
        found = api.ok("GET", "/api/timeseries/series?metric=temperature")
        return bool(found) and api.ok("GET", f"/api/timeseries/series/{found[0]['id']}")["samples"] >= count

    wait_until(stored, message=f"{count} samples stored")
    return series_of(api, "temperature")


def test_a_device_publishes_and_the_query_api_shows_the_values(gw: ThreadedGateway, api: Api) -> None:
    created = api.ok("POST", "/api/timeseries/configs", ROOMS, status=201)
    assert created["stats"] == {"messages": 0, "points": 0, "failures": {}}
    publish_readings(gw, "d1", 120)
    series = wait_for_samples(api, 120)
    assert series["labels"] == {"device": "d1", "sensor": "air", "site": "hall-7"}
    one = api.ok("GET", f"/api/timeseries/series/{series['id']}")
    assert (one["first"], one["last"], one["samples"]) == (START, START + 119 * 60_000, 120)

    points = api.ok("GET", f"/api/timeseries/series/{series['id']}/points?from={START}&to=now&limit=5")
    assert points["points"] == [[START + index * 60_000, 20 + index / 100] for index in range(5)]
    assert points["truncated"] is True
    newest = api.ok("GET", f"/api/timeseries/series/{series['id']}/points?from={START}&order=desc&limit=1")
    assert newest["points"] == [[START + 119 * 60_000, 20 + 119 / 100]]

    last = api.ok("GET", f"/api/timeseries/series/{series['id']}/last")
    assert (last["timestamp"], last["value"]) == (START + 119 * 60_000, 20 + 119 / 100)

    hourly = api.ok(
        "GET",
        f"/api/timeseries/series/{series['id']}/aggregate?from={START}&to={START + 7_200_000}"
        "&step=1h&agg=min,max,avg,count,first,last,sum",
    )
    assert [bucket["timestamp"] for bucket in hourly["buckets"]] == [START, START + 3_600_000]
    first_hour = hourly["buckets"][0]
    assert first_hour["count"] == 60
    assert first_hour["min"] == 20.0
    assert first_hour["max"] == pytest.approx(20.59)
    assert first_hour["avg"] == pytest.approx(sum(20 + index / 100 for index in range(60)) / 60)
    assert (first_hour["first"], first_hour["last"]) == (20.0, pytest.approx(20.59))

    stats = api.ok("GET", "/api/timeseries/configs/rooms")["stats"]
    assert stats == {"messages": 120, "points": 240, "failures": {}}


def test_csv_export_of_points_and_aggregates(gw: ThreadedGateway, api: Api) -> None:
    api.ok("POST", "/api/timeseries/configs", ROOMS, status=201)
    publish_readings(gw, "d1", 10)
    series = wait_for_samples(api, 10)
    response = api.get(f"/api/timeseries/series/{series['id']}/points?from={START}&format=csv")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.body.decode())))
    assert rows[0] == ["timestamp_ms", "time", "value"]
    assert len(rows) == 11
    assert (rows[1][0], rows[1][1][-1], float(rows[1][2])) == (str(START), "Z", 20.0)

    response = api.get(
        f"/api/timeseries/series/{series['id']}/aggregate?from={START}&to={START + 600_000}"
        "&step=5m&agg=count,max&format=csv"
    )
    rows = list(csv.reader(io.StringIO(response.body.decode())))
    assert rows == [
        ["timestamp_ms", "time", "count", "max"],
        [str(START), rows[1][1], "5", str(20 + 4 / 100)],
        [str(START + 300_000), rows[2][1], "5", str(20 + 9 / 100)],
    ]


def test_bad_payloads_are_counted_and_still_delivered(gw: ThreadedGateway, api: Api) -> None:
    api.ok("POST", "/api/timeseries/configs", ROOMS, status=201)
    listener = paho_client(gw.port, "listener")
    listener.subscribe("devices/#", qos=1)
    device = paho_client(gw.port, "sensor")
    bad = [
        b"not json",
        b'{"temp": "warm", "hum": NaN, "ts": 1}',
        b'{"temp": 1, "hum": 2, "ts": 99999999999999}',
    ]
    for payload in bad:
        device.publish("devices/d1/sensors/air", payload, qos=1)
    for payload in bad:
        assert listener.get().payload == payload  # the device path does not care
    device.disconnect()
    listener.disconnect()

    def counted() -> bool:
        return sum(api.ok("GET", "/api/timeseries/configs/rooms")["stats"]["failures"].values()) >= 4

    wait_until(counted, message="failures counted")
    stats = api.ok("GET", "/api/timeseries/configs/rooms")["stats"]
    assert stats["points"] == 0
    assert stats["failures"] == {"not_json": 1, "not_a_number": 1, "not_finite": 1, "timestamp_in_future": 1}
    metrics = api.get("/metrics").body.decode()
    assert 'mqtt_timeseries_extraction_failures_total{config="rooms",reason="not_json"} 1.0' in metrics
    assert 'mqtt_timeseries_messages_total{config="rooms"} 3.0' in metrics
    promtool = require_binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=metrics, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_config_crud_and_its_errors(api: Api) -> None:
    assert api.ok("GET", "/api/timeseries/configs") == []
    api.ok("POST", "/api/timeseries/configs", ROOMS, status=201)
    assert api.call("POST", "/api/timeseries/configs", ROOMS).status == 409
    changed = {**ROOMS, "topic": "rooms/{device}", "enabled": False}
    assert api.ok("PUT", "/api/timeseries/configs/rooms", changed)["topic"] == "rooms/{device}"
    assert api.ok("GET", "/api/timeseries/configs/rooms")["enabled"] is False

    moved = api.call("PUT", "/api/timeseries/configs/rooms", {**ROOMS, "id": "other"})
    assert (moved.status, moved.error()["field"]) == (400, "id")
    unknown = api.call("POST", "/api/timeseries/configs", {**ROOMS, "id": "x", "colour": "red"})
    assert (unknown.status, unknown.error()["field"]) == (400, "colour")
    bad_topic = api.call("POST", "/api/timeseries/configs", {**ROOMS, "id": "x", "topic": "a/#/b"})
    assert (bad_topic.status, bad_topic.error()["field"]) == (400, "topic")
    bad_metric = {**ROOMS, "id": "x", "fields": [{"metric": "1bad", "pointer": "/a"}]}
    response = api.call("POST", "/api/timeseries/configs", bad_metric)
    assert (response.status, response.error()["field"]) == (400, "fields.0.metric")
    assert api.call("PUT", "/api/timeseries/configs/nope", {**ROOMS, "id": "nope"}).status == 404
    assert [config["id"] for config in api.ok("GET", "/api/timeseries/configs")] == ["rooms"]

    assert api.ok("DELETE", "/api/timeseries/configs/rooms", status=204) is None
    assert api.call("GET", "/api/timeseries/configs/rooms").status == 404
    assert api.call("DELETE", "/api/timeseries/configs/rooms").status == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2000&to=1000", "from"),
        ("from=now-1h&to=now-2h", "from"),
        ("from=yesterday", "from"),
        ("to=12:00", "to"),
        ("from=0&to=now&step=1ms", "step"),
        ("step=0s", "step"),
        ("step=5%20minutes", "step"),
        ("agg=median", "agg"),
        ("agg=", "agg"),
        ("format=xml", "format"),
        ("from=0&to=99999999999999999999999", "to"),
        ("from=now-99999999999999999999d", "from"),
        ("from=now-1000000w", "from"),
        ("from=0001-01-01T00:00:00Z", "from"),
        ("step=99999999999999999999999d", "step"),
    ],
)
def test_bad_aggregate_parameters_are_400_naming_the_parameter(
    gw: ThreadedGateway, api: Api, query: str, field: str
) -> None:
    api.ok("POST", "/api/timeseries/configs", ROOMS, status=201)
    publish_readings(gw, "d1", 1)
    series = wait_for_samples(api, 1)
    response = api.call("GET", f"/api/timeseries/series/{series['id']}/aggregate?{query}")
    assert response.status == 400, response.body
    assert response.error()["field"] == field


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=100001", "limit"), ("limit=ten", "limit"), ("order=up", "order")],
)
def test_bad_point_parameters_are_400_naming_the_parameter(
    gw: ThreadedGateway, api: Api, query: str, field: str
) -> None:
    api.ok("POST", "/api/timeseries/configs", ROOMS, status=201)
    publish_readings(gw, "d1", 1)
    series = wait_for_samples(api, 1)
    response = api.call("GET", f"/api/timeseries/series/{series['id']}/points?{query}")
    assert (response.status, response.error()["field"]) == (400, field)


def test_unknown_series_are_404(api: Api) -> None:
    for path in ["/api/timeseries/series/999", "/api/timeseries/series/abc/points"]:
        assert api.call("GET", path).status == 404
    assert api.call("GET", "/api/timeseries/series/999/last").status == 404
    assert api.call("GET", "/api/timeseries/series?label=novalue").status == 400
    bad_name = api.call("GET", '/api/timeseries/series?label=a"b=1')
    assert (bad_name.status, bad_name.error()["field"]) == (400, "label")
