"""The registry's pages in a real headless Chromium (Debian's; never a downloaded one).

An operator adds a tenant and a device on the pages, a real MQTT client connects
with the token read off the page, the device list shows it online without
reloading, finds it, and disabling it disconnects the client. The device list
fits a phone. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from mqttproxy.registry.models import AclRuleModel
from tests.helpers import TIMEOUT, PahoClient, ThreadedGateway, paho_client
from tests.registry.util import add_device, add_tenant
from tests.webapp.test_browser import ARTIFACTS, DESKTOP, LIVE, PHONE, Tab

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def tab(browser: Browser, web_gateway: ThreadedGateway) -> Iterator[Tab]:
    opened = Tab(browser, web_gateway, viewport=DESKTOP)
    yield opened
    opened.close()
    assert opened.errors == []


def neighbours(gateway: ThreadedGateway) -> None:
    """A second tenant and a few devices, so the list looks like a fleet."""
    add_tenant(
        gateway, "globex", name="Globex plant", acl=[AclRuleModel(topic="plant/#", action="subscribe")]
    )
    add_device(gateway, "pump-7", tenant_id="globex", name="Water pump", labels=["floor:1", "pumps"])
    add_device(gateway, "valve-12", tenant_id="globex", name="Inlet valve", labels=["pumps"], enabled=False)
    add_device(gateway, "sensor-0", tenant_id="acme", name="", labels=["hall"])


def test_add_a_device_connect_it_and_disable_it(tab: Tab, web_gateway: ThreadedGateway) -> None:
    client: PahoClient | None = None
    try:
        page = tab.login()

        # --- a tenant, on its form ----------------------------------------------------------------
        page.click("nav >> text=Tenants")
        expect(page).to_have_url("/tenants")
        page.click("text=Add tenant")
        expect(page).to_have_url("/tenants/new")
        page.fill("#f-id", "acme")
        page.fill("#f-name", "Acme Corp")
        page.select_option("#f-auth_mode", "token")
        page.fill("#f-acl", "allow publish fleet/{tenant_id}/status\ndeny both devices/{device_id}/secret/#")
        page.click("button:has-text('Add tenant')")
        expect(page.locator(".flash")).to_have_text("Tenant acme added.")
        expect(page).to_have_url("/tenants")  # the script forgets the flash
        expect(page.locator('tr[data-tenant="acme"] td[data-label="ACL rules"]')).to_have_text("2")
        neighbours(web_gateway)

        # --- a device, on its form; its token read off the page ---------------------------------------
        page.locator('tr[data-tenant="acme"]').locator("text=Add device").click()
        expect(page).to_have_url("/devices/new?tenant=acme")
        expect(page.locator("#f-tenant_id")).to_have_value("acme")
        page.fill("#f-id", "sensor-1")
        page.fill("#f-name", "Hall sensor")
        page.fill("#f-labels", "hall, floor:3")
        page.fill("#f-metadata", "{bad json")
        page.click("button:has-text('Add device')")
        expect(page.locator("#metadata-error")).to_contain_text("Not valid JSON")
        # The form came back with status 400, which the browser logs; nothing else went wrong.
        assert tab.errors == [
            "Failed to load resource: the server responded with a status of 400 (Bad Request)"
        ]
        tab.errors.clear()
        page.fill("#f-metadata", '{"floor": 3}')
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            page.click("button:has-text('Add device')")
        assert answer.value.headers["cache-control"] == "no-store"
        expect(page.locator("h1")).to_have_text("Device sensor-1 added")
        expect(page.locator("[data-new-token]")).to_contain_text("Copy it now: it is not shown again.")
        token = page.locator("[data-device-token]").input_value()
        assert token
        assert "token" not in page.url
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "device-token.png"), full_page=True)

        # --- the list: offline, then online without reloading ------------------------------------------
        page.click("nav >> text=Devices")
        expect(page).to_have_url("/devices")
        row = page.locator('tr[data-device="sensor-1"]')
        online = row.locator('[data-field="online"]')
        expect(online).to_have_text("offline")
        expect(page.locator("tr[data-device]")).to_have_count(4)
        page.evaluate("window.sameDocument = true")
        client = paho_client(web_gateway.port, "sensor-1", username="sensor-1", password=token)
        client.publish("devices/sensor-1/telemetry", b"21.5", qos=1)
        expect(online).to_have_text("online", timeout=LIVE)
        expect(online).to_have_class("badge badge-online")
        expect(row.locator('[data-field="last_seen"]')).to_have_text("now")
        expect(row.locator('[data-field="last_address"]')).to_contain_text("127.0.0.1", timeout=LIVE)
        assert page.evaluate("window.sameDocument") is True
        page.screenshot(path=str(ARTIFACTS / "devices.png"), full_page=True)

        # --- search for it, then only what is online ------------------------------------------------------
        page.fill("#filter-q", "hall")
        page.click("button:has-text('Search')")
        expect(page).to_have_url("/devices?q=hall")
        expect(page.locator("tr[data-device]")).to_have_count(1)
        expect(row).to_be_visible()
        page.fill("#filter-q", "")
        page.select_option("#filter-online", "yes")
        page.click("button:has-text('Search')")
        expect(page).to_have_url("/devices?online=yes")
        expect(page.locator("tr[data-device]")).to_have_count(1)
        expect(online).to_have_text("online")

        # --- disable it: the client is disconnected and the row says so ------------------------------------
        row.locator("button:has-text('Disable')").click()
        expect(page.locator(".flash")).to_have_text("Device sensor-1 disabled and disconnected.")
        expect(page).to_have_url("/devices?online=yes")  # back to the same list
        client.disconnects.get(timeout=TIMEOUT)
        page.select_option("#filter-online", "")
        page.click("button:has-text('Search')")
        expect(row.locator('[data-field="enabled"]')).to_have_text("disabled")
        expect(online).to_have_text("offline")
        expect(row.locator('[data-field="toggle"]')).to_have_text("Enable")
        expect(row.locator('[data-field="toggle-form"]')).to_have_attribute(
            "action", "/devices/sensor-1/enable"
        )
        [device] = web_gateway.run(web_gateway.gateway.registry.devices(search="sensor-1"))  # type: ignore[union-attr]
        assert device.enabled is False
    finally:
        if client is not None:
            client.disconnect()


def test_a_row_follows_a_device_disconnecting_elsewhere(tab: Tab, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "acme")
    _, token = add_device(web_gateway, "d1", name="Door")
    client = paho_client(web_gateway.port, "d1", username="d1", password=token)
    try:
        page = tab.login()
        page.goto("/devices")
        online = page.locator('tr[data-device="d1"] [data-field="online"]')
        expect(online).to_have_text("online")
        page.evaluate("window.sameDocument = true")
    finally:
        client.disconnect()
    expect(online).to_have_text("offline", timeout=LIVE)
    expect(page.locator('tr[data-device="d1"] [data-field="last_seen"] time')).to_be_visible()
    assert page.evaluate("window.sameDocument") is True


def test_the_registry_pages_fit_a_phone(browser: Browser, web_gateway: ThreadedGateway) -> None:
    add_tenant(web_gateway, "acme", name="Acme Corp")
    neighbours(web_gateway)
    _, token = add_device(
        web_gateway, "warehouse-door-sensor-0042", name="Warehouse door (north)", labels=["doors", "floor:0"]
    )
    client = paho_client(
        web_gateway.port, "warehouse-door-sensor-0042", username="warehouse-door-sensor-0042", password=token
    )
    phone = Tab(browser, web_gateway, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page = phone.login()
        page.goto("/devices")
        expect(
            page.locator('tr[data-device="warehouse-door-sensor-0042"] [data-field="online"]')
        ).to_have_text("online")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "devices-phone.png"), full_page=True)
        for path in [
            "/devices",
            "/devices?q=door&online=yes",
            "/devices/new",
            "/devices/warehouse-door-sensor-0042/edit",
            "/devices/warehouse-door-sensor-0042/token",
            "/devices/warehouse-door-sensor-0042/delete",
            "/tenants",
            "/tenants/new",
            "/tenants/globex/edit",
            "/tenants/acme/delete",
        ]:
            page.goto(path)
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert widths[0] <= widths[1], f"{path} scrolls sideways: {widths}"
        page.goto("/devices/new")
        page.fill("#f-id", "phone-made")
        page.select_option("#f-tenant_id", "acme")
        page.click("button:has-text('Add device')")
        expect(page.locator("[data-device-token]")).not_to_have_value("")
        widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert widths[0] <= widths[1], f"the token page scrolls sideways: {widths}"
        page.screenshot(path=str(ARTIFACTS / "device-token-phone.png"), full_page=True)
    finally:
        phone.close()
        client.disconnect()
    assert phone.errors == []
