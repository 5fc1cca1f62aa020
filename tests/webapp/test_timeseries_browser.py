"""The timeseries pages in a real headless Chromium (Debian's; never a downloaded one).

The operator defines a data config in the page, a real MQTT device publishes
readings, the series shows up in the browser and its page draws them with the
vendored uPlot; range and step pickers, the live refresh, the "no data" state
and the query API answer the same. The pages fit a phone. Screenshots land in
test-artifacts/.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from mqttproxy.config import TimeseriesConfig
from mqttproxy.timeseries import Recorder
from tests.helpers import ThreadedGateway, paho_client, wait_until
from tests.webapp.conftest import make_web_config
from tests.webapp.test_browser import ARTIFACTS, DESKTOP, LIVE, PHONE, Tab

pytestmark = pytest.mark.timeout(180)

TOPIC = "devices/d1/sensors/air"
READINGS = 30  # one every 2 minutes, the newest now
EVERY_MS = 120_000
PAGES = ["/timeseries", "/timeseries/configs", "/timeseries/configs/new"]


@pytest.fixture
def web_gateway(
    gateway_factory: Callable[..., ThreadedGateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ThreadedGateway:
    """The dashboard's gateway, with a recorder that writes every 50 ms."""
    monkeypatch.delenv("MQTTPROXY_ADMIN_PASSWORD", raising=False)
    config = make_web_config(tmp_path)
    return gateway_factory(config.model_copy(update={"timeseries": TimeseriesConfig(flush_interval=0.05)}))


@pytest.fixture
def tab(browser: Browser, web_gateway: ThreadedGateway) -> Iterator[Tab]:
    opened = Tab(browser, web_gateway, viewport=DESKTOP)
    yield opened
    opened.close()
    assert opened.errors == []


def recorder(gateway: ThreadedGateway) -> Recorder:
    assert gateway.gateway is not None
    return gateway.gateway.recorder


def temperature(index: int) -> float:
    return round(20 + 2 * math.sin(index / 4), 2)


def last_hour(now: int) -> list[tuple[str, dict[str, float]]]:
    """A reading every 2 minutes of the last hour, the newest at ``now`` (ms)."""
    start = now - (READINGS - 1) * EVERY_MS
    return [
        (TOPIC, {"temp": temperature(index), "hum": 40 + index, "ts": start + index * EVERY_MS})
        for index in range(READINGS)
    ]


def publish_readings(gateway: ThreadedGateway, readings: list[tuple[str, dict[str, float]]]) -> None:
    """A real device publishes each (topic, JSON payload) at QoS 1."""
    device = paho_client(gateway.port, "d1")
    try:
        for topic, payload in readings:
            device.publish(topic, json.dumps(payload), qos=1)
    finally:
        device.disconnect()


def wait_for_points(gateway: ThreadedGateway, points: int) -> None:
    wait_until(lambda: gateway.call(lambda: recorder(gateway).points) >= points, message=f"{points} points")


def chart(page: Page) -> dict[str, str | None]:
    """What the chart shows: its state, the points uPlot holds, and the buckets' figures."""
    return page.evaluate(
        """() => {
          const root = document.querySelector("[data-ts-chart]");
          const plot = root.uplot;
          return {
            state: root.dataset.state || null,
            points: String(plot.data[1].filter((value) => value !== null).length),
            samples: root.dataset.samples || null,
            step: root.dataset.step || null,
            latest: root.dataset.latest || null,
            canvas: String(plot.width),
          };
        }"""
    )


def no_sideways_scroll(page: Page, path: str) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{path} scrolls sideways: {widths}"


def define_rooms(tab: Tab, screenshot: str = "timeseries-config-form.png") -> Page:
    """The operator adds the data config in the form: a mistake first, shown inline, then fixed."""
    page = tab.login()
    page.click("nav >> text=Timeseries")
    expect(page).to_have_url("/timeseries")
    expect(page.locator(".empty-row")).to_contain_text("Nothing is recorded yet.")
    page.click(".subnav >> text=Data configs")
    page.click("text=Add data config")
    expect(page).to_have_url("/timeseries/configs/new")
    page.fill("#f-id", "rooms")
    page.fill("#f-topic", "devices/{device}/sensors/{sensor}")
    page.fill("#f-fields-0-metric", "9temperature")
    page.fill("#f-fields-0-pointer", "/temp")
    page.fill("#f-fields-0-unit", "°C")
    page.click("button:has-text('Add another field')")
    page.fill("#f-fields-1-metric", "humidity")
    page.fill("#f-fields-1-pointer", "/hum")
    page.fill("#f-fields-1-unit", "%")
    page.fill("#f-labels", "site=hall-7")
    page.fill("#f-timestamp_pointer", "/ts")
    page.click("button:has-text('Add data config')")
    expect(page.locator(".alert-error")).to_contain_text("Nothing was saved.")
    expect(page.locator("#fields-0-metric-error")).to_contain_text("Bad metric name '9temperature'")
    expect(page.locator("#f-fields-1-metric")).to_have_value("humidity")
    assert tab.errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    tab.errors.clear()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
    page.fill("#f-fields-0-metric", "temperature")
    page.click("button:has-text('Add data config')")
    expect(page.locator(".flash")).to_have_text(
        "Data config rooms added: matching messages are recorded from now on."
    )
    return page


def test_define_a_config_publish_and_see_the_chart(tab: Tab, web_gateway: ThreadedGateway) -> None:
    page = define_rooms(tab)
    row = page.locator('tr[data-config="rooms"]')
    expect(row.locator('[data-field="topic"]')).to_have_text("devices/{device}/sensors/{sensor}")
    expect(row.locator('[data-field="fields"] .chip')).to_have_count(2)

    # --- a real device publishes readings of the last hour --------------------------------------
    readings = last_hour(int(time.time() * 1000))
    publish_readings(web_gateway, readings)
    wait_for_points(web_gateway, 2 * READINGS)
    page.reload()
    expect(row.locator('[data-field="messages"]')).to_have_text(str(READINGS))
    expect(row.locator('[data-field="points"]')).to_have_text(str(2 * READINGS))
    expect(row.locator('[data-field="failures"]')).to_have_text("0")
    page.screenshot(path=str(ARTIFACTS / "timeseries-configs.png"), full_page=True)

    # --- the series browser, then the series' page --------------------------------------------
    page.click(".subnav >> text=Series")
    expect(page.locator("tr[data-series]")).to_have_count(2)
    series = page.locator('tr[data-metric="temperature"]')
    expect(series.locator('[data-field="samples"]')).to_have_text(str(READINGS))
    newest = temperature(READINGS - 1)
    expect(series.locator('[data-field="value"]')).to_have_text(f"{newest:.10g} °C")
    expect(series.locator(".chip")).to_have_text(["device=d1", "sensor=air", "site=hall-7"])
    page.screenshot(path=str(ARTIFACTS / "timeseries-series.png"), full_page=True)
    series_id = series.get_attribute("data-series")
    series.locator("a.strong").click()
    expect(page).to_have_url(f"/timeseries/series/{series_id}")
    root = page.locator("[data-ts-chart]")
    expect(root).to_have_attribute("data-state", "ready")
    # One 12 s bucket per reading in the last hour: uPlot holds every one, avg inside a min-max band.
    drawn = chart(page)
    assert drawn["points"] == str(READINGS), drawn
    assert drawn["samples"] == str(READINGS)
    assert drawn["step"] == "12000"
    assert drawn["latest"] == str(newest)
    expect(page.locator("[data-ts-latest]")).to_have_text(f"{newest:.10g} °C")
    expect(page.locator("[data-ts-empty]")).to_be_hidden()
    expect(page.locator(".u-legend")).to_contain_text("avg")
    expect(page.locator(".uplot canvas")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "timeseries-chart.png"), full_page=True)

    # The query API, with the operator's session, says the same.
    last = page.request.get(f"/api/timeseries/series/{series_id}/last").json()
    assert (last["timestamp"], last["value"]) == (readings[-1][1]["ts"], newest)

    # --- the range picker: the last 15 minutes hold the newest 8 readings -----------------------
    page.evaluate("window.sameDocument = true")
    page.select_option("#pick-range", "15m")
    expect(root).to_have_attribute("data-samples", "8")
    assert chart(page)["points"] == "8"
    expect(page).to_have_url(f"/timeseries/series/{series_id}?range=15m&step=auto")
    points_csv = page.locator('[data-csv="points"]').get_attribute("href")
    assert points_csv is not None
    assert "from=now-15m" in points_csv

    # --- the step picker: 5 minute buckets over the hour, every reading counted ------------------
    page.select_option("#pick-range", "1h")
    page.select_option("#pick-step", "5m")
    expect(root).to_have_attribute("data-step", "300000")
    expect(root).to_have_attribute("data-samples", str(READINGS))
    assert 12 <= int(chart(page)["points"] or 0) <= 13
    page.screenshot(path=str(ARTIFACTS / "timeseries-chart-5m.png"), full_page=True)
    aggregate_csv = page.locator('[data-csv="aggregate"]').get_attribute("href")
    assert aggregate_csv is not None
    assert "step=5m" in aggregate_csv
    page.select_option("#pick-range", "7d")
    expect(page.locator('#pick-step option[value="10s"]')).to_be_disabled()
    expect(page.locator("#pick-step")).to_have_value("5m")
    csv_text = page.request.get(aggregate_csv).text()
    assert sum(int(line.split(",")[6]) for line in csv_text.splitlines()[1:]) == READINGS

    # --- the device goes on publishing: the chart follows without a reload -----------------------
    page.select_option("#pick-range", "15m")
    page.select_option("#pick-step", "auto")
    expect(root).to_have_attribute("data-samples", "8")
    publish_readings(web_gateway, [(TOPIC, {"temp": 25.5, "hum": 50, "ts": int(time.time() * 1000)})])
    expect(page.locator("[data-ts-latest]")).to_have_text("25.5 °C", timeout=3 * LIVE)
    expect(root).to_have_attribute("data-samples", "9")
    assert page.evaluate("window.sameDocument") is True

    # --- delete the data config: the series stays -----------------------------------------------
    page.goto("/timeseries/configs")
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click('tr[data-config="rooms"] button:has-text("Delete")')
    expect(page.locator(".flash")).to_have_text(
        "Data config rooms deleted; the series it recorded stay until their retention."
    )
    assert messages == [
        "Delete data config rooms? Its topics are no longer recorded; "
        "the series it recorded stay until their retention."
    ]
    assert web_gateway.call(recorder(web_gateway).configs) == []
    page.goto(f"/timeseries/series/{series_id}")
    expect(root).to_have_attribute("data-state", "ready")


def test_a_range_without_data_says_so(tab: Tab, web_gateway: ThreadedGateway) -> None:
    page = define_rooms(tab)
    two_hours_ago = int(time.time() * 1000) - 7_200_000
    publish_readings(web_gateway, [(TOPIC, {"temp": 18.5, "hum": 30, "ts": two_hours_ago})])
    wait_for_points(web_gateway, 2)
    page.goto("/timeseries?metric=temperature")
    page.locator('tr[data-metric="temperature"] a.strong').click()
    root = page.locator("[data-ts-chart]")
    expect(root).to_have_attribute("data-state", "empty")
    empty = page.locator("[data-ts-empty]")
    expect(empty).to_contain_text("No data in this range. The newest sample is from")
    expect(empty).to_contain_text("pick a longer range.")
    expect(page.locator("[data-ts-summary]")).to_be_hidden()
    assert chart(page)["points"] == "0"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "timeseries-empty.png"), full_page=True)
    page.select_option("#pick-range", "6h")
    expect(root).to_have_attribute("data-state", "ready")
    expect(empty).to_be_hidden()
    expect(page.locator("[data-ts-latest]")).to_have_text("18.5 °C")


def test_the_timeseries_pages_fit_a_phone(browser: Browser, web_gateway: ThreadedGateway) -> None:
    now = int(time.time() * 1000)
    phone = Tab(browser, web_gateway, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page = define_rooms(phone, "timeseries-config-form-phone.png")
        readings = last_hour(now)
        publish_readings(web_gateway, [*readings, ("devices/d2/sensors/air", {"temp": "hot"})])
        wait_for_points(web_gateway, 2 * READINGS)
        for path in [*PAGES, "/timeseries/configs/rooms/edit"]:
            page.goto(path)
            no_sideways_scroll(page, path)
        page.goto("/timeseries/configs")
        page.screenshot(path=str(ARTIFACTS / "timeseries-configs-phone.png"), full_page=True)
        page.goto("/timeseries")
        page.locator('tr[data-metric="temperature"] a.strong').click()
        expect(page.locator("[data-ts-chart]")).to_have_attribute("data-state", "ready")
        drawn = chart(page)
        assert drawn["points"] == str(READINGS)
        assert 300 <= int(drawn["canvas"] or 0) <= PHONE["width"], drawn
        no_sideways_scroll(page, "the series page")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "timeseries-chart-phone.png"), full_page=True)
    finally:
        phone.close()
    assert phone.errors == []
