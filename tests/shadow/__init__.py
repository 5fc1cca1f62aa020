"""Device shadow tests, against the AWS IoT shadow contract (README.md, "Device shadows").

``test_document`` checks the pure functions with tables taken from the
contract; ``test_mqtt`` and ``test_rest`` drive a whole gateway with real
clients. ``ShadowClient`` below is the paho side of those: one connection
subscribed to the response topics of the shadows it watches, keeping every
response it has not yet been asked about, so a test can wait for one kind
(``update/delta``) without caring how it interleaves with the others.
"""

from __future__ import annotations

import json
import queue
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.helpers import TIMEOUT, PahoClient, ThreadedGateway, paho_client

RESPONSE_TOPIC = re.compile(
    r"^\$aws/things/([^/]+)/shadow(?:/name/([^/]+))?/((?:get|update|delete)/(?:accepted|rejected|delta|documents))$"
)


def prefix(thing: str, name: str = "") -> str:
    base = f"$aws/things/{thing}/shadow"
    return f"{base}/name/{name}" if name else base


def request_bytes(body: dict[str, Any] | bytes | None) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Response:
    thing: str
    name: str  # "" for the classic shadow
    kind: str  # "update/accepted", "update/delta", ...
    body: dict[str, Any]
    qos: int

    @property
    def token(self) -> str | None:
        token = self.body.get("clientToken")
        assert token is None or isinstance(token, str)
        return token


@dataclass
class ShadowClient:
    """A paho client on the gateway that publishes shadow requests and collects the responses."""

    mqtt: PahoClient
    unclaimed: list[Response] = field(default_factory=list)

    @classmethod
    def connect(cls, port: int, client_id: str = "", **options: Any) -> ShadowClient:
        return cls(paho_client(port, client_id, **options))

    def watch(self, thing: str, name: str = "", qos: int = 1) -> None:
        """Subscribe to every response topic of one shadow (all must be granted)."""
        base = prefix(thing, name)
        for topic_filter in (f"{base}/+/accepted", f"{base}/+/rejected", f"{base}/update/delta"):
            assert self.mqtt.subscribe(topic_filter, qos) == [qos], topic_filter
        assert self.mqtt.subscribe(f"{base}/update/documents", qos) == [qos]

    def publish(
        self, thing: str, operation: str, body: dict[str, Any] | bytes | None = None, name: str = ""
    ) -> None:
        self.mqtt.publish(f"{prefix(thing, name)}/{operation}", request_bytes(body), qos=1)

    def _take(self, timeout: float) -> Response:
        message = self.mqtt.messages.get(timeout=timeout)
        match = RESPONSE_TOPIC.match(message.topic)
        assert match is not None, f"not a shadow response topic: {message.topic}"
        body = json.loads(message.payload)
        assert isinstance(body, dict), message.payload
        return Response(match.group(1), match.group(2) or "", match.group(3), body, message.qos)

    def wait_for(
        self,
        *kinds: str,
        thing: str | None = None,
        name: str | None = None,
        token: str | None = None,
        timeout: float = TIMEOUT,
    ) -> Response:
        """The first response (kept or new) of one of ``kinds`` matching the filters; it is claimed."""

        def wanted(response: Response) -> bool:
            return (
                response.kind in kinds
                and (thing is None or response.thing == thing)
                and (name is None or response.name == name)
                and (token is None or response.token == token)
            )

        for index, response in enumerate(self.unclaimed):
            if wanted(response):
                return self.unclaimed.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                response = self._take(max(0.0, remaining))
            except queue.Empty:
                seen = [(r.thing, r.name, r.kind, r.token) for r in self.unclaimed]
                raise AssertionError(f"no {kinds} for {thing}/{name} token {token}; kept: {seen}") from None
            if wanted(response):
                return response
            self.unclaimed.append(response)

    def request(
        self, thing: str, operation: str, body: dict[str, Any] | bytes | None = None, name: str = ""
    ) -> Response:
        """Publish one request and wait for its ``accepted`` or ``rejected``."""
        token = body.get("clientToken") if isinstance(body, dict) else None
        self.publish(thing, operation, body, name)
        return self.wait_for(
            f"{operation}/accepted", f"{operation}/rejected", thing=thing, name=name, token=token
        )

    def get(self, thing: str, name: str = "") -> Response:
        return self.request(thing, "get", None, name)

    def drain(self) -> list[Response]:
        """Everything received so far and not claimed (without waiting)."""
        while True:
            try:
                self.unclaimed.append(self._take(0))
            except queue.Empty:
                break
        kept, self.unclaimed = self.unclaimed, []
        return kept

    def kinds_seen(self, thing: str, name: str = "") -> list[str]:
        """Kinds of the unclaimed responses of one shadow, after draining what has arrived."""
        kept = self.drain()
        self.unclaimed = kept
        return [r.kind for r in kept if r.thing == thing and r.name == name]

    def disconnect(self) -> None:
        self.mqtt.disconnect()


def epoch_now_range(started: float) -> range:
    """Epoch seconds a timestamp taken since ``started`` may have (inclusive)."""
    return range(int(started), int(time.time()) + 1)


def leaf_metadata(state: Any, stamp: dict[str, int]) -> Any:
    """The metadata the contract gives ``state``: ``stamp`` for every leaf, arrays being leaves."""
    if isinstance(state, dict) and state:
        return {key: leaf_metadata(value, stamp) for key, value in state.items()}
    return dict(stamp)


@contextmanager
def failing_database(gateway: ThreadedGateway, method: str) -> Iterator[None]:
    """Make the gateway's ``Database.<method>`` fail for statements on the shadows table.

    A fault a real disk does not produce on demand; everything else still
    goes to the real database.
    """
    assert gateway.gateway is not None
    database = gateway.gateway.database
    original = getattr(database, method)

    async def failing(sql: str, params: Any = ()) -> Any:
        if " shadows " in f" {sql} ":
            raise sqlite3.OperationalError("disk I/O error")
        return await original(sql, params)

    gateway.call(lambda: setattr(database, method, failing))
    try:
        yield
    finally:
        gateway.call(lambda: delattr(database, method))
