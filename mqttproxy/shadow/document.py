"""Shadow documents, AWS IoT style: validation, merge, metadata and delta. Pure functions.

The contract is AWS IoT's Device Shadow service, as README.md's "Device
shadows" section sums it up: only ``state.desired`` and ``state.reported`` are
stored; an update deep-merges them, a ``null`` leaf deletes its key and a
``null`` section clears it; arrays are values, replaced whole; every leaf an
update touches gets a ``{"timestamp": T}`` in the metadata; the delta holds
every desired leaf that differs from reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SECTIONS = ("desired", "reported")

Json = Any


class ShadowError(Exception):
    """A request the contract rejects: ``code`` and ``message`` go on ``.../rejected``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.client_token: str | None = None  # echoed when the request carried one
        self.timestamp: int | None = None  # when it was rejected

    def body(self, now: int) -> dict[str, Any]:
        """The contract's error document, the same over MQTT and REST."""
        timestamp = self.timestamp or now
        body: dict[str, Any] = {"code": self.code, "message": self.message, "timestamp": timestamp}
        if self.client_token is not None:
            body["clientToken"] = self.client_token
        return body


@dataclass(frozen=True, slots=True)
class Limits:
    max_document_bytes: int = 8192  # desired + reported of the resulting document
    max_depth: int = 6
    max_client_token_bytes: int = 64


@dataclass(slots=True)
class Shadow:
    """A stored shadow; ``state`` None after a delete (the version lives on)."""

    state: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.state is not None


@dataclass(frozen=True, slots=True)
class UpdateRequest:
    state: (
        dict[str, Any] | None
    )  # {"desired": ..., "reported": ...} with only those keys; None: "state": null
    client_token: str | None
    version: int | None


def parse_json(payload: bytes) -> Json:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ShadowError(415, "Unsupported documented encoding; supported encoding is UTF-8") from None
    try:
        return json.loads(text, parse_constant=_not_json)
    except (json.JSONDecodeError, _NotJson):
        raise ShadowError(400, "Invalid JSON") from None


class _NotJson(ValueError):
    pass


def _not_json(constant: str) -> None:
    # Python's json reads NaN and Infinity; JSON (RFC 8259) has no such values.
    raise _NotJson(constant)


def client_token_of(document: Json, limits: Limits) -> str | None:
    """The request's clientToken (echoed in every response), checked."""
    if not isinstance(document, dict) or "clientToken" not in document:
        return None
    token = document["clientToken"]
    if not isinstance(token, str) or len(token.encode()) > limits.max_client_token_bytes:
        raise ShadowError(400, "Invalid clientToken")
    return token


def echoed_client_token(payload: bytes, limits: Limits) -> str | None:
    """The clientToken of any payload, for echoing in a response; None if there is no valid one."""
    try:
        return client_token_of(parse_json(payload), limits) if payload.strip() else None
    except ShadowError:
        return None


def parse_update(payload: bytes, limits: Limits) -> UpdateRequest:
    document = parse_json(payload)
    if not isinstance(document, dict):
        raise ShadowError(400, "Invalid JSON")
    client_token = client_token_of(document, limits)
    version = document.get("version")
    if "version" in document and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        raise ShadowError(400, "Invalid version")
    if "state" not in document:
        raise ShadowError(400, "Missing required node: state")
    state = document["state"]
    if state is None:
        return UpdateRequest(None, client_token, version)
    if not isinstance(state, dict):
        raise ShadowError(400, "State node must be an object")
    sections: dict[str, Any] = {}
    for section in SECTIONS:
        if section not in state:
            continue
        value = state[section]
        if value is not None and not isinstance(value, dict):
            raise ShadowError(400, f"{section.capitalize()} node must be an object")
        if value is not None:
            _check_node(value, 1, limits)
        sections[section] = value
    return UpdateRequest(sections, client_token, version)


def _check_node(value: Json, depth: int, limits: Limits) -> None:
    if depth > limits.max_depth:
        raise ShadowError(400, f"JSON contains too many levels of nesting; maximum is {limits.max_depth}")
    if isinstance(value, dict):
        for child in value.values():
            if isinstance(child, dict | list):
                _check_node(child, depth + 1, limits)
    elif isinstance(value, list):
        for item in value:
            if item is None:
                raise ShadowError(400, "State contains an invalid node")
            if isinstance(item, dict | list):
                _check_node(item, depth + 1, limits)


def _merge(
    target: dict[str, Any], changes: dict[str, Any], metadata: dict[str, Any], stamp: dict[str, int]
) -> None:
    """Apply ``changes`` to ``target`` in place, stamping each touched leaf in ``metadata``."""
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
            metadata.pop(key, None)
        elif isinstance(value, dict):
            child = target.get(key)
            if not isinstance(child, dict):
                child = target[key] = {}
                metadata[key] = {}
            child_metadata = metadata.get(key)
            if not isinstance(child_metadata, dict):
                child_metadata = metadata[key] = {}
            _merge(child, value, child_metadata, stamp)
        else:
            target[key] = value
            metadata[key] = dict(stamp)


def touched_metadata(changes: dict[str, Any], stamp: dict[str, int]) -> dict[str, Any]:
    """The metadata of ``/update/accepted``: a timestamp for every leaf the request names."""
    result: dict[str, Any] = {}
    for key, value in changes.items():
        result[key] = touched_metadata(value, stamp) if isinstance(value, dict) and value else dict(stamp)
    return result


def document_size(state: dict[str, Any]) -> int:
    return len(
        json.dumps({key: state.get(key) for key in SECTIONS if key in state}, separators=(",", ":")).encode()
    )


def apply_update(shadow: Shadow, request: UpdateRequest, now: int, limits: Limits) -> Shadow:
    """The shadow after ``request`` (a new object), or ``ShadowError``; ``shadow`` is not changed."""
    if request.version is not None and request.version != shadow.version:
        raise ShadowError(409, "Version conflict")
    state = json.loads(json.dumps(shadow.state or {}))
    metadata = json.loads(json.dumps(shadow.metadata if shadow.exists else {}))
    stamp = {"timestamp": now}
    for section, changes in (request.state or {}).items():
        if changes is None:
            state.pop(section, None)
            metadata.pop(section, None)
            continue
        target = state.setdefault(section, {})
        _merge(target, changes, metadata.setdefault(section, {}), stamp)
    if document_size(state) > limits.max_document_bytes:
        raise ShadowError(413, "The payload exceeds the maximum size allowed")
    return Shadow(state=state, metadata=metadata, version=shadow.version + 1)


def delta(desired: Json, reported: Json) -> dict[str, Any]:
    """Every desired leaf that differs from reported (missing from it included), keeping its path."""
    if not isinstance(desired, dict):
        return {}
    result: dict[str, Any] = {}
    for key, wanted in desired.items():
        if not isinstance(reported, dict) or key not in reported:
            result[key] = wanted
            continue
        actual = reported[key]
        if isinstance(wanted, dict) and isinstance(actual, dict):
            nested = delta(wanted, actual)
            if nested:
                result[key] = nested
        elif not same_value(wanted, actual):
            result[key] = wanted
    return result


def same_value(a: Json, b: Json) -> bool:
    """JSON equality: unlike Python's ``==``, ``true`` is not ``1`` and ``false`` is not ``0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b  # True and False are singletons
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same_value, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_value(a[key], b[key]) for key in a)
    return bool(a == b)


def delta_metadata(difference: dict[str, Any], metadata: Json) -> dict[str, Any]:
    """The desired metadata of the leaves in ``difference``.

    Walks the difference, not the metadata: a non-empty object in the difference
    is an object in desired, whose metadata is per key (one of which may well be
    named "timestamp").
    """
    result: dict[str, Any] = {}
    for key, value in difference.items():
        entry = metadata.get(key) if isinstance(metadata, dict) else None
        if isinstance(value, dict) and value and isinstance(entry, dict):
            result[key] = delta_metadata(value, entry)
        elif entry is not None:
            result[key] = entry
    return result
