"""The timeseries pages over plain HTTP: data config forms, the series browser, a series' page, CSRF."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time
from collections.abc import Callable
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mqttproxy.config import TimeseriesConfig
from mqttproxy.timeseries import DataConfig, Recorder
from mqttproxy.webapp.registry_forms import FieldError
from mqttproxy.webapp.timeseries_forms import (
    config_values,
    format_label_filter,
    format_labels,
    parse_label_filter,
    parse_labels,
    validate_config,
    values_from_post,
)
from mqttproxy.webapp.timeseries_pages import reading
from tests.helpers import ThreadedGateway, paho_client, wait_until
from tests.webapp.conftest import WebClient, make_web_config, web_port
from tests.webapp.test_pages import field_errors, input_value, textarea

PAGES = ["/timeseries", "/timeseries/configs", "/timeseries/configs/new"]
ITEM_PAGES = ["/timeseries/configs/rooms/edit", "/timeseries/configs/rooms/delete"]
ROOMS = DataConfig.model_validate(
    {
        "id": "rooms",
        "topic": "devices/{device}/sensors/{sensor}",
        "fields": [
            {"metric": "temperature", "pointer": "/temp", "unit": "°C"},
            {"metric": "humidity", "pointer": "/hum", "unit": "%", "retention_days": 7},
        ],
        "labels": {"site": "hall-7"},
    }
)


@pytest.fixture
def web_gateway(
    gateway_factory: Callable[..., ThreadedGateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ThreadedGateway:
    """The dashboard's gateway, with a recorder that writes every 50 ms."""
    monkeypatch.delenv("MQTTPROXY_ADMIN_PASSWORD", raising=False)
    config = make_web_config(tmp_path)
    return gateway_factory(config.model_copy(update={"timeseries": TimeseriesConfig(flush_interval=0.05)}))


# --- helpers ----------------------------------------------------------------------------


def recorder(gateway: ThreadedGateway) -> Recorder:
    assert gateway.gateway is not None
    return gateway.gateway.recorder


def configs(gateway: ThreadedGateway) -> list[DataConfig]:
    return gateway.call(recorder(gateway).configs)


def add_config(gateway: ThreadedGateway, config: DataConfig = ROOMS) -> None:
    gateway.run(recorder(gateway).add_config(config))


def config_form(**overrides: str) -> dict[str, str]:
    """A valid add form as a browser posts it: two fields, an empty third row, checked boxes only."""
    fields = {
        "id": "rooms",
        "topic": "devices/{device}/sensors/{sensor}",
        "enabled": "on",
        "labels": "site=hall-7\r\n\r\nfloor = 3",
        "timestamp_pointer": "/ts",
        "timestamp_unit": "ms",
        "fields-0-metric": "temperature",
        "fields-0-source": "pointer",
        "fields-0-pointer": "/temp",
        "fields-0-type": "gauge",
        "fields-0-unit": "°C",
        "fields-0-retention_days": "30",
        "fields-1-metric": "battery",
        "fields-1-source": "payload",
        "fields-1-pointer": "/ignored",
        "fields-1-type": "counter",
        "fields-1-unit": "",
        "fields-1-retention_days": "0.5",
        "fields-2-metric": "",
        "fields-2-source": "pointer",
        "fields-2-pointer": "",
        "fields-2-type": "gauge",
        "fields-2-unit": "",
        "fields-2-retention_days": "30",
    }
    fields.update(overrides)
    return {name: value for name, value in fields.items() if value is not None}


def select_value(page: str, name: str) -> str:
    found = re.search(rf'<select id="f-{re.escape(name)}" name="{re.escape(name)}".*?</select>', page, re.S)
    assert found, f"no select {name}"
    selected = re.search(r'<option value="([^"]*)" selected>', found.group(0))
    assert selected, f"nothing selected in {name}"
    return unescape(selected.group(1))


def series_rows(page: str) -> list[tuple[str, str]]:
    """(metric, labels text) of the series browser's rows."""
    rows = re.findall(r'<tr data-series="\d+" data-metric="([^"]+)">(.*?)</tr>', page, re.S)
    chips = [re.findall(r'class="chip mono"[^>]*>([^<]*)<', body) for _, body in rows]
    return [(unescape(row[0]), unescape(" ".join(labels))) for row, labels in zip(rows, chips, strict=True)]


def publish(gateway: ThreadedGateway, readings: list[tuple[str, str]]) -> None:
    """A device publishes each (topic, payload) at QoS 1."""
    client = paho_client(gateway.port, "sensor")
    try:
        for topic, payload in readings:
            client.publish(topic, payload, qos=1)
    finally:
        client.disconnect()


def wait_for_points(gateway: ThreadedGateway, config_id: str, points: int) -> None:
    def recorded() -> bool:
        stats = recorder(gateway).stats.get(config_id)
        return stats is not None and stats.points >= points and recorder(gateway).points >= points

    wait_until(lambda: gateway.call(recorded), message=f"{points} points recorded")


# --- logging in, rendering ----------------------------------------------------------------


@pytest.mark.parametrize("path", [*PAGES, *ITEM_PAGES, "/timeseries/series/1"])
def test_timeseries_pages_send_strangers_to_the_login_page(web_client: WebClient, path: str) -> None:
    response = web_client.get(path)
    assert response.status == 302
    assert response.location is not None
    location = urlsplit(response.location)
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [path]
    assert web_client.post(path, config_form(), csrf=False).status == 401
    assert web_client.post("/timeseries/configs/new", config_form(), csrf=False).status == 401


def test_every_timeseries_page_renders_for_an_operator(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    add_config(web_gateway)
    for path in [*PAGES, *ITEM_PAGES]:
        page = admin_client.get(path)
        assert page.status == 200, path
        assert f'<meta name="csrf-token" content="{admin_client.csrf_token}">' in page.text
        assert '<a href="/timeseries" aria-current="page">Timeseries</a>' in page.text, path
    assert '<a href="/timeseries" >Timeseries</a>' in admin_client.get("/devices").text
    configs_page = admin_client.get("/timeseries/configs").text
    assert '<a href="/timeseries/configs" aria-current="page">Data configs</a>' in configs_page


def test_empty_lists_say_what_to_do(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    assert "No data configs yet: nothing is recorded." in admin_client.get("/timeseries/configs").text
    assert "Nothing is recorded yet." in admin_client.get("/timeseries").text
    add_config(web_gateway)
    assert "No series yet: no message has given a number." in admin_client.get("/timeseries").text
    assert "No series matches." in admin_client.get("/timeseries?metric=nothing").text


def test_unknown_ids_are_404_pages(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_config(web_gateway)
    for path in ["/timeseries/configs/nope/edit", "/timeseries/configs/nope/delete"]:
        page = admin_client.get(path)
        assert page.status == 404, path
        assert "There is no data config with id &#39;nope&#39;." in page.text
        assert 'href="/timeseries/configs">Back to the data configs' in page.text
    for path in ["/timeseries/configs/nope/edit", "/timeseries/configs/nope/delete"]:
        assert admin_client.post(path, config_form(id="nope")).status == 404, path
    for text in ["1", "abc", "99999999999999999999"]:
        page = admin_client.get(f"/timeseries/series/{text}")
        assert page.status == 404, text
        assert f"There is no series with id &#39;{text}&#39;." in page.text
    assert configs(web_gateway) == [ROOMS]


# --- data configs ---------------------------------------------------------------------------


def test_a_data_config_added_through_the_form(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    new = admin_client.get("/timeseries/configs/new").text
    assert input_value(new, "fields-0-metric") == ""
    assert select_value(new, "fields-0-source") == "pointer"
    assert input_value(new, "fields-0-retention_days") == "30"
    assert "fields-1-metric" not in new.split("<template")[0]  # one row for the first field
    assert 'name="fields-__N__-metric"' in new  # the row the script copies
    response = admin_client.post("/timeseries/configs/new", config_form())
    assert response.status == 303, response.text
    assert response.location == "/timeseries/configs?flash=config-added&id=rooms"
    [config] = configs(web_gateway)
    assert config.model_dump() == {
        "id": "rooms",
        "topic": "devices/{device}/sensors/{sensor}",
        "fields": [
            {
                "metric": "temperature",
                "pointer": "/temp",
                "type": "gauge",
                "unit": "°C",
                "retention_days": 30,
            },
            {"metric": "battery", "pointer": None, "type": "counter", "unit": "", "retention_days": 0.5},
        ],
        "labels": {"site": "hall-7", "floor": "3"},
        "timestamp": {"pointer": "/ts", "unit": "ms"},
        "enabled": True,
    }
    page = admin_client.get(response.location).text
    assert "Data config rooms added: matching messages are recorded from now on." in page
    row = page.split('<tr data-config="rooms">')[1].split("</tr>")[0]
    topic = re.search(r'data-field="topic">(.*?)</td>', row)
    assert topic
    assert topic.group(1) == "devices/<wbr>{device}/<wbr>sensors/<wbr>{sensor}"
    assert 'href="/timeseries?metric=temperature"' in row
    assert 'href="/timeseries?metric=battery"' in row
    assert "site=hall-7" in row
    assert '<span class="badge badge-enabled" data-field="enabled">enabled</span>' in row
    assert 'data-confirm="Delete data config rooms?' in row


def test_a_bad_form_shows_pydantic_errors_inline_and_saves_nothing(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    admin_client.get("/timeseries/configs/new")
    form = config_form(
        id="Rooms!",
        topic="devices/{device}/#/x",
        labels="site=hall-7\nnot a label",
        timestamp_pointer="ts",
        **{
            "fields-0-metric": "9temperature",
            "fields-0-retention_days": "-1",
            "fields-1-source": "pointer",
            "fields-1-pointer": "temp",
            "fields-2-metric": "temperature2",
            "fields-2-unit": "° C",
            "fields-2-type": "histogram",
        },
    )
    page = admin_client.post("/timeseries/configs/new", form)
    assert page.status == 400
    text = page.text
    assert "Nothing was saved." in text
    assert field_errors(text, "id") == [
        "Bad id 'Rooms!': 1 to 64 characters: lowercase letters, digits, '_' and '-', "
        "starting with a letter or digit"
    ]
    assert field_errors(text, "topic") == ["Level 3 '#': '#' must be the last level of a topic filter"]
    assert field_errors(text, "labels") == ["Line 2: write a label as name=value, e.g. site=hall-7."]
    assert field_errors(text, "timestamp_pointer") == [
        "A JSON Pointer is '' (the whole document) or starts with '/', not 'ts'"
    ]
    assert field_errors(text, "fields-0-metric") == [
        "Bad metric name '9temperature': 1 to 128 characters: letters, digits, '_' and ':', "
        "not starting with a digit"
    ]
    assert field_errors(text, "fields-0-retention_days") == ["Input should be greater than 0"]
    assert field_errors(text, "fields-1-pointer") == [
        "A JSON Pointer is '' (the whole document) or starts with '/', not 'temp'"
    ]
    assert field_errors(text, "fields-2-unit") == [
        "A unit has no spaces (it is compared with the text after a number): '° C'"
    ]
    assert field_errors(text, "fields-2-type") == ["Input should be 'gauge' or 'counter'"]
    # What was typed comes back, as typed.
    assert input_value(text, "id") == "Rooms!"
    assert input_value(text, "fields-0-metric") == "9temperature"
    assert input_value(text, "fields-2-metric") == "temperature2"
    assert textarea(text, "labels") == "site=hall-7\nnot a label"
    assert 'aria-invalid="true" aria-describedby="fields-1-pointer-error"' in text
    assert configs(web_gateway) == []


@pytest.mark.parametrize(
    ("overrides", "box", "message"),
    [
        ({"id": ""}, "id", "Required."),
        ({"topic": "  "}, "topic", "Required."),
        ({"topic": "devices/{device}/{device}"}, "topic", "Level 3 '{device}': label 'device' is already"),
        ({"topic": "devices/sensor{id}"}, "topic", "Level 2 'sensor{id}': braces must enclose a whole"),
        ({"labels": "device=d1"}, "labels", "Label 'device' is already captured from the topic"),
        ({"labels": "__name=x"}, "labels", "Bad label name '__name'"),
        ({"labels": "site=a\nsite=b"}, "labels", "Line 2: label 'site' is given twice."),
        ({"timestamp_unit": "minutes"}, "timestamp_unit", "Input should be 's', 'ms', 'us' or 'ns'"),
        ({"fields-1-metric": "temperature"}, "fields-1-metric", "Metric 'temperature' is already field 1."),
        ({"fields-0-metric": ""}, "fields-0-metric", "Required."),
        ({"fields-0-retention_days": "forever"}, "fields-0-retention_days", "Input should be a valid number"),
        ({"fields-0-source": "header"}, "fields-0-source", "Choose a JSON Pointer or the whole payload."),
        ({"fields-0-unit": "x" * 33}, "fields-0-unit", "String should have at most 32 characters"),
    ],
)
def test_each_bad_box_is_named(
    admin_client: WebClient, web_gateway: ThreadedGateway, overrides: dict[str, str], box: str, message: str
) -> None:
    admin_client.get("/timeseries/configs/new")
    page = admin_client.post("/timeseries/configs/new", config_form(**overrides))
    assert page.status == 400
    errors = field_errors(page.text, box)
    assert len(errors) == 1, (box, errors, page.text)
    assert errors[0].startswith(message), errors
    assert configs(web_gateway) == []


def test_a_config_needs_a_field(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    admin_client.get("/timeseries/configs/new")
    empty = {f"fields-{row}-{name}": "" for row in range(3) for name in ("metric", "pointer", "unit")}
    page = admin_client.post("/timeseries/configs/new", config_form(**empty))
    assert page.status == 400
    assert field_errors(page.text, "fields") == [
        "Give at least one field: its metric name and where its value is."
    ]
    removed = admin_client.post(
        "/timeseries/configs/new", config_form(**{"fields-0-remove": "on", "fields-1-remove": "on"})
    )
    assert field_errors(removed.text, "fields") == [
        "Give at least one field: its metric name and where its value is."
    ]
    assert 'name="fields-0-remove" value="on" checked' in removed.text
    assert configs(web_gateway) == []


def test_a_taken_id_is_refused(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_config(web_gateway)
    admin_client.get("/timeseries/configs/new")
    page = admin_client.post("/timeseries/configs/new", config_form(topic="other/#"))
    assert page.status == 409
    assert field_errors(page.text, "id") == ["A data config with this id exists already."]
    assert configs(web_gateway) == [ROOMS]


def test_a_data_config_edited_through_the_form(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_config(web_gateway)
    page = admin_client.get("/timeseries/configs/rooms/edit").text
    assert input_value(page, "topic") == "devices/{device}/sensors/{sensor}"
    assert input_value(page, "fields-0-metric") == "temperature"
    assert input_value(page, "fields-0-pointer") == "/temp"
    assert input_value(page, "fields-0-unit") == "°C"
    assert input_value(page, "fields-1-retention_days") == "7"
    assert input_value(page, "fields-2-metric") == ""  # a row for another field
    assert textarea(page, "labels") == "site=hall-7"
    assert '<p class="mono static">rooms</p>' in page
    assert 'id="f-id"' not in page  # the id cannot change
    fields = {
        "id": "renamed",  # ignored
        "topic": "sensors/{device}",
        "labels": "",
        "timestamp_pointer": "",
        "timestamp_unit": "ms",
        "fields-0-metric": "temperature",
        "fields-0-source": "payload",
        "fields-0-pointer": "/temp",
        "fields-0-type": "gauge",
        "fields-0-unit": "°C",
        "fields-0-retention_days": "90",
        "fields-1-metric": "humidity",
        "fields-1-source": "pointer",
        "fields-1-pointer": "/hum",
        "fields-1-type": "gauge",
        "fields-1-unit": "%",
        "fields-1-retention_days": "7",
        "fields-1-remove": "on",
    }
    response = admin_client.post("/timeseries/configs/rooms/edit", fields)
    assert response.status == 303, response.text
    assert response.location == "/timeseries/configs?flash=config-saved&id=rooms"
    [config] = configs(web_gateway)
    assert config == DataConfig.model_validate(
        {
            "id": "rooms",
            "topic": "sensors/{device}",
            "fields": [{"metric": "temperature", "pointer": None, "unit": "°C", "retention_days": 90}],
            "enabled": False,  # the box was not ticked
        }
    )
    page = admin_client.get(response.location).text
    assert "Data config rooms saved." in page
    assert '<span class="badge badge-disabled" data-field="enabled">disabled</span>' in page
    edit = admin_client.get("/timeseries/configs/rooms/edit").text
    assert select_value(edit, "fields-0-source") == "payload"
    assert 'name="enabled" value="on" checked' not in edit


def test_a_bad_edit_changes_nothing(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_config(web_gateway)
    admin_client.get("/timeseries/configs/rooms/edit")
    page = admin_client.post("/timeseries/configs/rooms/edit", config_form(topic="a/#/b"))
    assert page.status == 400
    assert field_errors(page.text, "topic") == ["Level 2 '#': '#' must be the last level of a topic filter"]
    assert "Edit data config" in page.text
    assert configs(web_gateway) == [ROOMS]


def test_delete_asks_first(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_config(web_gateway)
    admin_client.get("/timeseries/configs")
    for asked in [
        admin_client.get("/timeseries/configs/rooms/delete"),
        admin_client.post("/timeseries/configs/rooms/delete"),
    ]:
        assert asked.status == 200
        assert "<h1>Delete data config rooms?</h1>" in asked.text
        assert '<input type="hidden" name="confirmed" value="yes">' in asked.text
    assert configs(web_gateway) == [ROOMS]
    response = admin_client.post("/timeseries/configs/rooms/delete", {"confirmed": "yes"})
    assert response.status == 303
    assert response.location == "/timeseries/configs?flash=config-deleted&id=rooms"
    assert configs(web_gateway) == []
    page = admin_client.get(response.location).text
    assert "Data config rooms deleted; the series it recorded stay until their retention." in page


def test_forms_without_the_csrf_token_are_refused(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    add_config(web_gateway)
    admin_client.get("/timeseries/configs")
    attempts = {
        "/timeseries/configs/new": config_form(id="other"),
        "/timeseries/configs/rooms/edit": config_form(topic="changed/#"),
        "/timeseries/configs/rooms/delete": {"confirmed": "yes"},
    }
    for path, fields in attempts.items():
        assert admin_client.post(path, fields, csrf=False).status == 403, path
        assert admin_client.post(path, {**fields, "csrf_token": "forged"}, csrf=False).status == 403, path
    assert configs(web_gateway) == [ROOMS]


def test_flash_messages_only_name_valid_ids(admin_client: WebClient) -> None:
    page = admin_client.get("/timeseries/configs?flash=config-saved&id=<script>").text
    assert "Data config  saved." in page
    assert "<script>" not in page


# --- what was recorded ----------------------------------------------------------------------


def test_a_device_publishes_and_the_pages_show_what_was_recorded(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    add_config(web_gateway)
    now = int(time.time() * 1000)
    publish(
        web_gateway,
        [
            ("devices/d1/sensors/air", '{"temp": 21.5, "hum": 40}'),
            ("devices/d1/sensors/air", '{"temp": 22.25, "hum": 41}'),
            ("devices/d2/sensors/air", '{"temp": "19.75 °C", "hum": 55}'),
            ("devices/d2/sensors/air", "not json"),
            ("devices/d2/sensors/air", '{"temp": "80 °F"}'),
        ],
    )
    wait_for_points(web_gateway, "rooms", 6)

    configs_page = admin_client.get("/timeseries/configs").text
    row = configs_page.split('<tr data-config="rooms">')[1].split("</tr>")[0]
    assert '<td data-label="Messages" class="num" data-field="messages">5</td>' in row
    assert '<td data-label="Points" class="num" data-field="points">6</td>' in row
    reasons = r'<li data-reason="([a-z_]+)"><span class="mono">[a-z_]+</span> (\d+)</li>'
    failures = dict(re.findall(reasons, row))
    assert failures == {"not_json": "1", "unit_mismatch": "1", "pointer_missing": "1"}
    assert '<span class="error-text">3</span>' in row
    assert "data-recorder=" not in configs_page  # nothing dropped, no write failed

    browser = admin_client.get("/timeseries").text
    assert series_rows(browser) == [
        ("humidity", "device=d1 sensor=air site=hall-7"),
        ("humidity", "device=d2 sensor=air site=hall-7"),
        ("temperature", "device=d1 sensor=air site=hall-7"),
        ("temperature", "device=d2 sensor=air site=hall-7"),
    ]
    d1 = browser.split('data-metric="temperature">')[1].split("</tr>")[0]
    assert '<td data-label="Samples" class="num" data-field="samples">2</td>' in d1
    assert '<td data-label="Last value" class="num" data-field="value">22.25 °C</td>' in d1
    assert 'href="/timeseries?metric=temperature&amp;labels=device%3Dd1"' in d1

    filtered = admin_client.get("/timeseries?metric=temperature&labels=device%3Dd2+site%3Dhall-7").text
    assert series_rows(filtered) == [("temperature", "device=d2 sensor=air site=hall-7")]
    assert admin_client.get("/timeseries?labels=device%3Dd2").text.count("<tr data-series=") == 2

    series_id = int(re.findall(r'<tr data-series="(\d+)" data-metric="temperature">', browser)[0])
    page = admin_client.get(f"/timeseries/series/{series_id}").text
    assert '<h1>Series <span class="mono">temperature</span></h1>' in page
    assert '<dd data-field="samples">2</dd>' in page
    assert '<dd data-field="value"><strong>22.25</strong> °C at <time' in page
    assert '<a class="mono" href="/timeseries/configs/rooms/edit">rooms</a>' in page
    assert '<script src="/static/uPlot.iife.min.js" defer></script>' in page
    assert f'data-api="/api/timeseries/series/{series_id}/aggregate"' in page
    assert 'data-unit="°C"' in page

    # The CSV links download with the operator's session.
    points = re.search(r'<a href="([^"]+)" data-csv="points"', page)
    aggregate = re.search(r'<a href="([^"]+)" data-csv="aggregate"', page)
    assert points
    assert aggregate
    rows = list(csv.reader(io.StringIO(admin_client.get(unescape(points.group(1))).text)))
    assert rows[0] == ["timestamp_ms", "time", "value"]
    assert [float(row[2]) for row in rows[1:]] == [21.5, 22.25]
    assert all(now - 5000 <= int(row[0]) <= now + 60_000 for row in rows[1:])
    buckets = list(csv.reader(io.StringIO(admin_client.get(unescape(aggregate.group(1))).text)))
    assert buckets[0] == ["timestamp_ms", "time", "min", "max", "avg", "sum", "count", "first", "last"]
    assert sum(int(row[6]) for row in buckets[1:]) == 2
    assert buckets[-1][8] == "22.25"


def test_the_page_says_when_the_recorder_dropped_messages(
    gateway_factory: Callable[..., ThreadedGateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MQTTPROXY_ADMIN_PASSWORD", raising=False)
    config = make_web_config(tmp_path)
    # Room for two messages, and no flush before the test is done: the other three are dropped.
    settings = TimeseriesConfig(flush_interval=3600.0, flush_points=1_000_000, max_queued_messages=2)
    gateway = gateway_factory(config.model_copy(update={"timeseries": settings}))
    add_config(gateway)
    publish(gateway, [("devices/d1/sensors/air", f'{{"temp": {n}}}') for n in range(5)])
    wait_until(lambda: gateway.call(lambda: recorder(gateway).dropped) == 3, message="3 messages dropped")

    client = WebClient(web_port(gateway))
    assert client.login().status == 303
    page = client.get("/timeseries/configs").text
    alert = page.split('data-recorder="dropped">')[1].split("</div>")[0]
    assert "<strong>3 messages were not recorded</strong> (delivered as always)" in alert
    assert "queue (2 messages" in alert
    assert 'data-recorder="write-failures"' not in page


def test_the_page_says_when_a_write_failed(
    admin_client: WebClient, web_gateway: ThreadedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk cannot be produced on demand: the store's next write fails instead.
    store = recorder(web_gateway).store
    original = store.write

    async def failing(batch: Any) -> int:
        monkeypatch.setattr(store, "write", original)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "write", failing)
    add_config(web_gateway)
    publish(web_gateway, [("devices/d1/sensors/air", '{"temp": 20, "hum": 40}')])

    def failures() -> int:
        return web_gateway.call(lambda: recorder(web_gateway).write_failures)

    wait_until(lambda: failures() == 1, message="a failed write")

    page = admin_client.get("/timeseries/configs").text
    alert = page.split('data-recorder="write-failures">')[1].split("</div>")[0]
    assert "<strong>1 writes failed</strong>, losing 2 points." in alert
    assert '<span class="mono">database or disk is full</span>' in alert
    assert 'data-recorder="dropped"' not in page


def test_the_chart_pickers(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_config(web_gateway)
    publish(web_gateway, [("devices/d1/sensors/air", '{"temp": 20, "hum": 40}')])
    wait_for_points(web_gateway, "rooms", 2)
    series = web_gateway.run(recorder(web_gateway).series(metric="temperature"))[0]
    path = f"/timeseries/series/{series.id}"

    page = admin_client.get(path).text
    assert '<option value="1h" data-ms="3600000" selected>last 1 h</option>' in page
    assert '<option value="auto" data-ms="0" selected>auto</option>' in page
    assert '<option value="10s" data-ms="10000">10 s</option>' in page
    every_aggregate = "agg=min%2Cmax%2Cavg%2Csum%2Ccount%2Cfirst%2Clast"
    assert f"from=now-1h&amp;to=now&amp;{every_aggregate}&amp;format=csv" in page

    chosen = admin_client.get(f"{path}?range=6h&step=5m")
    assert chosen.status == 200
    assert '<option value="6h" data-ms="21600000" selected>last 6 h</option>' in chosen.text
    assert '<option value="5m" data-ms="300000" selected>5 min</option>' in chosen.text
    assert "from=now-6h&amp;to=now&amp;step=5m&amp;agg=" in chosen.text
    assert "from=now-6h&amp;to=now&amp;limit=100000&amp;format=csv" in chosen.text

    week = admin_client.get(f"{path}?range=7d&step=10s")
    assert week.status == 400
    assert "10 s steps over 7 d are more than 11,000 points: showing auto." in week.text
    assert '<option value="10s" data-ms="10000" disabled>10 s</option>' in week.text
    assert '<option value="auto" data-ms="0" selected>auto</option>' in week.text

    unknown = admin_client.get(f"{path}?range=2h")
    assert unknown.status == 400
    assert "Unknown range &#39;2h&#39; (one of 15m, 1h, 6h, 24h, 7d): showing 1 h." in unknown.text


def test_a_bad_label_filter_is_named(admin_client: WebClient) -> None:
    page = admin_client.get("/timeseries?labels=device")
    assert page.status == 400
    assert field_errors(page.text, "labels") == [
        "'device': filter by labels written name=value, e.g. device=d1."
    ]
    assert 'value="device"' in page.text
    unclosed = admin_client.get('/timeseries?labels=room="big')
    assert field_errors(unclosed.text, "labels") == ["A quote is not closed."]


# --- the forms' text, without a gateway ------------------------------------------------------


def test_labels_as_text() -> None:
    labels = {"site": "hall-7", "floor": "3", "note": "a=b"}
    assert parse_labels("site=hall-7\n\n floor = 3 \nnote=a=b") == labels
    assert parse_labels("") == {}
    assert format_labels({"site": "hall-7", "floor": "3"}) == "site=hall-7\nfloor=3"
    for text, message in [("=x", "Line 1: write"), ("a=1\nb", "Line 2: write"), ("a=1\na=2", "twice")]:
        with pytest.raises(FieldError, match=message):
            parse_labels(text)
    filters = {"device": "d1", "room": "big hall", "empty": ""}
    assert format_label_filter(filters) == 'device=d1 "room=big hall" "empty="'
    assert parse_label_filter(format_label_filter(filters)) == filters
    with pytest.raises(FieldError, match="name=value"):
        parse_label_filter("device")


@pytest.mark.parametrize(
    "config",
    [
        ROOMS,
        DataConfig.model_validate(
            {
                "id": "meter",
                "topic": "meters/+/power",
                "fields": [
                    {
                        "metric": "watts",
                        "pointer": None,
                        "unit": "W",
                        "type": "counter",
                        "retention_days": 1.5,
                    },
                    {"metric": "whole_json", "pointer": ""},
                ],
                "timestamp": {"pointer": "/t", "unit": "ns"},
                "enabled": False,
            }
        ),
    ],
)
def test_the_form_round_trips_a_config(config: DataConfig) -> None:
    values = config_values(config)
    # As a browser posts it: text as shown, ticked boxes only, the empty row included.
    posted = {name: value for name, value in values.items() if isinstance(value, str)}
    posted |= {name: "on" for name, value in values.items() if value is True}
    parsed = values_from_post(posted)
    assert parsed["rows"] == list(range(len(config.fields) + 1))
    again, form = validate_config(parsed, config_id=config.id)
    assert form.errors == {}
    assert again == config


def test_readings_for_people() -> None:
    assert [reading(value) for value in (20.59, 1234567.5, 0.1 + 0.2, 1e20, -4.0)] == [
        "20.59",
        "1234567.5",
        "0.3",
        "1e+20",
        "-4",
    ]
