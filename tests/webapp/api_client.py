"""A blocking HTTP client for the gateway's web port: cookies, the login form, CSRF, API tokens.

The gateway runs in a background thread (``tests.helpers.ThreadedGateway``);
tests talk to it over real HTTP from their own thread with ``http.client``,
which follows no redirects, so every status is seen as sent.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from mqttproxy.config import Config, WebConfig
from tests.helpers import ThreadedGateway, make_config, running_gateway

ADMIN_PASSWORD = "correct horse battery staple"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')
NO_BODY = object()


def gateway_config(tmp_path: Path, **web: Any) -> Config:
    """``make_config`` with the web listener on a free loopback port and a known admin password."""
    web.setdefault("admin_password", ADMIN_PASSWORD)
    config = make_config(tmp_path)
    return config.model_copy(update={"web": WebConfig(host="127.0.0.1", port=0, **web)})


@contextmanager
def web_gateway(tmp_path: Path, **web: Any) -> Iterator[ThreadedGateway]:
    with running_gateway(gateway_config(tmp_path, **web)) as gateway:
        yield gateway


def web_port(gateway: ThreadedGateway) -> int:
    assert gateway.gateway is not None
    assert gateway.gateway.web is not None
    port = gateway.gateway.web.port
    assert port
    return port


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        assert self.headers.get_content_type() == "application/json", (self.status, self.body[:200])
        return json.loads(self.body)

    def error(self) -> dict[str, Any]:
        """The ``error`` object of a JSON error response, checked for its shape."""
        body = self.json()
        assert set(body) == {"error"}, body
        error: dict[str, Any] = body["error"]
        assert {"code", "message"} <= set(error) <= {"code", "message", "field"}, error
        assert isinstance(error["code"], str)
        assert isinstance(error["message"], str)
        assert error["message"]
        return error

    def cookies(self) -> dict[str, str]:
        """``name -> whole Set-Cookie header`` of this response."""
        return {value.split("=", 1)[0]: value for value in self.headers.get_all("Set-Cookie") or []}


@dataclass
class Http:
    """A cookie-keeping client of one web port; every response is kept in ``seen``."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    seen: list[Response] = field(default_factory=list)
    source: str | None = None  # another loopback address (127.0.0.2...) to come from

    def request(
        self,
        method: str,
        path: str,
        body: Any = NO_BODY,
        *,
        raw: bytes | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """``body`` is sent as JSON, ``raw`` as it is, ``form`` url-encoded."""
        headers = dict(headers or {})
        data: bytes | None = raw
        if body is not NO_BODY:
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif form is not None:
            data = urlencode(form).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif raw is not None:
            headers.setdefault("Content-Type", "application/json")
        if self.cookies:
            headers.setdefault("Cookie", "; ".join(f"{key}={value}" for key, value in self.cookies.items()))
        source = (self.source, 0) if self.source else None
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=source)
        try:
            connection.request(method, path, body=data, headers=headers)
            reply = connection.getresponse()
            response = Response(reply.status, reply.headers, reply.read())
        finally:
            connection.close()
        self._keep_cookies(response)
        self.seen.append(response)
        return response

    def _keep_cookies(self, response: Response) -> None:
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def get(self, path: str, **options: Any) -> Response:
        return self.request("GET", path, **options)

    def login_form(self, next_path: str | None = None) -> str:
        """GET /login (sets the login cookie); the form's ``login_token``."""
        path = "/login" if next_path is None else "/login?" + urlencode({"next": next_path})
        page = self.get(path)
        assert page.status == 200, page.status
        match = _LOGIN_TOKEN.search(page.text)
        assert match, page.text
        return match.group(1)

    def login(
        self, username: str = "admin", password: str = ADMIN_PASSWORD, next_path: str = "/"
    ) -> Response:
        """The whole login form: GET /login, then POST it back with its token."""
        token = self.login_form()
        return self.post_login(username, password, token, next_path)

    def post_login(self, username: str, password: str, token: str, next_path: str = "/") -> Response:
        form = {"username": username, "password": password, "login_token": token, "next": next_path}
        return self.request("POST", "/login", form=form)

    def csrf_token(self) -> str:
        """The session's CSRF token, from the ``<meta name="csrf-token">`` of the overview page."""
        page = self.get("/")
        assert page.status == 200, page.status
        match = _CSRF_META.search(page.text)
        assert match, page.text
        assert match.group(1), "an empty CSRF token"
        return match.group(1)


@dataclass
class Api:
    """API calls authenticated one way: a bearer token, or a session cookie (+ CSRF on changes)."""

    http: Http
    mode: str
    bearer: str | None = None
    csrf: str | None = None

    def call(self, method: str, path: str, body: Any = NO_BODY, **options: Any) -> Response:
        headers = dict(options.pop("headers", None) or {})
        if self.bearer is not None:
            headers["Authorization"] = f"Bearer {self.bearer}"
        if self.csrf is not None and method not in SAFE_METHODS:
            headers["X-CSRF-Token"] = self.csrf
        return self.http.request(method, path, body, headers=headers, **options)

    def get(self, path: str) -> Response:
        return self.call("GET", path)

    def ok(self, method: str, path: str, body: Any = NO_BODY, status: int = 200) -> Any:
        """The JSON of a call that must succeed with ``status`` (``None`` for 204)."""
        response = self.call(method, path, body)
        assert response.status == status, (method, path, response.status, response.body[:500])
        return None if status == 204 else response.json()


def session_api(port: int, password: str = ADMIN_PASSWORD) -> Api:
    http = Http(port)
    response = http.login("admin", password)
    assert response.status == 303, (response.status, response.body[:500])
    return Api(http, "session", csrf=http.csrf_token())


def create_token(port: int, name: str = "tests", password: str = ADMIN_PASSWORD) -> str:
    """A new API token's secret, made through POST /api/tokens by a logged-in admin."""
    created = session_api(port, password).ok("POST", "/api/tokens", {"name": name}, status=201)
    secret: str = created["token"]
    return secret


def token_api(port: int, password: str = ADMIN_PASSWORD) -> Api:
    return Api(Http(port), "bearer", bearer=create_token(port, password=password))


def make_api(mode: str, port: int) -> Api:
    return session_api(port) if mode == "session" else token_api(port)


def json_keys(value: Any) -> Iterator[str]:
    """Every object key anywhere in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from json_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_keys(item)
