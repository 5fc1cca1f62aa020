"""Device shadows on the dashboard: the things that have one, a thing's shadows, editing desired.

``/shadows`` lists the things with a shadow (searchable) and opens one by name;
``/shadows/{thing}`` (``?name=`` for a named shadow) shows a shadow's desired,
reported and delta state with the time of every leaf, and a form that edits
desired. The form goes through ``ShadowService.handle`` like any device's
update, so devices get their delta over MQTT and every message of the
contract is published. The contract merges an update into the shadow, so the
page sends the keys the operator removed from the text as ``null``, and the
version the page showed: a change made meanwhile is refused (409 "Version
conflict"). A refused edit comes back with the operator's text and the
contract's message, and nothing is stored. ``web/static/app.js`` reads the
shadow again every few seconds (``/api/things/{thing}/shadow``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from mqttproxy.shadow import ShadowError, ShadowKey, ShadowService
from mqttproxy.shadow.service import SHADOW_NAME, THING_NAME, check_names
from mqttproxy.webapp.auth import redirect, render
from mqttproxy.webapp.pages import error_page, moment
from mqttproxy.webapp.services import GATEWAY

THINGS_SHOWN = 200  # rows of the thing list; a search narrows it
NAMES_SHOWN = 100  # named shadows listed on a thing's page
NAMES_PER_THING = 5  # named shadows shown in a row of the thing list
_BACK = ("/shadows", "Back to the shadows")
_FLASH = {
    "shadow-saved": "Desired state saved: devices get the delta.",
    "shadow-deleted": "Shadow deleted.",
}


def _shadows(request: web.Request) -> ShadowService:
    return request.app[GATEWAY].shadows


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _with_name(path: str, name: str) -> str:
    return f"{path}?{urlencode({'name': name})}" if name else path


def shadow_path(thing: str, name: str = "", action: str = "") -> str:
    """The page of a shadow (``action``: one of its forms' addresses), ``?name=`` for a named one."""
    return _with_name(f"/shadows/{quote(thing, safe='')}" + (f"/{action}" if action else ""), name)


# --- the desired form's text --------------------------------------------------------------


def _no_constant(value: str) -> Any:
    raise ValueError(f"{value} is not JSON")


def parse_desired(text: str) -> Any:
    """The desired state typed in: a JSON object (or ``null``, which removes it), else ShadowError."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError:
        raise ShadowError(400, "Invalid JSON") from None
    if value is not None and not isinstance(value, dict):
        raise ShadowError(400, "Desired node must be an object")
    return value


def with_removals(before: Any, after: Any) -> Any:
    """``after`` as a merge onto ``before``: keys of ``before`` missing from ``after`` become ``null``."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return after
    result: dict[str, Any] = {}
    for key, value in after.items():
        prior = before.get(key)
        result[key] = with_removals(prior, value) if isinstance(value, dict) else value
    for key in before:
        if key not in after:
            result[key] = None
    return result


def parse_version(text: str) -> int | None:
    """The version the page showed ("" when there was no shadow: then no check)."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 18:
        raise ShadowError(400, "Invalid version")
    return int(text)


def pretty(value: Any) -> str:
    """JSON as the page shows it (and as the script writes it: ``JSON.stringify(value, null, 2)``)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def metadata_rows(metadata: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every leaf's time: ``{"section", "path", "when"}``, desired first, in document order."""
    rows: list[dict[str, Any]] = []

    def walk(section: str, node: Any, path: list[str]) -> None:
        if not isinstance(node, dict):
            return
        stamp = node.get("timestamp")
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            rows.append({"section": section, "path": ".".join(path), "when": moment(stamp)})
            return
        for key, child in node.items():
            walk(section, child, [*path, key])

    for section in ("desired", "reported"):
        walk(section, metadata.get(section), [])
    return rows


def shadow_view(document: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the page shows of a ``/get/accepted`` document (None: there is no shadow)."""
    if document is None:
        return None
    state = document.get("state", {})
    rows = metadata_rows(document.get("metadata", {}))
    latest = max((row["when"].timestamp for row in rows), default=None)
    return {
        "version": document.get("version"),
        "read_at": moment(document.get("timestamp")),
        "updated": moment(latest),
        "desired": pretty(state["desired"]) if "desired" in state else "",
        "reported": pretty(state["reported"]) if "reported" in state else "",
        "delta": pretty(state["delta"]) if state.get("delta") else "",
        "metadata": rows,
    }


# --- pages -----------------------------------------------------------------------------------


async def shadows_page(request: web.Request) -> web.Response:
    """The things that have a shadow; ``?open=THING`` goes to a thing's page (to create its shadow)."""
    wanted = request.query.get("open")
    error = ""
    if wanted is not None:
        wanted = wanted.strip()
        if THING_NAME.match(wanted):
            return redirect(shadow_path(wanted))
        error = "A thing name is 1 to 128 letters, digits, : _ or -."
    service = _shadows(request)
    query = request.query.get("q", "").strip()[:128]
    things = await service.things()
    matching = [thing for thing in things if query.lower() in thing.lower()]
    rows = []
    for thing in matching[:THINGS_SHOWN]:
        names = await service.named_shadows(thing, page_size=NAMES_PER_THING + 1, after=None)
        rows.append({"thing": thing, "names": names[:NAMES_PER_THING], "more": len(names) > NAMES_PER_THING})
    context: dict[str, object] = {
        "page": "shadows",
        "rows": rows,
        "q": query,
        "total": len(things),
        "matching": len(matching),
        "open": wanted or "",
        "error": error,
        "shadow_path": shadow_path,
    }
    return render(request, "shadows.html", context, status=400 if error else 200)


def _flash(request: web.Request) -> str:
    message = _FLASH.get(request.query.get("flash", ""), "")
    deleted = request.query.get("id", "")
    if message == _FLASH["shadow-deleted"] and SHADOW_NAME.match(deleted):
        return f"Named shadow {deleted} deleted."
    return message


async def _shadow_page(
    request: web.Request,
    thing: str,
    name: str,
    *,
    text: str | None = None,
    error: ShadowError | None = None,
    error_at: str = "desired",
    confirm_delete: bool = False,
    status: int = 200,
) -> web.Response:
    """A thing's page with one of its shadows; ``text`` and ``error``: a refused edit shown again."""
    service = _shadows(request)
    names = await service.named_shadows(thing, page_size=NAMES_SHOWN + 1, after=None)
    try:
        document: dict[str, Any] | None = await service.document(thing, name)
    except ShadowError as exc:
        if exc.code != 404:
            raise
        document = None
    view = shadow_view(document)
    desired = (document or {}).get("state", {}).get("desired")
    context: dict[str, object] = {
        "page": "shadows",
        "thing": thing,
        "name": name,
        "names": names[:NAMES_SHOWN],
        "more_names": len(names) > NAMES_SHOWN,
        "shadow": view,
        "topic": ShadowKey(thing, name).prefix,
        "desired_json": json.dumps(desired, separators=(",", ":")),
        "text": pretty(desired if isinstance(desired, dict) else {}) if text is None else text,
        "expected_version": view["version"] if view is not None else "",  # "version" is the gateway's
        "error": error,
        "error_at": error_at,
        "confirm_delete": confirm_delete and view is not None,
        "flash": _flash(request) if error is None else "",
        "poll": _with_name(f"/api/things/{quote(thing, safe='')}/shadow", name),
        "shadow_path": shadow_path,
    }
    response = render(request, "shadow.html", context, status=status)
    response.headers["Cache-Control"] = "no-store"  # always the shadow as it is now
    return response


def _names(request: web.Request) -> tuple[str, str]:
    """The thing and shadow name of the address, checked (ShadowError 400 if invalid)."""
    thing = request.match_info["thing"]
    name = request.query.get("name", "")
    check_names(thing, name)
    return thing, name


def _invalid(request: web.Request, error: ShadowError) -> web.Response:
    return error_page(request, error.code, "No such shadow", f"{error.message}.", back=_BACK, page="shadows")


async def shadow_page(request: web.Request) -> web.Response:
    try:
        thing, name = _names(request)
    except ShadowError as exc:
        return _invalid(request, exc)
    return await _shadow_page(request, thing, name)


async def save_desired(request: web.Request) -> web.Response:
    """Replace desired with the form's JSON: a merge with the removed keys as null, at the version shown."""
    try:
        thing, name = _names(request)
    except ShadowError as exc:
        return _invalid(request, exc)
    form = await request.post()
    text = _text(form, "desired")
    service = _shadows(request)
    try:
        desired = parse_desired(text)
        body: dict[str, Any] = {"state": {"desired": desired}}
        version = parse_version(_text(form, "version"))
        if version is not None:
            body["version"] = version
        try:
            current = await service.document(thing, name)
        except ShadowError as exc:
            if exc.code != 404:
                raise
        else:
            body["state"]["desired"] = with_removals(current["state"].get("desired"), desired)
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        result = await service.handle(ShadowKey(thing, name), "update", payload)
    except ShadowError as exc:
        result = exc
    if isinstance(result, ShadowError):
        return await _shadow_page(request, thing, name, text=text, error=result, status=result.code)
    flash = {"flash": "shadow-saved"}
    return redirect(shadow_path(thing, name) + ("&" if name else "?") + urlencode(flash))


async def delete_shadow(request: web.Request) -> web.Response:
    """Without ``confirmed=yes`` (no script to ask) the page asks first."""
    try:
        thing, name = _names(request)
    except ShadowError as exc:
        return _invalid(request, exc)
    if (await request.post()).get("confirmed") != "yes":
        return await _shadow_page(request, thing, name, confirm_delete=True)
    result = await _shadows(request).handle(ShadowKey(thing, name), "delete", b"")
    if isinstance(result, ShadowError):
        return await _shadow_page(request, thing, name, error=result, error_at="delete", status=result.code)
    query = {"flash": "shadow-deleted"} | ({"id": name} if name else {})
    return redirect(f"{shadow_path(thing)}?{urlencode(query)}")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/shadows", shadows_page)
    router.add_get("/shadows/{thing}", shadow_page)
    router.add_post("/shadows/{thing}/desired", save_desired)
    router.add_post("/shadows/{thing}/delete", delete_shadow)
