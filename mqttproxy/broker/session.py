"""One client's session: subscriptions and the QoS 1/2 state that outlives a connection.

Owns the outgoing in-flight window and queue (server -> client) and the set of
QoS 2 packet identifiers received but not yet released (client -> server).
A persistent session (clean session 0) keeps all of it while the client is
offline [MQTT-3.1.2-4]; the broker decides when to discard it.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from mqttproxy.broker.message import Message
from mqttproxy.broker.stats import BrokerStats
from mqttproxy.protocol.codec import publish_bytes

_PUBREL = 0x62


class SessionConnection(Protocol):
    """What a session needs of the connection it is attached to."""

    @property
    def writing_paused(self) -> bool:
        """True while the client reads slower than we write (QoS 0 is then dropped)."""
        ...

    def write(self, data: bytes) -> None: ...


class Outgoing:
    """A QoS 1 or 2 message on its way to the client."""

    __slots__ = ("message", "packet_id", "qos", "released", "retain")

    def __init__(self, message: Message, qos: int, retain: bool) -> None:
        self.message = message
        self.qos = qos
        self.retain = retain
        self.packet_id = 0
        # QoS 2 only: PUBREC received and PUBREL sent, waiting for PUBCOMP.
        self.released = False


class Session:
    """State kept for one client id."""

    __slots__ = (
        "_last_packet_id",
        "awaiting_pubrel",
        "clean_session",
        "client_id",
        "connection",
        "inflight",
        "max_inflight",
        "max_queued",
        "queue",
        "stats",
        "subscriptions",
    )

    def __init__(
        self,
        *,
        client_id: str,
        clean_session: bool,
        max_inflight: int,
        max_queued: int,
        stats: BrokerStats,
    ) -> None:
        self.client_id = client_id
        self.clean_session = clean_session
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.stats = stats
        self.connection: SessionConnection | None = None
        self.subscriptions: dict[str, int] = {}
        # Insertion-ordered: redelivery must keep the original order [MQTT-4.4.0-1].
        self.inflight: dict[int, Outgoing] = {}
        self.queue: deque[Outgoing] = deque()
        self.awaiting_pubrel: set[int] = set()
        self._last_packet_id = 0

    def __repr__(self) -> str:
        return f"<Session {self.client_id!r}>"

    def deliver(self, message: Message, qos: int, *, retain: bool = False) -> None:
        """Send ``message`` at QoS 1 or 2 now, or queue it behind the in-flight window."""
        entry = Outgoing(message, qos, retain)
        if self.connection is not None and len(self.inflight) < self.max_inflight:
            self._send_new(entry)
            return
        if len(self.queue) >= self.max_queued:
            self.stats.dropped_queue_full += 1
            return
        self.queue.append(entry)

    def on_puback(self, packet_id: int) -> None:
        entry = self.inflight.get(packet_id)
        if entry is not None and entry.qos == 1:
            del self.inflight[packet_id]
            self.stats.messages_acknowledged += 1
            self._fill_window()

    def on_pubrec(self, packet_id: int) -> None:
        entry = self.inflight.get(packet_id)
        if entry is not None and entry.qos == 2:
            entry.released = True
        # Answer even an unknown identifier so the client can finish its
        # side of the flow (it may have been redelivered with DUP).
        if self.connection is not None:
            self.connection.write(bytes((_PUBREL, 2, packet_id >> 8, packet_id & 0xFF)))

    def on_pubcomp(self, packet_id: int) -> None:
        entry = self.inflight.get(packet_id)
        if entry is not None and entry.released:
            del self.inflight[packet_id]
            self.stats.messages_acknowledged += 1
            self._fill_window()

    def resume(self) -> None:
        """After (re)attaching a connection: redeliver the in-flight window, then the queue.

        [MQTT-4.4.0-1] unacknowledged PUBLISH packets go again with DUP set,
        PUBRELs go again as they were.
        """
        connection = self.connection
        if connection is None:
            return
        for entry in self.inflight.values():
            if entry.released:
                connection.write(bytes((_PUBREL, 2, entry.packet_id >> 8, entry.packet_id & 0xFF)))
            else:
                connection.write(self._publish_bytes(entry, dup=True))
        self._fill_window()

    def _fill_window(self) -> None:
        queue = self.queue
        while queue and self.connection is not None and len(self.inflight) < self.max_inflight:
            self._send_new(queue.popleft())

    def _send_new(self, entry: Outgoing) -> None:
        entry.packet_id = self._next_packet_id()
        self.inflight[entry.packet_id] = entry
        assert self.connection is not None
        self.connection.write(self._publish_bytes(entry, dup=False))
        self.stats.messages_sent += 1

    def _next_packet_id(self) -> int:
        packet_id = self._last_packet_id
        while True:
            packet_id = packet_id + 1 if packet_id < 0xFFFF else 1
            if packet_id not in self.inflight:
                self._last_packet_id = packet_id
                return packet_id

    @staticmethod
    def _publish_bytes(entry: Outgoing, *, dup: bool) -> bytes:
        message = entry.message
        return publish_bytes(
            message.topic.encode(), message.payload, entry.qos, entry.retain, dup, entry.packet_id
        )
