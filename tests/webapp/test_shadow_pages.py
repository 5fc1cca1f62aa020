"""The device shadow pages over plain HTTP: the thing list, a thing's shadows, editing desired, deleting."""

from __future__ import annotations

import json
import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mqttproxy import __version__
from mqttproxy.shadow import ShadowError, ShadowKey, ShadowService
from mqttproxy.webapp.pages import moment
from mqttproxy.webapp.shadow_pages import (
    metadata_rows,
    parse_desired,
    parse_version,
    shadow_path,
    with_removals,
)
from tests.helpers import ThreadedGateway, paho_client
from tests.webapp.conftest import WebClient
from tests.webapp.test_pages import field_errors, textarea

PAGES = ["/shadows", "/shadows/lamp", "/shadows/lamp?name=config"]
TOO_DEEP = {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}  # desired is level 1: this is 7


# --- helpers ----------------------------------------------------------------------------


def service(gateway: ThreadedGateway) -> ShadowService:
    assert gateway.gateway is not None
    return gateway.gateway.shadows


def update(gateway: ThreadedGateway, thing: str, state: dict[str, Any], name: str = "") -> dict[str, Any]:
    """An update as a device sends it; the accepted document."""
    payload = json.dumps({"state": state}).encode()
    result = gateway.run(service(gateway).handle(ShadowKey(thing, name), "update", payload))
    assert not isinstance(result, ShadowError), result.message
    return result


def document(gateway: ThreadedGateway, thing: str, name: str = "") -> dict[str, Any] | None:
    """The shadow's get/accepted document, or None if there is none."""
    try:
        return gateway.run(service(gateway).document(thing, name))
    except ShadowError as error:
        if error.code != 404:
            raise
        return None


def state(gateway: ThreadedGateway, thing: str, name: str = "") -> dict[str, Any]:
    found = document(gateway, thing, name)
    assert found is not None
    result: dict[str, Any] = found["state"]
    return result


def hidden_version(page: str) -> str:
    found = re.search(r'<input type="hidden" name="version" value="([^"]*)">', page)
    assert found, "no version field"
    return found.group(1)


def pane(page: str, field: str) -> str | None:
    """The JSON shown in a pane (desired, reported, delta), None if it says there is none."""
    found = re.search(rf'<pre class="json" data-shadow-field="{field}"( hidden)?>(.*?)</pre>', page, re.S)
    assert found, f"no pane {field}"
    return None if found.group(1) else unescape(found.group(2))


def save(client: WebClient, thing: str, desired: str, name: str = "", version: str | None = None) -> Any:
    """The edit form posted as a browser does: the text and the version the page showed."""
    if version is None:
        version = hidden_version(client.get(shadow_path(thing, name)).text)
    return client.post(shadow_path(thing, name, "desired"), {"desired": desired, "version": version})


def lamp(gateway: ThreadedGateway) -> None:
    update(
        gateway, "lamp", {"desired": {"color": "red", "level": 3}, "reported": {"color": "blue", "level": 3}}
    )


# --- logging in, rendering --------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_shadow_pages_send_strangers_to_the_login_page(web_client: WebClient, path: str) -> None:
    response = web_client.get(path)
    assert response.status == 302
    assert response.location is not None
    location = urlsplit(response.location)
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [path]


@pytest.mark.parametrize("path", ["/shadows/lamp/desired", "/shadows/lamp/delete?name=config"])
def test_shadow_forms_need_an_operator(
    web_client: WebClient, web_gateway: ThreadedGateway, path: str
) -> None:
    lamp(web_gateway)
    assert web_client.post(path, {"desired": "{}", "confirmed": "yes"}, csrf=False).status == 401
    assert state(web_gateway, "lamp")["desired"] == {"color": "red", "level": 3}


def test_every_shadow_page_renders_for_an_operator(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    lamp(web_gateway)
    update(web_gateway, "lamp", {"reported": {"fw": "1.2"}}, name="config")
    for path in PAGES:
        page = admin_client.get(path)
        assert page.status == 200, path
        assert f'<meta name="csrf-token" content="{admin_client.csrf_token}">' in page.text
        assert '<a href="/shadows" aria-current="page">Shadows</a>' in page.text
        assert f"<footer>mqttproxy {__version__}</footer>" in page.text  # not the shadow's version
    assert '<a href="/shadows" ' in admin_client.get("/devices").text  # in the nav of every page


def test_the_thing_list_searches_and_opens_things(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    assert "No shadows yet." in admin_client.get("/shadows").text
    lamp(web_gateway)
    update(web_gateway, "pump-7", {"reported": {"on": True}})
    update(web_gateway, "pump-7", {"desired": {"rate": 5}}, name="schedule")
    update(web_gateway, "valve", {"reported": {"open": False}}, name="state")  # no classic shadow
    page = admin_client.get("/shadows").text
    assert re.findall(r'<tr data-thing="([^"]+)">', page) == ["lamp", "pump-7", "valve"]
    assert '<a class="chip" href="/shadows/pump-7?name=schedule">schedule</a>' in page
    assert '<a href="/shadows/lamp" class="strong mono">lamp</a>' in page

    found = admin_client.get("/shadows?q=PUMP").text
    assert re.findall(r'<tr data-thing="([^"]+)">', found) == ["pump-7"]
    assert 'value="PUMP"' in found
    nothing = admin_client.get("/shadows?q=door").text
    assert "No thing matches “door”." in nothing

    opened = admin_client.get("/shadows?open=+door-9+")
    assert opened.status == 303
    assert opened.location == "/shadows/door-9"
    refused = admin_client.get("/shadows?open=a%2Fb")
    assert refused.status == 400
    assert 'id="open-error">A thing name is 1 to 128 letters, digits, : _ or -.</p>' in refused.text
    assert 'name="open" value="a/b"' in refused.text


def test_a_thing_page_shows_its_shadow(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    lamp(web_gateway)
    update(web_gateway, "lamp", {"reported": {"fw": "1.2"}}, name="config")
    current = document(web_gateway, "lamp")
    assert current is not None
    page = admin_client.get("/shadows/lamp")
    assert page.headers["Cache-Control"] == "no-store"
    text = page.text
    assert json.loads(pane(text, "desired") or "") == {"color": "red", "level": 3}
    assert json.loads(pane(text, "reported") or "") == {"color": "blue", "level": 3}
    assert pane(text, "delta") == '{\n  "color": "red"\n}'
    assert '<span class="badge badge-backoff" data-shadow-sync>delta</span>' in text
    assert '<dd data-shadow-field="version">1</dd>' in text
    assert hidden_version(text) == "1"
    assert json.loads(textarea(text, "desired")) == {"color": "red", "level": 3}
    stamp = current["metadata"]["desired"]["color"]["timestamp"]
    shown = moment(stamp)
    assert shown is not None
    assert (
        text.count(f'<time datetime="{shown.iso}" data-local-time>{shown.text}</time>') >= 5
    )  # leaves, latest
    assert '<td data-label="Value" class="mono">color</td><td data-label="Section">desired</td>' in text
    assert 'data-poll="/api/things/lamp/shadow"' in text
    assert '<a href="/shadows/lamp" aria-current="page">Classic</a>' in text
    assert '<a class="mono" href="/shadows/lamp?name=config">config</a>' in text
    assert "<code>$aws/things/lamp/shadow/update/delta</code>" in text

    named = admin_client.get("/shadows/lamp?name=config").text
    assert '<a class="mono" href="/shadows/lamp?name=config" aria-current="page">config</a>' in named
    assert pane(named, "desired") is None
    assert pane(named, "reported") == '{\n  "fw": "1.2"\n}'
    assert '<span class="badge badge-online" data-shadow-sync>in sync</span>' in named
    assert textarea(named, "desired") == "{}"
    assert 'data-poll="/api/things/lamp/shadow?name=config"' in named


def test_a_thing_without_a_shadow_gets_one_from_the_form(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    page = admin_client.get("/shadows/door-9").text
    assert "There is no such shadow yet." in page
    assert hidden_version(page) == ""
    assert textarea(page, "desired") == "{}"
    assert "Delete shadow" not in page
    response = save(admin_client, "door-9", '{"locked": true}')
    assert response.status == 303, response.text
    assert response.location == "/shadows/door-9?flash=shadow-saved"
    assert state(web_gateway, "door-9") == {"desired": {"locked": True}, "delta": {"locked": True}}
    shown = admin_client.get(response.location).text
    assert '<p class="flash" role="status">Desired state saved: devices get the delta.</p>' in shown


@pytest.mark.parametrize(("thing", "name"), [("bad thing", ""), ("lamp", "$reserved"), ("x" * 129, "")])
def test_invalid_names_are_refused(admin_client: WebClient, thing: str, name: str) -> None:
    page = admin_client.get(shadow_path(thing, name))
    assert page.status == 400
    assert "Invalid thing name." in page.text or "Invalid shadow name." in page.text
    assert admin_client.post(shadow_path(thing, name, "desired"), {"desired": "{}"}).status == 400


# --- editing desired ------------------------------------------------------------------------


def test_saving_desired_updates_the_shadow_and_the_device_gets_the_delta(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    lamp(web_gateway)
    device = paho_client(web_gateway.port, "lamp")
    try:
        assert device.subscribe("$aws/things/lamp/shadow/update/delta", qos=1) == [1]
        response = save(admin_client, "lamp", '{\r\n  "color": "red",\r\n  "level": 7\r\n}')
        assert response.status == 303, response.text
        delta = json.loads(device.get().payload)
        assert delta["state"] == {"color": "red", "level": 7}
        assert delta["version"] == 2
        device.assert_no_message()
    finally:
        device.disconnect()
    assert state(web_gateway, "lamp") == {
        "desired": {"color": "red", "level": 7},
        "reported": {"color": "blue", "level": 3},
        "delta": {"color": "red", "level": 7},
    }
    page = admin_client.get(response.location or "").text
    assert json.loads(pane(page, "delta") or "") == {"color": "red", "level": 7}
    assert hidden_version(page) == "2"


def test_keys_removed_from_the_text_are_deleted(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    update(
        web_gateway, "lamp", {"desired": {"color": "red", "light": {"level": 3, "mode": "eco"}, "tags": [1]}}
    )
    response = save(admin_client, "lamp", '{"light": {"level": 3}, "fan": {}}')
    assert response.status == 303, response.text
    assert state(web_gateway, "lamp")["desired"] == {"light": {"level": 3}, "fan": {}}
    assert save(admin_client, "lamp", "{}").status == 303
    assert state(web_gateway, "lamp") == {"desired": {}}
    assert save(admin_client, "lamp", "null").status == 303  # the contract: removes the section
    assert state(web_gateway, "lamp") == {}


@pytest.mark.parametrize(
    ("text", "status", "message"),
    [
        ('{"color": "green",}', 400, "Invalid JSON"),
        ("", 400, "Invalid JSON"),
        ('{"level": NaN}', 400, "Invalid JSON"),
        ('["color", "green"]', 400, "Desired node must be an object"),
        ('"green"', 400, "Desired node must be an object"),
        (json.dumps(TOO_DEEP), 400, "JSON contains too many levels of nesting; maximum is 6"),
        (json.dumps({"blob": "x" * 9000}), 413, "The payload exceeds the maximum size allowed"),
        ('{"list": [1, null]}', 400, "State contains an invalid node"),
    ],
)
def test_refused_text_comes_back_with_the_contracts_message(
    admin_client: WebClient, web_gateway: ThreadedGateway, text: str, status: int, message: str
) -> None:
    lamp(web_gateway)
    before = document(web_gateway, "lamp")
    response = save(admin_client, "lamp", text)
    assert response.status == status, response.text
    assert field_errors(response.text, "desired") == [message]
    assert textarea(response.text, "desired") == text
    assert f"The shadow service answered {status}: {message}." in response.text
    after = document(web_gateway, "lamp")
    assert after is not None
    assert before is not None
    assert (after["state"], after["version"]) == (before["state"], before["version"])  # nothing stored


def test_a_change_made_meanwhile_is_a_version_conflict(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    lamp(web_gateway)
    version = hidden_version(admin_client.get("/shadows/lamp").text)
    update(web_gateway, "lamp", {"desired": {"level": 5}})  # someone else, after the page was shown
    response = save(admin_client, "lamp", '{"color": "green"}', version=version)
    assert response.status == 409
    assert field_errors(response.text, "desired") == ["Version conflict"]
    assert textarea(response.text, "desired") == '{"color": "green"}'
    assert hidden_version(response.text) == "2"  # the page shows the shadow as it is now
    assert json.loads(pane(response.text, "desired") or "") == {"color": "red", "level": 5}
    assert state(web_gateway, "lamp")["desired"] == {"color": "red", "level": 5}
    again = save(admin_client, "lamp", '{"color": "green"}', version="2")
    assert again.status == 303
    assert state(web_gateway, "lamp")["desired"] == {"color": "green"}
    assert save(admin_client, "lamp", "{}", version="x").status == 400


# --- named shadows, deleting, CSRF ------------------------------------------------------------------


def test_named_shadows_are_listed_and_editable(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    lamp(web_gateway)
    for name in ["firmware", "config"]:
        update(web_gateway, "lamp", {"reported": {"name": name}}, name=name)
    page = admin_client.get("/shadows/lamp").text
    assert re.findall(r'<li><a class="mono" href="/shadows/lamp\?name=([^"]+)"', page) == [
        "config",
        "firmware",
    ]
    response = save(admin_client, "lamp", '{"interval": 60}', name="config")
    assert response.status == 303, response.text
    assert response.location == "/shadows/lamp?name=config&flash=shadow-saved"
    assert state(web_gateway, "lamp", "config") == {
        "desired": {"interval": 60},
        "reported": {"name": "config"},
        "delta": {"interval": 60},
    }
    assert state(web_gateway, "lamp")["desired"] == {
        "color": "red",
        "level": 3,
    }  # the classic one is untouched
    assert state(web_gateway, "lamp", "firmware") == {"reported": {"name": "firmware"}}
    new = save(admin_client, "lamp", '{"on": true}', name="night-mode")  # a new named shadow
    assert new.status == 303
    assert state(web_gateway, "lamp", "night-mode")["desired"] == {"on": True}


def test_delete_asks_then_deletes(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    lamp(web_gateway)
    update(web_gateway, "lamp", {"reported": {"fw": 1}}, name="config")
    asked = admin_client.post("/shadows/lamp/delete?name=config")
    assert asked.status == 200
    assert "Delete this shadow?" in asked.text
    assert '<input type="hidden" name="confirmed" value="yes">' in asked.text
    assert document(web_gateway, "lamp", "config") is not None
    deleted = admin_client.post("/shadows/lamp/delete?name=config", {"confirmed": "yes"})
    assert deleted.status == 303
    assert deleted.location == "/shadows/lamp?flash=shadow-deleted&id=config"
    assert document(web_gateway, "lamp", "config") is None
    assert document(web_gateway, "lamp") is not None
    page = admin_client.get(deleted.location).text
    assert '<p class="flash" role="status">Named shadow config deleted.</p>' in page
    assert "name=config" not in page

    assert admin_client.post("/shadows/lamp/delete", {"confirmed": "yes"}).status == 303
    assert document(web_gateway, "lamp") is None
    assert "Shadow deleted." in admin_client.get("/shadows/lamp?flash=shadow-deleted").text
    assert "No shadows yet." in admin_client.get("/shadows").text
    again = admin_client.post("/shadows/lamp/delete", {"confirmed": "yes"})
    assert again.status == 404
    assert "The shadow was not deleted: Thing not found (404)." in again.text
    # Made again, the shadow carries on from its version.
    assert save(admin_client, "lamp", '{"color": "red"}').status == 303
    recreated = document(web_gateway, "lamp")
    assert recreated is not None
    assert recreated["version"] == 2


def test_forms_without_the_csrf_token_are_refused(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    lamp(web_gateway)
    for path, fields in [
        ("/shadows/lamp/desired", {"desired": "{}", "version": "1"}),
        ("/shadows/lamp/delete", {"confirmed": "yes"}),
    ]:
        response = admin_client.post(path, fields, csrf=False)
        assert response.status == 403, path
        assert admin_client.post(path, {**fields, "csrf_token": "wrong"}, csrf=False).status == 403
    assert state(web_gateway, "lamp")["desired"] == {"color": "red", "level": 3}


# --- the form's text ----------------------------------------------------------------------------


def test_removed_keys_become_null_at_every_level() -> None:
    before = {"a": 1, "b": {"c": 2, "d": {"e": 3}}, "f": {"g": 1}, "h": [1]}
    after = {"b": {"d": {}}, "f": 5, "h": [2], "new": {"x": 1}}
    assert with_removals(before, after) == {
        "b": {"d": {"e": None}, "c": None},
        "f": 5,
        "h": [2],
        "new": {"x": 1},
        "a": None,
    }
    assert with_removals(None, {"a": 1}) == {"a": 1}
    assert with_removals({"a": 1}, None) is None


def test_the_text_and_version_are_read_as_the_contract_says() -> None:
    assert parse_desired(' {"a": [1, 2]} ') == {"a": [1, 2]}
    assert parse_desired("null") is None
    for text, message in [
        ("{", "Invalid JSON"),
        ("[]", "Desired node must be an object"),
        ("Infinity", "Invalid JSON"),
    ]:
        with pytest.raises(ShadowError) as raised:
            parse_desired(text)
        assert (raised.value.code, raised.value.message) == (400, message)
    assert parse_version(" 7 ") == 7
    assert parse_version("") is None
    with pytest.raises(ShadowError):
        parse_version("-1")


def test_metadata_rows_name_every_leaf() -> None:
    metadata = {
        "desired": {
            "timestamp": {"timestamp": 10},
            "light": {"level": {"timestamp": 20}, "modes": {"timestamp": 30}},
        },
        "reported": {"on": {"timestamp": 40}},
    }
    rows = [(row["section"], row["path"], row["when"].timestamp) for row in metadata_rows(metadata)]
    assert rows == [
        ("desired", "timestamp", 10),
        ("desired", "light.level", 20),
        ("desired", "light.modes", 30),
        ("reported", "on", 40),
    ]
