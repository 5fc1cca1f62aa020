"""Fixtures for the web layer's tests: a gateway with its dashboard, and a plain HTTP client.

- ``ADMIN_PASSWORD``: the password of operator ``admin`` on ``web_gateway``.
- ``make_web_config(tmp_path, **web)``: like ``tests.helpers.make_config`` (loopback,
  ephemeral ports, anonymous devices) with the web listener on and that admin password;
  ``web`` overrides ``WebConfig`` fields.
- ``web_gateway``: a running ``ThreadedGateway`` built from ``make_web_config``; its HTTP
  port is ``web_port(gateway)``.
- ``web_client``: a ``WebClient`` for ``web_gateway``, not logged in.
- ``admin_client``: the same, logged in as ``admin``.
- ``browser``: headless Chromium (Debian's, driven by Playwright), one per test module.

``WebClient`` is synchronous (urllib): the gateway runs its own loop in a thread, so the
test's thread may block. It keeps cookies, never follows redirects (tests look at the
303s themselves) and remembers the CSRF token of the last page it fetched.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, sync_playwright
from pydantic import SecretStr

from mqttproxy.config import Config, WebConfig
from tests.helpers import TIMEOUT, ThreadedGateway, make_config, require_binary

ADMIN_PASSWORD = "correct horse battery staple"


def make_web_config(tmp_path: Path, **web: Any) -> Config:
    """``make_config`` with the dashboard on an ephemeral loopback port and a known admin password."""
    config = make_config(tmp_path)
    settings = WebConfig(host="127.0.0.1", port=0, admin_password=SecretStr(ADMIN_PASSWORD), **web)
    return config.model_copy(update={"web": settings})


def web_port(gateway: ThreadedGateway) -> int:
    assert gateway.gateway is not None
    assert gateway.gateway.web is not None
    assert gateway.gateway.web.port is not None
    return gateway.gateway.web.port


@dataclass
class Response:
    status: int
    headers: Message
    text: str

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")

    def json(self) -> Any:
        return json.loads(self.text)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # hand the 3xx to the caller


_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
_LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]*)"')


class WebClient:
    """A browser without a browser: cookies, forms, CSRF token, no redirects followed."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirects()
        )
        self.csrf_token = ""

    def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        url = self.base + path  # always http://127.0.0.1:port/...
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))  # noqa: S310
        try:
            with self._opener.open(request, timeout=TIMEOUT) as reply:
                response = Response(reply.status, reply.headers, reply.read().decode())
        except urllib.error.HTTPError as error:
            response = Response(error.code, error.headers, error.read().decode())
        found = _CSRF_META.search(response.text)
        if found and found.group(1):
            self.csrf_token = unescape(found.group(1))
        return response

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, fields: Mapping[str, str] | None = None, *, csrf: bool = True) -> Response:
        """A form POST, with the session's CSRF token unless ``csrf`` is false."""
        data = dict(fields or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf_token)
        body = urlencode(data).encode()
        return self.request(
            "POST", path, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )

    def post_json(self, path: str, document: Any, *, csrf: bool = True) -> Response:
        headers = {"Content-Type": "application/json"}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf_token
        return self.request("POST", path, body=json.dumps(document).encode(), headers=headers)

    def login(
        self, username: str = "admin", password: str = ADMIN_PASSWORD, next_path: str = "/"
    ) -> Response:
        """Fill in the login form; returns the POST's answer (303 on success)."""
        page = self.get(f"/login?{urlencode({'next': next_path})}")
        found = _LOGIN_TOKEN.search(page.text)
        assert found, page.text
        token = found.group(1)
        fields = {"username": username, "password": password, "login_token": token, "next": next_path}
        response = self.post("/login", fields, csrf=False)
        if response.status == 303:
            self.get("/")  # picks up the session's CSRF token
        return response


@pytest.fixture
def web_gateway(
    gateway_factory: Callable[..., ThreadedGateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ThreadedGateway:
    """A gateway with the dashboard on; operator ``admin`` has ``ADMIN_PASSWORD``."""
    monkeypatch.delenv("MQTTPROXY_ADMIN_PASSWORD", raising=False)  # it would override the config
    return gateway_factory(make_web_config(tmp_path))


@pytest.fixture
def web_client(web_gateway: ThreadedGateway) -> WebClient:
    """An HTTP client for ``web_gateway``, not logged in."""
    return WebClient(web_port(web_gateway))


@pytest.fixture
def admin_client(web_client: WebClient) -> WebClient:
    """An HTTP client for ``web_gateway``, logged in as ``admin`` (its CSRF token known)."""
    response = web_client.login()
    assert response.status == 303, response.text
    assert web_client.csrf_token
    return web_client


# Flags a root, offline, headless Chromium needs: no sandbox as root, nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_binary("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
