"""One link to one upstream broker: a bounded queue, drained in order, over a reconnecting client.

``offer`` is on the hot path: it routes the message, appends it to the queue
and returns; it never awaits and never touches the socket. A drain callback,
scheduled at most once per loop iteration, encodes what the in-flight window
allows and writes it in one batch. A slow or dead upstream fills only its
own queue; when the queue is full the policy drops the oldest (or newest)
message and counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from enum import Enum
from typing import Any

from mqttproxy.broker.message import Message
from mqttproxy.metrics import LatencyHistogram
from mqttproxy.protocol.codec import publish_bytes
from mqttproxy.upstream.client import (
    HOP_PROPERTY,
    UpstreamClient,
    UpstreamError,
    UpstreamRefused,
    hop_properties,
)
from mqttproxy.upstream.models import BrokerRecord
from mqttproxy.upstream.routes import RouteTable

logger = logging.getLogger(__name__)

_DRAIN_BATCH = 2_000  # PUBLISH packets encoded per drain before yielding the loop
_HIGH_WATER = 1024 * 1024  # bytes in the socket buffer before draining waits
_RETRY_DRAIN = 0.005  # seconds to wait for the socket buffer to empty
_SETTLE_TIMEOUT = 2.0  # seconds a stopping link waits for its in-flight acks
_STABLE_CONNECTION = 30.0  # seconds connected after which the backoff starts afresh
_FULL_QUEUE_LOG_INTERVAL = 60.0  # seconds between "queue full" warnings of one link
_BACKOFF_DOUBLINGS = 64  # beyond it the backoff delay stops growing


class LinkState(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    DISABLED = "disabled"
    ERROR = "error"


class Pending:
    """A message waiting for, or in flight to, the upstream."""

    __slots__ = (
        "packet_id",
        "payload",
        "qos",
        "received_at",
        "released",
        "retain",
        "sent_at",
        "size",
        "topic",
    )

    def __init__(self, topic: bytes, payload: bytes, qos: int, retain: bool, received_at: float) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.received_at = received_at
        self.size = len(topic) + len(payload)
        self.packet_id = 0
        self.sent_at = 0.0
        self.released = False  # QoS 2: PUBREC received, PUBREL sent


class Link:
    """Everything the gateway does for one upstream broker."""

    def __init__(
        self,
        record: BrokerRecord,
        *,
        gateway_id: str,
        connect_timeout: float,
        deliver: Callable[[Message], None],
        on_state: Callable[[Link], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.id = record.id
        self._gateway_id = gateway_id
        self._connect_timeout = connect_timeout
        self._deliver = deliver
        self._on_state = on_state
        self._source = f"upstream:{record.id}"
        self._queue: deque[Pending] = deque()
        self._queued_bytes = 0
        self._inflight: dict[int, Pending] = {}
        self._window = 1
        self._drain_scheduled = False
        self._full_reported_at = -_FULL_QUEUE_LOG_INTERVAL
        self._holding = False  # set while stopping: send nothing new
        self._client: UpstreamClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._ack_timer: asyncio.TimerHandle | None = None
        self._lost = asyncio.Event()
        # status
        self.state = LinkState.DISABLED
        self.address: str | None = None
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self.connections = 0
        self.forwarded = 0
        self.received = 0
        self.republished = 0
        self.dropped: Counter[str] = Counter()
        self.latency = LatencyHistogram()
        self._apply(record)

    def _apply(self, record: BrokerRecord) -> None:
        self.record = record
        self._outbound: RouteTable = record.outbound()
        self._inbound: RouteTable = record.inbound()
        self._enabled = record.enabled
        self._max_qos = record.max_qos
        self._max_messages = record.queue_max_messages
        self._max_bytes = record.queue_max_bytes
        self._drop_newest = record.drop_policy == "newest"
        self._properties = hop_properties(self._gateway_id) if record.mqtt_version == "5" else b""

    # --- the hot path -----------------------------------------------------------

    def offer(self, message: Message) -> None:
        """Queue ``message`` if a route sends it to this upstream. Never blocks."""
        if message.source == self._source:
            return  # came from this upstream: never send it back
        resolved = self._outbound.resolve(message.topic)
        if resolved is None:
            return
        if not self._enabled:
            self.dropped["disabled"] += 1
            return
        qos = min(message.qos, resolved.max_qos, self._max_qos)
        entry = Pending(
            resolved.topic_bytes,
            message.payload,
            qos,
            message.retain and resolved.retain,
            message.received_at,
        )
        queue = self._queue
        if len(queue) >= self._max_messages or self._queued_bytes + entry.size > self._max_bytes:
            self._report_full_queue()
            if self._drop_newest or entry.size > self._max_bytes:
                self.dropped["queue_full"] += 1
                return
            while queue and (
                len(queue) >= self._max_messages or self._queued_bytes + entry.size > self._max_bytes
            ):
                self._queued_bytes -= queue.popleft().size
                self.dropped["queue_full"] += 1
        queue.append(entry)
        self._queued_bytes += entry.size
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _report_full_queue(self) -> None:
        """Log that the queue overflows: the first time, then at most once a minute."""
        now = self._loop.time()
        if now - self._full_reported_at < _FULL_QUEUE_LOG_INTERVAL:
            return
        self._full_reported_at = now
        logger.warning(
            "upstream %s: queue full (%d messages, %d bytes; state %s): dropping the %s messages, "
            "%d dropped so far",
            self.id,
            len(self._queue),
            self._queued_bytes,
            self.state.value,
            "newest" if self._drop_newest else "oldest",
            self.dropped["queue_full"],
        )

    def _schedule_drain(self, delay: float = 0.0) -> None:
        if self._drain_scheduled:
            return
        self._drain_scheduled = True
        if delay:
            self._loop.call_later(delay, self._drain)
        else:
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        client = self._client
        if client is None or not client.connected or not self._queue or self._holding:
            return
        if client.write_buffer_size() > _HIGH_WATER:
            self._schedule_drain(_RETRY_DRAIN)  # the upstream reads slowly: let the socket empty
            return
        queue = self._queue
        inflight = self._inflight
        window = self._window
        properties = self._properties
        now = self._loop.time()
        out = []
        budget = _DRAIN_BATCH
        while queue and budget:
            entry = queue[0]
            if entry.qos:
                if len(inflight) >= window:
                    break
                entry.packet_id = client.next_packet_id()
                entry.sent_at = now
                inflight[entry.packet_id] = entry
                packet_id: int | None = entry.packet_id
            else:
                packet_id = None
                self.forwarded += 1
                self.latency.observe(now - entry.received_at)
            queue.popleft()
            self._queued_bytes -= entry.size
            out.append(
                publish_bytes(
                    entry.topic, entry.payload, entry.qos, entry.retain, False, packet_id, properties
                )
            )
            budget -= 1
        if out:
            client.write(b"".join(out))
        if queue and not budget:
            self._schedule_drain()

    # --- acknowledgements --------------------------------------------------------

    def _on_complete(self, packet_id: int) -> None:
        entry = self._inflight.pop(packet_id, None)
        if entry is None:
            return
        self.forwarded += 1
        self.latency.observe(self._loop.time() - entry.received_at)
        if self._queue:
            self._schedule_drain()

    def _on_pubrec(self, packet_id: int) -> None:
        entry = self._inflight.get(packet_id)
        if entry is not None:
            entry.released = True

    def _check_acks(self) -> None:
        """Send again what the upstream has not acknowledged within ``ack_timeout``."""
        self._ack_timer = None
        client = self._client
        if client is None or not client.connected:
            return
        now = self._loop.time()
        overdue = [
            entry for entry in self._inflight.values() if now - entry.sent_at >= self.record.ack_timeout
        ]
        if overdue and client.mqtt5:
            # MQTT 5 forbids resending within a session: reconnect, and the
            # session resumption sends them again.
            logger.warning("upstream %s: %d messages unacknowledged, reconnecting", self.id, len(overdue))
            client.abort()
            return
        if overdue:
            client.write(b"".join(self._resend_bytes(entry) for entry in overdue))
            for entry in overdue:
                entry.sent_at = now
            self.republished += len(overdue)
        self._arm_ack_timer()

    def _arm_ack_timer(self) -> None:
        if self._ack_timer is None:
            self._ack_timer = self._loop.call_later(min(self.record.ack_timeout / 2, 5.0), self._check_acks)

    def _resend_bytes(self, entry: Pending) -> bytes:
        if entry.released:
            return bytes((0x62, 2, entry.packet_id >> 8, entry.packet_id & 0xFF))
        return publish_bytes(
            entry.topic, entry.payload, entry.qos, entry.retain, True, entry.packet_id, self._properties
        )

    # --- inbound (bridge-in) ------------------------------------------------------

    def _on_inbound(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict[str, Any]
    ) -> None:
        for name, value in properties.get("user_property", ()):
            if name == HOP_PROPERTY and value == self._gateway_id:
                return  # our own message, come back round
        resolved = self._inbound.resolve(topic)
        if resolved is None:
            return
        self.received += 1
        self._deliver(
            Message(
                resolved.topic,
                payload,
                min(qos, resolved.max_qos),
                retain and resolved.retain,
                self._source,
                self._loop.time(),
            )
        )

    # --- connection lifecycle ---------------------------------------------------

    def start(self) -> None:
        """Connect (and keep connecting) unless the record is disabled."""
        if not self.record.enabled:
            self._set_state(LinkState.DISABLED)
            return
        if self._task is None:
            self._task = self._loop.create_task(self._run(), name=f"upstream-{self.id}")
            self._set_state(LinkState.CONNECTING)

    async def stop(self) -> None:
        """Disconnect gracefully and stop reconnecting; the queue is kept.

        Sending pauses first and the in-flight window gets a moment to be
        acknowledged, so a reconfigured link does not send those messages twice.
        """
        self._holding = True
        await self._settle(_SETTLE_TIMEOUT)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.disconnect()
        self._requeue_inflight(client)
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self.connected_since = None
        self._holding = False
        self._set_state(LinkState.DISABLED)

    async def _settle(self, timeout: float) -> None:
        deadline = self._loop.time() + timeout
        client = self._client
        while self._inflight and client is not None and client.connected and self._loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    def discard_queue(self, reason: str) -> int:
        """Drop everything queued (the upstream was removed or disabled); return how many."""
        count = len(self._queue) + len(self._inflight)
        self._queue.clear()
        self._inflight.clear()
        self._queued_bytes = 0
        if count:
            self.dropped[reason] += count
        return count

    async def reconfigure(self, record: BrokerRecord) -> None:
        """Apply new settings: reconnect with them, keeping the queue."""
        await self.stop()
        self._apply(record)
        self.start()

    async def flush(self, timeout: float) -> None:
        """Wait until the queue and the in-flight window are empty, or ``timeout`` passes."""
        deadline = self._loop.time() + timeout
        # Shutdown only: polling keeps event bookkeeping off the ack path.
        while self._busy() and self._loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def _busy(self) -> bool:
        return bool(self._queue or self._inflight) and self.state is LinkState.CONNECTED

    async def _run(self) -> None:
        attempt = 0
        addresses = self.record.addresses()
        index = 0
        while True:
            host, port = addresses[index % len(addresses)]
            client = self._new_client()
            self.address = f"{host}:{port}"
            self._set_state(LinkState.CONNECTING)
            try:
                session_present = await client.connect(host, port, timeout=self._connect_timeout)
            except UpstreamError as exc:
                self.last_error = str(exc)
                logger.warning("upstream %s: %s", self.id, exc)
                index += 1
                if index % len(addresses) == 0:
                    delay = self._backoff(attempt)
                    attempt += 1
                    self._set_state(
                        LinkState.ERROR if isinstance(exc, UpstreamRefused) else LinkState.BACKOFF
                    )
                    await asyncio.sleep(delay)
                continue
            connected_at = self._loop.time()
            await self._connected(client, session_present)
            await self._lost.wait()
            self._disconnected()
            # An upstream that accepts and soon drops us again backs off like
            # one that refuses; a connection that lasted starts afresh.
            if self._loop.time() - connected_at >= _STABLE_CONNECTION:
                attempt = 0
            self._set_state(LinkState.BACKOFF)
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    def _new_client(self) -> UpstreamClient:
        if self._client is None:
            # One client for the link's life, so packet ids and the session
            # carry over reconnects; a new one after reconfigure.
            self._client = UpstreamClient(
                client_id=f"{self.record.client_id_prefix}-{self._gateway_id}",
                settings=self.record,
                on_message=self._on_inbound,
                on_complete=self._on_complete,
                on_pubrec=self._on_pubrec,
                on_lost=self._lost.set,
            )
        return self._client

    def _backoff(self, attempt: int) -> float:
        # Capped exponential backoff with jitter, so many gateways do not
        # reconnect to a recovering broker in lockstep. The exponent is capped
        # too: 2**1024 no longer converts to a float, and an upstream that is
        # away for a day makes more attempts than that.
        growth = 2 ** min(attempt, _BACKOFF_DOUBLINGS)
        ceiling = min(self.record.reconnect_max_delay, self.record.reconnect_min_delay * growth)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography

    async def _connected(self, client: UpstreamClient, session_present: bool) -> None:
        self._lost.clear()
        self.connections += 1
        self.connected_since = time.time()
        self.last_error = None
        self._window = max(1, min(self.record.max_inflight, client.receive_maximum))
        client.subscribe(
            [(rule.topic_filter, min(rule.max_qos, self._max_qos)) for rule in self._inbound.rules]
        )
        if session_present and not self.record.clean_session and self._inflight:
            # [MQTT-4.4.0-1] the session resumed: send the unacknowledged again, as they were.
            client.write(b"".join(self._resend_bytes(entry) for entry in self._inflight.values()))
            self.republished += len(self._inflight)
        else:
            self._requeue_inflight(client)
        logger.info(
            "upstream %s: connected to %s%s",
            self.id,
            self.address,
            " (session resumed)" if session_present else "",
        )
        self._set_state(LinkState.CONNECTED)
        self._arm_ack_timer()
        self._schedule_drain()

    def _disconnected(self) -> None:
        logger.warning("upstream %s: connection to %s lost", self.id, self.address)
        self.last_error = f"connection to {self.address} lost"
        self.connected_since = None
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None

    def _requeue_inflight(self, client: UpstreamClient | None) -> None:
        """Put unacknowledged messages back at the front of the queue, in their order."""
        if not self._inflight:
            return
        entries = list(self._inflight.values())
        self._inflight.clear()
        for entry in entries:
            if client is not None:
                client.free_packet_id(entry.packet_id)
            entry.released = False
            self._queued_bytes += entry.size
        self._queue.extendleft(reversed(entries))

    def _set_state(self, state: LinkState) -> None:
        if state is self.state:
            return
        self.state = state
        self._on_state(self)

    # --- status -----------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self.state is LinkState.CONNECTED

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def queue_bytes(self) -> int:
        return self._queued_bytes

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.record.name,
            "enabled": self.record.enabled,
            "state": self.state.value,
            "address": self.address,
            "last_error": self.last_error,
            "connected_since": self.connected_since,
            "reconnects": max(0, self.connections - 1),
            "forwarded": self.forwarded,
            "received": self.received,
            "republished": self.republished,
            "dropped": dict(self.dropped),
            "queue_depth": self.queue_depth,
            "queue_bytes": self.queue_bytes,
            "inflight": self.inflight,
        }

    def status_json(self) -> bytes:
        return json.dumps(self.status(), separators=(",", ":")).encode()
