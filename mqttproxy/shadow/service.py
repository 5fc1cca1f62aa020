"""The shadow service: AWS IoT shadow requests over MQTT (and REST), answered through the local router.

A dispatch hook picks ``$aws/things/{thing}/shadow[/name/{shadow}]/{get,update,delete}``
out of the message flow and hands each to a task; the device path never
waits. Requests for one shadow are serialized, different shadows proceed
side by side. An accepted update is stored before ``/update/accepted`` is
published. Responses go out as QoS 1 messages through the broker's dispatch
point, so every subscriber (a device's persistent session included) gets
them; a route would be needed to forward them upstream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mqttproxy.broker.message import Message
from mqttproxy.shadow.document import (
    SECTIONS,
    Limits,
    Shadow,
    ShadowError,
    UpdateRequest,
    apply_update,
    client_token_of,
    delta,
    delta_metadata,
    echoed_client_token,
    parse_json,
    parse_update,
    touched_metadata,
)
from mqttproxy.shadow.store import ShadowStore
from mqttproxy.storage import Database

logger = logging.getLogger(__name__)

TOPIC_PREFIX = "$aws/things/"
_REQUEST = re.compile(r"^\$aws/things/([^/]+)/shadow(?:/name/([^/]+))?/(get|update|delete)$")
THING_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")
SHADOW_NAME = re.compile(r"^[a-zA-Z0-9:_-][$a-zA-Z0-9:_-]{0,63}$")  # "$..." names are reserved
MAX_IN_FLIGHT = 10  # requests per connection, as AWS IoT allows
_MAX_PENDING = 10_000  # requests queued in all, before new ones are refused


@dataclass(frozen=True, slots=True)
class ShadowKey:
    thing: str
    name: str  # "" for the classic shadow

    @property
    def prefix(self) -> str:
        base = f"$aws/things/{self.thing}/shadow"
        return f"{base}/name/{self.name}" if self.name else base

    def missing(self) -> ShadowError:
        if self.name:
            return ShadowError(404, f"No shadow exists with name: {self.name}")
        return ShadowError(404, "Thing not found")


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # requests holding or waiting for the lock


def check_names(thing: str, name: str) -> None:
    if not THING_NAME.match(thing):
        raise ShadowError(400, "Invalid thing name")
    if name and not SHADOW_NAME.match(name):
        raise ShadowError(400, "Invalid shadow name")


class ShadowService:
    def __init__(self, database: Database, *, dispatch: Callable[[Message], None], limits: Limits) -> None:
        self._store = ShadowStore(database)
        self._dispatch = dispatch
        self.limits = limits
        self._locks: dict[ShadowKey, _KeyLock] = {}
        self._in_flight: defaultdict[str, int] = defaultdict(int)
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.rejected = 0

    # --- the dispatch hook --------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        topic = message.topic
        if not topic.startswith(TOPIC_PREFIX) or message.source == "shadow":
            return
        match = _REQUEST.match(topic)
        if match is None:
            return
        thing, name, operation = match.group(1), match.group(2) or "", match.group(3)
        key = ShadowKey(thing, name)
        if self._in_flight[message.source] >= MAX_IN_FLIGHT or len(self._tasks) >= _MAX_PENDING:
            self._reject(key, operation, ShadowError(429, "Too many requests"), message.payload)
            return
        self._in_flight[message.source] += 1
        task = asyncio.get_running_loop().create_task(self._serve(key, operation, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, key: ShadowKey, operation: str, message: Message) -> None:
        try:
            await self.handle(key, operation, message.payload)
        finally:
            remaining = self._in_flight[message.source] - 1
            if remaining:
                self._in_flight[message.source] = remaining
            else:
                del self._in_flight[message.source]

    async def stop(self) -> None:
        """Let requests already taken finish (they are short), so nothing accepted is lost."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    # --- requests -------------------------------------------------------------------------

    async def handle(self, key: ShadowKey, operation: str, payload: bytes) -> dict[str, Any] | ShadowError:
        """Serve one request and publish its responses; return the accepted document or the error."""
        self.requests += 1
        try:
            check_names(key.thing, key.name)
            async with self._serialized(key):
                if operation == "update":
                    return await self._update(key, parse_update(payload, self.limits))
                if operation == "get":
                    document = parse_json(payload) if payload.strip() else None
                    return await self._get(key, client_token_of(document, self.limits))
                # The delete payload is ignored, except for a clientToken to echo.
                return await self._delete(key, echoed_client_token(payload, self.limits))
        except ShadowError as error:
            self._reject(key, operation, error, payload)
            return error
        except Exception:
            # E.g. the database failed (accepted responses go out only after the save).
            logger.exception("shadow %s %s failed", key.prefix, operation)
            failure = ShadowError(500, "Internal service failure")
            self._reject(key, operation, failure, payload)
            return failure

    @asynccontextmanager
    async def _serialized(self, key: ShadowKey) -> AsyncIterator[None]:
        """One request of a shadow at a time.

        A shadow's lock stays in the table exactly while requests hold or
        wait for it, so the table stays small and a lock being handed to a
        waiter is never replaced by a fresh one (which would let two updates
        of one shadow run together).
        """
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[key]

    async def _update(self, key: ShadowKey, request: UpdateRequest) -> dict[str, Any]:
        now = int(time.time())
        current = await self._store.load(key.thing, key.name)
        updated = apply_update(current, request, now, self.limits)
        await self._store.save(key.thing, key.name, updated)  # durable before it is announced
        accepted: dict[str, Any] = {
            "state": request.state or {},
            "metadata": touched_metadata(request.state or {}, {"timestamp": now}),
            "version": updated.version,
            "timestamp": now,
        }
        self._publish(key.prefix + "/update/accepted", _with_token(accepted, request.client_token))
        self._publish_delta(key, updated, now, request.client_token)
        documents = {
            "previous": _document(current, version=updated.version - 1),
            "current": _document(updated, version=updated.version),
            "timestamp": now,
        }
        self._publish(key.prefix + "/update/documents", _with_token(documents, request.client_token))
        return accepted

    def _publish_delta(self, key: ShadowKey, shadow: Shadow, now: int, client_token: str | None) -> None:
        state = shadow.state or {}
        difference = delta(state.get("desired"), state.get("reported"))
        if not difference:
            return
        body = {
            "state": difference,
            "metadata": delta_metadata(difference, shadow.metadata.get("desired", {})),
            "version": shadow.version,
            "timestamp": now,
        }
        self._publish(key.prefix + "/update/delta", _with_token(body, client_token))

    async def _get(self, key: ShadowKey, client_token: str | None) -> dict[str, Any]:
        shadow = await self._store.load(key.thing, key.name)
        if not shadow.exists:
            raise key.missing()
        body = get_document(shadow)
        self._publish(key.prefix + "/get/accepted", _with_token(body, client_token))
        return body

    async def _delete(self, key: ShadowKey, client_token: str | None) -> dict[str, Any]:
        shadow = await self._store.load(key.thing, key.name)
        if not shadow.exists:
            raise key.missing()
        await self._store.delete(key.thing, key.name, shadow.version)
        body = {"version": shadow.version, "timestamp": int(time.time())}
        self._publish(key.prefix + "/delete/accepted", _with_token(body, client_token))
        return body

    @staticmethod
    def now() -> int:
        return int(time.time())

    def _reject(self, key: ShadowKey, operation: str, error: ShadowError, payload: bytes) -> None:
        self.rejected += 1
        error.timestamp = int(time.time())
        error.client_token = echoed_client_token(payload, self.limits)
        self._publish(f"{key.prefix}/{operation}/rejected", error.body(error.timestamp))

    def _publish(self, topic: str, body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self._dispatch(Message(topic, payload, 1, False, "shadow", time.monotonic()))

    # --- for the REST API and the dashboard -------------------------------------------------

    async def things(self) -> list[str]:
        return await self._store.things()

    async def named_shadows(self, thing: str, *, page_size: int, after: str | None) -> list[str]:
        return await self._store.names(thing, page_size=page_size, after=after)

    async def document(self, thing: str, name: str) -> dict[str, Any]:
        check_names(thing, name)
        shadow = await self._store.load(thing, name)
        if not shadow.exists:
            raise ShadowKey(thing, name).missing()
        return get_document(shadow)


def get_document(shadow: Shadow) -> dict[str, Any]:
    """The ``/get/accepted`` body: state with its delta, metadata, version, timestamp."""
    state = {section: value for section, value in (shadow.state or {}).items() if section in SECTIONS}
    difference = delta(state.get("desired"), state.get("reported"))
    if difference:
        state["delta"] = difference
    metadata = {section: shadow.metadata[section] for section in SECTIONS if section in shadow.metadata}
    return {"state": state, "metadata": metadata, "version": shadow.version, "timestamp": int(time.time())}


def _document(shadow: Shadow, *, version: int) -> dict[str, Any]:
    state = shadow.state or {}
    return {
        "state": {section: state[section] for section in SECTIONS if section in state},
        "metadata": {section: shadow.metadata[section] for section in SECTIONS if section in shadow.metadata},
        "version": version,
    }


def _with_token(body: dict[str, Any], client_token: str | None) -> dict[str, Any]:
    if client_token is not None:
        body["clientToken"] = client_token
    return body
