"""The dashboard's server-rendered pages: overview, upstream brokers, clients and API tokens.

The device registry's pages (tenants, devices) live in ``registry_pages``, the
shadows' in ``shadow_pages`` and the timeseries recorder's in
``timeseries_pages``; ``add_routes`` here registers them. Pages reach the gateway only through
its services (``FanOut``, ``Operators``, ``Registry``).
Every form that changes something is a POST carrying the session's CSRF token
(the auth middleware checks it); a successful one redirects (303) back to its
list with a short flash message. Live figures are filled in by
``web/static/app.js`` from the event stream (``/api/events``).

Routes of a broker are edited as text, one route per line::

    out devices/+/telemetry -> site7/{1}/t qos=1
    out alerts/# exclude=alerts/debug/#,alerts/test/# retain=false
    in commands/# -> devices/{1}/cmd

``parse_routes`` turns such text into ``Route`` dicts and ``format_routes``
turns routes back into it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import SecretStr, ValidationError
from pydantic_core import ErrorDetails

from mqttproxy.upstream.fanout import BrokerExists, BrokerNotFound
from mqttproxy.upstream.models import BrokerRecord, BrokerSettings, Route
from mqttproxy.webapp.api import status_document
from mqttproxy.webapp.auth import operator, redirect, render
from mqttproxy.webapp.services import GATEWAY

# --- routes as text -------------------------------------------------------------------

ARROW = "->"
ROUTE_OPTIONS = ("qos", "exclude", "retain")
_BOOLEANS = {"true": True, "yes": True, "false": False, "no": False}


class RouteSyntaxError(ValueError):
    """A route line that does not follow the syntax (its message says what is wrong)."""


@dataclass(frozen=True, slots=True)
class ParsedRoutes:
    """Route dicts ready for ``Route.model_validate``, the line each came from, and errors by line."""

    routes: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def split_words(text: str) -> list[str]:
    """Split on white space; double quotes group words (``"my topic/#"``) and are removed."""
    tokens: list[str] = []
    current: list[str] = []
    quoted = started = False
    for char in text:
        if char == '"':
            quoted = not quoted
            started = True
        elif char.isspace() and not quoted:
            if started:
                tokens.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
    if quoted:
        raise RouteSyntaxError("a quote is not closed")
    if started:
        tokens.append("".join(current))
    return tokens


def _route_option(route: dict[str, Any], token: str) -> None:
    name, equals, value = token.partition("=")
    if not equals:
        raise RouteSyntaxError(
            f"unexpected {token!r}: after the filter come '-> TOPIC' and options qos=, exclude=, retain="
        )
    if name not in ROUTE_OPTIONS:
        raise RouteSyntaxError(f"unknown option {name!r}: the options are qos=, exclude= and retain=")
    key = "max_qos" if name == "qos" else name
    if key in route:
        raise RouteSyntaxError(f"{name}= is given twice")
    if name == "qos":
        if value not in ("0", "1", "2"):
            raise RouteSyntaxError(f"qos= takes 0, 1 or 2, not {value!r}")
        route[key] = int(value)
    elif name == "exclude":
        items = [item.strip() for item in value.split(",")]
        if not all(items):
            raise RouteSyntaxError("exclude= takes topic filters separated by commas")
        route[key] = items
    else:
        if value.lower() not in _BOOLEANS:
            raise RouteSyntaxError(f"retain= takes true or false, not {value!r}")
        route[key] = _BOOLEANS[value.lower()]


def parse_route_line(text: str) -> dict[str, Any]:
    """``out FILTER [-> TOPIC] [qos=N] [exclude=F1,F2] [retain=true|false]`` as a ``Route`` dict.

    Raises ``RouteSyntaxError``; what the values mean (valid filters, placeholders
    of the remap) is for ``Route`` to check.
    """
    tokens = split_words(text)
    if not tokens or tokens[0] not in ("out", "in"):
        raise RouteSyntaxError("a route starts with its direction: out or in")
    if len(tokens) < 2 or tokens[1] == ARROW:
        raise RouteSyntaxError(f"a topic filter comes after {tokens[0]!r}")
    route: dict[str, Any] = {"direction": tokens[0], "filter": tokens[1]}
    rest = tokens[2:]
    if rest and rest[0] == ARROW:
        if len(rest) < 2 or rest[1] == ARROW:
            raise RouteSyntaxError("a topic comes after ->")
        route["remap"] = rest[1]
        rest = rest[2:]
    for token in (route["filter"], route.get("remap", ""), *rest):
        if ARROW in token and token != ARROW:
            raise RouteSyntaxError("put spaces around ->")
    for token in rest:
        if token == ARROW:
            raise RouteSyntaxError("-> comes right after the filter, once")
        _route_option(route, token)
    return route


def parse_routes(text: str) -> ParsedRoutes:
    """Every route of ``text``, one a line; blank lines and lines starting with ``#`` are skipped."""
    parsed = ParsedRoutes()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            route = parse_route_line(stripped)
        except RouteSyntaxError as exc:
            parsed.errors.append(f"line {number}: {exc}")
            continue
        parsed.routes.append(route)
        parsed.lines.append(number)
    return parsed


def quote_word(value: str) -> str:
    """``value``, in double quotes if ``split_words`` would otherwise split it."""
    return f'"{value}"' if not value or any(char.isspace() for char in value) else value


def format_route(route: Route) -> str:
    """The line ``parse_route_line`` reads back as ``route`` (options at their defaults left out)."""
    parts = [route.direction, quote_word(route.filter)]
    if route.remap is not None:
        parts += [ARROW, quote_word(route.remap)]
    if route.max_qos != 2:
        parts.append(f"qos={route.max_qos}")
    if route.exclude:
        parts.append("exclude=" + quote_word(",".join(route.exclude)))
    if not route.retain:
        parts.append("retain=false")
    return " ".join(parts)


def format_routes(routes: Iterable[Route]) -> str:
    return "\n".join(format_route(route) for route in routes)


# --- the broker form ------------------------------------------------------------------

TEXT_FIELDS = ("name", "address", "client_id_prefix")
OPTIONAL_TEXT_FIELDS = ("username", "ca_cert_path", "client_cert_path", "client_key_path")
NUMBER_FIELDS = (
    "port",
    "keepalive",
    "max_qos",
    "queue_max_messages",
    "queue_max_bytes",
    "max_inflight",
    "ack_timeout",
    "reconnect_min_delay",
    "reconnect_max_delay",
)
CHOICE_FIELDS = ("mqtt_version", "drop_policy")
CHECKBOX_FIELDS = ("enabled", "use_tls", "insecure_skip_verify", "clean_session")
LIST_FIELDS = ("failover", "routes")
# Every setting of BrokerSettings but the password, which is write-only.
FORM_FIELDS = (
    *TEXT_FIELDS,
    *OPTIONAL_TEXT_FIELDS,
    *NUMBER_FIELDS,
    *CHOICE_FIELDS,
    *CHECKBOX_FIELDS,
    *LIST_FIELDS,
)

_ID_HINT = "Use 1 to 64 letters, digits, _ . or -, starting with a letter or digit."


@dataclass(slots=True)
class BrokerForm:
    """What the broker form shows: the values as text, and the errors per field ("" for the form)."""

    values: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)
    has_password: bool = False

    def add_error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


def _as_text(name: str, value: Any) -> Any:
    if name in CHECKBOX_FIELDS:
        return bool(value)
    if value is None:
        return ""
    if name == "failover":
        return "\n".join(value)
    if name == "routes":
        return format_routes(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def form_values(settings: BrokerSettings | None = None, broker_id: str = "") -> dict[str, Any]:
    """The form's fields for ``settings``, or for a new broker (the model's defaults)."""
    values: dict[str, Any] = {"id": broker_id, "password": "", "remove_password": False}
    for name in FORM_FIELDS:
        if settings is not None:
            value = getattr(settings, name)
        else:
            info = BrokerSettings.model_fields[name]
            value = None if info.is_required() else info.get_default(call_default_factory=True)
        values[name] = _as_text(name, value)
    return values


def values_from_post(form: Mapping[str, Any]) -> dict[str, Any]:
    """The form's fields as posted (text as typed; an unchecked checkbox is absent)."""
    values: dict[str, Any] = {}
    for name in ("id", "password", *FORM_FIELDS):
        if name not in CHECKBOX_FIELDS:
            value = form.get(name, "")
            values[name] = value if isinstance(value, str) else ""
    for name in (*CHECKBOX_FIELDS, "remove_password"):
        values[name] = name in form
    return values


def error_message(error: ErrorDetails) -> str:
    """A pydantic error as the sentence shown next to a form field."""
    kind = error["type"]
    if kind == "missing" or (kind == "string_too_short" and error.get("input") == ""):
        return "Required."
    if kind == "string_pattern_mismatch" and error["loc"] == ("id",):
        return _ID_HINT
    return error["msg"].removeprefix("Value error, ")


def _line_number(message: str) -> int:
    match = re.match(r"line (\d+):", message)
    return int(match.group(1)) if match else 0


def _place(error: ErrorDetails, lines: list[int]) -> tuple[str, str]:
    """Which field an error goes next to, and its message (route errors name their line)."""
    loc = error["loc"]
    message = error_message(error)
    name = str(loc[0]) if loc else ""
    if name == "routes" and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(lines):
        where = ".".join(str(part) for part in loc[2:])
        if where and not message.startswith(where):
            message = f"{where}: {message}"
        return name, f"line {lines[loc[1]]}: {message}"
    message = message[:1].upper() + message[1:]
    return (name, message) if name in (*FORM_FIELDS, "id", "password") else ("", message)


def broker_data(
    values: Mapping[str, Any], current: BrokerSettings | None
) -> tuple[dict[str, Any], ParsedRoutes]:
    """The settings dict the form's values stand for; ``current`` supplies the kept password."""
    data: dict[str, Any] = current.model_dump(exclude={"id", "password"}) if current is not None else {}
    for name in TEXT_FIELDS:
        data[name] = values[name].strip()
    for name in OPTIONAL_TEXT_FIELDS:
        data[name] = values[name].strip() or None
    for name in (*NUMBER_FIELDS, *CHOICE_FIELDS):
        data[name] = values[name].strip()
    for name in CHECKBOX_FIELDS:
        data[name] = bool(values[name])
    data["failover"] = [item.strip() for item in re.split(r"[,\n]", values["failover"]) if item.strip()]
    parsed = parse_routes(values["routes"])
    data["routes"] = parsed.routes
    password: str | SecretStr | None = values["password"] or None  # spaces may belong to a password
    if password is None and current is not None and not values["remove_password"]:
        password = current.password  # write-only: an empty box keeps the stored one
    data["password"] = password
    return data, parsed


def validate_broker(
    values: Mapping[str, Any], current: BrokerSettings | None = None, *, new: bool = False
) -> tuple[BrokerSettings | None, BrokerForm]:
    """Validate the form's values: the settings (a ``BrokerRecord`` if ``new``), or ``None`` and errors."""
    form = BrokerForm(dict(values), has_password=current is not None and current.password is not None)
    data, parsed = broker_data(values, current)
    for message in parsed.errors:
        form.add_error("routes", message)
    if values["password"] and values["remove_password"]:
        form.add_error("password", "Type a new password or remove the stored one, not both.")
    model: type[BrokerSettings] = BrokerSettings
    if new:
        data["id"] = values["id"].strip()
        model = BrokerRecord
    try:
        settings = model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            form.add_error(*_place(error, parsed.lines))
        settings = None
    if "routes" in form.errors:  # syntax and model errors, in the order of their lines
        form.errors["routes"].sort(key=_line_number)
    return (None, form) if form.errors else (settings, form)


# --- helpers for pages ------------------------------------------------------------------

_FLASH = {
    "added": "Broker {broker} added.",
    "saved": "Broker {broker} saved.",
    "paused": "Broker {broker} paused.",
    "resumed": "Broker {broker} resumed.",
    "deleted": "Broker {broker} deleted.",
    "revoked": "Token revoked.",
    "no-token": "That token does not exist (any more).",
}
_BROKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _flash(request: web.Request) -> str:
    template = _FLASH.get(request.query.get("flash", ""), "")
    broker = request.query.get("broker", "")
    return template.format(broker=broker if _BROKER_ID.match(broker) else "")


def _back(path: str, flash: str, broker: str | None = None) -> web.Response:
    query = {"flash": flash} | ({"broker": broker} if broker else {})
    return redirect(f"{path}?{urlencode(query)}")


@dataclass(frozen=True, slots=True)
class Moment:
    """A time for templates: ISO 8601 for ``<time datetime>``, and text in UTC (scripts make it local)."""

    iso: str
    text: str
    timestamp: float


def moment(timestamp: float | None) -> Moment | None:
    if timestamp is None:
        return None
    when = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return Moment(when.isoformat(timespec="seconds"), when.strftime("%Y-%m-%d %H:%M UTC"), timestamp)


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``: how long, for people."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _drops(status: Mapping[str, Any]) -> tuple[int, str]:
    """Total drops and their breakdown (``queue_full: 3, disabled: 1``)."""
    dropped: dict[str, int] = status.get("dropped", {})
    detail = ", ".join(f"{reason}: {count:,}" for reason, count in sorted(dropped.items()) if count)
    return sum(dropped.values()), detail


def _broker_row(status: Mapping[str, Any], record: BrokerRecord | None) -> dict[str, Any]:
    """One broker for the tables: its live status and what the templates show of its settings."""
    total, detail = _drops(status)
    configured = f"{record.address}:{record.port}" if record is not None else ""
    return {
        **status,
        "address": status.get("address") or configured,
        "drops": total,
        "drops_detail": detail,
        "connected_since": moment(status.get("connected_since")),
    }


def error_page(
    request: web.Request,
    status: int,
    title: str,
    message: str,
    *,
    back: tuple[str, str] = ("/brokers", "Back to the brokers"),
    page: str = "brokers",
) -> web.Response:
    """A page that only says what went wrong, with a link (``back``: address, text) to go on from."""
    context: dict[str, object] = {"title": title, "message": message, "page": page}
    context |= {"back_href": back[0], "back_text": back[1]}
    return render(request, "error.html", context, status=status)


def _broker_not_found(request: web.Request, broker_id: str) -> web.Response:
    return error_page(request, 404, "No such broker", f"There is no upstream broker with id {broker_id!r}.")


# --- pages ------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    status = status_document(request)
    fanout = request.app[GATEWAY].fanout
    records = {record.id: record for record in fanout.records()}
    rates = status["rates"].get("brokers", {})
    brokers = []
    for item in status["brokers"]:
        rate = rates.get(item["id"], {}).get("forwarded", 0.0)
        brokers.append({**_broker_row(item, records.get(item["id"])), "rate": rate})
    return render(
        request,
        "overview.html",
        {
            "page": "overview",
            "status": status,
            "brokers": brokers,
            "connected": sum(item["state"] == "connected" for item in brokers),
        },
    )


async def brokers_page(request: web.Request) -> web.Response:
    fanout = request.app[GATEWAY].fanout
    brokers = [_broker_row(fanout.status(record.id), record) for record in fanout.records()]
    return render(request, "brokers.html", {"page": "brokers", "brokers": brokers, "flash": _flash(request)})


def _broker_form(
    request: web.Request, form: BrokerForm, *, broker_id: str | None = None, status: int = 200
) -> web.Response:
    """The add form (``broker_id`` None) or the edit form of ``broker_id``."""
    action = "/brokers/new" if broker_id is None else f"/brokers/{broker_id}/edit"
    return render(
        request,
        "broker_form.html",
        {"page": "brokers", "form": form, "broker_id": broker_id, "action": action},
        status=status,
    )


async def new_broker(request: web.Request) -> web.Response:
    return _broker_form(request, BrokerForm(form_values()))


async def create_broker(request: web.Request) -> web.Response:
    values = values_from_post(await request.post())
    record, form = validate_broker(values, new=True)
    if record is None:
        return _broker_form(request, form, status=400)
    assert isinstance(record, BrokerRecord)
    try:
        await request.app[GATEWAY].fanout.add(record)
    except BrokerExists:
        form.add_error("id", "A broker with this id exists already.")
        return _broker_form(request, form, status=409)
    except OSError as exc:
        form.add_error("", f"Could not save the broker: {exc}")
        return _broker_form(request, form, status=500)
    return _back("/brokers", "added", record.id)


async def edit_broker(request: web.Request) -> web.Response:
    broker_id = request.match_info["id"]
    try:
        record = request.app[GATEWAY].fanout.record(broker_id)
    except BrokerNotFound:
        return _broker_not_found(request, broker_id)
    form = BrokerForm(form_values(record, broker_id), has_password=record.password is not None)
    return _broker_form(request, form, broker_id=broker_id)


async def save_broker(request: web.Request) -> web.Response:
    broker_id = request.match_info["id"]
    fanout = request.app[GATEWAY].fanout
    try:
        current = fanout.record(broker_id)
    except BrokerNotFound:
        return _broker_not_found(request, broker_id)
    values = values_from_post(await request.post())
    values["id"] = broker_id
    settings, form = validate_broker(values, current)
    if settings is None:
        return _broker_form(request, form, broker_id=broker_id, status=400)
    try:
        await fanout.update(broker_id, settings)
    except BrokerNotFound:
        return _broker_not_found(request, broker_id)
    except OSError as exc:
        form.add_error("", f"Could not save the broker: {exc}")
        return _broker_form(request, form, broker_id=broker_id, status=500)
    return _back("/brokers", "saved", broker_id)


async def toggle_broker(request: web.Request) -> web.Response:
    broker_id = request.match_info["id"]
    try:
        record = await request.app[GATEWAY].fanout.toggle(broker_id)
    except BrokerNotFound:
        return _broker_not_found(request, broker_id)
    return _back("/brokers", "resumed" if record.enabled else "paused", broker_id)


async def delete_broker(request: web.Request) -> web.Response:
    """GET, or a POST without ``confirmed=yes`` (no script to ask): the confirmation page."""
    broker_id = request.match_info["id"]
    fanout = request.app[GATEWAY].fanout
    try:
        record = fanout.record(broker_id)
    except BrokerNotFound:
        return _broker_not_found(request, broker_id)
    confirmed = request.method == "POST" and (await request.post()).get("confirmed") == "yes"
    if not confirmed:
        return render(request, "broker_delete.html", {"page": "brokers", "broker": record})
    try:
        await fanout.delete(broker_id)
    except BrokerNotFound:
        return _broker_not_found(request, broker_id)
    return _back("/brokers", "deleted", broker_id)


async def clients_page(request: web.Request) -> web.Response:
    now = time.time()
    clients = sorted(request.app[GATEWAY].clients(), key=lambda item: str(item["client_id"]))
    rows = [
        {
            **client,
            "connected_for": duration(now - client["connected_since"]),
            "since": moment(client["connected_since"]),
        }
        for client in clients
    ]
    return render(request, "clients.html", {"page": "clients", "clients": rows})


async def _tokens_page(
    request: web.Request, *, created: dict[str, str] | None = None, error: str = "", name: str = ""
) -> web.Response:
    tokens = await request.app[GATEWAY].operators.tokens(operator(request))
    rows = [
        {
            "id": token.id,
            "name": token.name,
            "prefix": token.prefix,
            "created": moment(token.created_at),
            "last_used": moment(token.last_used_at),
        }
        for token in tokens
    ]
    response = render(
        request,
        "tokens.html",
        {
            "page": "tokens",
            "tokens": rows,
            "created": created,
            "error": error,
            "name": name,
            "flash": _flash(request),
        },
        status=400 if error else 200,
    )
    if created is not None:
        response.headers["Cache-Control"] = "no-store"  # the secret must not outlive this page
    return response


async def tokens_page(request: web.Request) -> web.Response:
    return await _tokens_page(request)


async def create_token(request: web.Request) -> web.Response:
    """The new token's secret is shown on this response only (never in a URL, never stored)."""
    value = (await request.post()).get("name", "")
    name = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(name) <= 100:
        return await _tokens_page(request, error="Give the token a name of 1 to 100 characters.", name=name)
    token, secret = await request.app[GATEWAY].operators.create_token(operator(request), name)
    return await _tokens_page(request, created={"name": token.name, "secret": secret})


async def revoke_token(request: web.Request) -> web.Response:
    try:
        token_id = int(request.match_info["id"])
    except ValueError:
        return _back("/tokens", "no-token")
    if not await request.app[GATEWAY].operators.revoke_token(operator(request), token_id):
        return _back("/tokens", "no-token")
    return _back("/tokens", "revoked")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", overview)
    router.add_get("/brokers", brokers_page)
    router.add_get("/brokers/new", new_broker)
    router.add_post("/brokers/new", create_broker)
    router.add_get("/brokers/{id}/edit", edit_broker)
    router.add_post("/brokers/{id}/edit", save_broker)
    router.add_post("/brokers/{id}/toggle", toggle_broker)
    router.add_get("/brokers/{id}/delete", delete_broker)
    router.add_post("/brokers/{id}/delete", delete_broker)
    router.add_get("/clients", clients_page)
    router.add_get("/tokens", tokens_page)
    router.add_post("/tokens", create_token)
    router.add_post("/tokens/{id}/revoke", revoke_token)
    # Imported here: registry_pages, shadow_pages and timeseries_pages use this module's helpers.
    from mqttproxy.webapp.registry_pages import add_routes as add_registry_routes
    from mqttproxy.webapp.shadow_pages import add_routes as add_shadow_routes
    from mqttproxy.webapp.timeseries_pages import add_routes as add_timeseries_routes

    add_registry_routes(router)
    add_shadow_routes(router)
    add_timeseries_routes(router)
