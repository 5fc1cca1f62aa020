"""The REST API under /api, over real HTTP against a whole gateway: happy paths and bad input."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mqttproxy.operators import Operator
from mqttproxy.upstream.models import BrokerRecord
from mqttproxy.webapp.api import ROUTES
from tests.helpers import ThreadedGateway, paho_client, wait_until
from tests.mosquitto import Mosquitto, free_port
from tests.webapp.api_client import (
    NO_BODY,
    Api,
    Http,
    Response,
    json_keys,
    make_api,
    token_api,
    web_gateway,
    web_port,
)

UPSTREAM_PASSWORD = "upstream-secret-4711"


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedGateway]:
    monkeypatch.delenv("MQTTPROXY_ADMIN_PASSWORD", raising=False)
    with web_gateway(tmp_path) as gateway:
        yield gateway


@pytest.fixture(params=["bearer", "session"])
def api(request: pytest.FixtureRequest, gw: ThreadedGateway) -> Api:
    """The API as an operator reaches it: with a bearer token, or a session cookie and CSRF token."""
    return make_api(request.param, web_port(gw))


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


def broker_body(broker_id: str = "b1", **fields: Any) -> dict[str, Any]:
    """A broker pointing at a closed port, retrying quickly."""
    body = {
        "id": broker_id,
        "name": f"Broker {broker_id}",
        "address": "127.0.0.1",
        "port": free_port(),
        "reconnect_min_delay": 0.05,
        "reconnect_max_delay": 0.2,
        "routes": [{"filter": "devices/#", "remap": "site/{1}"}],
    }
    return {**body, **fields}


def records(gw: ThreadedGateway) -> list[dict[str, Any]]:
    """What the fan-out holds, passwords included (SecretStr compares by value)."""
    assert gw.gateway is not None
    fanout = gw.gateway.fanout
    return gw.call(lambda: [record.model_dump() for record in fanout.records()])


def record(gw: ThreadedGateway, broker_id: str) -> BrokerRecord:
    assert gw.gateway is not None
    fanout = gw.gateway.fanout
    return gw.call(lambda: fanout.record(broker_id))


def brokers_json(gw: ThreadedGateway) -> bytes | None:
    path = gw.config.data_dir / "brokers.json"
    return path.read_bytes() if path.exists() else None


def token_ids(api: Api) -> list[tuple[int, str]]:
    return [(item["id"], item["name"]) for item in api.ok("GET", "/api/tokens")]


def assert_no_password(responses: list[Response], *secrets: str) -> None:
    for response in responses:
        for secret in secrets:
            assert secret.encode() not in response.body, (response.status, response.body[:300])
        if response.headers.get_content_type() == "application/json" and response.body:
            assert "password" not in set(json_keys(json.loads(response.body))), response.body[:300]


def first_status_event(api: Api) -> dict[str, Any]:
    """Open GET /api/events and parse the first ``event: status`` frame."""
    headers = {"Cookie": "; ".join(f"{key}={value}" for key, value in api.http.cookies.items())}
    if api.bearer is not None:
        headers["Authorization"] = f"Bearer {api.bearer}"
    connection = http.client.HTTPConnection("127.0.0.1", api.http.port, timeout=10)
    try:
        connection.request("GET", "/api/events", headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        assert response.headers.get_content_type() == "text/event-stream"
        event = ""
        while True:
            line = response.readline().decode()
            assert line, "the stream ended before a status event"
            line = line.rstrip("\n")
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "status":
                data: dict[str, Any] = json.loads(line.removeprefix("data: "))
                api.http.seen.append(Response(200, response.headers, line.encode()))
                return data
            elif not line:
                event = ""
    finally:
        connection.close()


# --- happy paths ---------------------------------------------------------------------


def test_broker_lifecycle(api: Api, gw: ThreadedGateway) -> None:
    body = broker_body("cloud", username="site7", password=UPSTREAM_PASSWORD)
    created = api.ok("POST", "/api/brokers", body, status=201)
    assert created.pop("status")["id"] == "cloud"
    assert created == BrokerRecord.model_validate(body).public()
    assert created["has_password"] is True
    assert b"cloud" in (brokers_json(gw) or b"")

    listed = api.ok("GET", "/api/brokers")
    assert [item["id"] for item in listed] == ["cloud"]
    fetched = api.ok("GET", "/api/brokers/cloud")
    assert fetched.pop("status")["state"] in {"connecting", "backoff"}
    assert fetched == created

    # Leaving the password out keeps it.
    settings = {key: value for key, value in body.items() if key not in {"id", "password"}}
    updated = api.ok("PUT", "/api/brokers/cloud", {**settings, "name": "Cloud, renamed"})
    assert updated["name"] == "Cloud, renamed"
    assert updated["has_password"] is True
    stored = record(gw, "cloud")
    assert stored.name == "Cloud, renamed"
    assert stored.password is not None
    assert stored.password.get_secret_value() == UPSTREAM_PASSWORD
    # null removes it.
    cleared = api.ok("PUT", "/api/brokers/cloud", {**settings, "id": "cloud", "password": None})
    assert cleared["has_password"] is False
    assert record(gw, "cloud").password is None

    paused = api.ok("POST", "/api/brokers/cloud/toggle")
    assert paused["enabled"] is False
    assert paused["status"]["state"] == "disabled"
    assert api.ok("GET", "/api/brokers/cloud")["status"]["state"] == "disabled"
    assert record(gw, "cloud").enabled is False
    resumed = api.ok("POST", "/api/brokers/cloud/toggle")
    assert resumed["enabled"] is True
    assert resumed["status"]["state"] != "disabled"

    assert api.ok("DELETE", "/api/brokers/cloud", status=204) is None
    missing = api.call("GET", "/api/brokers/cloud")
    assert missing.status == 404
    assert missing.error()["code"] == "not_found"
    assert api.ok("GET", "/api/brokers") == []
    assert records(gw) == []
    assert b"cloud" not in (brokers_json(gw) or b"")
    assert_no_password(api.http.seen, UPSTREAM_PASSWORD)


def test_connection_test_reaches_a_live_broker(api: Api, gw: ThreadedGateway, upstream: Mosquitto) -> None:
    body = {"id": "ignored", "name": "probe", "address": "127.0.0.1", "port": upstream.port}
    result = api.ok("POST", "/api/brokers/test", body)
    assert result["ok"] is True
    assert result["address"] == f"127.0.0.1:{upstream.port}"
    assert result["seconds"] >= 0
    assert records(gw) == []


def test_connection_test_reports_a_dead_port(api: Api, gw: ThreadedGateway) -> None:
    body = {"name": "probe", "address": "127.0.0.1", "port": free_port()}
    result = api.ok("POST", "/api/brokers/test", body)
    assert result["ok"] is False
    assert result["message"]
    assert records(gw) == []


def test_status_document(api: Api, gw: ThreadedGateway) -> None:
    api.ok("POST", "/api/brokers", broker_body("cloud"), status=201)
    document = api.ok("GET", "/api/status")
    assert {"healthy", "mqtt", "storage", "counters", "rates", "brokers"} <= set(document)
    assert document["healthy"] is True
    assert document["mqtt"]["listeners"][0]["port"] == gw.port
    assert document["storage"]["open"] is True
    assert [item["id"] for item in document["brokers"]] == ["cloud"]


def test_rates_history_is_a_list_of_samples(api: Api) -> None:
    assert isinstance(api.ok("GET", "/api/rates"), list)
    wait_until(lambda: bool(api.ok("GET", "/api/rates")), message="a rate sample")
    for sample in api.ok("GET", "/api/rates"):
        assert {"time", "in", "out", "forwarded", "brokers"} <= set(sample)


def test_connected_clients_are_listed(api: Api, gw: ThreadedGateway) -> None:
    device = paho_client(gw.port, "web-test-device")
    try:
        listed = api.ok("GET", "/api/clients")
        assert "web-test-device" in [item["client_id"] for item in listed]
    finally:
        device.disconnect()


def test_token_secret_is_shown_once_and_revoking_it_locks_it_out(api: Api) -> None:
    created = api.ok("POST", "/api/tokens", {"name": "ci"}, status=201)
    secret = created["token"]
    assert secret.startswith("mqp_")
    assert created["prefix"] == secret[:10]
    assert created["name"] == "ci"
    assert created["last_used_at"] is None
    holder = Api(Http(api.http.port), "bearer", bearer=secret)
    assert holder.call("GET", "/api/status").status == 200

    listed = api.call("GET", "/api/tokens")
    assert listed.status == 200
    assert secret.encode() not in listed.body
    mine = [item for item in listed.json() if item["id"] == created["id"]]
    assert len(mine) == 1
    assert "token" not in mine[0]
    assert mine[0]["last_used_at"] is not None

    assert api.ok("DELETE", f"/api/tokens/{created['id']}", status=204) is None
    refused = holder.call("GET", "/api/status")
    assert refused.status == 401
    assert refused.error()["code"] == "unauthorized"
    assert created["id"] not in [item["id"] for item in api.ok("GET", "/api/tokens")]


def test_events_stream_sends_the_status(api: Api) -> None:
    document = first_status_event(api)
    assert {"healthy", "mqtt", "storage", "counters", "rates", "brokers"} <= set(document)
    assert document["healthy"] is True


def test_openapi_document_is_served(api: Api) -> None:
    document = api.ok("GET", "/api/openapi.json")
    assert document["openapi"].startswith("3.1")
    assert "/api/brokers" in document["paths"]


# The body each route is called with below; a route missing here fails the test.
ROUTE_CALLS: dict[tuple[str, str], tuple[str, Any, int]] = {
    ("GET", "/api/brokers"): ("/api/brokers", NO_BODY, 200),
    ("POST", "/api/brokers"): (
        "/api/brokers",
        broker_body("second", username="u", password=UPSTREAM_PASSWORD),
        201,
    ),
    ("POST", "/api/brokers/test"): (
        "/api/brokers/test",
        {"name": "t", "address": "127.0.0.1", "port": 1, "username": "u", "password": UPSTREAM_PASSWORD},
        200,
    ),
    ("GET", "/api/brokers/{id}"): ("/api/brokers/cloud", NO_BODY, 200),
    ("PUT", "/api/brokers/{id}"): ("/api/brokers/cloud", {"name": "n", "address": "h", "username": "u"}, 200),
    ("POST", "/api/brokers/{id}/toggle"): ("/api/brokers/cloud/toggle", NO_BODY, 200),
    ("GET", "/api/status"): ("/api/status", NO_BODY, 200),
    ("GET", "/api/rates"): ("/api/rates", NO_BODY, 200),
    ("GET", "/api/clients"): ("/api/clients", NO_BODY, 200),
    ("GET", "/api/tokens"): ("/api/tokens", NO_BODY, 200),
    ("POST", "/api/tokens"): ("/api/tokens", {"name": "extra"}, 201),
    ("DELETE", "/api/tokens/{id}"): ("/api/tokens/{token}", NO_BODY, 204),
    ("DELETE", "/api/brokers/{id}"): ("/api/brokers/second", NO_BODY, 204),
}


def test_no_route_returns_a_password(api: Api, gw: ThreadedGateway) -> None:
    api.ok("POST", "/api/brokers", broker_body("cloud", username="u", password=UPSTREAM_PASSWORD), status=201)
    token = api.ok("POST", "/api/tokens", {"name": "doomed"}, status=201)["id"]
    for route in ROUTES:
        assert (route.method, route.path) in ROUTE_CALLS, f"add {route.method} {route.path} to ROUTE_CALLS"
    for (method, _), (path, body, status) in ROUTE_CALLS.items():
        api.ok(method, path.format(token=token), body, status=status)
    assert record(gw, "cloud").password is not None  # the PUT kept it, unseen
    first_status_event(api)
    assert_no_password(api.http.seen, UPSTREAM_PASSWORD)


# --- bad input ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    method: str
    path: str
    body: Any = NO_BODY
    raw: bytes | None = None
    status: int = 400
    field: str | None = None
    code: str | None = None


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in body.items() if name != key}


_SETTINGS = {**_without(broker_body("b1"), "id"), "username": "u"}


def _with_raw_number(body: dict[str, Any], key: str, number: str) -> bytes:
    """``body`` as JSON with ``key`` set to ``number`` as written (NaN, Infinity: not JSON)."""
    text = json.dumps({**body, key: "@"}).replace('"@"', number)
    return text.encode()


_OVERSIZED = json.dumps({**broker_body("big"), "name": "x" * 70_000}).encode()

BAD_INPUT: dict[str, Bad] = {
    "malformed-json": Bad("POST", "/api/brokers", raw=b'{"id": "x",', code="bad_request"),
    "not-json": Bad("PUT", "/api/brokers/b1", raw=b"name=x", code="bad_request"),
    "json-array": Bad("POST", "/api/brokers", [broker_body("x")], code="bad_request"),
    "json-string-on-put": Bad("PUT", "/api/brokers/b1", "hello", code="bad_request"),
    "not-utf8": Bad("POST", "/api/brokers", raw=b'{"id": "\xff"}', code="bad_request"),
    "nested-too-deep": Bad("POST", "/api/brokers", raw=b"[" * 60_000, code="bad_request"),
    "nan": Bad(
        "POST", "/api/brokers", raw=_with_raw_number(broker_body("x"), "port", "NaN"), code="bad_request"
    ),
    "infinity": Bad(
        "PUT",
        "/api/brokers/b1",
        raw=_with_raw_number(_SETTINGS, "ack_timeout", "Infinity"),
        code="bad_request",
    ),
    "port-not-a-number": Bad("POST", "/api/brokers", broker_body("x", port="x"), field="port"),
    "port-out-of-range": Bad("POST", "/api/brokers", broker_body("x", port=70_000), field="port"),
    "missing-name": Bad("POST", "/api/brokers", _without(broker_body("x"), "name"), field="name"),
    "bad-id": Bad("POST", "/api/brokers", broker_body("no spaces"), field="id"),
    "unknown-field": Bad("POST", "/api/brokers", broker_body("x", colour="red"), field="colour"),
    "bad-route-filter": Bad(
        "POST", "/api/brokers", broker_body("x", routes=[{"filter": "a/#/b"}]), field="routes.0.filter"
    ),
    "second-route-bad": Bad(
        "POST",
        "/api/brokers",
        broker_body("x", routes=[{"filter": "ok/#"}, {"filter": "x+"}]),
        field="routes.1.filter",
    ),
    "bad-tls-path": Bad(
        "POST", "/api/brokers", broker_body("x", ca_cert_path="/nonexistent/ca.pem"), field="ca_cert_path"
    ),
    "too-large": Bad("POST", "/api/brokers", raw=_OVERSIZED, status=413, code="body_too_large"),
    "too-large-put": Bad("PUT", "/api/brokers/b1", raw=_OVERSIZED, status=413, code="body_too_large"),
    "duplicate-id": Bad("POST", "/api/brokers", broker_body("b1"), status=409, field="id", code="conflict"),
    "put-changes-id": Bad("PUT", "/api/brokers/b1", {**_SETTINGS, "id": "b2"}, field="id"),
    "put-unknown-field": Bad("PUT", "/api/brokers/b1", {**_SETTINGS, "colour": "red"}, field="colour"),
    "put-wrong-type": Bad("PUT", "/api/brokers/b1", {**_SETTINGS, "enabled": "perhaps"}, field="enabled"),
    "put-bad-route": Bad(
        "PUT", "/api/brokers/b1", {**_SETTINGS, "routes": [{"filter": ""}]}, field="routes.0.filter"
    ),
    "test-wrong-type": Bad(
        "POST", "/api/brokers/test", {"name": "t", "address": "h", "port": "x"}, field="port"
    ),
    "get-unknown": Bad("GET", "/api/brokers/nope", status=404, code="not_found"),
    "put-unknown": Bad("PUT", "/api/brokers/nope", _SETTINGS, status=404, code="not_found"),
    "delete-unknown": Bad("DELETE", "/api/brokers/nope", status=404, code="not_found"),
    "toggle-unknown": Bad("POST", "/api/brokers/nope/toggle", status=404, code="not_found"),
    "unknown-route": Bad("GET", "/api/nothing-here", status=404, code="not_found"),
    "patch-brokers": Bad("PATCH", "/api/brokers", {}, status=405, code="method_not_allowed"),
    "delete-status": Bad("DELETE", "/api/status", status=405, code="method_not_allowed"),
    "put-tokens": Bad("PUT", "/api/tokens", {"name": "x"}, status=405, code="method_not_allowed"),
    "token-empty-name": Bad("POST", "/api/tokens", {"name": ""}, field="name"),
    "token-unknown-field": Bad("POST", "/api/tokens", {"name": "x", "expires": 1}, field="expires"),
    "test-id-wrong-type": Bad(
        "POST",
        "/api/brokers/test",
        {"id": 7, "name": "t", "address": "127.0.0.1", "port": 1, "username": "u"},
        field="id",
    ),
    "token-malformed": Bad("POST", "/api/tokens", raw=b"{", code="bad_request"),
    "revoke-not-a-number": Bad("DELETE", "/api/tokens/abc", status=404, code="not_found"),
    "revoke-unknown": Bad("DELETE", "/api/tokens/99999", status=404, code="not_found"),
}


@pytest.mark.parametrize("case", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_a_json_error_and_changes_nothing(gw: ThreadedGateway, case: Bad) -> None:
    api = token_api(web_port(gw))
    api.ok("POST", "/api/brokers", broker_body("b1", username="u", password=UPSTREAM_PASSWORD), status=201)
    before = (records(gw), brokers_json(gw), token_ids(api))

    response = api.call(case.method, case.path, case.body, raw=case.raw)

    assert response.status == case.status, response.body[:300]
    error = response.error()
    assert error.get("field") == case.field
    if case.code is not None:
        assert error["code"] == case.code
    if case.field is not None:
        assert case.field in error["message"]
    if case.status == 405:
        assert response.headers["Allow"]
    assert (records(gw), brokers_json(gw), token_ids(api)) == before


VALIDATION_ERRORS = {
    "unknown-field": (broker_body("x", colour="red"), "colour: unknown field", "colour"),
    "readme-example": (
        broker_body("x", routes=[{"filter": "a/#/b"}]),
        "routes.0.filter: ",
        "routes.0.filter",
    ),
}


@pytest.mark.parametrize(
    ("body", "message", "field"), VALIDATION_ERRORS.values(), ids=VALIDATION_ERRORS.keys()
)
def test_validation_errors_have_the_documented_shape(
    gw: ThreadedGateway, body: dict[str, Any], message: str, field: str
) -> None:
    """As README shows: ``{"error": {"code": "validation_error", "message": "f: ...", "field": "f"}}``."""
    response = token_api(web_port(gw)).call("POST", "/api/brokers", body)
    assert response.status == 400
    error = response.error()
    assert error["message"].startswith(message)
    assert error["field"] == field
    assert error["code"] == "validation_error"


def test_tokens_of_another_operator_cannot_be_revoked(gw: ThreadedGateway) -> None:
    assert gw.gateway is not None
    operators = gw.gateway.operators
    bob: Operator = gw.run(operators.create("bob", "bob's password"))
    bob_token, bob_secret = gw.run(operators.create_token(bob, "bob's script"))
    admin = token_api(web_port(gw))
    assert bob_token.id not in [item["id"] for item in admin.ok("GET", "/api/tokens")]

    refused = admin.call("DELETE", f"/api/tokens/{bob_token.id}")

    assert refused.status == 404
    assert refused.error()["code"] == "not_found"
    assert Api(Http(web_port(gw)), "bearer", bearer=bob_secret).call("GET", "/api/status").status == 200


def test_a_json_body_is_read_as_utf_8_whatever_the_charset(gw: ThreadedGateway) -> None:
    api = token_api(web_port(gw))
    headers = {"Content-Type": "application/json; charset=no-such-charset"}
    body = json.dumps(broker_body("b1", name="Wolke ☁")).encode()
    response = api.call("POST", "/api/brokers", raw=body, headers=headers)
    assert response.status == 201, response.body[:300]
    assert record(gw, "b1").name == "Wolke ☁"


# --- /health -------------------------------------------------------------------------


def test_health_is_open_and_reports_mqtt_and_storage(gw: ThreadedGateway) -> None:
    response = Http(web_port(gw)).get("/health")
    assert response.status == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["mqtt"]["serving"] is True
    assert body["storage"]["open"] is True


def test_health_is_503_when_the_mqtt_listener_is_closed(gw: ThreadedGateway) -> None:
    async def close_listener() -> None:
        for server in gw.broker._servers:
            server.close()

    gw.run(close_listener())
    response = Http(web_port(gw)).get("/health")
    assert response.status == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["mqtt"]["serving"] is False
    assert "storage" in body
