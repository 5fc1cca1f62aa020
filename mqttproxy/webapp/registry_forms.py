"""The registry pages' forms as text: ACL rules, labels, metadata, token expiry, list filters.

ACL rules are edited one rule a line::

    allow publish fleet/{tenant_id}/status
    deny both devices/{device_id}/secret/#
    allow subscribe "site 7/{device_id}/#"

``parse_acl`` turns such text into ``AclRuleModel`` dicts with errors
numbered by line, and ``format_acl`` turns rules back into it.
``parse_labels``, ``parse_metadata`` and ``parse_expiry`` read the device
form's other boxes; ``validate_tenant`` and ``validate_device`` turn a whole
form into the registry's models or into errors per field. Nothing here does
I/O but ``list_devices``, which asks the registry for one page of devices.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from mqttproxy.registry import Registry
from mqttproxy.registry.models import (
    AclRuleModel,
    Device,
    DeviceCreate,
    DeviceSettings,
    Tenant,
    TenantSettings,
)
from mqttproxy.webapp.pages import error_message, quote_word, split_words

# --- ACL rules as text ------------------------------------------------------------------

ACL_ACTIONS = ("publish", "subscribe", "both")
PLACEHOLDERS = ("device_id", "tenant_id")
_EFFECTS = {"allow": True, "deny": False}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class AclSyntaxError(ValueError):
    """An ACL line that does not follow the syntax (its message says what is wrong)."""


@dataclass(frozen=True, slots=True)
class ParsedAcl:
    """Rule dicts ready for ``AclRuleModel.model_validate``, the line each came from, errors by line."""

    rules: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_acl_line(text: str) -> dict[str, Any]:
    """``allow|deny publish|subscribe|both FILTER`` as an ``AclRuleModel`` dict.

    Raises ``AclSyntaxError``; whether the filter is a valid topic filter is for the model to say.
    """
    try:
        words = split_words(text)
    except ValueError as exc:
        raise AclSyntaxError(str(exc)) from None
    if not words or words[0] not in _EFFECTS:
        raise AclSyntaxError("a rule starts with allow or deny")
    if len(words) < 2 or words[1] not in ACL_ACTIONS:
        raise AclSyntaxError(f"after {words[0]} comes publish, subscribe or both")
    if len(words) < 3:
        raise AclSyntaxError(f"a topic filter comes after {words[1]}")
    if len(words) > 3:
        raise AclSyntaxError(
            f"unexpected {words[3]!r}: a rule is allow|deny ACTION FILTER (quote a filter with spaces)"
        )
    for name in _PLACEHOLDER.findall(words[2]):
        if name not in PLACEHOLDERS:
            raise AclSyntaxError(f"unknown placeholder {{{name}}}: use {{device_id}} or {{tenant_id}}")
    return {"allow": _EFFECTS[words[0]], "action": words[1], "topic": words[2]}


def parse_acl(text: str) -> ParsedAcl:
    """Every rule of ``text``, one a line; blank lines and lines starting with ``#`` are skipped."""
    parsed = ParsedAcl()
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            rule = parse_acl_line(stripped)
        except AclSyntaxError as exc:
            parsed.errors.append(f"line {number}: {exc}")
            continue
        parsed.rules.append(rule)
        parsed.lines.append(number)
    return parsed


def format_acl_rule(rule: AclRuleModel) -> str:
    """The line ``parse_acl_line`` reads back as ``rule``."""
    return f"{'allow' if rule.allow else 'deny'} {rule.action} {quote_word(rule.topic)}"


def format_acl(rules: Iterable[AclRuleModel]) -> str:
    return "\n".join(format_acl_rule(rule) for rule in rules)


# --- the device form's other boxes ----------------------------------------------------------


class FieldError(ValueError):
    """A box of a form that cannot be read (the message is shown next to it)."""


def parse_labels(text: str) -> list[str]:
    """Labels separated by commas or new lines: blanks dropped, each once, in their order."""
    labels = dict.fromkeys(item.strip() for item in re.split(r"[,\n]", text))
    labels.pop("", None)
    return list(labels)


def _no_constant(name: str) -> Any:
    raise FieldError(f"{name} is not JSON: use a number or a string.")


def parse_metadata(text: str) -> dict[str, Any]:
    """A JSON object; an empty box is ``{}``. Raises ``FieldError``."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise FieldError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
    if not isinstance(value, dict):
        raise FieldError('Metadata is a JSON object, like {"floor": 3}.')
    return value


def format_metadata(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, indent=2, ensure_ascii=False) if metadata else ""


def parse_expiry(text: str, now: float) -> float | None:
    """A date and time (UTC unless it names its offset) as Unix time; empty: never. Raises ``FieldError``."""
    text = text.strip()
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.removesuffix("Z").removesuffix("z"))
    except ValueError:
        raise FieldError("Give a date and time like 2030-01-31T12:00 (UTC), or leave it empty.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    timestamp = when.timestamp()
    if timestamp <= now:
        raise FieldError("That time has passed: give a time in the future, or leave it empty.")
    return timestamp


def format_expiry(timestamp: float | None) -> str:
    """The ``datetime-local`` value (UTC) that ``parse_expiry`` reads back."""
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M")


# --- forms ------------------------------------------------------------------------------------

ID_HINT = "Use 1 to 64 letters, digits, _ . : or -, starting with a letter or digit."
LABEL_HINT = "use 1 to 64 letters, digits, _ . : = or -"
TENANT_FIELDS = ("id", "name", "auth_mode", "ca_cert", "default_acl", "acl")
DEVICE_FIELDS = (
    "id",
    "tenant_id",
    "name",
    "labels",
    "notes",
    "metadata",
    "acl",
    "enabled",
    "token_expires_at",
)
_CHECKBOXES = ("default_acl", "enabled")


@dataclass(slots=True)
class Form:
    """What a form shows: the values as text, and the errors per field ("" for the whole form)."""

    values: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add_error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


def values_from_post(form: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The fields as posted: text as typed (new lines as ``\\n``), checkboxes as booleans."""
    values: dict[str, Any] = {}
    for name in names:
        if name in _CHECKBOXES:
            values[name] = name in form
        else:
            value = form.get(name, "")
            values[name] = value.replace("\r\n", "\n") if isinstance(value, str) else ""
    return values


def _place(
    error: ErrorDetails, names: Collection[str], acl_lines: list[int], labels: list[str]
) -> tuple[str, str]:
    """Which field an error goes next to, and its message."""
    loc = error["loc"]
    name = str(loc[0]) if loc else ""
    indexed = len(loc) > 1 and isinstance(loc[1], int)
    if error["type"] == "string_pattern_mismatch" and name in ("id", "tenant_id"):
        return name, "Required." if error.get("input") == "" else ID_HINT
    message = error_message(error)
    if name == "acl" and indexed and int(loc[1]) < len(acl_lines):
        return name, f"line {acl_lines[int(loc[1])]}: {message}"
    if name == "labels" and indexed and int(loc[1]) < len(labels):
        return name, f"Label {labels[int(loc[1])]!r}: {LABEL_HINT}."
    message = message[:1].upper() + message[1:]
    return (name, message) if name in names else ("", message)


def _sort_acl_errors(form: Form) -> None:
    if "acl" in form.errors:  # syntax and model errors, in the order of their lines
        form.errors["acl"].sort(key=lambda message: int(message.split()[1].rstrip(":")))


def tenant_values(tenant: Tenant | None = None) -> dict[str, Any]:
    """The tenant form's fields for ``tenant``, or for a new one (the defaults)."""
    if tenant is None:
        return {"id": "", "name": "", "auth_mode": "token", "ca_cert": "", "default_acl": True, "acl": ""}
    return {
        "id": tenant.id,
        "name": tenant.name,
        "auth_mode": tenant.auth_mode,
        "ca_cert": tenant.ca_cert or "",
        "default_acl": tenant.default_acl,
        "acl": format_acl(tenant.acl),
    }


def validate_tenant(values: Mapping[str, Any], *, new: bool) -> tuple[TenantSettings | None, Form]:
    """The tenant the form's values stand for (a ``Tenant`` if ``new``), or ``None`` and the errors."""
    form = Form(dict(values))
    parsed = parse_acl(values["acl"])
    for message in parsed.errors:
        form.add_error("acl", message)
    data: dict[str, Any] = {
        "name": values["name"].strip(),
        "auth_mode": values["auth_mode"],
        "ca_cert": values["ca_cert"].strip() or None,
        "default_acl": bool(values["default_acl"]),
        "acl": parsed.rules,
    }
    if data["auth_mode"] == "certificate" and data["ca_cert"] is None:
        form.add_error(
            "ca_cert", "Certificate authentication needs the CA that signs the devices' certificates."
        )
    model: type[TenantSettings] = TenantSettings
    if new:
        data["id"] = values["id"].strip()
        model = Tenant
    try:
        settings = model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            form.add_error(*_place(error, TENANT_FIELDS, parsed.lines, []))
        settings = None
    _sort_acl_errors(form)
    return (None, form) if form.errors else (settings, form)


def device_values(device: Device | None = None, tenant_id: str = "") -> dict[str, Any]:
    """The device form's fields for ``device``, or for a new one in ``tenant_id``."""
    if device is None:
        values = dict.fromkeys(DEVICE_FIELDS, "")
        return {**values, "tenant_id": tenant_id, "enabled": True}
    return {
        "id": device.id,
        "tenant_id": device.tenant_id,
        "name": device.name,
        "labels": ", ".join(device.labels),
        "notes": device.notes,
        "metadata": format_metadata(device.metadata),
        "acl": format_acl(device.acl),
        "enabled": device.enabled,
        "token_expires_at": format_expiry(device.token_expires_at),
    }


def validate_device(
    values: Mapping[str, Any], *, tenants: Collection[str] | None = None, now: float | None = None
) -> tuple[DeviceSettings | None, Form]:
    """The device the form's values stand for, or ``None`` and the errors.

    With ``tenants`` (the ids that exist) it is a new device: a ``DeviceCreate``.
    """
    form = Form(dict(values))
    parsed = parse_acl(values["acl"])
    for message in parsed.errors:
        form.add_error("acl", message)
    labels = parse_labels(values["labels"])
    data: dict[str, Any] = {
        "name": values["name"].strip(),
        "labels": labels,
        "notes": values["notes"],
        "acl": parsed.rules,
        "enabled": bool(values["enabled"]),
    }
    try:
        data["metadata"] = parse_metadata(values["metadata"])
    except FieldError as exc:
        form.add_error("metadata", str(exc))
    model: type[DeviceSettings] = DeviceSettings
    if tenants is not None:
        model = DeviceCreate
        data["id"] = values["id"].strip()
        data["tenant_id"] = values["tenant_id"]
        if not data["tenant_id"]:
            form.add_error("tenant_id", "Choose the device's tenant.")
        elif data["tenant_id"] not in tenants:
            form.add_error("tenant_id", f"There is no tenant {data['tenant_id']!r}.")
        try:
            data["token_expires_at"] = parse_expiry(
                values["token_expires_at"], time.time() if now is None else now
            )
        except FieldError as exc:
            form.add_error("token_expires_at", str(exc))
    try:
        settings = model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            name, message = _place(error, DEVICE_FIELDS, parsed.lines, labels)
            if name != "tenant_id" or name not in form.errors:  # said already: no tenant chosen
                form.add_error(name, message)
        settings = None
    _sort_acl_errors(form)
    return (None, form) if form.errors else (settings, form)


# --- the device list's filters -----------------------------------------------------------------

PAGE_SIZE = 100
ONLINE_CHOICES = (("", "any"), ("yes", "yes"), ("no", "no"))


@dataclass(frozen=True, slots=True)
class DeviceFilters:
    """What the device list shows: search text, tenant, label, online ("", "yes", "no") and where."""

    q: str = ""
    tenant: str = ""
    label: str = ""
    online: str = ""
    offset: int = 0

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> DeviceFilters:
        offset = query.get("offset", "")
        online = query.get("online", "")
        return cls(
            q=query.get("q", "").strip()[:200],
            tenant=query.get("tenant", "").strip(),
            label=query.get("label", "").strip(),
            online=online if online in ("yes", "no") else "",
            offset=int(offset) if offset.isdigit() and len(offset) < 10 else 0,
        )

    def query(self, **changes: Any) -> str:
        """This list's query string, with ``changes``; empty filters left out."""
        values = {"q": self.q, "tenant": self.tenant, "label": self.label, "online": self.online}
        values |= {"offset": str(self.offset) if self.offset else ""}
        values |= {key: str(value) if value else "" for key, value in changes.items()}
        return urlencode({key: value for key, value in values.items() if value})

    def api_query(self) -> str:
        """The /api/devices query that reads this page's rows again (for live updates)."""
        query = {"q": self.q, "tenant": self.tenant, "label": self.label}
        query |= {"online": "true" if self.online == "yes" else "", "offset": str(self.offset or "")}
        return urlencode({key: value for key, value in query.items() if value} | {"limit": str(PAGE_SIZE)})


async def list_devices(registry: Registry, filters: DeviceFilters) -> tuple[list[Device], bool]:
    """One page of devices, and whether more follow.

    For "offline only" the page reads the next ``PAGE_SIZE`` devices and keeps
    the offline ones (``Registry.devices(online=False)`` applies its limit and
    offset before dropping the online ones, so it cannot tell whether more
    follow): a page may hold fewer rows, but none are skipped between pages.
    """
    devices = await registry.devices(
        tenant_id=filters.tenant or None,
        label=filters.label or None,
        online=True if filters.online == "yes" else None,
        search=filters.q or None,
        limit=PAGE_SIZE + 1,
        offset=filters.offset,
    )
    more = len(devices) > PAGE_SIZE
    devices = devices[:PAGE_SIZE]
    if filters.online == "no":
        devices = [device for device in devices if not device.online]
    return devices, more
