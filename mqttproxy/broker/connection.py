"""One device connection: asyncio transport in, MQTT semantics out.

Feeds received bytes to the sans-IO ``ServerConnection``, acts on each packet
(authenticate, subscribe, publish, acknowledge) and writes the answers. The
broker owns sessions and routing; this class owns the socket, the timers and
the per-connection state (will, keep-alive).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from mqttproxy.broker.auth import AuthDecision, ConnectRequest, TopicPolicy
from mqttproxy.broker.message import Message
from mqttproxy.broker.session import Session
from mqttproxy.errors import RemoteProtocolError
from mqttproxy.protocol.codec import publish_bytes
from mqttproxy.protocol.connection import ConnectionState, ServerConnection
from mqttproxy.protocol.packets import (
    PROTOCOL_NAME_V31,
    Connack,
    Connect,
    ConnectReturnCode,
    Disconnect,
    Pingreq,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    SubackReturnCode,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)

if TYPE_CHECKING:
    from mqttproxy.broker.server import Broker

logger = logging.getLogger(__name__)

_PINGRESP = b"\xd0\x00"
# Bytes read from one client before the event loop gets to run other work.
# uvloop reads a busy socket many times per iteration; without a pause one
# flooding publisher could hold the loop (and everyone's writes) for a second.
_READ_BURST = 256 * 1024
# Bytes queued for one client before they are handed to the socket at once
# rather than at the end of the loop iteration.
_EARLY_FLUSH = 64 * 1024
# MQTT 3.1 limited client ids to 23 characters; 3.1.1 lets the server allow more.
_MAX_CLIENT_ID_V31 = 23


def _ack(first_byte: int, packet_id: int) -> bytes:
    return bytes((first_byte, 2, packet_id >> 8, packet_id & 0xFF))


class ClientConnection(asyncio.Protocol):
    """The broker end of one client's network connection."""

    def __init__(self, broker: Broker, *, tls: bool) -> None:
        self._broker = broker
        self._stats = broker.stats
        self.tls = tls
        self.principal: str | None = None  # who authentication said this is
        self._policy: TopicPolicy | None = None
        self._denied_logged: set[tuple[str, str]] = set()
        self._loop = asyncio.get_running_loop()
        self._mqtt = ServerConnection(max_packet_size=broker.config.max_packet_size)
        self._transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self.client_id: str | None = None
        self.session: Session | None = None
        self._source = ""
        self._will: Will | None = None
        self._keep_alive_window = 0.0
        self._last_received = 0.0
        self.connected_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._auth_task: asyncio.Task[None] | None = None
        self._outgoing: list[bytes] = []
        self._outgoing_bytes = 0
        self._write_limit = broker.config.write_buffer_limit
        # True while the client reads slower than we write: QoS 0 to it is dropped.
        self.writing_paused = False
        self._transport_paused = False
        self._reading_paused = False
        self._burst_bytes = 0
        self._yielding = False
        self._closing = False

    def __repr__(self) -> str:
        return f"<ClientConnection {self.client_id or '-'} from {self.peer}>"

    # --- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's does not subclass asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self._last_received = self._loop.time()
        if not self._broker.admit(self):
            self._closing = True
            transport.abort()
            return
        transport.set_write_buffer_limits(high=self._broker.config.write_buffer_limit)
        self._timer = self._loop.call_later(self._broker.config.connect_timeout, self._on_connect_timeout)

    def data_received(self, data: bytes) -> None:
        self._last_received = self._loop.time()
        self._stats.bytes_received += len(data)
        if self._closing:
            return
        self._mqtt.receive_data(data)
        if self._auth_task is None:
            self._process()
        self._burst_bytes += len(data)
        if self._burst_bytes >= _READ_BURST and not self._yielding:
            self._yielding = True
            self._update_reading()
            self._loop.call_soon(self._end_burst)

    def _end_burst(self) -> None:
        self._burst_bytes = 0
        self._yielding = False
        self._update_reading()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closing:
            reason = f"connection lost: {exc}" if exc else "connection closed by client"
            self._closing = True
            self._teardown(reason, publish_will=True)
        self._cancel_timer()
        if self._auth_task is not None:
            self._auth_task.cancel()
            self._auth_task = None
        self._outgoing.clear()
        self._broker.forget(self)

    def pause_writing(self) -> None:
        # The client is not reading: stop reading from it too, so it cannot
        # make us buffer answers (PINGRESP, acks) it never collects.
        self._transport_paused = True
        self.writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._transport_paused = False
        self.writing_paused = self._outgoing_bytes > self._write_limit
        self._update_reading()

    def _update_reading(self) -> None:
        """Read from the socket unless authentication, a full write buffer or a burst says wait."""
        pause = self._auth_task is not None or self._transport_paused or self._yielding
        if pause == self._reading_paused or self._transport is None or self._closing:
            return
        self._reading_paused = pause
        if pause:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    # --- writing ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue ``data``; the broker flushes every connection once per loop iteration."""
        out = self._outgoing
        if not out:
            self._broker.schedule_flush(self)
        out.append(data)
        # Bytes not yet handed to the transport count towards the limit too:
        # one read can ask for many answers (a SUBSCRIBE replaying retained messages).
        self._outgoing_bytes += len(data)
        if self._outgoing_bytes >= _EARLY_FLUSH:
            self.flush()
        elif self._outgoing_bytes > self._write_limit:
            self.writing_paused = True

    def flush(self) -> None:
        out = self._outgoing
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._outgoing_bytes = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)  # may call pause_writing()
        self.writing_paused = self._transport_paused

    # --- closing ----------------------------------------------------------

    def close(self, reason: str, *, publish_will: bool) -> None:
        """Detach the session (publishing the will if asked) and close the socket."""
        if self._closing:
            return
        self._closing = True
        self._teardown(reason, publish_will=publish_will)
        self.flush()
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the socket at once, discarding anything not yet sent."""
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def _teardown(self, reason: str, *, publish_will: bool) -> None:
        session = self.session
        self.session = None
        if session is None:
            logger.debug("connection from %s closed before CONNECT completed: %s", self.peer, reason)
            return
        logger.info("client %s disconnected: %s", self.client_id, reason)
        will = self._will
        self._will = None
        self._broker.detach(self, session)
        if publish_will and will is not None:
            # The will is a PUBLISH arranged in advance: the same topic rules apply.
            self._publish(will.topic, will.payload, will.qos, will.retain, self._loop.time())

    def _on_protocol_error(self, exc: RemoteProtocolError) -> None:
        self._stats.protocol_errors += 1
        logger.warning("closing connection from %s (client %s): %s", self.peer, self.client_id or "-", exc)
        if exc.return_code is not None and self._mqtt.state is ConnectionState.CONNECT_REFUSED:
            self.write(self._mqtt.send(Connack(return_code=ConnectReturnCode(exc.return_code))))
        # 3.1.2.5: a protocol error is a reason to publish the will.
        self.close(f"protocol error: {exc}", publish_will=True)

    def _on_connect_timeout(self) -> None:
        self._timer = None
        logger.warning(
            "closing connection from %s: no CONNECT within %gs",
            self.peer,
            self._broker.config.connect_timeout,
        )
        self.close("connect timeout", publish_will=False)

    def _on_keep_alive_timer(self) -> None:
        deadline = self._last_received + self._keep_alive_window
        if self._loop.time() >= deadline:
            self._timer = None
            # [MQTT-3.1.2-24] nothing received within 1.5 x keep-alive.
            self.close(
                f"keep-alive expired ({self._keep_alive_window:g}s without a packet)", publish_will=True
            )
        else:
            self._timer = self._loop.call_at(deadline, self._on_keep_alive_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- packets ----------------------------------------------------------

    def _process(self) -> None:
        """Handle every whole packet received so far."""
        mqtt = self._mqtt
        try:
            while not self._closing:
                packet = mqtt.next_packet()
                if packet is None:
                    return
                match packet:
                    case Publish():
                        self._on_publish(packet)
                    case Puback():
                        self._session_or_fail().on_puback(packet.packet_id)
                    case Pubrec():
                        self._session_or_fail().on_pubrec(packet.packet_id)
                    case Pubrel():
                        self._on_pubrel(packet)
                    case Pubcomp():
                        self._session_or_fail().on_pubcomp(packet.packet_id)
                    case Pingreq():
                        self.write(_PINGRESP)
                    case Subscribe():
                        self._on_subscribe(packet)
                    case Unsubscribe():
                        self._on_unsubscribe(packet)
                    case Connect():
                        self._on_connect(packet)
                        return  # hold later packets until CONNACK is decided
                    case Disconnect():
                        # [MQTT-3.14.4-3] a DISCONNECT discards the will.
                        self.close("sent DISCONNECT", publish_will=False)
                        return
                    case _:
                        raise RemoteProtocolError(f"unexpected {type(packet).__name__}")
        except RemoteProtocolError as exc:
            self._on_protocol_error(exc)

    def _session_or_fail(self) -> Session:
        if self.session is None:
            # Packets after CONNECT are held until CONNACK, so only a bug gets here.
            raise RemoteProtocolError("packet before the session was established")
        return self.session

    def _on_connect(self, packet: Connect) -> None:
        self._cancel_timer()
        client_id = packet.client_id
        if not client_id:
            if not packet.clean_session or packet.protocol_name == PROTOCOL_NAME_V31:
                # [MQTT-3.1.3-8] zero-length id needs clean session 1.
                self._refuse(ConnectReturnCode.IDENTIFIER_REJECTED, "empty client id without clean session")
                return
            client_id = self._broker.assign_client_id()  # [MQTT-3.1.3-6]
        elif packet.protocol_name == PROTOCOL_NAME_V31 and len(client_id) > _MAX_CLIENT_ID_V31:
            self._refuse(
                ConnectReturnCode.IDENTIFIER_REJECTED, "MQTT 3.1 client id longer than 23 characters"
            )
            return
        self.client_id = client_id
        request = ConnectRequest(
            client_id=client_id,
            username=packet.username,
            password=packet.password,
            peer=self.peer,
            tls=self.tls,
            certificate=self._peer_certificate(),
        )
        # Authentication may wait on a hash or a database: stop reading until
        # it is decided, and keep what already arrived for after CONNACK.
        self._auth_task = self._loop.create_task(
            self._authenticate(packet, request), name=f"mqtt-auth-{self.peer}"
        )
        self._update_reading()

    async def _authenticate(self, packet: Connect, request: ConnectRequest) -> None:
        try:
            decision = await self._broker.auth.authenticate(request)
        except Exception:
            logger.exception("authenticating client %s from %s failed", request.client_id, self.peer)
            decision = AuthDecision(return_code=ConnectReturnCode.SERVER_UNAVAILABLE)
        self._auth_task = None
        if self._closing:
            return
        if not decision.accepted:
            self._stats.auth_failures += 1
            # Never log the password; the user name helps operators find the device.
            if request.username is None:
                reason = "no credentials, and anonymous access is off ([auth] allow_anonymous)"
            else:
                reason = f"authentication failed for user {request.username!r}"
            self._refuse(decision.return_code, reason)
            return
        self._accept(packet, decision)
        self._update_reading()
        self._process()

    def _peer_certificate(self) -> bytes | None:
        if not self.tls or self._transport is None:
            return None
        ssl_object = self._transport.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        return certificate or None

    def _refuse(self, code: ConnectReturnCode, reason: str) -> None:
        logger.warning("refusing CONNECT from %s (client %s): %s", self.peer, self.client_id or "-", reason)
        self.write(self._mqtt.send(Connack(return_code=code)))
        self.close(f"refused: {code.name}", publish_will=False)

    def _accept(self, packet: Connect, decision: AuthDecision) -> None:
        assert self.client_id is not None
        self._source = f"client:{self.client_id}"
        self.principal = decision.principal
        self._policy = decision.policy
        self._will = packet.will
        session, session_present = self._broker.attach(
            self, self.client_id, clean_session=packet.clean_session
        )
        self.session = session
        self.connected_at = self._loop.time()
        self.write(self._mqtt.send(Connack(session_present=session_present)))
        logger.info(
            "client %s connected from %s as %s (clean session %d, keep-alive %ds%s)",
            self.client_id,
            self.peer,
            decision.principal,
            packet.clean_session,
            packet.keep_alive,
            ", session resumed" if session_present else "",
        )
        if packet.keep_alive:
            self._keep_alive_window = packet.keep_alive * 1.5
            self._timer = self._loop.call_at(
                self._last_received + self._keep_alive_window, self._on_keep_alive_timer
            )
        session.resume()

    def _on_publish(self, packet: Publish) -> None:
        qos = packet.qos
        if qos == 2:
            session = self._session_or_fail()
            packet_id = packet.packet_id
            assert packet_id is not None
            # [MQTT-4.3.3-2] a QoS 2 message is delivered once: a repeat of an
            # identifier not yet released is only acknowledged again.
            if packet_id not in session.awaiting_pubrel:
                session.awaiting_pubrel.add(packet_id)
                self._publish(packet.topic, packet.payload, qos, packet.retain, self._last_received)
            self.write(_ack(0x50, packet_id))
            return
        self._publish(packet.topic, packet.payload, qos, packet.retain, self._last_received)
        if qos == 1:
            assert packet.packet_id is not None
            self.write(_ack(0x40, packet.packet_id))

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool, received_at: float) -> None:
        """Dispatch a message from this client (a PUBLISH or its will) if it may publish there."""
        if topic.startswith("$SYS/") or topic == "$SYS":
            # $SYS is the broker's own namespace; clients do not write there.
            self._stats.dropped_sys_topic += 1
            return
        policy = self._policy
        if policy is not None and not policy.may_publish(topic):
            # 3.1.1 has no negative PUBACK: the message is acknowledged and dropped.
            self._stats.dropped_acl += 1
            self._log_denied("publish to", topic)
            return
        self._stats.messages_received += 1
        self._broker.dispatcher.dispatch(Message(topic, payload, qos, retain, self._source, received_at))

    def _on_pubrel(self, packet: Pubrel) -> None:
        self._session_or_fail().awaiting_pubrel.discard(packet.packet_id)
        self.write(_ack(0x70, packet.packet_id))

    def _on_subscribe(self, packet: Subscribe) -> None:
        session = self._session_or_fail()
        router = self._broker.router
        granted_codes: list[int] = []
        # One retained message per topic, at the highest QoS any filter grants.
        retained: dict[str, tuple[Message, int]] = {}
        policy = self._policy
        for topic_filter, requested in packet.subscriptions:
            if policy is not None and not policy.may_subscribe(topic_filter):
                self._stats.subscriptions_denied += 1
                self._log_denied("subscribe to", topic_filter)
                granted_codes.append(SubackReturnCode.FAILURE)  # [MQTT-3.9.3-1]
                continue
            granted = requested  # every QoS is supported
            router.subscribe(session, topic_filter, granted)
            granted_codes.append(granted)
            for message in self._broker.retained.match(topic_filter):
                previous = retained.get(message.topic)
                if previous is None or previous[1] < granted:
                    retained[message.topic] = (message, granted)
        self.write(self._mqtt.send(Suback(packet_id=packet.packet_id, return_codes=tuple(granted_codes))))
        # [MQTT-3.3.1-6] retained messages go to a new subscription with RETAIN 1.
        for message, granted in retained.values():
            qos = min(message.qos, granted)
            if qos:
                session.deliver(message, qos, retain=True)
            elif self.writing_paused:
                self._stats.dropped_slow_consumer += 1
            else:
                self.write(publish_bytes(message.topic.encode(), message.payload, 0, True, False, None))
                self._stats.messages_sent += 1

    def _log_denied(self, what: str, topic: str) -> None:
        # One line per client and topic, not per message: a device stuck on a
        # denied topic must not flood the log.
        if len(self._denied_logged) < 100 and (what, topic) not in self._denied_logged:
            self._denied_logged.add((what, topic))
            logger.warning("client %s (%s) may not %s %r", self.client_id, self.principal, what, topic)

    def _on_unsubscribe(self, packet: Unsubscribe) -> None:
        session = self._session_or_fail()
        for topic_filter in packet.topic_filters:
            self._broker.router.unsubscribe(session, topic_filter)
        # [MQTT-3.10.4-4] UNSUBACK even when nothing was subscribed.
        self.write(self._mqtt.send(Unsuback(packet_id=packet.packet_id)))
