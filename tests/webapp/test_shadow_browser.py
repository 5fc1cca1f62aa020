"""The device shadow pages in a real headless Chromium (Debian's; never a downloaded one).

A device reports its state over MQTT, the operator opens the thing's page, sees
it, edits desired in the form and saves; the device gets the delta, reports the
new value, and the page shows it in sync without reloading. The text being
edited is never overwritten by the live view. The pages fit a phone.
Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from mqttproxy.shadow import ShadowError, ShadowKey
from tests.helpers import PahoClient, ThreadedGateway, paho_client, wait_until
from tests.webapp.test_browser import ARTIFACTS, DESKTOP, LIVE, PHONE, Tab

pytestmark = pytest.mark.timeout(120)

DELTA = "$aws/things/lamp/shadow/update/delta"
UPDATE = "$aws/things/lamp/shadow/update"


@pytest.fixture
def tab(browser: Browser, web_gateway: ThreadedGateway) -> Iterator[Tab]:
    opened = Tab(browser, web_gateway, viewport=DESKTOP)
    yield opened
    opened.close()
    assert opened.errors == []


@pytest.fixture
def device(web_gateway: ThreadedGateway) -> Iterator[PahoClient]:
    """The lamp, subscribed to its delta."""
    client = paho_client(web_gateway.port, "lamp")
    assert client.subscribe(DELTA, qos=1) == [1]
    yield client
    client.disconnect()


def shadow(gateway: ThreadedGateway, name: str = "") -> dict[str, Any] | None:
    assert gateway.gateway is not None
    try:
        return gateway.run(gateway.gateway.shadows.document("lamp", name))
    except ShadowError:
        return None


def report(gateway: ThreadedGateway, device: PahoClient, reported: dict[str, Any]) -> None:
    """The device reports over MQTT (a merge); returns once the shadow holds it."""
    device.publish(UPDATE, json.dumps({"state": {"reported": reported}}), qos=1)

    def stored() -> bool:  # merged into what was reported before
        current = shadow(gateway)
        now = current["state"].get("reported", {}) if current is not None else {}
        return all(now.get(key) == value for key, value in reported.items())

    wait_until(stored, message="the reported state stored")


def update(gateway: ThreadedGateway, state: dict[str, Any], name: str = "") -> None:
    assert gateway.gateway is not None
    payload = json.dumps({"state": state}).encode()
    gateway.run(gateway.gateway.shadows.handle(ShadowKey("lamp", name), "update", payload))


def pane(page: Page, field: str) -> Any:
    return page.locator(f'[data-shadow-field="{field}"]')


def no_sideways_scroll(page: Page, path: str) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{path} scrolls sideways: {widths}"


def test_edit_desired_and_watch_the_device_catch_up(
    tab: Tab, web_gateway: ThreadedGateway, device: PahoClient
) -> None:
    report(web_gateway, device, {"color": "blue", "level": 3, "light": {"mode": "eco"}})
    update(web_gateway, {"reported": {"fw": "1.4.2"}}, name="firmware")
    page = tab.login()

    # --- the list, then the thing's page ---------------------------------------------------------
    page.click("nav >> text=Shadows")
    expect(page).to_have_url("/shadows")
    expect(page.locator("tr[data-thing]")).to_have_count(1)
    page.locator('tr[data-thing="lamp"] a.strong').click()
    expect(page).to_have_url("/shadows/lamp")
    expect(pane(page, "reported")).to_contain_text('"color": "blue"')
    expect(pane(page, "delta")).to_be_hidden()
    expect(page.locator("[data-shadow-sync]")).to_have_text("in sync")
    expect(page.locator("#f-desired")).to_have_value("{}")
    expect(page.locator('.shadow-tabs a[href="/shadows/lamp?name=firmware"]')).to_be_visible()

    # --- edit desired: the page shows the delta, the device gets it -------------------------------------
    page.fill("#f-desired", '{\n  "color": "red",\n  "level": 3\n}')
    page.click("button:has-text('Save desired')")
    expect(page.locator(".flash")).to_have_text("Desired state saved: devices get the delta.")
    expect(page).to_have_url("/shadows/lamp")  # the script forgets the flash
    expect(pane(page, "delta")).to_have_text('{\n  "color": "red"\n}')
    expect(page.locator("[data-shadow-sync]")).to_have_text("delta")
    expect(pane(page, "version")).to_have_text("2")
    delta = json.loads(device.get().payload)
    assert delta["state"] == {"color": "red"}
    page.locator("details.shadow-metadata summary").click()
    expect(page.locator("[data-shadow-leaves] tr")).to_have_count(5)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "shadow.png"), full_page=True)

    # --- the device reports the new value: in sync, without reloading ---------------------------------------
    page.evaluate("window.sameDocument = true")
    report(web_gateway, device, {"color": "red"})
    expect(page.locator("[data-shadow-sync]")).to_have_text("in sync", timeout=LIVE)
    expect(pane(page, "delta")).to_be_hidden()
    expect(page.locator('[data-shadow-empty="delta"]')).to_have_text("None: reported matches desired.")
    expect(pane(page, "reported")).to_contain_text('"color": "red"')
    expect(pane(page, "version")).to_have_text("3")
    expect(page.locator("input[name=version]")).to_have_value("3")
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=str(ARTIFACTS / "shadow-in-sync.png"), full_page=True)


def test_the_text_being_edited_is_never_overwritten(
    tab: Tab, web_gateway: ThreadedGateway, device: PahoClient
) -> None:
    report(web_gateway, device, {"color": "blue"})
    update(web_gateway, {"desired": {"color": "blue", "level": 1}})
    page = tab.login()
    page.goto("/shadows/lamp")
    textarea = page.locator("#f-desired")
    expect(textarea).to_have_value('{\n  "color": "blue",\n  "level": 1\n}')
    page.evaluate("window.sameDocument = true")

    # Not edited: the form follows the shadow.
    update(web_gateway, {"desired": {"level": 2}})
    expect(textarea).to_have_value('{\n  "color": "blue",\n  "level": 2\n}', timeout=LIVE)
    expect(page.locator("input[name=version]")).to_have_value("3")

    # Edited: the text stays; a report only moves the version the text applies to.
    textarea.fill('{"color": "green"}')
    page.locator("h1").click()  # the box loses focus, its text stays edited
    report(web_gateway, device, {"color": "blue", "level": 2})
    expect(pane(page, "version")).to_have_text("4", timeout=LIVE)
    expect(page.locator("input[name=version]")).to_have_value("4")
    expect(textarea).to_have_value('{"color": "green"}')
    expect(page.locator("[data-desired-note]")).to_be_hidden()

    # Desired changed elsewhere: the page says so, and saving is refused with the text kept.
    update(web_gateway, {"desired": {"level": 9}})
    expect(page.locator("[data-desired-note]")).to_contain_text("changed elsewhere", timeout=LIVE)
    expect(textarea).to_have_value('{"color": "green"}')
    assert page.evaluate("window.sameDocument") is True
    page.click("button:has-text('Save desired')")
    expect(page.locator("#desired-error")).to_have_text("Version conflict")
    expect(textarea).to_have_value('{"color": "green"}')
    assert tab.errors == ["Failed to load resource: the server responded with a status of 409 (Conflict)"]
    tab.errors.clear()
    current = shadow(web_gateway)
    assert current is not None
    assert current["state"]["desired"] == {"color": "blue", "level": 9}
    page.wait_for_timeout(3500)  # a refresh comes and goes: the refused text stays
    expect(textarea).to_have_value('{"color": "green"}')

    # Saved again on purpose: desired is exactly the text.
    page.click("button:has-text('Save desired')")
    expect(page.locator(".flash")).to_have_text("Desired state saved: devices get the delta.")
    current = shadow(web_gateway)
    assert current is not None
    assert current["state"]["desired"] == {"color": "green"}


def test_delete_a_named_shadow(tab: Tab, web_gateway: ThreadedGateway) -> None:
    update(web_gateway, {"reported": {"on": True}})
    update(web_gateway, {"desired": {"interval": 60}}, name="config")
    page = tab.login()
    page.goto("/shadows/lamp")
    page.click(".shadow-tabs >> text=config")
    expect(page).to_have_url("/shadows/lamp?name=config")
    expect(pane(page, "delta")).to_contain_text('"interval": 60')
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("button:has-text('Delete shadow')")
    expect(page.locator(".flash")).to_have_text("Named shadow config deleted.")
    assert messages == ["Delete the shadow config of lamp? Desired and reported state are forgotten."]
    expect(page).to_have_url("/shadows/lamp")
    expect(page.locator(".shadow-tabs a")).to_have_count(1)
    assert shadow(web_gateway, "config") is None


def test_the_shadow_pages_fit_a_phone(
    browser: Browser, web_gateway: ThreadedGateway, device: PahoClient
) -> None:
    report(
        web_gateway,
        device,
        {"color": "blue", "level": 3, "light": {"mode": "eco", "schedule": ["06:00-08:00", "18:00-23:30"]}},
    )
    update(web_gateway, {"desired": {"color": "red", "light": {"mode": "night-time-very-long-mode-name"}}})
    update(web_gateway, {"reported": {"fw": "1.4.2"}}, name="firmware-and-bootloader")
    update(web_gateway, {"reported": {"on": True}}, name="config")
    phone = Tab(browser, web_gateway, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page = phone.login()
        for path in [
            "/shadows",
            "/shadows?q=la",
            "/shadows/lamp?name=firmware-and-bootloader",
            "/shadows/nothing",
        ]:
            page.goto(path)
            no_sideways_scroll(page, path)
        page.goto("/shadows/lamp")
        expect(pane(page, "delta")).to_be_visible()
        page.locator("details.shadow-metadata summary").click()
        no_sideways_scroll(page, "/shadows/lamp")
        page.evaluate("window.scrollTo(0, 0)")  # the sticky header on top of the picture
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "shadow-phone.png"), full_page=True)
        page.goto("/shadows")
        page.screenshot(path=str(ARTIFACTS / "shadows-phone.png"), full_page=True)
    finally:
        phone.close()
    assert phone.errors == []
