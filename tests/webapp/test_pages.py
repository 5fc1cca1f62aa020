"""The dashboard's server-rendered pages over plain HTTP: login, broker forms, tokens, CSRF."""

from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mqttproxy.upstream.models import BrokerRecord, BrokerSettings, Route
from mqttproxy.webapp.pages import (
    FORM_FIELDS,
    RouteSyntaxError,
    form_values,
    format_route,
    parse_route_line,
    parse_routes,
    validate_broker,
)
from tests.helpers import ThreadedGateway, paho_client, wait_until
from tests.mosquitto import free_port
from tests.registry.util import add_device, add_tenant
from tests.webapp.conftest import WebClient, web_port

PAGES = ["/", "/brokers", "/brokers/new", "/clients", "/tokens"]


# --- helpers ----------------------------------------------------------------------------


def records(gateway: ThreadedGateway) -> list[BrokerRecord]:
    assert gateway.gateway is not None
    fanout = gateway.gateway.fanout
    return gateway.call(fanout.records)


def add_record(gateway: ThreadedGateway, **fields: Any) -> BrokerRecord:
    """A broker on a closed local port, paused unless told otherwise (no connection attempts)."""
    assert gateway.gateway is not None
    fields.setdefault("enabled", False)
    fields.setdefault("port", free_port())
    record = BrokerRecord(id=fields.pop("id", "cloud"), name="Cloud", address="127.0.0.1", **fields)
    return gateway.run(gateway.gateway.fanout.add(record))


def field_errors(page: str, name: str) -> list[str]:
    """The inline errors shown next to form field ``name``."""
    found = re.findall(rf'<p class="field-error" id="{re.escape(name)}-error">(.*?)</p>', page, re.S)
    return [unescape(text) for text in found]


def input_value(page: str, name: str) -> str:
    found = re.search(rf'<input id="f-{re.escape(name)}" name="{re.escape(name)}"[^>]* value="([^"]*)"', page)
    assert found, f"no input {name}"
    return unescape(found.group(1))


def textarea(page: str, name: str) -> str:
    pattern = rf'<textarea id="f-{re.escape(name)}" name="{re.escape(name)}"[^>]*>(.*?)</textarea>'
    found = re.search(pattern, page, re.S)
    assert found, f"no textarea {name}"
    return unescape(found.group(1))


def broker_form(upstream_port: int, **overrides: str) -> dict[str, str]:
    """A complete, valid add form as a browser posts it (checked boxes only)."""
    fields = {
        "id": "cloud",
        "name": "Production cloud",
        "address": "127.0.0.1",
        "port": str(upstream_port),
        "failover": "backup.example.net:8883, 10.0.0.7\n[::1]:1884",
        "username": "site7",
        "password": "s3cret",
        "ca_cert_path": "",
        "client_cert_path": "",
        "client_key_path": "",
        "mqtt_version": "3.1.1",
        "keepalive": "30",
        "clean_session": "on",
        "max_qos": "1",
        "queue_max_messages": "5000",
        "drop_policy": "newest",
        "routes": (
            "# telemetry, renamed\n"
            "out devices/+/telemetry -> site7/{1}/t qos=1\n"
            "\n"
            "in commands/# -> devices/{1}/cmd"
        ),
        "client_id_prefix": "edge",
        "queue_max_bytes": "1048576",
        "max_inflight": "50",
        "ack_timeout": "10",
        "reconnect_min_delay": "0.2",
        "reconnect_max_delay": "5",
    }
    fields.update(overrides)
    return fields


# --- logging in -------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_strangers_to_the_login_page(web_client: WebClient, path: str) -> None:
    response = web_client.get(path)
    assert response.status == 302
    assert response.location is not None
    location = urlsplit(response.location)
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == [path]


def test_login_then_logout(web_client: WebClient) -> None:
    wrong = web_client.login(password="not the password", next_path="/brokers")
    assert wrong.status == 401
    assert "Wrong user name or password." in wrong.text
    assert 'name="username" value="admin"' in wrong.text  # kept for the next try

    response = web_client.login(next_path="/brokers")
    assert response.status == 303
    assert response.location == "/brokers"
    page = web_client.get("/brokers")
    assert page.status == 200
    assert 'Log out <span class="operator">admin</span>' in page.text

    assert web_client.post("/logout").status == 303
    assert web_client.get("/brokers").status == 302


def test_every_page_renders_for_an_operator(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_record(web_gateway, id="cloud", username="site7", password="upstream-secret-4711")
    for path in [*PAGES, "/brokers/cloud/edit", "/brokers/cloud/delete"]:
        page = admin_client.get(path)
        assert page.status == 200, path
        assert f'<meta name="csrf-token" content="{admin_client.csrf_token}">' in page.text
        assert '<nav class="nav" aria-label="Main">' in page.text
        assert '<script src="/static/app.js" defer></script>' in page.text
        assert "upstream-secret-4711" not in page.text, path  # passwords are write-only
        # Everything a page loads comes from the gateway itself: no CDN.
        loaded = re.findall(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="([^"]*)"', page.text)
        assert {"/static/app.js", "/static/app.css"} <= set(loaded), path
        for url in loaded:
            assert re.match(r"/(?![/\\])", url), (path, url)
    for path in ["/static/app.js", "/static/app.css", "/static/favicon.svg"]:
        assert admin_client.get(path).status == 200, path


def test_pages_show_what_the_services_hold(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_record(web_gateway, id="cloud")
    overview = admin_client.get("/").text
    assert 'data-live="counters.connections"' in overview
    assert 'data-chart data-window="300"' in overview
    assert '<tr data-broker="cloud">' in overview
    assert '<span class="badge badge-disabled" data-field="state">disabled</span>' in overview

    brokers = admin_client.get("/brokers").text
    assert 'action="/brokers/cloud/toggle"' in brokers
    assert ">Resume</button>" in brokers  # it is paused
    assert 'action="/brokers/cloud/delete" data-confirm=' in brokers
    assert "No upstream brokers yet" in brokers  # the empty-row, hidden while there are rows
    assert '<tr class="empty-row" data-empty-row hidden>' in brokers

    assert "No MQTT client is connected." in admin_client.get("/clients").text


def test_the_overview_counts_clients_and_registered_devices_online(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    add_tenant(web_gateway, "acme")
    _, token = add_device(web_gateway, "pump-7")
    anonymous = paho_client(web_gateway.port, "dashboard-watcher")
    registered = paho_client(web_gateway.port, "pump-7", username="pump-7", password=token)
    try:
        status = admin_client.get("/api/status").json()
        assert (status["counters"]["connections"], status["counters"]["devices_online"]) == (2, 1)
        overview = admin_client.get("/").text
        online = re.search(r'data-live="counters.connections" data-format="int">([^<]*)<', overview)
        assert online
        assert online.group(1) == "2"
        registered_online = 'Registered devices among them: <span data-live="counters.devices_online"'
        assert f'{registered_online} data-format="int">1</span>' in overview
    finally:
        registered.disconnect()
        anonymous.disconnect()


def test_the_clients_page_lists_connected_clients(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    device = paho_client(web_gateway.port, "thermostat-7", clean_session=False)
    try:
        device.client.subscribe("commands/thermostat-7/#", qos=1)
        subscribed = '<td data-label="Subscriptions" class="num">1</td>'
        wait_until(lambda: subscribed in admin_client.get("/clients").text, message="the client's row")
        page = admin_client.get("/clients").text
        assert '<span class="count" data-clients-count>1</span>' in page
        assert '<td data-label="Client id" class="mono">thermostat-7</td>' in page
        assert '<td data-label="User">anonymous</td>' in page
        assert '<td data-label="Session">persistent</td>' in page
        assert '<tr class="empty-row" data-empty-row hidden>' in page
    finally:
        device.disconnect()
    wait_until(lambda: "No MQTT client is connected." in admin_client.get("/clients").text)
    assert "thermostat-7" not in admin_client.get("/clients").text


def test_unknown_brokers_are_404_pages(admin_client: WebClient) -> None:
    for path in ["/brokers/nope/edit", "/brokers/nope/delete"]:
        page = admin_client.get(path)
        assert page.status == 404
        assert "There is no upstream broker with id &#39;nope&#39;." in page.text
    assert admin_client.post("/brokers/nope/toggle").status == 404
    assert admin_client.post("/brokers/nope/edit", broker_form(1883)).status == 404


def test_flash_messages_only_name_valid_broker_ids(admin_client: WebClient) -> None:
    assert "Broker cloud-7 deleted." in admin_client.get("/brokers?flash=deleted&broker=cloud-7").text
    page = admin_client.get("/brokers?flash=deleted&broker=%3Cscript%3E").text
    assert "Broker  deleted." in page
    assert "<script>" not in page
    assert 'class="flash"' not in admin_client.get("/brokers?flash=unknown").text


# --- adding and editing brokers ---------------------------------------------------------------


def test_a_bad_form_shows_inline_errors_and_stores_nothing(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    form = broker_form(
        1883,
        id="bad id!",
        port="abc",
        failover="host:99999",
        routes="out devices/+/telemetry\nsideways a/b\nout a/#/b\nin x/+ -> y/{2}",
    )
    response = admin_client.post("/brokers/new", form)
    assert response.status == 400
    page = response.text
    assert "Nothing was saved." in page
    assert field_errors(page, "port") == [
        "Input should be a valid integer, unable to parse string as an integer"
    ]
    assert field_errors(page, "id") == [
        "Use 1 to 64 letters, digits, _ . or -, starting with a letter or digit."
    ]
    assert field_errors(page, "failover") == ["Address 'host:99999': bad port"]
    assert field_errors(page, "routes") == [
        "line 2: a route starts with its direction: out or in",
        "line 3: filter: '#' must be the last level of a topic filter [MQTT-4.7.1-2]: 'a/#/b'",
        "line 4: remap 'y/{2}' uses {2} but 'x/+' has 1 wildcard(s)",
    ]
    assert field_errors(page, "name") == []
    assert 'aria-invalid="true" aria-describedby="port-error"' in page
    # What was typed comes back, but never the password.
    assert input_value(page, "name") == "Production cloud"
    assert input_value(page, "id") == "bad id!"
    assert textarea(page, "routes").startswith("out devices/+/telemetry\nsideways a/b")
    assert "s3cret" not in page
    assert "Type the password again" in page
    assert records(web_gateway) == []


def test_missing_fields_and_files_are_named(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    form = broker_form(1883, name="", address=" ", ca_cert_path="/no/such/ca.pem", username="")
    page = admin_client.post("/brokers/new", form).text
    assert field_errors(page, "name") == ["Required."]
    assert field_errors(page, "address") == ["Required."]
    assert field_errors(page, "ca_cert_path") == ["No such file: /no/such/ca.pem"]
    assert field_errors(page, "password") == ["A password needs a username"]
    assert records(web_gateway) == []


def test_a_good_form_creates_the_broker(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    port = free_port()
    response = admin_client.post("/brokers/new", broker_form(port))  # "enabled" unticked: paused
    assert response.status == 303
    assert response.location == "/brokers?flash=added&broker=cloud"
    [record] = records(web_gateway)
    assert record.id == "cloud"
    assert record.name == "Production cloud"
    assert (record.address, record.port) == ("127.0.0.1", port)
    assert record.failover == ["backup.example.net:8883", "10.0.0.7", "[::1]:1884"]
    assert record.username == "site7"
    assert record.password is not None
    assert record.password.get_secret_value() == "s3cret"
    assert record.enabled is False
    assert (record.keepalive, record.clean_session, record.max_qos) == (30, True, 1)
    assert (record.queue_max_messages, record.drop_policy) == (5000, "newest")
    assert (record.client_id_prefix, record.queue_max_bytes, record.max_inflight) == ("edge", 1048576, 50)
    assert (record.ack_timeout, record.reconnect_min_delay, record.reconnect_max_delay) == (10, 0.2, 5)
    assert record.routes == [
        Route(direction="out", filter="devices/+/telemetry", remap="site7/{1}/t", max_qos=1),
        Route(direction="in", filter="commands/#", remap="devices/{1}/cmd"),
    ]
    page = admin_client.get(response.location).text
    assert '<p class="flash" role="status">Broker cloud added.</p>' in page
    assert '<tr data-broker="cloud">' in page

    again = admin_client.post("/brokers/new", broker_form(port))
    assert again.status == 409
    assert field_errors(again.text, "id") == ["A broker with this id exists already."]


def test_the_add_form_starts_from_the_defaults(admin_client: WebClient) -> None:
    page = admin_client.get("/brokers/new").text
    assert input_value(page, "port") == "1883"
    assert input_value(page, "keepalive") == "60"
    assert input_value(page, "queue_max_messages") == "100000"
    assert input_value(page, "reconnect_min_delay") == "0.5"
    assert textarea(page, "routes") == "out #"
    assert 'name="enabled" value="on" checked' in page
    assert 'name="remove_password"' not in page
    assert "out|in FILTER [-&gt; TOPIC] [qos=0|1|2] [exclude=F1,F2] [retain=true|false]" in page


def test_edit_keeps_replaces_or_removes_the_password(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    add_record(
        web_gateway,
        id="cloud",
        username="site7",
        password="old-secret",
        routes=[Route(filter="alerts/#", exclude=["alerts/debug/#"], retain=False)],
    )
    page = admin_client.get("/brokers/cloud/edit").text
    assert "old-secret" not in page
    assert 'placeholder="stored: leave empty to keep it"' in page
    assert 'name="remove_password"' in page
    assert 'name="id"' not in page  # the id cannot change
    assert textarea(page, "routes") == "out alerts/# exclude=alerts/debug/# retain=false"
    assert input_value(page, "username") == "site7"

    def save(**fields: str) -> BrokerRecord:
        routes = textarea(page, "routes")
        form = broker_form(1883, name="Renamed", username="site7", password="", routes=routes)
        form.update(fields)
        del form["id"]
        response = admin_client.post("/brokers/cloud/edit", form)
        assert response.status == 303, response.text
        assert response.location == "/brokers?flash=saved&broker=cloud"
        [record] = records(web_gateway)
        return record

    kept = save()
    assert kept.name == "Renamed"
    assert kept.password is not None
    assert kept.password.get_secret_value() == "old-secret"
    assert kept.routes == [Route(filter="alerts/#", exclude=["alerts/debug/#"], retain=False)]
    replaced = save(password="new-secret")
    assert replaced.password is not None
    assert replaced.password.get_secret_value() == "new-secret"
    removed = save(remove_password="on")
    assert removed.password is None

    save(password="again")
    both = admin_client.post("/brokers/cloud/edit", broker_form(1883, password="x", remove_password="on"))
    assert both.status == 400
    assert field_errors(both.text, "password") == ["Type a new password or remove the stored one, not both."]


def test_an_invalid_edit_changes_nothing(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    before = add_record(web_gateway, id="cloud")
    response = admin_client.post("/brokers/cloud/edit", broker_form(1883, keepalive="1", routes="in x -> "))
    assert response.status == 400
    assert field_errors(response.text, "keepalive") == ["Input should be greater than or equal to 5"]
    assert field_errors(response.text, "routes") == ["line 1: a topic comes after ->"]
    assert 'action="/brokers/cloud/edit"' in response.text
    assert records(web_gateway) == [before]


def test_toggle_pauses_and_resumes(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_record(web_gateway, id="cloud", enabled=True)
    response = admin_client.post("/brokers/cloud/toggle")
    assert response.status == 303
    assert response.location == "/brokers?flash=paused&broker=cloud"
    assert records(web_gateway)[0].enabled is False
    assert "Broker cloud paused." in admin_client.get(response.location).text
    response = admin_client.post("/brokers/cloud/toggle")
    assert response.location == "/brokers?flash=resumed&broker=cloud"
    assert records(web_gateway)[0].enabled is True


def test_delete_asks_first(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    add_record(web_gateway, id="cloud")
    # Without script, the list's Delete button posts without confirmed=yes: a page asks.
    asked = admin_client.post("/brokers/cloud/delete")
    assert asked.status == 200
    assert "Delete broker Cloud?" in asked.text
    assert '<input type="hidden" name="confirmed" value="yes">' in asked.text
    assert [record.id for record in records(web_gateway)] == ["cloud"]

    response = admin_client.post("/brokers/cloud/delete", {"confirmed": "yes"})
    assert response.status == 303
    assert response.location == "/brokers?flash=deleted&broker=cloud"
    assert records(web_gateway) == []
    page = admin_client.get(response.location).text
    assert "Broker cloud deleted." in page
    assert '<tr data-broker="cloud">' not in page


def test_forms_without_the_csrf_token_are_refused(
    admin_client: WebClient, web_gateway: ThreadedGateway
) -> None:
    add_record(web_gateway, id="cloud")
    attempts = {
        "/brokers/new": broker_form(1883, id="other"),
        "/brokers/cloud/edit": broker_form(1883, name="Changed"),
        "/brokers/cloud/toggle": {},
        "/brokers/cloud/delete": {"confirmed": "yes"},
        "/tokens": {"name": "sneaky"},
        "/tokens/1/revoke": {},
        "/logout": {},
    }
    for path, fields in attempts.items():
        assert admin_client.post(path, fields, csrf=False).status == 403, path
        assert admin_client.post(path, {**fields, "csrf_token": "forged"}, csrf=False).status == 403, path
    [record] = records(web_gateway)
    assert (record.id, record.name, record.enabled) == ("cloud", "Cloud", False)
    assert "sneaky" not in admin_client.get("/tokens").text


def test_forms_past_the_body_limit_are_refused(admin_client: WebClient, web_gateway: ThreadedGateway) -> None:
    huge = "x" * 70_000  # past [web] max_body_size (64 KiB)
    assert admin_client.post("/brokers/new", broker_form(1883, name=huge)).status == 413
    assert admin_client.post("/tokens", {"name": huge}).status == 413
    login = WebClient(web_port(web_gateway)).post(
        "/login", {"username": "admin", "password": huge}, csrf=False
    )
    assert login.status == 413
    assert records(web_gateway) == []
    assert "<tr data-token=" not in admin_client.get("/tokens").text


def test_the_connection_test_endpoint_takes_the_forms_json(admin_client: WebClient) -> None:
    # What app.js sends: the form's values as BrokerSettings, with the header token.
    document = {"name": "connection test", "address": "127.0.0.1", "port": free_port(), "failover": []}
    refused = admin_client.post_json("/api/brokers/test", document, csrf=False)
    assert refused.status == 403
    response = admin_client.post_json("/api/brokers/test", document)
    assert response.status == 200
    body = response.json()
    assert body["ok"] is False
    assert body["message"]


# --- API tokens ----------------------------------------------------------------------------


def test_a_new_tokens_secret_is_shown_once_and_revoking_ends_it(admin_client: WebClient) -> None:
    response = admin_client.post("/tokens", {"name": "grafana"})
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    found = re.search(r'value="(mqp_[^"]+)" readonly', response.text)
    assert found
    secret = found.group(1)
    assert "Copy it now: it is not shown again." in response.text

    listing = admin_client.get("/tokens").text
    assert secret not in listing
    assert "grafana" in listing
    assert f"{secret[:10]}…" in listing
    token_id = re.search(r'<tr data-token="(\d+)">', listing)
    assert token_id

    assert '<td data-label="Last used">never</td>' in listing
    bearer = {"Authorization": f"Bearer {secret}"}
    assert admin_client.get("/api/status", headers=bearer).status == 200
    assert '<td data-label="Last used">never</td>' not in admin_client.get("/tokens").text

    revoked = admin_client.post(f"/tokens/{token_id.group(1)}/revoke")
    assert revoked.status == 303
    assert revoked.location == "/tokens?flash=revoked"
    page = admin_client.get(revoked.location).text
    assert "Token revoked." in page
    assert "grafana" not in page
    assert admin_client.get("/api/status", headers=bearer).status == 401

    again = admin_client.post(f"/tokens/{token_id.group(1)}/revoke")
    assert again.location == "/tokens?flash=no-token"
    assert admin_client.post("/tokens/abc/revoke").location == "/tokens?flash=no-token"


def test_a_token_needs_a_name(admin_client: WebClient) -> None:
    response = admin_client.post("/tokens", {"name": "   "})
    assert response.status == 400
    assert "Give the token a name of 1 to 100 characters." in response.text
    assert "mqp_" not in response.text


# --- routes as text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "route"),
    [
        ("out #", {"direction": "out", "filter": "#"}),
        ("in commands/#", {"direction": "in", "filter": "commands/#"}),
        (
            "out devices/+/telemetry -> site7/{1}/t qos=1",
            {"direction": "out", "filter": "devices/+/telemetry", "remap": "site7/{1}/t", "max_qos": 1},
        ),
        (
            "in commands/# -> devices/{1}/cmd",
            {"direction": "in", "filter": "commands/#", "remap": "devices/{1}/cmd"},
        ),
        (
            "out alerts/# exclude=alerts/debug/#,alerts/test/#",
            {"direction": "out", "filter": "alerts/#", "exclude": ["alerts/debug/#", "alerts/test/#"]},
        ),
        ("out a/# retain=false", {"direction": "out", "filter": "a/#", "retain": False}),
        ("out a/# retain=TRUE qos=0", {"direction": "out", "filter": "a/#", "retain": True, "max_qos": 0}),
        ("  out   a/+   ->   b/{1}  ", {"direction": "out", "filter": "a/+", "remap": "b/{1}"}),
        (
            'out "my home/+/temp" -> "site 7/{1}"',
            {"direction": "out", "filter": "my home/+/temp", "remap": "site 7/{1}"},
        ),
        ("out local/# -> {1}", {"direction": "out", "filter": "local/#", "remap": "{1}"}),
        ("out x -> site7/{topic}", {"direction": "out", "filter": "x", "remap": "site7/{topic}"}),
    ],
)
def test_route_lines_accepted(line: str, route: dict[str, Any]) -> None:
    assert parse_route_line(line) == route
    model = Route.model_validate(route)
    assert Route.model_validate(parse_route_line(format_route(model))) == model


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("devices/#", "a route starts with its direction: out or in"),
        ("OUT a", "a route starts with its direction: out or in"),
        ("out", "a topic filter comes after 'out'"),
        ("in -> b", "a topic filter comes after 'in'"),
        ("out a ->", "a topic comes after ->"),
        ("out a -> -> b", "a topic comes after ->"),
        ("out a->b", "put spaces around ->"),
        ("out a -> b ->", "-> comes right after the filter, once"),
        ("out a b", "unexpected 'b': after the filter come '-> TOPIC' and options qos=, exclude=, retain="),
        ("out a qos=3", "qos= takes 0, 1 or 2, not '3'"),
        ("out a qos=", "qos= takes 0, 1 or 2, not ''"),
        ("out a qos=1 qos=2", "qos= is given twice"),
        ("out a retain=maybe", "retain= takes true or false, not 'maybe'"),
        ("out a exclude=", "exclude= takes topic filters separated by commas"),
        ("out a exclude=b,,c", "exclude= takes topic filters separated by commas"),
        ("out a priority=high", "unknown option 'priority': the options are qos=, exclude= and retain="),
        ('out "a b', "a quote is not closed"),
    ],
)
def test_route_lines_rejected(line: str, error: str) -> None:
    with pytest.raises(RouteSyntaxError) as raised:
        parse_route_line(line)
    assert str(raised.value) == error


def test_routes_text_skips_comments_and_numbers_errors_by_line() -> None:
    parsed = parse_routes("# to the cloud\n\nout a/#\nsideways\n   \nin b/+ -> c/{1}\nout x y\n")
    assert parsed.routes == [
        {"direction": "out", "filter": "a/#"},
        {"direction": "in", "filter": "b/+", "remap": "c/{1}"},
    ]
    assert parsed.lines == [3, 6]
    assert parsed.errors == [
        "line 4: a route starts with its direction: out or in",
        "line 7: unexpected 'y': after the filter come '-> TOPIC' and options qos=, exclude=, retain=",
    ]


def test_route_model_errors_are_numbered_by_line() -> None:
    values = form_values(BrokerSettings(name="x", address="h"))
    values["routes"] = "# comment\nout ok/#\nin a/+ exclude=b\n\nout a/#/b -> c"
    settings, form = validate_broker(values)
    assert settings is None
    assert form.errors == {
        "routes": [
            "line 3: exclude applies to out routes only",
            "line 5: filter: '#' must be the last level of a topic filter [MQTT-4.7.1-2]: 'a/#/b'",
        ]
    }


def test_an_empty_routes_box_means_no_routes() -> None:
    values = form_values(BrokerSettings(name="x", address="h"))
    values["routes"] = "\n  \n"
    settings, form = validate_broker(values)
    assert form.errors == {}
    assert settings is not None
    assert settings.routes == []


def test_the_form_has_every_setting() -> None:
    assert {*FORM_FIELDS, "password"} == set(BrokerSettings.model_fields)
    settings = BrokerSettings(
        name="n", address="h", routes=[Route(direction="in", filter="a/#", remap="b/{1}", max_qos=0)]
    )
    values = form_values(settings, "cloud")
    assert values["routes"] == "in a/# -> b/{1} qos=0"
    again, form = validate_broker(values, settings)
    assert form.errors == {}
    assert again == settings
