"""The device-facing broker: listeners, sessions, and the dispatch point.

Owns every client connection and session. Connections call back into it to
attach a session (with takeover of an older connection of the same client
id), to dispatch messages and to have their writes flushed in one batch per
event-loop iteration.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from mqttproxy.broker.auth import DeviceAuth
from mqttproxy.broker.connection import ClientConnection
from mqttproxy.broker.dispatch import Dispatcher
from mqttproxy.broker.retained import RetainedStore
from mqttproxy.broker.router import LocalRouter
from mqttproxy.broker.session import Session
from mqttproxy.broker.stats import BrokerStats
from mqttproxy.config import MqttConfig, TlsListenerConfig

logger = logging.getLogger(__name__)

_SHUTDOWN_GRACE = 5.0  # seconds to let clients' sockets drain on stop


class PresenceListener(Protocol):
    """Told when an authenticated client comes and goes (the registry's online status)."""

    def client_connected(self, principal: str | None, client_id: str, address: str) -> None: ...

    def client_disconnected(self, principal: str | None, client_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Listener:
    kind: str  # "tcp" or "tls"
    host: str
    port: int


class Broker:
    def __init__(self, *, config: MqttConfig, auth: DeviceAuth) -> None:
        self.config = config
        self.auth = auth
        self.stats = BrokerStats()
        self.router = LocalRouter(stats=self.stats)
        self.retained = RetainedStore()
        self.dispatcher = Dispatcher(router=self.router, retained=self.retained, stats=self.stats)
        self.sessions: dict[str, Session] = {}
        self.listeners: list[Listener] = []
        self._connections: set[ClientConnection] = set()
        self._servers: list[asyncio.Server] = []
        self._dirty: list[ClientConnection] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._presence: list[PresenceListener] = []
        self._ssl_context = _server_ssl_context(config.tls) if config.tls is not None else None
        self._closed = asyncio.Event()
        self._closed.set()

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        # Kept: asyncio.get_running_loop() costs a getpid() on every call.
        self._loop = loop = asyncio.get_running_loop()
        self._accepting = True
        self._servers.append(
            await loop.create_server(
                lambda: ClientConnection(self, tls=False),
                self.config.host,
                self.config.port,
                backlog=1024,
                reuse_address=True,
            )
        )
        self._record_listener("tcp", self._servers[-1])
        if self.config.tls is not None:
            self._servers.append(
                await loop.create_server(
                    lambda: ClientConnection(self, tls=True),
                    self.config.host,
                    self.config.tls.port,
                    ssl=self._ssl_context,
                    ssl_handshake_timeout=self.config.connect_timeout,
                    backlog=1024,
                    reuse_address=True,
                )
            )
            self._record_listener("tls", self._servers[-1])

    def _record_listener(self, kind: str, server: asyncio.Server) -> None:
        host, port = server.sockets[0].getsockname()[:2]
        self.listeners.append(Listener(kind, host, port))
        logger.info("listening mqtt %s %s:%d", kind, host, port)

    @property
    def is_serving(self) -> bool:
        return self._accepting and all(server.is_serving() for server in self._servers)

    async def stop(self) -> None:
        """Stop accepting, close every client connection, wait for them to drain."""
        self._accepting = False
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            # The gateway is going away, not the client: no will.
            connection.close("gateway shutting down", publish_will=False)
        try:
            async with asyncio.timeout(_SHUTDOWN_GRACE):
                await self._closed.wait()
        except TimeoutError:
            logger.warning("%d connections did not close in time; aborting them", len(self._connections))
            for connection in list(self._connections):
                connection.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # --- connections ----------------------------------------------------------

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def admit(self, connection: ClientConnection) -> bool:
        """Whether a new TCP connection may stay (``max_connections``)."""
        if not self._accepting or len(self._connections) >= self.config.max_connections:
            self.stats.connections_refused += 1
            logger.warning(
                "refusing connection from %s: %d connections open (max_connections %d)",
                connection.peer,
                len(self._connections),
                self.config.max_connections,
            )
            return False
        self.stats.connections_total += 1
        self._connections.add(connection)
        self._closed.clear()
        return True

    def clients(self) -> list[dict[str, Any]]:
        """The connected MQTT clients, for operators."""
        now_wall, now_loop = time.time(), self._loop.time() if self._loop else 0.0
        return [
            {
                "client_id": connection.client_id,
                "address": connection.peer,
                "tls": connection.tls,
                "user": connection.principal,
                "connected_since": now_wall - (now_loop - connection.connected_at),
                "clean_session": connection.session.clean_session,
                "subscriptions": len(connection.session.subscriptions),
                "inflight": len(connection.session.inflight),
                "queued": len(connection.session.queue),
            }
            for connection in self._connections
            if connection.session is not None
        ]

    def add_presence_listener(self, listener: PresenceListener) -> None:
        self._presence.append(listener)

    def disconnect_principal(self, principal: str, reason: str) -> int:
        """Close every connection authenticated as ``principal``; return how many."""
        matching = [connection for connection in self._connections if connection.principal == principal]
        for connection in matching:
            connection.close(reason, publish_will=True)
        return len(matching)

    def trust_client_ca(self, pem: str) -> None:
        """Accept client certificates signed by this CA on the TLS listener (from now on)."""
        if self._ssl_context is not None:
            self._ssl_context.load_verify_locations(cadata=pem)
            if self._ssl_context.verify_mode == ssl.CERT_NONE:
                self._ssl_context.verify_mode = ssl.CERT_OPTIONAL

    def forget(self, connection: ClientConnection) -> None:
        self._connections.discard(connection)
        if not self._connections:
            self._closed.set()

    def assign_client_id(self) -> str:
        return f"auto-{uuid.uuid4().hex}"

    def attach(
        self, connection: ClientConnection, client_id: str, *, clean_session: bool
    ) -> tuple[Session, bool]:
        """Give ``connection`` its session; return it and whether it was resumed."""
        session = self.sessions.get(client_id)
        if session is not None and session.connection is not None:
            # [MQTT-3.1.4-2] the newer connection takes over the client id.
            old = session.connection
            if isinstance(old, ClientConnection):
                old.close("taken over by a new connection with the same client id", publish_will=True)
        session = self.sessions.get(client_id)  # closing the old one may have discarded it
        if session is not None and clean_session:
            # [MQTT-3.1.2-6] clean session 1 discards any previous session.
            self._discard(session)
            session = None
        session_present = session is not None
        if session is None:
            session = Session(
                client_id=client_id,
                clean_session=clean_session,
                max_inflight=self.config.max_inflight_messages,
                max_queued=self.config.max_queued_messages,
                stats=self.stats,
            )
            self.sessions[client_id] = session
        session.clean_session = clean_session
        session.connection = connection
        for listener in self._presence:
            listener.client_connected(connection.principal, client_id, connection.peer)
        return session, session_present

    def detach(self, connection: ClientConnection, session: Session) -> None:
        """``connection`` is going away; keep its session only if persistent."""
        if session.connection is connection:
            session.connection = None
        for listener in self._presence:
            listener.client_disconnected(connection.principal, session.client_id)
        if session.clean_session and self.sessions.get(session.client_id) is session:
            # [MQTT-3.1.2-6] a clean session ends with its connection.
            self._discard(session)

    def _discard(self, session: Session) -> None:
        self.router.remove_session(session)
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]

    # --- batched writes ---------------------------------------------------------

    def schedule_flush(self, connection: ClientConnection) -> None:
        """Write ``connection``'s queued bytes at the end of this loop iteration.

        Writing once per iteration instead of once per packet turns a burst of
        small PUBLISH packets into one send() per client.
        """
        self._dirty.append(connection)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None, "schedule_flush before start"
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            connection.flush()


def _server_ssl_context(config: TlsListenerConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.certfile, config.keyfile)
    if config.cafile is not None:
        context.load_verify_locations(cafile=config.cafile)
        context.verify_mode = ssl.CERT_REQUIRED if config.require_client_certificate else ssl.CERT_OPTIONAL
    return context
