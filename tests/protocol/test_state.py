"""ServerConnection: which packet may be received or sent in which state."""

from __future__ import annotations

import pytest

from mqttproxy.errors import LocalProtocolError, RemoteProtocolError
from mqttproxy.protocol.connection import ConnectionState, ServerConnection
from mqttproxy.protocol.packets import (
    Connack,
    Connect,
    ConnectReturnCode,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from tests.protocol.golden import FIRST_OF_TYPE, Sample

AWAIT = ConnectionState.AWAIT_CONNECT
RECEIVED = ConnectionState.CONNECT_RECEIVED
REFUSED = ConnectionState.CONNECT_REFUSED
CONNECTED = ConnectionState.CONNECTED
CLOSED = ConnectionState.CLOSED

CONNECT_WIRE = FIRST_OF_TYPE[Connect].wire
DISCONNECT_WIRE = FIRST_OF_TYPE[Disconnect].wire
# CONNECT "MQTT" level 5: refused with CONNACK 0x01 [MQTT-3.1.2-2]
CONNECT_LEVEL_5_WIRE = b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x01c"


def reach(state: ConnectionState) -> ServerConnection:
    """A connection brought to ``state`` the way a real client would."""
    conn = ServerConnection(max_packet_size=1 << 20)
    if state is AWAIT:
        return conn
    if state is REFUSED:
        conn.receive_data(CONNECT_LEVEL_5_WIRE)
        with pytest.raises(RemoteProtocolError) as error:
            conn.next_packet()
        assert error.value.return_code == ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION
        return conn
    conn.receive_data(CONNECT_WIRE)
    assert isinstance(conn.next_packet(), Connect)
    if state is RECEIVED:
        return conn
    conn.send(Connack())
    if state is CONNECTED:
        return conn
    conn.receive_data(DISCONNECT_WIRE)
    assert isinstance(conn.next_packet(), Disconnect)
    assert state is CLOSED
    return conn


@pytest.mark.parametrize("state", list(ConnectionState), ids=lambda s: s.name)
def test_reach(state: ConnectionState) -> None:
    assert reach(state).state is state


# (state, packet class) -> state after receiving it, or None when it is a violation.
_CLIENT_AFTER_CONNECT = (Publish, Puback, Pubrec, Pubrel, Pubcomp, Subscribe, Unsubscribe, Pingreq)
_SERVER_ONLY = (Connack, Suback, Unsuback, Pingresp)
RECEIVE: dict[tuple[ConnectionState, type], ConnectionState | None] = {
    # [MQTT-3.1.0-1] the first packet from the client must be CONNECT
    (AWAIT, Connect): RECEIVED,
    **{(AWAIT, cls): None for cls in (*_CLIENT_AFTER_CONNECT, *_SERVER_ONLY, Disconnect)},
    # 3.1.4: the client may send before it has the CONNACK; [MQTT-3.1.0-2] no second CONNECT
    **{(RECEIVED, cls): RECEIVED for cls in _CLIENT_AFTER_CONNECT},
    (RECEIVED, Disconnect): CLOSED,
    **{(RECEIVED, cls): None for cls in (Connect, *_SERVER_ONLY)},
    **{(CONNECTED, cls): CONNECTED for cls in _CLIENT_AFTER_CONNECT},
    (CONNECTED, Disconnect): CLOSED,
    **{(CONNECTED, cls): None for cls in (Connect, *_SERVER_ONLY)},
    # [MQTT-3.14.4-1] after DISCONNECT nothing more is read
    **{(CLOSED, cls): None for cls in FIRST_OF_TYPE},
    # a CONNECT that must be refused: nothing more is read
    **{(REFUSED, cls): None for cls in FIRST_OF_TYPE},
}


def _receive_params() -> list[object]:
    return [
        pytest.param(state, FIRST_OF_TYPE[cls], after, id=f"{state.name}-{cls.__name__}")
        for (state, cls), after in RECEIVE.items()
    ]


def test_receive_table_is_complete() -> None:
    assert len(RECEIVE) == len(ConnectionState) * len(FIRST_OF_TYPE) == 5 * 14


@pytest.mark.parametrize(("state", "sample", "after"), _receive_params())
def test_receive(state: ConnectionState, sample: Sample, after: ConnectionState | None) -> None:
    conn = reach(state)
    conn.receive_data(sample.wire)
    if after is None:
        with pytest.raises(RemoteProtocolError):
            conn.next_packet()
        assert conn.state is CLOSED
    else:
        assert conn.next_packet() == sample.packet
        assert conn.state is after


# (state, packet class) -> state after sending it, or None when sending it is our bug.
_SERVER_AFTER_CONNACK = (Publish, Puback, Pubrec, Pubrel, Pubcomp, Suback, Unsuback, Pingresp)
_CLIENT_ONLY = (Connect, Subscribe, Unsubscribe, Pingreq, Disconnect)  # 3.1.1 has no server DISCONNECT
SEND: dict[tuple[ConnectionState, type], ConnectionState | None] = {
    **{(AWAIT, cls): None for cls in FIRST_OF_TYPE},
    # [MQTT-3.2.0-1] the first packet to the client is CONNACK
    (RECEIVED, Connack): CONNECTED,
    **{(RECEIVED, cls): None for cls in (*_SERVER_AFTER_CONNACK, *_CLIENT_ONLY)},
    **{(CONNECTED, cls): CONNECTED for cls in _SERVER_AFTER_CONNACK},
    **{(CONNECTED, cls): None for cls in (Connack, *_CLIENT_ONLY)},
    **{(CLOSED, cls): None for cls in FIRST_OF_TYPE},
    # only a refusing CONNACK: the sample CONNACK accepts, which would be our bug
    **{(REFUSED, cls): None for cls in FIRST_OF_TYPE},
}


def _send_params() -> list[object]:
    return [
        pytest.param(state, FIRST_OF_TYPE[cls], after, id=f"{state.name}-{cls.__name__}")
        for (state, cls), after in SEND.items()
    ]


def test_send_table_is_complete() -> None:
    assert len(SEND) == 5 * 14


@pytest.mark.parametrize(("state", "sample", "after"), _send_params())
def test_send(state: ConnectionState, sample: Sample, after: ConnectionState | None) -> None:
    conn = reach(state)
    if after is None:
        with pytest.raises(LocalProtocolError):
            conn.send(sample.packet)
        assert conn.state is state
    else:
        assert conn.send(sample.packet) == sample.wire
        assert conn.state is after


@pytest.mark.parametrize(
    "code",
    [code for code in ConnectReturnCode if code != ConnectReturnCode.ACCEPTED],
    ids=lambda c: c.name,
)
def test_refusing_connack_closes(code: ConnectReturnCode) -> None:
    # [MQTT-3.2.2-5] a non-zero return code is followed by closing the connection
    conn = reach(RECEIVED)
    assert conn.send(Connack(return_code=code)) == bytes((0x20, 2, 0, code))
    assert conn.state is CLOSED
    assert not conn.may_send_publish()
    with pytest.raises(LocalProtocolError):
        conn.send(Publish(topic="t"))


def test_refused_connect_gets_its_connack_then_closes() -> None:
    conn = reach(REFUSED)
    code = ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION
    assert conn.send(Connack(return_code=code)) == b"\x20\x02\x00\x01"
    assert conn.state is CLOSED


def test_connack_with_session_present() -> None:
    conn = reach(RECEIVED)
    assert conn.send(Connack(session_present=True)) == b"\x20\x02\x01\x00"
    assert conn.state is CONNECTED


@pytest.mark.parametrize(
    ("state", "expected"),
    [(AWAIT, False), (RECEIVED, False), (REFUSED, False), (CONNECTED, True), (CLOSED, False)],
    ids=lambda v: v.name if isinstance(v, ConnectionState) else str(v),
)
def test_may_send_publish(state: ConnectionState, expected: bool) -> None:
    assert reach(state).may_send_publish() is expected


def test_publish_before_connack_raises_and_keeps_state() -> None:
    conn = reach(RECEIVED)
    with pytest.raises(LocalProtocolError):
        conn.send(Publish(topic="t", payload=b"early"))
    assert conn.state is RECEIVED
    conn.send(Connack())
    assert conn.send(Publish(topic="t")) == b"\x30\x03\x00\x01t"


def test_packets_pipelined_behind_connect() -> None:
    """CONNECT, SUBSCRIBE and PUBLISH in one read are all returned before the CONNACK goes out."""
    conn = reach(AWAIT)
    conn.receive_data(
        CONNECT_WIRE + FIRST_OF_TYPE[Subscribe].wire + FIRST_OF_TYPE[Publish].wire + DISCONNECT_WIRE
    )
    packets: list[Packet] = []
    while (packet := conn.next_packet()) is not None:
        packets.append(packet)
    assert [type(p) for p in packets] == [Connect, Subscribe, Publish, Disconnect]
    assert conn.state is CLOSED


def test_partial_connect_returns_none() -> None:
    conn = reach(AWAIT)
    conn.receive_data(CONNECT_WIRE[:-1])
    assert conn.next_packet() is None
    assert conn.state is AWAIT
    assert conn.buffered == len(CONNECT_WIRE) - 1
    conn.receive_data(CONNECT_WIRE[-1:])
    assert isinstance(conn.next_packet(), Connect)
    assert conn.buffered == 0


def test_publish_first_raises() -> None:
    conn = reach(AWAIT)
    conn.receive_data(FIRST_OF_TYPE[Publish].wire + CONNECT_WIRE)
    with pytest.raises(RemoteProtocolError):
        conn.next_packet()


def test_malformed_bytes_raise_remote_error() -> None:
    conn = reach(CONNECTED)
    conn.receive_data(b"\x60\x02\x00\x01")  # PUBREL with flags 0000 [MQTT-3.6.1-1]
    with pytest.raises(RemoteProtocolError):
        conn.next_packet()
    # A connection that broke the protocol accepts nothing more.
    assert conn.state is ConnectionState.CLOSED


def test_max_packet_size_is_enforced() -> None:
    conn = ServerConnection(max_packet_size=len(CONNECT_WIRE) - 1)
    conn.receive_data(CONNECT_WIRE[:2])
    with pytest.raises(RemoteProtocolError):
        conn.next_packet()
