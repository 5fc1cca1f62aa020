"""The dashboard end to end in a real headless Chromium (Debian's; never a downloaded one).

An operator logs in, adds an upstream broker pointing at a real Mosquitto, watches
it connect and forward a device's messages without reloading the page, pauses it
and deletes it. A bad broker form shows its errors next to the fields, the overview
shows the backlog of an upstream that is down, the clients page follows clients
coming and going, and the overview fits a phone. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect

from mqttproxy.upstream.models import BrokerRecord
from tests.helpers import ThreadedGateway, paho_client
from tests.mosquitto import Mosquitto, free_port
from tests.upstream.util import upstream_subscriber
from tests.webapp.conftest import ADMIN_PASSWORD, web_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
ROUTES = "out devices/+/telemetry -> site7/{1}/t qos=1\nin commands/# -> devices/{1}/cmd"
LIVE = 10_000  # ms to wait for what the event stream (one event a second) shows

pytestmark = pytest.mark.timeout(120)


class Tab:
    """A logged-in page of one browser context, and the script errors it reported."""

    def __init__(self, browser: Browser, gateway: ThreadedGateway, **options: Any) -> None:
        self.context = browser.new_context(base_url=f"http://127.0.0.1:{web_port(gateway)}", **options)
        self.context.set_default_timeout(LIVE)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(message.text)

        self.page.on("console", console)

    def login(self) -> Page:
        page = self.page
        page.goto("/brokers")
        expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)brokers$"))
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url("/brokers")
        return page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Browser, web_gateway: ThreadedGateway) -> Iterator[Tab]:
    opened = Tab(browser, web_gateway, viewport=DESKTOP)
    yield opened
    opened.close()  # before the gateway stops: its event stream ends with the page
    assert opened.errors == []


def chart_points(page: Page) -> int:
    return int(page.locator("[data-chart]").get_attribute("data-points") or 0)


def test_add_watch_pause_and_delete_a_broker(tab: Tab, web_gateway: ThreadedGateway, tmp_path: Path) -> None:
    assert web_gateway.gateway is not None
    fanout = web_gateway.gateway.fanout
    upstream = Mosquitto(tmp_path / "upstream")  # started later: the page must see it come up
    device = None
    traffic = threading.Event()
    publisher: threading.Thread | None = None
    try:
        page = tab.login()
        expect(page.locator("[data-empty-row]")).to_be_visible()

        # --- add it: the upstream is not there yet --------------------------------------------
        page.click("text=Add broker")
        expect(page).to_have_url("/brokers/new")
        page.fill("#f-name", "Cloud test")
        expect(page.locator("#f-id")).to_have_value("cloud-test")  # the id follows the name
        page.fill("#f-id", "cloud")
        page.fill("#f-address", "127.0.0.1")
        page.fill("#f-port", str(upstream.port))
        page.fill("#f-routes", ROUTES)
        page.click("summary:has-text('Advanced')")
        page.fill("#f-reconnect_min_delay", "0.1")
        page.fill("#f-reconnect_max_delay", "0.5")
        page.click("[data-test-connection]")
        result = page.locator("[data-test-result]")
        expect(result).to_have_attribute("data-result", "failed")
        expect(result).to_contain_text("Could not connect")
        expect(page).to_have_url("/brokers/new")  # the test did not leave the page
        page.click("button:has-text('Add broker')")
        expect(page.locator(".flash")).to_have_text("Broker cloud added.")
        expect(page).to_have_url("/brokers")  # the script forgets the flash: a reload does not repeat it
        [record] = web_gateway.call(fanout.records)
        assert (record.port, record.reconnect_max_delay) == (upstream.port, 0.5)

        row = page.locator('tr[data-broker="cloud"]')
        state = row.locator('[data-field="state"]')
        expect(state).to_have_text(re.compile("backoff|connecting"))
        expect(row.locator('[data-field="last_error"]')).to_contain_text("cannot connect")

        # --- it connects, and the page shows it without reloading -------------------------------
        page.evaluate("window.sameDocument = true")
        upstream.start()
        expect(state).to_have_text("connected", timeout=LIVE)
        expect(state).to_have_class("badge badge-connected")
        expect(row.locator('[data-field="last_error"]')).to_have_text("")
        expect(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "live")

        # --- a device publishes; the forwarded counter moves ------------------------------------
        subscriber = upstream_subscriber(upstream, "site7/#")
        device = paho_client(web_gateway.port, "device-1")
        for number in range(5):
            device.publish("devices/d1/telemetry", str(number), qos=1)
        expect(row.locator('[data-field="forwarded"]')).to_have_text("5", timeout=LIVE)
        assert [subscriber.get().topic for _ in range(5)] == ["site7/d1/t"] * 5
        subscriber.disconnect()
        assert page.evaluate("window.sameDocument") is True

        # --- the connection test succeeds now, from the edit form --------------------------------
        row.locator("text=Edit").click()
        expect(page).to_have_url("/brokers/cloud/edit")
        expect(page.locator("#f-routes")).to_have_value(ROUTES)
        page.click("[data-test-connection]")
        expect(result).to_have_attribute("data-result", "ok")
        expect(result).to_contain_text(f"Connected to 127.0.0.1:{upstream.port}")

        # --- the overview, live, with traffic on the chart ---------------------------------------
        def publish() -> None:
            while not traffic.wait(0.05):
                device.client.publish("devices/d2/telemetry", b"21.5", qos=0)

        publisher = threading.Thread(target=publish, name="publisher", daemon=True)
        publisher.start()
        page.click("nav >> text=Overview")
        expect(page).to_have_url("/")
        expect(page.locator('[data-live="counters.connections"]')).to_have_text("1")
        overview_row = page.locator('tr[data-broker="cloud"]')
        expect(overview_row.locator('[data-field="state"]')).to_have_text("connected")
        expect(page.locator('.stat [data-live="rates.in"]')).not_to_have_text("0.0", timeout=LIVE)
        page.wait_for_function(
            "Number(document.querySelector('[data-chart]').dataset.points) >= 8", timeout=15_000
        )
        assert page.locator(".series-in").get_attribute("d")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        traffic.set()
        publisher.join()

        # --- pause it ---------------------------------------------------------------------------------
        page.click("nav >> text=Brokers")
        expect(row.locator('[data-field="forwarded"]')).not_to_have_text("5")
        page.screenshot(path=str(ARTIFACTS / "brokers.png"), full_page=True)
        row.locator("button:has-text('Pause')").click()
        expect(page.locator(".flash")).to_have_text("Broker cloud paused.")
        expect(state).to_have_text("disabled")
        expect(row.locator('[data-field="toggle"]')).to_have_text("Resume")
        assert web_gateway.call(lambda: fanout.record("cloud").enabled) is False

        # --- delete it: the first time thought better of -----------------------------------------------
        dialogs: list[str] = []

        def answer(dialog: Dialog, accept: bool) -> None:
            dialogs.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        page.once("dialog", lambda dialog: answer(dialog, accept=False))
        row.locator("button:has-text('Delete')").click()
        expect(row).to_be_visible()
        assert [record.id for record in web_gateway.call(fanout.records)] == ["cloud"]
        page.once("dialog", lambda dialog: answer(dialog, accept=True))
        row.locator("button:has-text('Delete')").click()
        expect(page.locator(".flash")).to_have_text("Broker cloud deleted.")
        expect(row).to_have_count(0)
        expect(page.locator("[data-empty-row]")).to_be_visible()
        assert dialogs == ["Delete broker cloud? Its queued messages are discarded."] * 2
        assert web_gateway.call(fanout.records) == []
    finally:
        traffic.set()
        if publisher is not None:
            publisher.join()
        if device is not None:
            device.disconnect()
        upstream.stop()


def test_rows_follow_brokers_added_and_removed_elsewhere(tab: Tab, web_gateway: ThreadedGateway) -> None:
    assert web_gateway.gateway is not None
    fanout = web_gateway.gateway.fanout
    page = tab.login()
    page.evaluate("window.sameDocument = true")
    record = BrokerRecord(id="backup", name="Backup", address="127.0.0.1", port=free_port(), enabled=False)
    web_gateway.run(fanout.add(record))
    row = page.locator('tr[data-broker="backup"]')
    expect(row.locator('[data-field="name"]')).to_have_text("Backup", timeout=LIVE)
    expect(row.locator('[data-field="state"]')).to_have_text("disabled")
    expect(row.locator("a:has-text('Edit')")).to_have_attribute("href", "/brokers/backup/edit")
    expect(row.locator("form").first).to_have_attribute("action", "/brokers/backup/toggle")
    expect(page.locator("[data-empty-row]")).to_be_hidden()
    web_gateway.run(fanout.delete("backup"))
    expect(row).to_have_count(0, timeout=LIVE)
    expect(page.locator("[data-empty-row]")).to_be_visible()
    assert page.evaluate("window.sameDocument") is True


def test_a_bad_broker_form_shows_its_errors_inline(tab: Tab, web_gateway: ThreadedGateway) -> None:
    assert web_gateway.gateway is not None
    fanout = web_gateway.gateway.fanout
    page = tab.login()
    page.click("text=Add broker")
    page.fill("#f-name", "Cloud")
    page.fill("#f-address", "127.0.0.1")
    page.fill("#f-routes", "out devices/#\nsideways a/b\nout a/#/b")
    page.click("button:has-text('Add broker')")
    expect(page.locator("#routes-error")).to_have_count(2)
    errors = page.locator(".field-error#routes-error")
    expect(errors.first).to_have_text("line 2: a route starts with its direction: out or in")
    expect(errors.last).to_contain_text("line 3: filter: '#' must be the last level of a topic filter")
    expect(page.locator("#f-routes")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-routes")).to_have_value("out devices/#\nsideways a/b\nout a/#/b")
    expect(page.locator("#f-name")).to_have_value("Cloud")
    assert web_gateway.call(fanout.records) == []
    # The form came back as a 400 page, which Chromium logs; it is the only thing logged.
    assert tab.errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    tab.errors.clear()


def test_the_overview_shows_how_far_behind_a_down_upstream_is(tab: Tab, web_gateway: ThreadedGateway) -> None:
    assert web_gateway.gateway is not None
    fanout = web_gateway.gateway.fanout
    # Nothing listens on its port: everything for it queues, and past 3 messages the oldest go.
    record = BrokerRecord(
        id="cloud", name="Cloud", address="127.0.0.1", port=free_port(), queue_max_messages=3
    )
    web_gateway.run(fanout.add(record))
    page = tab.login()
    page.click("nav >> text=Overview")
    expect(page).to_have_url("/")
    page.evaluate("window.sameDocument = true")
    row = page.locator('tr[data-broker="cloud"]')
    expect(row.locator('[data-field="state"]')).to_have_text(re.compile("backoff|connecting"))
    expect(row.locator('[data-field="queue_depth"]')).to_have_text("0")
    expect(row.locator('[data-field="drops"]')).to_have_text("0")

    device = paho_client(web_gateway.port, "device-1")
    try:
        for number in range(5):
            device.publish("devices/d1/telemetry", str(number), qos=1)
        expect(row.locator('[data-field="queue_depth"]')).to_have_text("3", timeout=LIVE)
        drops = row.locator('[data-field="drops"]')
        expect(drops).to_have_text("2")
        expect(drops).to_have_attribute("title", "queue_full: 2")
        expect(page.locator('[data-live="counters.messages_received"]')).to_have_text("5")
        expect(page.locator('[data-live="derived.upstreams_connected"]')).to_have_text("0")
    finally:
        device.disconnect()
    assert page.evaluate("window.sameDocument") is True


def test_the_clients_page_follows_connections(tab: Tab, web_gateway: ThreadedGateway) -> None:
    page = tab.login()
    page.click("nav >> text=Clients")
    expect(page).to_have_url("/clients")
    expect(page.locator("[data-empty-row]")).to_be_visible()
    page.evaluate("window.sameDocument = true")
    device = paho_client(web_gateway.port, "thermostat-7")
    try:
        # The page reads /api/clients every 5 seconds.
        row = page.locator('[data-clients-rows] tr:has-text("thermostat-7")')
        expect(row).to_have_count(1, timeout=LIVE)
        expect(page.locator("[data-empty-row]")).to_be_hidden()
        expect(page.locator("[data-clients-count]")).to_have_text("1")
    finally:
        device.disconnect()
    expect(row).to_have_count(0, timeout=LIVE)
    expect(page.locator("[data-empty-row]")).to_be_visible()
    expect(page.locator("[data-clients-count]")).to_have_text("0")
    assert page.evaluate("window.sameDocument") is True


def test_the_dashboard_fits_a_phone(browser: Browser, web_gateway: ThreadedGateway) -> None:
    assert web_gateway.gateway is not None
    record = BrokerRecord(
        id="analytics-eu-west",
        name="Analytics (EU west)",
        address="127.0.0.1",
        port=free_port(),
        enabled=False,
    )
    web_gateway.run(web_gateway.gateway.fanout.add(record))
    phone = Tab(browser, web_gateway, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page = phone.login()
        page.goto("/")
        page.wait_for_function(
            "Number(document.querySelector('[data-chart]').dataset.points) >= 2", timeout=15_000
        )
        assert chart_points(page) >= 2
        assert page.locator(".series-in").get_attribute("d")
        expect(page.locator('tr[data-broker="analytics-eu-west"] [data-field="state"]')).to_have_text(
            "disabled"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
        for path in [
            "/",
            "/brokers",
            "/brokers/new",
            "/brokers/analytics-eu-west/edit",
            "/clients",
            "/tokens",
        ]:
            page.goto(path)
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert widths[0] <= widths[1], f"{path} scrolls sideways: {widths}"
    finally:
        phone.close()
    assert phone.errors == []
