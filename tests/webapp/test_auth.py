"""Who may do what on the web port: sessions, API tokens, CSRF, the login form, its throttle."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from pydantic import ValidationError

from mqttproxy.config import WebConfig
from mqttproxy.webapp.server import create_app
from tests.helpers import ThreadedGateway, running_gateway
from tests.webapp.api_client import (
    ADMIN_PASSWORD,
    SAFE_METHODS,
    Api,
    Http,
    Response,
    create_token,
    gateway_config,
    session_api,
    web_gateway,
    web_port,
)

_OPEN = {("GET", "/health"), ("GET", "/metrics"), ("GET", "/login"), ("POST", "/login"), ("GET", "/static")}


class _NoMetrics:
    def collect(self) -> list[Any]:
        return []


def _app_routes() -> list[tuple[str, str]]:
    """Every (method, path) the web app serves, from its router: new routes are covered by themselves."""
    app = create_app(gateway=cast(Any, None), config=WebConfig(), metrics=cast(Any, _NoMetrics()))
    return sorted(
        {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"
        }
    )


ROUTES = _app_routes()
CHANGING = [route for route in ROUTES if route[0] not in SAFE_METHODS and route not in _OPEN]
API_READS = [route for route in ROUTES if route[0] == "GET" and route[1].startswith("/api/")]
PAGES = [
    route for route in ROUTES if route[0] == "GET" and not route[1].startswith("/api/") and route not in _OPEN
]


def _ids(route: tuple[str, str]) -> str:
    return f"{route[0]} {route[1]}"


def concrete(path: str) -> str:
    return re.sub(r"\{\w+\}", "1", path)


@pytest.fixture(autouse=True)
def _no_admin_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQTTPROXY_ADMIN_PASSWORD", raising=False)


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[ThreadedGateway]:
    with web_gateway(tmp_path) as gateway:
        yield gateway


def records(gw: ThreadedGateway) -> list[dict[str, Any]]:
    assert gw.gateway is not None
    fanout = gw.gateway.fanout
    return gw.call(lambda: [record.model_dump() for record in fanout.records()])


def send(
    http: Http, method: str, path: str, *, headers: dict[str, str] | None = None, **form: str
) -> Response:
    """A change as a script (JSON) or a browser form would send it."""
    if path.startswith("/api/"):
        return http.request(method, path, {}, headers=headers)
    return http.request(method, path, form=form, headers=headers)


def test_the_route_table_is_not_empty() -> None:
    assert ("POST", "/api/brokers") in CHANGING
    assert ("POST", "/logout") in CHANGING
    assert ("GET", "/api/status") in API_READS
    assert ("GET", "/") in PAGES


# --- without credentials ---------------------------------------------------------------


def assert_unauthorized(response: Response, path: str) -> None:
    assert response.status == 401
    if path.startswith("/api/things"):  # the shadow contract's error document
        assert (response.json()["code"], response.json()["message"]) == (401, "Unauthorized")
    else:
        assert response.error()["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), CHANGING, ids=[_ids(route) for route in CHANGING])
def test_changes_need_a_session_or_token(gw: ThreadedGateway, method: str, path: str) -> None:
    before = records(gw)
    assert_unauthorized(send(Http(web_port(gw)), method, concrete(path)), path)
    assert records(gw) == before


@pytest.mark.parametrize(("method", "path"), API_READS, ids=[_ids(route) for route in API_READS])
def test_api_reads_need_a_session_or_token(gw: ThreadedGateway, method: str, path: str) -> None:
    assert_unauthorized(Http(web_port(gw)).request(method, concrete(path)), path)


@pytest.mark.parametrize(("method", "path"), PAGES, ids=[_ids(route) for route in PAGES])
def test_pages_send_strangers_to_the_login_form(gw: ThreadedGateway, method: str, path: str) -> None:
    response = Http(web_port(gw)).request(method, concrete(path))
    assert response.status == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_the_login_redirect_keeps_the_whole_query(gw: ThreadedGateway) -> None:
    response = Http(web_port(gw)).get("/?view=compact&range=5m")
    assert response.status == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["next"] == ["/?view=compact&range=5m"]


BAD_AUTHORIZATION = {
    "unknown-token": "Bearer mqp_" + "A" * 43,
    "not-a-token": "Bearer not-even-a-token",
    "empty-bearer": "Bearer ",
    "basic": "Basic YWRtaW46eA==",
}


@pytest.mark.parametrize("header", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION.keys())
def test_a_wrong_bearer_token_is_refused(gw: ThreadedGateway, header: str) -> None:
    http = Http(web_port(gw))
    assert http.get("/api/status", headers={"Authorization": header}).status == 401
    created = http.request("POST", "/api/tokens", {"name": "x"}, headers={"Authorization": header})
    assert created.status == 401


def test_a_revoked_token_is_refused(gw: ThreadedGateway) -> None:
    port = web_port(gw)
    admin = session_api(port)
    created = admin.ok("POST", "/api/tokens", {"name": "short-lived"}, status=201)
    holder = Api(Http(port), "bearer", bearer=created["token"])
    assert holder.call("GET", "/api/brokers").status == 200
    admin.ok("DELETE", f"/api/tokens/{created['id']}", status=204)
    body = {"id": "late", "name": "late", "address": "127.0.0.1"}
    assert holder.call("POST", "/api/brokers", body).status == 401
    assert holder.call("GET", "/api/brokers").status == 401
    assert records(gw) == []


# --- CSRF ----------------------------------------------------------------------------


@pytest.mark.parametrize("csrf", ["missing", "wrong"])
@pytest.mark.parametrize(("method", "path"), CHANGING, ids=[_ids(route) for route in CHANGING])
def test_a_session_change_needs_the_csrf_token(
    gw: ThreadedGateway, method: str, path: str, csrf: str
) -> None:
    api = session_api(web_port(gw))
    before = records(gw)
    if csrf == "missing":
        response = send(api.http, method, concrete(path))
    elif path.startswith("/api/"):
        response = send(api.http, method, concrete(path), headers={"X-CSRF-Token": "wrong"})
    else:
        response = send(api.http, method, concrete(path), csrf_token="wrong")
    assert response.status == 403
    if path.startswith("/api/things"):  # the shadow contract's error document
        assert (response.json()["code"], response.json()["message"]) == (403, "Forbidden")
    elif path.startswith("/api/"):
        assert response.error()["code"] == "forbidden"
    assert records(gw) == before
    assert api.call("GET", "/api/status").status == 200  # still logged in


def test_bearer_requests_need_no_csrf_token(gw: ThreadedGateway) -> None:
    port = web_port(gw)
    http = Http(port)
    headers = {"Authorization": f"Bearer {create_token(port)}"}
    assert http.request("POST", "/api/tokens", {"name": "more"}, headers=headers).status == 201


# --- open endpoints ------------------------------------------------------------------


def test_health_and_metrics_are_open(gw: ThreadedGateway) -> None:
    http = Http(web_port(gw))
    assert http.get("/health").status == 200
    metrics = http.get("/metrics")
    assert metrics.status == 200
    assert metrics.headers.get_content_type() == "text/plain"
    assert b"mqtt_active_connections" in metrics.body


def test_protected_metrics_accept_a_token_or_a_session(tmp_path: Path) -> None:
    with web_gateway(tmp_path, metrics_require_auth=True) as gateway:
        port = web_port(gateway)
        bearer = Http(port).get("/metrics", headers={"Authorization": f"Bearer {create_token(port)}"})
        assert bearer.status == 200
        assert b"mqtt_active_connections" in bearer.body
        session = session_api(port).get("/metrics")
        assert session.status == 200
        assert b"mqtt_active_connections" in session.body


def test_protected_metrics_refuse_an_anonymous_scraper(tmp_path: Path) -> None:
    """A scraper cannot log in through a form: it needs a 401, not a redirect to an HTML page."""
    with web_gateway(tmp_path, metrics_require_auth=True) as gateway:
        response = Http(web_port(gateway)).get("/metrics")
        assert b"mqtt_active_connections" not in response.body
        assert response.status == 401, (response.status, response.headers.get("Location"))


# --- the login form ------------------------------------------------------------------


def _session_cookie(response: Response) -> SimpleCookie:
    header = response.cookies().get("mqttproxy_session")
    assert header is not None, response.headers.get_all("Set-Cookie")
    return SimpleCookie(header)


@pytest.mark.parametrize("variant", ["no-field", "no-cookie", "mismatch", "both-empty"])
def test_login_needs_the_form_token(gw: ThreadedGateway, variant: str) -> None:
    port = web_port(gw)
    http = Http(port)
    token = http.login_form()
    if variant == "no-field":
        form = {"username": "admin", "password": ADMIN_PASSWORD}
        response = http.request("POST", "/login", form=form)
    elif variant == "no-cookie":
        response = Http(port).post_login("admin", ADMIN_PASSWORD, token)
    elif variant == "mismatch":
        response = http.post_login("admin", ADMIN_PASSWORD, token[::-1])
    else:
        response = Http(port).post_login("admin", ADMIN_PASSWORD, "")
    assert response.status == 403
    assert "mqttproxy_session" not in response.cookies()


@pytest.mark.parametrize(("username", "password"), [("admin", "wrong"), ("nobody", ADMIN_PASSWORD)])
def test_a_wrong_login_gets_the_form_again(gw: ThreadedGateway, username: str, password: str) -> None:
    http = Http(web_port(gw))
    response = http.login(username, password)
    assert response.status == 401
    assert 'name="login_token"' in response.text
    assert "Wrong user name or password" in response.text
    assert "mqttproxy_session" not in response.cookies()
    assert http.get("/api/status").status == 401


def test_failed_logins_are_rate_limited_per_address(gw: ThreadedGateway) -> None:
    http = Http(web_port(gw))
    for attempt in range(5):
        assert http.login(f"guess{attempt}", "wrong").status == 401
    refused = http.login("admin", ADMIN_PASSWORD)  # even the right password, from this address
    assert refused.status == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 61
    assert "mqttproxy_session" not in refused.cookies()


def test_failed_logins_are_rate_limited_per_user_name(gw: ThreadedGateway) -> None:
    """Guesses at one account from many addresses lock that account only, for a while."""
    port = web_port(gw)
    for number in range(5):
        assert Http(port, source=f"127.0.0.{10 + number}").login("admin", "wrong").status == 401
    refused = Http(port, source="127.0.0.20").login()
    assert refused.status == 429
    assert "mqttproxy_session" not in refused.cookies()
    assert Http(port, source="127.0.0.20").login("operator2", "wrong").status == 401  # not 429


def test_a_successful_login_resets_the_count(gw: ThreadedGateway) -> None:
    http = Http(web_port(gw))
    for attempt in range(4):
        assert http.login(f"guess{attempt}", "wrong").status == 401
    assert http.login().status == 303
    for attempt in range(5):
        assert http.login(f"again{attempt}", "wrong").status == 401
    assert http.login("admin", "wrong").status == 429


def test_logout_ends_the_session(gw: ThreadedGateway) -> None:
    api = session_api(web_port(gw))
    stolen = dict(api.http.cookies)
    response = api.http.request("POST", "/logout", form={"csrf_token": api.csrf or ""})
    assert response.status == 303
    assert response.headers["Location"] == "/login"
    assert "mqttproxy_session" not in api.http.cookies
    replay = Http(api.http.port, cookies=stolen)
    assert replay.get("/api/status").status == 401
    assert replay.get("/").status == 302


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
def test_session_cookie_flags(tmp_path: Path, secure: bool) -> None:
    with web_gateway(tmp_path, cookie_secure=secure, session_ttl=600.0) as gateway:
        http = Http(web_port(gateway))
        login_cookie = SimpleCookie(http.get("/login").cookies()["mqttproxy_login"])["mqttproxy_login"]
        response = http.login()
        assert response.status == 303
        cookie = _session_cookie(response)["mqttproxy_session"]
        for morsel in (cookie, login_cookie):
            assert morsel["httponly"] is True
            assert morsel["samesite"] == "Strict"
            assert bool(morsel["secure"]) is secure
        assert cookie["path"] == "/"
        assert cookie["max-age"] == "600"


def lands_on(location: str, port: int) -> str:
    """The host a browser goes to for ``Location`` (WHATWG: tabs dropped, ``\\`` read as ``/``)."""
    cleaned = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    return urlsplit(urljoin(f"http://127.0.0.1:{port}/login", cleaned)).netloc


NEXT = {
    "root": ("/", "/"),
    "page": ("/api/status", "/api/status"),
    "with-query": ("/clients?sort=id", "/clients?sort=id"),
    "protocol-relative": ("//evil.example/", "/"),
    "absolute": ("https://evil.example/", "/"),
    "javascript": ("javascript:alert(1)", "/"),
    "backslash": ("/\\evil.example/", None),
    "tab": ("/\t/evil.example/", None),
}


@pytest.mark.parametrize(("target", "expected"), NEXT.values(), ids=NEXT.keys())
def test_next_never_leaves_the_site(gw: ThreadedGateway, target: str, expected: str | None) -> None:
    port = web_port(gw)
    response = Http(port).login(next_path=target)
    assert response.status == 303
    location = response.headers["Location"]
    assert lands_on(location, port) == f"127.0.0.1:{port}", location
    if expected is not None:
        assert location == expected


# --- the first operator ---------------------------------------------------------------


def _password_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "mqttproxy.app" and "password" in record.getMessage()
    ]


def test_first_start_logs_a_generated_password_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mqttproxy")
    with web_gateway(tmp_path, admin_password=None) as gateway:
        lines = _password_lines(caplog)
        assert len(lines) == 1, lines
        match = re.search(r"with password (\S+) ", lines[0])
        assert match, lines[0]
        password = match.group(1)
        assert Http(web_port(gateway)).login("admin", password).status == 303
    caplog.clear()
    with web_gateway(tmp_path, admin_password=None) as gateway:
        assert _password_lines(caplog) == []
        assert password not in caplog.text
        assert Http(web_port(gateway)).login("admin", password).status == 303


def test_a_configured_password_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mqttproxy")
    with web_gateway(tmp_path) as gateway:
        assert Http(web_port(gateway)).login().status == 303
    assert _password_lines(caplog) == []
    assert ADMIN_PASSWORD not in caplog.text


def test_an_empty_admin_password_does_not_lock_everyone_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``admin_password = ""`` (the shipped config's commented example): refused, or a password is shown."""
    caplog.set_level(logging.INFO, logger="mqttproxy")
    try:
        config = gateway_config(tmp_path, admin_password="")
    except ValidationError:
        return  # refused as a configuration error: fine
    with running_gateway(config) as gateway:
        assert Http(web_port(gateway)).login("admin", "").status == 401
        lines = _password_lines(caplog)
        assert len(lines) == 1, "admin was created with a password nobody is told"
        match = re.search(r"with password (\S+) ", lines[0])
        assert match, lines[0]
        assert Http(web_port(gateway)).login("admin", match.group(1)).status == 303


def test_the_environment_password_wins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="mqttproxy")
    monkeypatch.setenv("MQTTPROXY_ADMIN_PASSWORD", "from the environment")
    with web_gateway(tmp_path) as gateway:
        port = web_port(gateway)
        assert Http(port).login("admin", "from the environment").status == 303
        assert Http(port).login().status == 401
    assert "from the environment" not in caplog.text
