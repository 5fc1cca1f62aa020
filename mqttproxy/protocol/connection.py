"""The server side of one MQTT 3.1.1 connection, as a state machine.

Owns: which packet may be received or sent in which state, and the decoder
that turns the byte stream into packets. Never knows: sockets, asyncio,
sessions, subscriptions or authentication; the broker decides what a packet
means, this file only decides whether it may appear at this point.

    AWAIT_CONNECT --recv CONNECT--> CONNECT_RECEIVED
    AWAIT_CONNECT --recv CONNECT that must be refused--> CONNECT_REFUSED
    CONNECT_RECEIVED --send CONNACK(0)--> CONNECTED
    CONNECT_RECEIVED, CONNECT_REFUSED --send CONNACK(refused)--> CLOSED
    CONNECTED --recv DISCONNECT--> CLOSED
    any --recv malformed bytes--> CLOSED

A client may send packets right after CONNECT without waiting for CONNACK
(3.1.4), so CONNECT_RECEIVED receives what CONNECTED does; the broker holds
them back until it has answered.
"""

from __future__ import annotations

from enum import Enum

from mqttproxy.errors import LocalProtocolError, RemoteProtocolError
from mqttproxy.protocol.codec import Decoder, encode_packet
from mqttproxy.protocol.packets import PACKET_TYPE_OF as _TYPE_OF
from mqttproxy.protocol.packets import Connack, ConnectReturnCode, Packet, PacketType


class ConnectionState(Enum):
    AWAIT_CONNECT = "await-connect"
    CONNECT_RECEIVED = "connect-received"
    CONNECT_REFUSED = "connect-refused"
    CONNECTED = "connected"
    CLOSED = "closed"


_FROM_CLIENT_AFTER_CONNECT = frozenset(
    {
        PacketType.PUBLISH,
        PacketType.PUBACK,
        PacketType.PUBREC,
        PacketType.PUBREL,
        PacketType.PUBCOMP,
        PacketType.SUBSCRIBE,
        PacketType.UNSUBSCRIBE,
        PacketType.PINGREQ,
        PacketType.DISCONNECT,
    }
)

_TO_CLIENT_AFTER_CONNECT = frozenset(
    {
        PacketType.PUBLISH,
        PacketType.PUBACK,
        PacketType.PUBREC,
        PacketType.PUBREL,
        PacketType.PUBCOMP,
        PacketType.SUBACK,
        PacketType.UNSUBACK,
        PacketType.PINGRESP,
    }
)

# state -> packet types the server may receive in it
RECEIVABLE: dict[ConnectionState, frozenset[int]] = {
    ConnectionState.AWAIT_CONNECT: frozenset({PacketType.CONNECT}),  # [MQTT-3.1.0-1]
    ConnectionState.CONNECT_RECEIVED: _FROM_CLIENT_AFTER_CONNECT,
    ConnectionState.CONNECTED: _FROM_CLIENT_AFTER_CONNECT,  # a 2nd CONNECT is a violation [MQTT-3.1.0-2]
    ConnectionState.CONNECT_REFUSED: frozenset(),
    ConnectionState.CLOSED: frozenset(),
}

# state -> packet types the server may send in it
SENDABLE: dict[ConnectionState, frozenset[int]] = {
    ConnectionState.AWAIT_CONNECT: frozenset(),
    ConnectionState.CONNECT_RECEIVED: frozenset({PacketType.CONNACK}),  # [MQTT-3.2.0-1]
    ConnectionState.CONNECTED: _TO_CLIENT_AFTER_CONNECT,
    ConnectionState.CONNECT_REFUSED: frozenset({PacketType.CONNACK}),
    ConnectionState.CLOSED: frozenset(),
}

# (state, packet type received) -> next state; pairs not listed keep the state
ON_RECEIVE: dict[tuple[ConnectionState, int], ConnectionState] = {
    (ConnectionState.AWAIT_CONNECT, PacketType.CONNECT): ConnectionState.CONNECT_RECEIVED,
    (ConnectionState.CONNECTED, PacketType.DISCONNECT): ConnectionState.CLOSED,
    (ConnectionState.CONNECT_RECEIVED, PacketType.DISCONNECT): ConnectionState.CLOSED,
}


def _receive_lookup(state: ConnectionState) -> dict[type, ConnectionState]:
    """packet class -> state after receiving it, for the packets ``state`` may receive.

    Derived from the tables above so the per-packet check is one dict lookup.
    """
    return {
        cls: ON_RECEIVE.get((state, packet_type), state)
        for cls, packet_type in _TYPE_OF.items()
        if packet_type in RECEIVABLE[state]
    }


_RECEIVE_LOOKUP = {state: _receive_lookup(state) for state in ConnectionState}


class ServerConnection:
    """Sans-IO server side of a connection: ``receive_data``, ``next_packet``, ``send``."""

    __slots__ = ("_decoder", "_receive", "state")

    def __init__(self, *, max_packet_size: int) -> None:
        self._decoder = Decoder(max_packet_size=max_packet_size)
        self.state = ConnectionState.AWAIT_CONNECT
        self._receive = _RECEIVE_LOOKUP[self.state]

    @property
    def buffered(self) -> int:
        return self._decoder.buffered

    def receive_data(self, data: bytes) -> None:
        self._decoder.receive_data(data)

    def next_packet(self) -> Packet | None:
        """The next packet from the client, or ``None`` until more bytes arrive.

        Raises ``RemoteProtocolError`` for malformed bytes or a packet that may
        not appear in the current state.
        """
        try:
            packet = self._decoder.next_packet()
        except RemoteProtocolError as exc:
            if exc.return_code is not None and self.state is ConnectionState.AWAIT_CONNECT:
                # A CONNECT refused with a return code (e.g. an unsupported
                # protocol level [MQTT-3.1.2-2]): that CONNACK may still be sent.
                self._set_state(ConnectionState.CONNECT_REFUSED)
            else:
                self._set_state(ConnectionState.CLOSED)
            raise
        if packet is None:
            return None
        next_state = self._receive.get(type(packet))
        if next_state is None:
            packet_type = _TYPE_OF[type(packet)]
            state = self.state
            self._set_state(ConnectionState.CLOSED)
            if state is ConnectionState.AWAIT_CONNECT:
                raise RemoteProtocolError(f"first packet is {packet_type.name}, not CONNECT [MQTT-3.1.0-1]")
            if packet_type == PacketType.CONNECT:
                raise RemoteProtocolError("second CONNECT on one connection [MQTT-3.1.0-2]")
            raise RemoteProtocolError(f"a client may not send {packet_type.name}")
        if next_state is not self.state:
            self._set_state(next_state)
        return packet

    def send(self, packet: Packet) -> bytes:
        """The bytes of ``packet``, if the server may send it now."""
        packet_type = _TYPE_OF[type(packet)]
        if packet_type not in SENDABLE[self.state]:
            raise LocalProtocolError(f"cannot send {packet_type.name} in state {self.state.value}")
        if isinstance(packet, Connack):
            accepted = packet.return_code == ConnectReturnCode.ACCEPTED
            if accepted and self.state is ConnectionState.CONNECT_REFUSED:
                raise LocalProtocolError("this CONNECT can only be refused")
            # [MQTT-3.2.2-5] a refusing CONNACK is followed by closing.
            self._set_state(ConnectionState.CONNECTED if accepted else ConnectionState.CLOSED)
        return encode_packet(packet)

    def may_send_publish(self) -> bool:
        return self.state is ConnectionState.CONNECTED

    def _set_state(self, state: ConnectionState) -> None:
        self.state = state
        self._receive = _RECEIVE_LOOKUP[state]
