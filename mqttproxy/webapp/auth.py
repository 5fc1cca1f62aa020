"""Who is asking: web sessions (cookie) and API tokens (bearer), CSRF, login and logout.

Everything but ``/health``, ``/metrics`` (unless protected), the login page
and static files needs an operator. A request authenticated by its session
cookie that changes something must also carry the session's CSRF token
(form field ``csrf_token`` or header ``X-CSRF-Token``); bearer-token requests
do not, since a browser never sends those on its own.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
from aiohttp import web

from mqttproxy.operators import Operator, WebSession
from mqttproxy.webapp.errors import ApiError, Handler, error_response, is_api
from mqttproxy.webapp.services import CONFIG, GATEWAY, THROTTLE

logger = logging.getLogger(__name__)

SESSION_COOKIE = "mqttproxy_session"
LOGIN_COOKIE = "mqttproxy_login"  # double-submit token of the login form
OPERATOR = web.RequestKey("operator", Operator)
SESSION = web.RequestKey("session", WebSession)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_OPEN_PATHS = frozenset({"/health", "/login"})


def operator(request: web.Request) -> Operator:
    """The authenticated operator (the middleware guarantees one on protected routes)."""
    return request[OPERATOR]


def csrf_token(request: web.Request) -> str:
    """The CSRF token forms and scripts of this session must send back."""
    session = request.get(SESSION)
    return session.csrf_token if session is not None else ""


def render(
    request: web.Request, template: str, context: dict[str, object], *, status: int = 200
) -> web.Response:
    """A page, with what every template uses: the operator's name and the CSRF token."""
    current = request.get(OPERATOR)
    base = {"csrf_token": csrf_token(request), "operator": current.username if current else None}
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def _is_open(request: web.Request) -> bool:
    path = request.path
    if path in _OPEN_PATHS or path.startswith("/static/"):
        return True
    return path == "/metrics" and not request.app[CONFIG].metrics_require_auth


async def _identify(request: web.Request) -> bool:
    """Attach the operator (and session) the request proves; ``False`` if it proves none."""
    operators = request.app[GATEWAY].operators
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        found = await operators.verify_token(header.removeprefix("Bearer ").strip())
        if found is None:
            return False
        request[OPERATOR] = found
        return True
    session = operators.session(request.cookies.get(SESSION_COOKIE, ""))
    if session is None:
        return False
    request[OPERATOR] = session.operator
    request[SESSION] = session
    return True


async def _csrf_ok(request: web.Request, session: WebSession) -> bool:
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = str((await request.post()).get("csrf_token", ""))
    return sent is not None and hmac.compare_digest(sent, session.csrf_token)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    identified = await _identify(request)
    if _is_open(request):
        return await handler(request)
    unsafe = request.method not in _SAFE_METHODS
    if not identified:
        if is_api(request) or unsafe or request.path == "/metrics":
            # Scripts and scrapers get a 401 they can act on, not a login page.
            return error_response(
                401,
                "log in, or send an API token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="mqttproxy"'},
                request=request,
            )
        raise web.HTTPFound("/login?" + urlencode({"next": request.path_qs}))
    session = request.get(SESSION)
    if unsafe and session is not None and not await _csrf_ok(request, session):
        if is_api(request):
            return error_response(403, "missing or wrong CSRF token (header X-CSRF-Token)", request=request)
        raise web.HTTPForbidden(text="Missing or wrong CSRF token: reload the page and try again.")
    return await handler(request)


# --- login and logout ---------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect a fresh login to another site."""
    # Browsers read "\" as "/" in http URLs, so "/\evil.example" is another site too.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(character) < 0x20 for character in target):
        return "/"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _login_form(
    request: web.Request, *, error: str = "", username: str = "", status: int = 200
) -> web.Response:
    token = secrets.token_urlsafe(32)
    response = aiohttp_jinja2.render_template(
        "login.html",
        request,
        {
            "error": error,
            "username": username,
            "login_token": token,
            "next": _safe_next(request.query.get("next")),
        },
        status=status,
    )
    response.set_cookie(
        LOGIN_COOKIE, token, httponly=True, samesite="Strict", secure=request.app[CONFIG].cookie_secure
    )
    return response


async def login_page(request: web.Request) -> web.Response:
    return _login_form(request)


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    token = str(form.get("login_token", ""))
    if not token or not hmac.compare_digest(token, request.cookies.get(LOGIN_COOKIE, "")):
        raise web.HTTPForbidden(text="Missing or wrong CSRF token: reload the login page and try again.")
    throttle = request.app[THROTTLE]
    keys = (f"address:{request.remote}", f"user:{username}")
    wait = throttle.retry_after(*keys)
    if wait:
        logger.warning("login for %r from %s refused: too many failed attempts", username, request.remote)
        response = _login_form(
            request,
            error=f"Too many failed attempts: try again in {wait:.0f} s.",
            username=username,
            status=429,
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    found = await request.app[GATEWAY].operators.verify(username, password)
    if found is None:
        throttle.failed(*keys)
        logger.warning("failed login for %r from %s", username, request.remote)
        return _login_form(request, error="Wrong user name or password.", username=username, status=401)
    throttle.succeeded(*keys)
    session = request.app[GATEWAY].operators.open_session(found)
    logger.info("operator %s logged in from %s", found.username, request.remote)
    response = redirect(_safe_next(str(form.get("next", "/"))))
    config = request.app[CONFIG]
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        httponly=True,
        samesite="Strict",
        secure=config.cookie_secure,
        max_age=int(config.session_ttl),
        path="/",
    )
    response.del_cookie(LOGIN_COOKIE)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    session = request.get(SESSION)
    if session is not None:
        request.app[GATEWAY].operators.close_session(session.id)
    response = redirect("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def redirect(location: str) -> web.Response:
    """303 See Other: after a form POST, the browser GETs ``location``."""
    return web.Response(status=303, headers={"Location": location})


def require(condition: bool, message: str, *, field: str | None = None, status: int = 400) -> None:
    if not condition:
        raise ApiError(status, message, field=field)
