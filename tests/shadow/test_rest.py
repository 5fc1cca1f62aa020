"""Shadows over REST (/api/things/...): the same documents and errors as over MQTT, and the same service."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import ThreadedGateway, paho_client
from tests.shadow import ShadowClient, epoch_now_range, failing_database, leaf_metadata, prefix
from tests.webapp.api_client import NO_BODY, Api, Http, Response, token_api, web_gateway, web_port

UNSUPPORTED_ENCODING = "Unsupported documented encoding; supported encoding is UTF-8"


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedGateway]:
    monkeypatch.delenv("MQTTPROXY_ADMIN_PASSWORD", raising=False)
    with web_gateway(tmp_path) as gateway:
        yield gateway


@pytest.fixture
def api(gw: ThreadedGateway) -> Api:
    return token_api(web_port(gw))


def path(thing: str, name: str = "") -> str:
    base = f"/api/things/{quote(thing, safe='')}/shadow"
    return f"{base}?name={quote(name, safe='')}" if name else base


def call(
    api: Api, method: str, thing: str, name: str = "", body: Any = NO_BODY, raw: bytes | None = None
) -> Response:
    if raw is not None:
        return api.call(method, path(thing, name), raw=raw)
    return api.call(method, path(thing, name), body)


def ok(response: Response) -> dict[str, Any]:
    assert response.status == 200, (response.status, response.body[:300])
    body = response.json()
    assert isinstance(body, dict)
    return body


def error(response: Response, status: int) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body[:300])
    body = response.json()
    assert isinstance(body, dict)
    assert body.get("code") == status, body
    assert isinstance(body["message"], str)
    return body


def without_timestamp(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "timestamp"}


# --- the documents ------------------------------------------------------------------------------


def test_rest_update_get_and_delete_give_the_mqtt_documents(gw: ThreadedGateway, api: Api) -> None:
    watcher = ShadowClient.connect(gw.port, "watcher")
    watcher.watch("boiler")
    started = time.time()

    desired = {"temp": 60, "schedule": {"on": "06:00", "days": [1, 2, 3]}}
    accepted = ok(call(api, "POST", "boiler", body={"state": {"desired": desired}, "clientToken": "r-1"}))
    stamp = {"timestamp": accepted["timestamp"]}
    assert accepted["timestamp"] in epoch_now_range(started)
    assert accepted == {
        "state": {"desired": desired},
        "metadata": {"desired": leaf_metadata(desired, stamp)},
        "version": 1,
        "timestamp": stamp["timestamp"],
        "clientToken": "r-1",
    }
    assert watcher.wait_for("update/accepted", token="r-1").body == accepted
    delta = watcher.wait_for("update/delta", token="r-1").body
    assert (delta["state"], delta["version"]) == (desired, 1)
    documents = watcher.wait_for("update/documents", token="r-1").body
    assert documents["current"] == {
        "state": {"desired": desired},
        "metadata": accepted["metadata"],
        "version": 1,
    }

    ok(call(api, "POST", "boiler", body={"state": {"reported": {"temp": 55}}}))
    got = ok(call(api, "GET", "boiler"))
    over_mqtt = watcher.get("boiler").body
    assert without_timestamp(got) == without_timestamp(over_mqtt)
    assert got["state"] == {
        "desired": desired,
        "reported": {"temp": 55},
        "delta": desired,
    }
    assert set(got) == {"state", "metadata", "version", "timestamp"}
    assert got["version"] == 2

    deleted = ok(call(api, "DELETE", "boiler"))
    assert deleted == {"version": 2, "timestamp": deleted["timestamp"]}
    assert without_timestamp(watcher.wait_for("delete/accepted").body) == {"version": 2}
    missing = error(call(api, "GET", "boiler"), 404)
    assert missing["message"] == "Thing not found"
    assert error(call(api, "DELETE", "boiler"), 404)["message"] == "Thing not found"
    assert ok(call(api, "POST", "boiler", body={"state": {}}))["version"] == 3


def test_named_shadows_over_rest(api: Api) -> None:
    assert ok(call(api, "POST", "gate", "cfg", body={"state": {"desired": {"a": 1}}}))["version"] == 1
    assert ok(call(api, "POST", "gate", "cfg", body={"state": {"desired": {"a": 2}}}))["version"] == 2
    assert ok(call(api, "POST", "gate", body={"state": {"desired": {"b": 1}}}))["version"] == 1
    assert ok(call(api, "GET", "gate", "cfg"))["state"] == {"desired": {"a": 2}, "delta": {"a": 2}}
    assert error(call(api, "GET", "gate", "missing"), 404)["message"] == "No shadow exists with name: missing"
    assert ok(call(api, "DELETE", "gate", "cfg"))["version"] == 2
    assert error(call(api, "GET", "gate", "cfg"), 404)["message"] == "No shadow exists with name: cfg"
    assert ok(call(api, "GET", "gate"))["version"] == 1


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"{nope", 400, "Invalid JSON"),
        (b"[]", 400, "Invalid JSON"),
        (b'{"desired": {}}', 400, "Missing required node: state"),
        (b'{"state": "x"}', 400, "State node must be an object"),
        (b'{"state": {"desired": 1}}', 400, "Desired node must be an object"),
        (b'{"state": {"reported": []}}', 400, "Reported node must be an object"),
        (b'{"state": {}, "version": "1"}', 400, "Invalid version"),
        (json.dumps({"state": {}, "clientToken": "x" * 65}).encode(), 400, "Invalid clientToken"),
        (
            b'{"state": {"desired": {"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}',
            400,
            "JSON contains too many levels of nesting; maximum is 6",
        ),
        (b'{"state": {"desired": {"l": [null]}}}', 400, "State contains an invalid node"),
        (b'{"state": {"desired": {"a": 2}}, "version": 4}', 409, "Version conflict"),
        (
            json.dumps({"state": {"reported": {"s": "x" * 9000}}}).encode(),
            413,
            "The payload exceeds the maximum size allowed",
        ),
        (b'{"state": {"desired": {"a": "\xff"}}}', 415, UNSUPPORTED_ENCODING),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "missing-state",
        "state-not-object",
        "desired-not-object",
        "reported-not-object",
        "invalid-version",
        "client-token-too-long",
        "nesting",
        "array-with-null",
        "version-conflict",
        "too-large",
        "not-utf8",
    ],
)
def test_rest_errors_are_the_status_and_the_contracts_body(
    api: Api, raw: bytes, status: int, message: str
) -> None:
    before = ok(call(api, "POST", "err", body={"state": {"desired": {"a": 1}}}))
    assert error(call(api, "POST", "err", raw=raw), status)["message"] == message
    after = ok(call(api, "GET", "err"))
    assert (after["state"], after["metadata"], after["version"]) == (
        {"desired": {"a": 1}, "delta": {"a": 1}},
        before["metadata"],
        1,
    )


def test_rest_error_body_is_the_same_as_over_mqtt(gw: ThreadedGateway, api: Api) -> None:
    """Contract: over REST "the HTTP status plus the same JSON error body" (timestamp, clientToken)."""
    watcher = ShadowClient.connect(gw.port, "watcher")
    watcher.watch("same")
    ok(call(api, "POST", "same", body={"state": {}}))
    started = time.time()
    body = error(call(api, "POST", "same", body={"state": {}, "version": 9, "clientToken": "rest-1"}), 409)
    over_mqtt = watcher.wait_for("update/rejected", token="rest-1").body
    assert set(over_mqtt) == {"code", "message", "timestamp", "clientToken"}
    assert body.get("timestamp") in epoch_now_range(started)
    assert body == over_mqtt


def test_a_body_over_the_web_limit_is_the_contracts_413(api: Api) -> None:
    body = json.dumps({"state": {"reported": {"s": "x" * 70_000}}}).encode()  # past [web] max_body_size
    assert (
        error(call(api, "POST", "huge", raw=body), 413)["message"]
        == "The payload exceeds the maximum size allowed"
    )
    assert error(call(api, "GET", "huge"), 404)["message"] == "Thing not found"


@pytest.mark.parametrize(
    ("thing", "name"),
    [("bad.name", ""), ("x" * 129, ""), ("thing", "$reserved"), ("thing", "n" * 65)],
    ids=["thing-dot", "thing-129", "shadow-dollar", "shadow-65"],
)
def test_bad_names_are_400_over_rest(gw: ThreadedGateway, api: Api, thing: str, name: str) -> None:
    error(call(api, "POST", thing, name, body={"state": {"reported": {"a": 1}}}), 400)
    error(call(api, "GET", thing, name), 400)
    error(call(api, "DELETE", thing, name), 400)
    assert ok(api.call("GET", "/api/things")) == {"things": []}


def test_without_a_token_every_shadow_route_is_401(gw: ThreadedGateway, api: Api) -> None:
    anonymous = Http(web_port(gw))
    for method, target, body in [
        ("GET", path("t"), NO_BODY),
        ("POST", path("t"), {"state": {"desired": {"a": 1}}}),
        ("POST", path("t", "n"), {"state": {"desired": {"a": 1}}}),
        ("DELETE", path("t"), NO_BODY),
        ("GET", "/api/things", NO_BODY),
        ("GET", "/api/things/shadow/ListNamedShadowsForThing/t", NO_BODY),
    ]:
        assert anonymous.request(method, target, body).status == 401, (method, target)
    wrong = Api(Http(web_port(gw)), "bearer", bearer="not-a-token")
    assert wrong.call("POST", path("t"), {"state": {"desired": {"a": 1}}}).status == 401
    assert error(call(api, "GET", "t"), 404)["message"] == "Thing not found"  # nothing was stored
    assert error(call(api, "GET", "t", "n"), 404)["code"] == 404


def test_unauthorized_is_the_contracts_error_body(gw: ThreadedGateway) -> None:
    """Contract: 401 "Unauthorized", over REST as the status plus the same JSON error body."""
    response = Http(web_port(gw)).request("GET", path("t"))
    assert response.status == 401
    body = response.json()
    assert (body.get("code"), body.get("message")) == (401, "Unauthorized"), body


def test_a_failure_inside_is_the_contracts_500(gw: ThreadedGateway, api: Api) -> None:
    watcher = ShadowClient.connect(gw.port, "watcher")
    watcher.watch("fragile")
    ok(call(api, "POST", "fragile", body={"state": {"desired": {"a": 1}}, "clientToken": "w0"}))
    watcher.wait_for("update/documents", token="w0")
    watcher.drain()
    refused = {"state": {"desired": {"a": 2}}, "clientToken": "w"}
    with failing_database(gw, "execute"):
        failed = error(call(api, "POST", "fragile", body=refused), 500)
        assert failed == {
            "code": 500,
            "message": "Internal service failure",
            "timestamp": failed["timestamp"],
            "clientToken": "w",
        }
        assert watcher.wait_for("update/rejected", token="w").body == failed  # the same answer over MQTT
        assert error(call(api, "DELETE", "fragile"), 500)["message"] == "Internal service failure"
    with failing_database(gw, "fetch_one"):
        assert error(call(api, "GET", "fragile"), 500)["message"] == "Internal service failure"
    got = ok(call(api, "GET", "fragile"))
    assert (got["state"]["desired"], got["version"]) == ({"a": 1}, 1)
    assert watcher.get("fragile").body["version"] == 1  # answered after everything before it
    assert watcher.kinds_seen("fragile") == ["delete/rejected"]  # nothing was accepted


# --- listings -------------------------------------------------------------------------------------


def test_things_lists_the_things_that_have_a_shadow(api: Api) -> None:
    assert ok(api.call("GET", "/api/things")) == {"things": []}
    ok(call(api, "POST", "b-thing", body={"state": {"reported": {"a": 1}}}))
    ok(call(api, "POST", "a-thing", "only-named", body={"state": {}}))
    ok(call(api, "POST", "c-thing", body={"state": {}}))
    ok(call(api, "DELETE", "c-thing"))
    things = ok(api.call("GET", "/api/things"))["things"]
    assert sorted(things) == ["a-thing", "b-thing"]


def list_named(api: Api, thing: str, **query: Any) -> Response:
    search = "&".join(f"{key}={quote(str(value), safe='')}" for key, value in query.items())
    return api.call(
        "GET", f"/api/things/shadow/ListNamedShadowsForThing/{thing}" + (f"?{search}" if search else "")
    )


def test_named_shadows_are_listed_page_by_page(api: Api) -> None:
    names = [f"s{index:02}" for index in range(7)]
    for name in names:
        ok(call(api, "POST", "dev", name, body={"state": {"reported": {"n": name}}}))
    ok(call(api, "POST", "dev", body={"state": {}}))  # the classic shadow is not a named one
    ok(call(api, "POST", "dev", "s-deleted", body={"state": {}}))
    ok(call(api, "DELETE", "dev", "s-deleted"))
    ok(call(api, "POST", "other", "x", body={"state": {}}))

    started = time.time()
    everything = ok(list_named(api, "dev"))
    assert everything["results"] == names
    assert everything.get("nextToken") is None
    assert everything["timestamp"] in epoch_now_range(started)

    pages: list[list[str]] = []
    token: str | None = None
    for _ in range(5):
        query: dict[str, Any] = {"pageSize": 3}
        if token is not None:
            query["nextToken"] = token
        page = ok(list_named(api, "dev", **query))
        assert set(page) <= {"results", "nextToken", "timestamp"}
        pages.append(page["results"])
        token = page.get("nextToken")
        if token is None:
            break
    assert pages == [names[0:3], names[3:6], names[6:7]]
    assert ok(list_named(api, "nobody"))["results"] == []
    assert list_named(api, "dev", pageSize=0).status == 400
    for token in ("a", "__8="):  # not base64; not UTF-8 once decoded
        assert error(list_named(api, "dev", nextToken=token), 400)["message"] == "Invalid nextToken"


# --- REST applications and MQTT devices ---------------------------------------------------------


def test_a_rest_update_sends_the_delta_to_a_subscribed_device(gw: ThreadedGateway, api: Api) -> None:
    device = paho_client(gw.port, "sprinkler")
    assert device.subscribe(f"{prefix('sprinkler')}/update/delta", 1) == [1]
    accepted = ok(
        call(api, "POST", "sprinkler", body={"state": {"desired": {"zone": 3}}, "clientToken": "water"})
    )
    message = device.get()
    assert message.topic == f"{prefix('sprinkler')}/update/delta"
    assert json.loads(message.payload) == {
        "state": {"zone": 3},
        "metadata": accepted["metadata"]["desired"],
        "version": 1,
        "timestamp": accepted["timestamp"],
        "clientToken": "water",
    }
    device.disconnect()


def test_device_loop_with_a_rest_application(gw: ThreadedGateway, api: Api) -> None:
    thing = "lamp-42"
    device = ShadowClient.connect(gw.port, thing)
    device.watch(thing)
    device.request(thing, "update", {"state": {"reported": {"power": "off", "level": 0}}})

    ok(
        call(
            api,
            "POST",
            thing,
            body={"state": {"desired": {"power": "on", "level": 80}}, "clientToken": "app"},
        )
    )
    delta = device.wait_for("update/delta", token="app")
    assert delta.body["state"] == {"power": "on", "level": 80}
    applied = device.request(
        thing, "update", {"state": {"reported": delta.body["state"]}, "clientToken": "dev"}
    )
    assert (applied.kind, applied.body["version"]) == ("update/accepted", 3)
    documents = device.wait_for("update/documents", token="dev").body
    assert documents["current"]["state"]["reported"] == {"power": "on", "level": 80}

    seen = ok(call(api, "GET", thing))
    assert "delta" not in seen["state"]
    assert device.get(thing).kind == "get/accepted"
    assert "update/delta" not in device.kinds_seen(thing)  # the delta stopped

    device.disconnect()
    device = ShadowClient.connect(gw.port, thing)
    device.watch(thing)
    got = device.get(thing)
    assert got.body["state"] == {
        "desired": {"power": "on", "level": 80},
        "reported": {"power": "on", "level": 80},
    }
    assert got.body["version"] == 3
    device.disconnect()
