"""MQTT 3.1.1 wire format: ``encode_*``/``decode_*`` pairs and an incremental decoder.

Pure functions over bytes; no I/O. ``Decoder`` takes bytes in whatever pieces
the network delivers (one byte at a time, many packets at once) and yields
whole packets. Anything malformed raises ``RemoteProtocolError``; building a
packet the spec forbids raises ``LocalProtocolError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from mqttproxy.errors import LocalProtocolError, RemoteProtocolError
from mqttproxy.protocol.packets import (
    PROTOCOL_LEVEL,
    PROTOCOL_LEVEL_V31,
    PROTOCOL_NAME,
    PROTOCOL_NAME_V31,
    Connack,
    Connect,
    ConnectReturnCode,
    Disconnect,
    Packet,
    PacketType,
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
    Will,
)

# 2.2.3: the remaining length takes at most four bytes.
MAX_REMAINING_LENGTH = 268_435_455
MAX_STRING_LENGTH = 0xFFFF

# 2.2.2: the flags a fixed header must carry, for every type but PUBLISH.
_REQUIRED_FLAGS: dict[int, int] = {
    PacketType.CONNECT: 0,
    PacketType.CONNACK: 0,
    PacketType.PUBACK: 0,
    PacketType.PUBREC: 0,
    PacketType.PUBREL: 0b0010,  # [MQTT-3.6.1-1]
    PacketType.PUBCOMP: 0,
    PacketType.SUBSCRIBE: 0b0010,  # [MQTT-3.8.1-1]
    PacketType.SUBACK: 0,
    PacketType.UNSUBSCRIBE: 0b0010,  # [MQTT-3.10.1-1]
    PacketType.UNSUBACK: 0,
    PacketType.PINGREQ: 0,
    PacketType.PINGRESP: 0,
    PacketType.DISCONNECT: 0,
}


# --- encoding ---------------------------------------------------------------


def encode_remaining_length(length: int) -> bytes:
    if 0 <= length < 128:
        return _SMALL_LENGTHS[length]
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise LocalProtocolError(f"packet too large for MQTT: remaining length {length}")
    out = bytearray()
    while True:
        digit = length & 0x7F
        length >>= 7
        if length:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


_SMALL_LENGTHS = [bytes((n,)) for n in range(128)]


def _encode_utf8(value: str) -> bytes:
    if "\x00" in value:
        raise LocalProtocolError(f"a string must not contain U+0000 [MQTT-1.5.3-2]: {value!r}")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Lone surrogates have no UTF-8 encoding [MQTT-1.5.3-1].
        raise LocalProtocolError(f"not encodable as UTF-8 [MQTT-1.5.3-1]: {value!r}") from exc


def _encode_string(value: str) -> bytes:
    return _encode_binary(_encode_utf8(value))


def _encode_binary(value: bytes) -> bytes:
    if len(value) > MAX_STRING_LENGTH:
        raise LocalProtocolError(f"a string or binary field is at most 65535 bytes, not {len(value)}")
    return len(value).to_bytes(2, "big") + value


def _with_header(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_remaining_length(len(body)) + body


def encode_connect(packet: Connect) -> bytes:
    flags = 0x02 if packet.clean_session else 0
    payload = [_encode_string(packet.client_id)]
    if packet.will is not None:
        will = packet.will
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload.append(_encode_string(will.topic))
        payload.append(_encode_binary(will.payload))
    if packet.username is not None:
        flags |= 0x80
        payload.append(_encode_string(packet.username))
    if packet.password is not None:
        flags |= 0x40
        payload.append(_encode_binary(packet.password))
    header = (
        _encode_string(packet.protocol_name)
        + bytes((packet.protocol_level, flags))
        + packet.keep_alive.to_bytes(2, "big")
    )
    return _with_header(0x10, header + b"".join(payload))


def encode_connack(packet: Connack) -> bytes:
    return bytes((0x20, 2, 1 if packet.session_present else 0, packet.return_code))


_SHORT_PUBLISH_HEAD = struct.Struct(">BBH")  # first byte, 1-byte remaining length, topic length


def publish_bytes(
    topic: bytes,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    properties: bytes = b"",
) -> bytes:
    """Encode a PUBLISH from trusted, already validated fields (the hot path).

    ``properties`` is an encoded MQTT 5 property block (length included), for
    links to MQTT 5 upstreams; 3.1.1 packets have none.
    """
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    topic_length = len(topic)
    packet_id_bytes = b"" if packet_id is None else packet_id.to_bytes(2, "big")
    length = 2 + topic_length + len(packet_id_bytes) + len(properties) + len(payload)
    if length < 128:
        # Most telemetry fits a one-byte remaining length: one struct call.
        return (
            _SHORT_PUBLISH_HEAD.pack(first, length, topic_length)
            + topic
            + packet_id_bytes
            + properties
            + payload
        )
    return b"".join(
        (
            bytes((first,)),
            encode_remaining_length(length),
            topic_length.to_bytes(2, "big"),
            topic,
            packet_id_bytes,
            properties,
            payload,
        )
    )


def encode_publish(packet: Publish) -> bytes:
    topic = _encode_utf8(packet.topic)
    if len(topic) > MAX_STRING_LENGTH:
        raise LocalProtocolError(f"a topic name is at most 65535 bytes, not {len(topic)} [MQTT-4.7.3-3]")
    return publish_bytes(topic, packet.payload, packet.qos, packet.retain, packet.dup, packet.packet_id)


def _ack_bytes(first_byte: int, packet_id: int) -> bytes:
    return bytes((first_byte, 2, packet_id >> 8, packet_id & 0xFF))


def encode_puback(packet: Puback) -> bytes:
    return _ack_bytes(0x40, packet.packet_id)


def encode_pubrec(packet: Pubrec) -> bytes:
    return _ack_bytes(0x50, packet.packet_id)


def encode_pubrel(packet: Pubrel) -> bytes:
    return _ack_bytes(0x62, packet.packet_id)


def encode_pubcomp(packet: Pubcomp) -> bytes:
    return _ack_bytes(0x70, packet.packet_id)


def encode_subscribe(packet: Subscribe) -> bytes:
    body = [packet.packet_id.to_bytes(2, "big")]
    for topic_filter, qos in packet.subscriptions:
        body.append(_encode_string(topic_filter))
        body.append(bytes((qos,)))
    return _with_header(0x82, b"".join(body))


def encode_suback(packet: Suback) -> bytes:
    return _with_header(0x90, packet.packet_id.to_bytes(2, "big") + bytes(packet.return_codes))


def encode_unsubscribe(packet: Unsubscribe) -> bytes:
    body = [packet.packet_id.to_bytes(2, "big")]
    body.extend(_encode_string(topic_filter) for topic_filter in packet.topic_filters)
    return _with_header(0xA2, b"".join(body))


def encode_unsuback(packet: Unsuback) -> bytes:
    return _ack_bytes(0xB0, packet.packet_id)


def encode_pingreq(packet: Pingreq) -> bytes:
    return b"\xc0\x00"


def encode_pingresp(packet: Pingresp) -> bytes:
    return b"\xd0\x00"


def encode_disconnect(packet: Disconnect) -> bytes:
    return b"\xe0\x00"


_ENCODERS: dict[type, Callable[[Packet], bytes]] = {
    Connect: encode_connect,  # type: ignore[dict-item]
    Connack: encode_connack,  # type: ignore[dict-item]
    Publish: encode_publish,  # type: ignore[dict-item]
    Puback: encode_puback,  # type: ignore[dict-item]
    Pubrec: encode_pubrec,  # type: ignore[dict-item]
    Pubrel: encode_pubrel,  # type: ignore[dict-item]
    Pubcomp: encode_pubcomp,  # type: ignore[dict-item]
    Subscribe: encode_subscribe,  # type: ignore[dict-item]
    Suback: encode_suback,  # type: ignore[dict-item]
    Unsubscribe: encode_unsubscribe,  # type: ignore[dict-item]
    Unsuback: encode_unsuback,  # type: ignore[dict-item]
    Pingreq: encode_pingreq,  # type: ignore[dict-item]
    Pingresp: encode_pingresp,  # type: ignore[dict-item]
    Disconnect: encode_disconnect,  # type: ignore[dict-item]
}


def encode_packet(packet: Packet) -> bytes:
    """The wire bytes of any packet."""
    return _ENCODERS[type(packet)](packet)


# --- decoding ---------------------------------------------------------------
#
# Every decode_* function reads one packet body, buf[start:end], whose fixed
# header has already been checked, and returns the packet.


def _read_uint16(buf: bytes, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise RemoteProtocolError("packet ends inside a two-byte integer")
    return (buf[pos] << 8) | buf[pos + 1]


def _read_binary(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    length = _read_uint16(buf, pos, end)
    pos += 2
    if pos + length > end:
        raise RemoteProtocolError("a string or binary field runs past the end of its packet")
    return bytes(buf[pos : pos + length]), pos + length


def _read_string(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    raw, pos = _read_binary(buf, pos, end)
    try:
        value = raw.decode("utf-8")  # strict: rejects ill-formed and surrogates [MQTT-1.5.3-1]
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("a string is not well-formed UTF-8 [MQTT-1.5.3-1]") from exc
    if "\x00" in value:
        raise RemoteProtocolError("a string contains U+0000 [MQTT-1.5.3-2]")
    return value, pos


def _expect_end(pos: int, end: int, what: str) -> None:
    if pos != end:
        raise RemoteProtocolError(f"{end - pos} unexpected bytes at the end of {what}")


def decode_connect(flags: int, buf: bytes, start: int, end: int) -> Connect:
    protocol_name, pos = _read_string(buf, start, end)
    if protocol_name not in (PROTOCOL_NAME, PROTOCOL_NAME_V31):
        # [MQTT-3.1.2-1] we may only disconnect: no CONNACK.
        raise RemoteProtocolError(f"unknown protocol name {protocol_name!r}")
    if pos + 4 > end:
        raise RemoteProtocolError("CONNECT ends inside its variable header")
    level = buf[pos]
    if (protocol_name, level) not in (
        (PROTOCOL_NAME, PROTOCOL_LEVEL),
        (PROTOCOL_NAME_V31, PROTOCOL_LEVEL_V31),
    ):
        # [MQTT-3.1.2-2] answer 0x01 and close; the rest may be another version's format.
        raise RemoteProtocolError(
            f"unsupported protocol level {level} for {protocol_name!r}",
            return_code=ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION,
        )
    connect_flags = buf[pos + 1]
    keep_alive = (buf[pos + 2] << 8) | buf[pos + 3]
    pos += 4
    if connect_flags & 0x01:
        raise RemoteProtocolError("CONNECT reserved flag is set [MQTT-3.1.2-3]")
    will_flag = bool(connect_flags & 0x04)
    will_qos = (connect_flags >> 3) & 0x03
    will_retain = bool(connect_flags & 0x20)
    if not will_flag and (will_qos or will_retain):
        raise RemoteProtocolError(
            "Will QoS and Will Retain need the Will Flag [MQTT-3.1.2-11, MQTT-3.1.2-13]"
        )
    if will_qos == 3:
        raise RemoteProtocolError("Will QoS 3 [MQTT-3.1.2-14]")
    has_username = bool(connect_flags & 0x80)
    has_password = bool(connect_flags & 0x40)
    if has_password and not has_username:
        raise RemoteProtocolError("password flag without user name flag [MQTT-3.1.2-22]")

    client_id, pos = _read_string(buf, pos, end)
    will = None
    if will_flag:
        will_topic, pos = _read_string(buf, pos, end)
        will_payload, pos = _read_binary(buf, pos, end)
        will = Will(topic=will_topic, payload=will_payload, qos=will_qos, retain=will_retain)
    username = password = None
    if has_username:
        username, pos = _read_string(buf, pos, end)
    if has_password:
        password, pos = _read_binary(buf, pos, end)
    _expect_end(pos, end, "CONNECT")
    return Connect(
        client_id=client_id,
        clean_session=bool(connect_flags & 0x02),
        keep_alive=keep_alive,
        will=will,
        username=username,
        password=password,
        protocol_name=protocol_name,
        protocol_level=level,
    )


def decode_connack(flags: int, buf: bytes, start: int, end: int) -> Connack:
    if end - start != 2:
        raise RemoteProtocolError("CONNACK remaining length must be 2")
    acknowledge_flags, code = buf[start], buf[start + 1]
    if acknowledge_flags & 0xFE:
        raise RemoteProtocolError("CONNACK reserved bits are set [MQTT-3.2.2-1]")
    try:
        return_code = ConnectReturnCode(code)
    except ValueError as exc:
        raise RemoteProtocolError(f"CONNACK return code {code} is reserved") from exc
    return Connack(return_code=return_code, session_present=bool(acknowledge_flags))


def decode_publish(flags: int, buf: bytes, start: int, end: int) -> Publish:
    # The hot path: the topic is read inline rather than through _read_string;
    # Publish itself refuses U+0000 and wildcards in it.
    qos = (flags >> 1) & 0x03
    if start + 2 > end:
        raise RemoteProtocolError("PUBLISH ends inside its topic length")
    pos = start + 2 + ((buf[start] << 8) | buf[start + 1])
    if pos > end:
        raise RemoteProtocolError("PUBLISH topic runs past the end of the packet")
    try:
        topic = buf[start + 2 : pos].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError("a topic is not well-formed UTF-8 [MQTT-1.5.3-1]") from exc
    packet_id = None
    if qos:
        packet_id = _read_uint16(buf, pos, end)
        pos += 2
    return Publish(
        topic=topic,
        payload=bytes(buf[pos:end]),
        qos=qos,
        retain=bool(flags & 0x01),
        dup=bool(flags & 0x08),
        packet_id=packet_id,
    )


def _decode_packet_id_only(buf: bytes, start: int, end: int, what: str) -> int:
    if end - start != 2:
        raise RemoteProtocolError(f"{what} remaining length must be 2")
    return (buf[start] << 8) | buf[start + 1]


def decode_puback(flags: int, buf: bytes, start: int, end: int) -> Puback:
    return Puback(packet_id=_decode_packet_id_only(buf, start, end, "PUBACK"))


def decode_pubrec(flags: int, buf: bytes, start: int, end: int) -> Pubrec:
    return Pubrec(packet_id=_decode_packet_id_only(buf, start, end, "PUBREC"))


def decode_pubrel(flags: int, buf: bytes, start: int, end: int) -> Pubrel:
    return Pubrel(packet_id=_decode_packet_id_only(buf, start, end, "PUBREL"))


def decode_pubcomp(flags: int, buf: bytes, start: int, end: int) -> Pubcomp:
    return Pubcomp(packet_id=_decode_packet_id_only(buf, start, end, "PUBCOMP"))


def decode_subscribe(flags: int, buf: bytes, start: int, end: int) -> Subscribe:
    packet_id = _read_uint16(buf, start, end)
    pos = start + 2
    subscriptions = []
    while pos < end:
        topic_filter, pos = _read_string(buf, pos, end)
        if pos >= end:
            raise RemoteProtocolError("SUBSCRIBE ends before a requested QoS")
        requested = buf[pos]
        pos += 1
        if requested & 0xFC or requested == 3:
            raise RemoteProtocolError(f"requested QoS byte {requested:#x} is malformed [MQTT-3-8.3-4]")
        subscriptions.append((topic_filter, requested))
    return Subscribe(packet_id=packet_id, subscriptions=tuple(subscriptions))


def decode_suback(flags: int, buf: bytes, start: int, end: int) -> Suback:
    packet_id = _read_uint16(buf, start, end)
    return Suback(packet_id=packet_id, return_codes=tuple(buf[start + 2 : end]))


def decode_unsubscribe(flags: int, buf: bytes, start: int, end: int) -> Unsubscribe:
    packet_id = _read_uint16(buf, start, end)
    pos = start + 2
    topic_filters = []
    while pos < end:
        topic_filter, pos = _read_string(buf, pos, end)
        topic_filters.append(topic_filter)
    return Unsubscribe(packet_id=packet_id, topic_filters=tuple(topic_filters))


def decode_unsuback(flags: int, buf: bytes, start: int, end: int) -> Unsuback:
    return Unsuback(packet_id=_decode_packet_id_only(buf, start, end, "UNSUBACK"))


def _decode_empty(end: int, start: int, what: str) -> None:
    if end != start:
        raise RemoteProtocolError(f"{what} remaining length must be 0")


def decode_pingreq(flags: int, buf: bytes, start: int, end: int) -> Pingreq:
    _decode_empty(end, start, "PINGREQ")
    return Pingreq()


def decode_pingresp(flags: int, buf: bytes, start: int, end: int) -> Pingresp:
    _decode_empty(end, start, "PINGRESP")
    return Pingresp()


def decode_disconnect(flags: int, buf: bytes, start: int, end: int) -> Disconnect:
    _decode_empty(end, start, "DISCONNECT")
    return Disconnect()


_DECODERS: dict[int, Callable[[int, bytes, int, int], Packet]] = {
    PacketType.CONNECT: decode_connect,
    PacketType.CONNACK: decode_connack,
    PacketType.PUBLISH: decode_publish,
    PacketType.PUBACK: decode_puback,
    PacketType.PUBREC: decode_pubrec,
    PacketType.PUBREL: decode_pubrel,
    PacketType.PUBCOMP: decode_pubcomp,
    PacketType.SUBSCRIBE: decode_subscribe,
    PacketType.SUBACK: decode_suback,
    PacketType.UNSUBSCRIBE: decode_unsubscribe,
    PacketType.UNSUBACK: decode_unsuback,
    PacketType.PINGREQ: decode_pingreq,
    PacketType.PINGRESP: decode_pingresp,
    PacketType.DISCONNECT: decode_disconnect,
}


def check_first_byte(first_byte: int) -> None:
    """Reject a fixed header's type and flags as soon as its first byte arrives."""
    packet_type = first_byte >> 4
    flags = first_byte & 0x0F
    if packet_type == PacketType.PUBLISH:
        if flags & 0x06 == 0x06:
            raise RemoteProtocolError("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
        if flags & 0x08 and not flags & 0x06:
            raise RemoteProtocolError("QoS 0 PUBLISH with DUP set [MQTT-3.3.1-2]")
        return
    required = _REQUIRED_FLAGS.get(packet_type)
    if required is None:
        raise RemoteProtocolError(f"reserved packet type {packet_type}")
    if flags != required:
        raise RemoteProtocolError(
            f"{PacketType(packet_type).name} with fixed header flags {flags:#06b} [MQTT-2.2.2-2]"
        )


def _is_valid_first_byte(first_byte: int) -> bool:
    try:
        check_first_byte(first_byte)
    except RemoteProtocolError:
        return False
    return True


_VALID_FIRST_BYTE = [_is_valid_first_byte(value) for value in range(256)]


class Decoder:
    """Incremental decoder: feed bytes with ``receive_data``, take packets with ``next_packet``.

    ``max_packet_size`` bounds a whole packet (fixed header included); a
    larger one is refused as soon as its remaining length has been read, so
    a peer cannot make us buffer it.
    """

    __slots__ = ("_buffer", "_pos", "max_packet_size")

    def __init__(self, *, max_packet_size: int = MAX_REMAINING_LENGTH + 5) -> None:
        self._buffer: bytes | bytearray = b""
        self._pos = 0
        self.max_packet_size = max_packet_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded."""
        return len(self._buffer) - self._pos

    def receive_data(self, data: bytes) -> None:
        if self._pos >= len(self._buffer):
            # The usual case: everything before was consumed; keep the bytes
            # object as it is, without copying.
            self._buffer = data
        else:
            # A packet is split across reads. Accumulate in a bytearray so a
            # peer trickling a large packet costs amortised O(1) per byte.
            if isinstance(self._buffer, bytes):
                self._buffer = bytearray(self._buffer[self._pos :])
            else:
                del self._buffer[: self._pos]
            self._buffer += data
        self._pos = 0

    def next_packet(self) -> Packet | None:
        """The next whole packet, or ``None`` until more bytes arrive."""
        buf = self._buffer
        pos = self._pos
        available = len(buf) - pos
        if available < 1:
            return None
        first_byte = buf[pos]
        if not _VALID_FIRST_BYTE[first_byte]:
            check_first_byte(first_byte)  # raises, saying what is wrong
        # 2.2.3 remaining length: 7 bits a byte, at most 4 bytes.
        length = 0
        shift = 0
        index = pos + 1
        while True:
            if index >= len(buf):
                return None
            digit = buf[index]
            index += 1
            length |= (digit & 0x7F) << shift
            if not digit & 0x80:
                break
            shift += 7
            if shift == 28:
                raise RemoteProtocolError("remaining length longer than 4 bytes [MQTT-2.2.3]")
        end = index + length
        if end - pos > self.max_packet_size:
            raise RemoteProtocolError(
                f"packet of {end - pos} bytes exceeds the maximum packet size {self.max_packet_size}"
            )
        if end > len(buf):
            return None
        self._pos = end
        if isinstance(buf, bytearray):
            # Decode from an immutable copy: packets must not share the buffer.
            body = bytes(buf[index:end])
            buf, index, end = body, 0, len(body)
        try:
            return _DECODERS[first_byte >> 4](first_byte & 0x0F, buf, index, end)
        except LocalProtocolError as exc:
            # A value that fails the packet's own validation came off the wire.
            raise RemoteProtocolError(str(exc)) from exc
