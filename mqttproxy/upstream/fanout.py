"""The fan-out service: every accepted message to every upstream that routes it.

Attaches to the broker's dispatch point as one hook, owns one ``Link`` per
broker record, and is the service API the web layer uses to add, change,
pause and remove upstreams at run time. Each change is saved to
``brokers.json`` first and touches only its own link.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mqttproxy.broker.message import Message
from mqttproxy.errors import MqttProxyError
from mqttproxy.upstream.client import UpstreamClient, UpstreamError
from mqttproxy.upstream.link import Link
from mqttproxy.upstream.models import BrokerRecord, BrokerSettings
from mqttproxy.upstream.store import BrokerStore

logger = logging.getLogger(__name__)

STATUS_TOPIC = "$SYS/mqttproxy/brokers/{id}/state"
_SHUTDOWN_FLUSH = 5.0  # seconds connected links get to deliver their queues on stop


class BrokerNotFound(MqttProxyError):
    def __init__(self, broker_id: str) -> None:
        super().__init__(f"no upstream broker with id {broker_id!r}")
        self.broker_id = broker_id


class BrokerExists(MqttProxyError):
    def __init__(self, broker_id: str) -> None:
        super().__init__(f"an upstream broker with id {broker_id!r} already exists")
        self.broker_id = broker_id


@dataclass(frozen=True, slots=True)
class ConnectionTest:
    """What ``test_connection`` found out."""

    ok: bool
    address: str
    message: str
    seconds: float


class FanOut:
    def __init__(
        self,
        *,
        store: BrokerStore,
        gateway_id: str,
        connect_timeout: float,
        dispatch: Callable[[Message], None],
    ) -> None:
        self._store = store
        self._gateway_id = gateway_id
        self._connect_timeout = connect_timeout
        self._dispatch = dispatch
        self._records: dict[str, BrokerRecord] = {}
        self._links: dict[str, Link] = {}
        # A tuple, rebuilt on change: the hot path iterates it without copying.
        self._active: tuple[Link, ...] = ()
        self._lock = asyncio.Lock()

    def load(self) -> None:
        """Read ``brokers.json`` (raises ``ConfigError`` naming file, line and field)."""
        self._records = {record.id: record for record in self._store.load()}

    async def start(self) -> None:
        for record in self._records.values():
            self._add_link(record)
        logger.info("fan-out to %d upstream broker(s) from %s", len(self._records), self._store.path)

    async def stop(self) -> None:
        """Give connected links a moment to deliver their queues, then disconnect all."""
        links = list(self._links.values())
        await asyncio.gather(*(link.flush(_SHUTDOWN_FLUSH) for link in links))
        self._active = ()
        await asyncio.gather(*(link.stop() for link in links))
        self._links.clear()

    # --- the dispatch hook ---------------------------------------------------------

    def on_message(self, message: Message) -> None:
        for link in self._active:
            link.offer(message)

    # --- the service API --------------------------------------------------------------

    def records(self) -> list[BrokerRecord]:
        return list(self._records.values())

    def record(self, broker_id: str) -> BrokerRecord:
        try:
            return self._records[broker_id]
        except KeyError:
            raise BrokerNotFound(broker_id) from None

    def status(self, broker_id: str) -> dict[str, Any]:
        self.record(broker_id)
        return self._links[broker_id].status()

    def statuses(self) -> list[dict[str, Any]]:
        return [link.status() for link in self._links.values()]

    @property
    def links(self) -> list[Link]:
        return list(self._links.values())

    async def add(self, record: BrokerRecord) -> BrokerRecord:
        """Store a new upstream and connect to it now."""
        async with self._lock:
            if record.id in self._records:
                raise BrokerExists(record.id)
            await self._save({**self._records, record.id: record})
            self._add_link(record)
            logger.info("upstream %s added (%s:%d)", record.id, record.address, record.port)
            return record

    async def update(self, broker_id: str, settings: BrokerSettings) -> BrokerRecord:
        """Apply new settings: the link reconnects with them and keeps its queue."""
        async with self._lock:
            self.record(broker_id)
            record = BrokerRecord.create(broker_id, settings)
            await self._save({**self._records, broker_id: record})
            link = self._links[broker_id]
            await link.reconfigure(record)
            self._publish_state(link)
            logger.info("upstream %s updated", broker_id)
            return record

    async def delete(self, broker_id: str) -> None:
        """Disconnect gracefully and forget the upstream and its queue."""
        async with self._lock:
            self.record(broker_id)
            remaining = {key: value for key, value in self._records.items() if key != broker_id}
            await self._save(remaining)
            link = self._links.pop(broker_id)
            self._rebuild_active()
            await link.stop()
            dropped = link.discard_queue("removed")
            # Clear the retained status message [MQTT-3.3.1-10].
            self._dispatch(
                Message(STATUS_TOPIC.format(id=broker_id), b"", 0, True, "broker", time.monotonic())
            )
            logger.info("upstream %s removed (%d queued messages discarded)", broker_id, dropped)

    async def set_enabled(self, broker_id: str, enabled: bool) -> BrokerRecord:
        """Pause (disconnect, stop queueing) or resume an upstream."""
        async with self._lock:
            current = self.record(broker_id)
            if current.enabled == enabled:
                return current
            record = current.model_copy(update={"enabled": enabled})
            await self._save({**self._records, broker_id: record})
            link = self._links[broker_id]
            await link.reconfigure(record)
            if not enabled:
                link.discard_queue("disabled")
            self._publish_state(link)
            logger.info("upstream %s %s", broker_id, "resumed" if enabled else "paused")
            return record

    async def toggle(self, broker_id: str) -> BrokerRecord:
        return await self.set_enabled(broker_id, not self.record(broker_id).enabled)

    async def test_connection(self, settings: BrokerSettings) -> ConnectionTest:
        """Try to connect with ``settings`` (each address in turn) without saving anything."""
        client = UpstreamClient(
            # Its own client id, or the test would take over the live link's session.
            client_id=f"{settings.client_id_prefix}-{self._gateway_id}-test",
            settings=settings.model_copy(update={"clean_session": True}),
            on_message=lambda *_: None,
            on_complete=lambda _: None,
            on_pubrec=lambda _: None,
            on_lost=lambda: None,
        )
        errors = []
        started = time.monotonic()
        for host, port in settings.addresses():
            try:
                await client.connect(host, port, timeout=self._connect_timeout)
            except UpstreamError as exc:
                errors.append(str(exc))
                continue
            await client.disconnect()
            return ConnectionTest(True, f"{host}:{port}", "connected", time.monotonic() - started)
        return ConnectionTest(False, "", "; ".join(errors), time.monotonic() - started)

    # --- internals ---------------------------------------------------------------------

    async def _save(self, records: dict[str, BrokerRecord]) -> None:
        # Saved first: if the disk refuses, nothing changes and the caller hears why.
        await asyncio.to_thread(self._store.save, list(records.values()))
        self._records = records

    def _add_link(self, record: BrokerRecord) -> None:
        link = Link(
            record,
            gateway_id=self._gateway_id,
            connect_timeout=self._connect_timeout,
            deliver=self._dispatch,
            on_state=self._publish_state,
        )
        self._links[record.id] = link
        self._rebuild_active()
        link.start()  # publishes "connecting" as it starts
        if not record.enabled:
            self._publish_state(link)

    def _rebuild_active(self) -> None:
        self._active = tuple(self._links.values())

    def _publish_state(self, link: Link) -> None:
        """The link's status as a retained message on ``$SYS/mqttproxy/brokers/{id}/state``."""
        if link.id not in self._links:
            return
        self._dispatch(
            Message(STATUS_TOPIC.format(id=link.id), link.status_json(), 0, True, "broker", time.monotonic())
        )
