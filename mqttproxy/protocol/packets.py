"""MQTT 3.1.1 control packets as immutable values, named as in the spec.

Every packet validates itself when built and raises ``LocalProtocolError`` if
it breaks a rule of the spec; the decoder turns that into
``RemoteProtocolError`` when the values came off the wire. This module knows
nothing of bytes or sockets: see ``codec`` for the wire format.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from mqttproxy.errors import LocalProtocolError
from mqttproxy.protocol.topics import validate_topic_filter, validate_topic_name

PROTOCOL_NAME = "MQTT"
PROTOCOL_LEVEL = 4  # 3.1.1
# MQTT 3.1 ("MQIsdp", level 3) differs from 3.1.1 only in details a server may
# treat the 3.1.1 way; old device firmware still speaks it.
PROTOCOL_NAME_V31 = "MQIsdp"
PROTOCOL_LEVEL_V31 = 3

MAX_PACKET_ID = 0xFFFF


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class QoS(IntEnum):
    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1
    EXACTLY_ONCE = 2


class ConnectReturnCode(IntEnum):
    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


class SubackReturnCode(IntEnum):
    SUCCESS_MAXIMUM_QOS_0 = 0x00
    SUCCESS_MAXIMUM_QOS_1 = 0x01
    SUCCESS_MAXIMUM_QOS_2 = 0x02
    FAILURE = 0x80


def _check_qos(qos: int, what: str) -> None:
    if qos not in (0, 1, 2):
        raise LocalProtocolError(f"{what} QoS must be 0, 1 or 2, not {qos}")


def _check_packet_id(packet_id: int, what: str) -> None:
    # [MQTT-2.3.1-1] a packet identifier is a non-zero 16-bit integer.
    if not 0 < packet_id <= MAX_PACKET_ID:
        raise LocalProtocolError(f"{what} packet identifier must be 1..65535, not {packet_id}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Will:
    """The Will Message of a CONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False

    def __post_init__(self) -> None:
        validate_topic_name(self.topic)  # [MQTT-3.1.3-10]
        _check_qos(self.qos, "Will")  # [MQTT-3.1.2-14]


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    client_id: str
    clean_session: bool = True
    keep_alive: int = 60
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None
    protocol_name: str = PROTOCOL_NAME
    protocol_level: int = PROTOCOL_LEVEL

    def __post_init__(self) -> None:
        if not 0 <= self.protocol_level <= 0xFF:
            raise LocalProtocolError(f"protocol level is one byte, not {self.protocol_level}")
        if not 0 <= self.keep_alive <= 0xFFFF:
            raise LocalProtocolError(f"keep alive must be 0..65535, not {self.keep_alive}")
        if self.password is not None and self.username is None:
            raise LocalProtocolError("a password needs a user name [MQTT-3.1.2-22]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Connack:
    return_code: ConnectReturnCode = ConnectReturnCode.ACCEPTED
    session_present: bool = False

    def __post_init__(self) -> None:
        if self.session_present and self.return_code != ConnectReturnCode.ACCEPTED:
            raise LocalProtocolError("a refusing CONNACK has session present 0 [MQTT-3.2.2-4]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None

    def __post_init__(self) -> None:
        validate_topic_name(self.topic)
        if self.qos == 0:
            if self.packet_id is not None:
                raise LocalProtocolError("a QoS 0 PUBLISH has no packet identifier [MQTT-2.3.1-5]")
            if self.dup:
                raise LocalProtocolError("a QoS 0 PUBLISH has DUP 0 [MQTT-3.3.1-2]")
        else:
            _check_qos(self.qos, "PUBLISH")
            if self.packet_id is None:
                raise LocalProtocolError("a QoS 1 or 2 PUBLISH needs a packet identifier")
            _check_packet_id(self.packet_id, "PUBLISH")


@dataclass(frozen=True, slots=True, kw_only=True)
class Puback:
    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "PUBACK")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pubrec:
    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "PUBREC")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pubrel:
    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "PUBREL")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pubcomp:
    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "PUBCOMP")


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe:
    packet_id: int
    subscriptions: tuple[tuple[str, int], ...]  # (topic filter, requested QoS)

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "SUBSCRIBE")
        if not self.subscriptions:
            raise LocalProtocolError("a SUBSCRIBE needs at least one topic filter [MQTT-3.8.3-3]")
        for topic_filter, qos in self.subscriptions:
            validate_topic_filter(topic_filter)
            _check_qos(qos, "requested")  # [MQTT-3-8.3-4]


@dataclass(frozen=True, slots=True, kw_only=True)
class Suback:
    packet_id: int
    return_codes: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "SUBACK")
        if not self.return_codes:
            # [MQTT-3.9.3-1] one return code per topic filter, and a SUBSCRIBE has at least one.
            raise LocalProtocolError("a SUBACK needs at least one return code")
        for code in self.return_codes:
            if code not in (0x00, 0x01, 0x02, 0x80):
                raise LocalProtocolError(f"SUBACK return code {code:#x} is reserved [MQTT-3.9.3-2]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe:
    packet_id: int
    topic_filters: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "UNSUBSCRIBE")
        if not self.topic_filters:
            raise LocalProtocolError("an UNSUBSCRIBE needs at least one topic filter [MQTT-3.10.3-2]")
        for topic_filter in self.topic_filters:
            validate_topic_filter(topic_filter)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsuback:
    packet_id: int

    def __post_init__(self) -> None:
        _check_packet_id(self.packet_id, "UNSUBACK")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pingreq:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Pingresp:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnect:
    pass


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)

PACKET_TYPE_OF: dict[type[Packet], PacketType] = {
    Connect: PacketType.CONNECT,
    Connack: PacketType.CONNACK,
    Publish: PacketType.PUBLISH,
    Puback: PacketType.PUBACK,
    Pubrec: PacketType.PUBREC,
    Pubrel: PacketType.PUBREL,
    Pubcomp: PacketType.PUBCOMP,
    Subscribe: PacketType.SUBSCRIBE,
    Suback: PacketType.SUBACK,
    Unsubscribe: PacketType.UNSUBSCRIBE,
    Unsuback: PacketType.UNSUBACK,
    Pingreq: PacketType.PINGREQ,
    Pingresp: PacketType.PINGRESP,
    Disconnect: PacketType.DISCONNECT,
}
