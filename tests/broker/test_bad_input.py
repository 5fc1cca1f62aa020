"""Bad input on the device listener: each bad connection is closed and logged, nobody else notices.

Every test sends something a well-behaved MQTT 3.1.1 client never sends, over a
raw socket, and checks three things:

(a) that connection is closed, after exactly what the spec says to send first
    (usually nothing; a CONNACK for a refused CONNECT);
(b) the broker still serves everyone else: a paho subscriber connected before
    the bad client (the ``Bystander``) still gets a message published after it;
(c) the matching ``BrokerStats`` counter moved, and a WARNING naming the bad
    connection was logged.

Spec ids in comments refer to the MQTT 3.1.1 OASIS standard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from mqttproxy.broker.auth import hash_password
from mqttproxy.protocol.packets import (
    Connack,
    ConnectReturnCode,
    Disconnect,
    Packet,
    Puback,
    Publish,
    Will,
)
from tests.broker.bad_clients import (
    CLOSE_TIMEOUT,
    Bystander,
    assert_ping,
    assert_rejected,
    assert_warning_logged,
    connected_bystander,
    mqtt_string,
    peer_of,
    random_garbage,
    raw_connect,
    raw_packet,
    raw_publish,
    raw_subscribe,
    stat,
    subscribe_acked,
)
from tests.helpers import RawClient, ThreadedGateway, wait_until

# --- garbage ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n", id="http-request"),
        # A TLS ClientHello record header on the plain-TCP port: 0x16 reads as CONNECT with flags 0110.
        pytest.param(bytes.fromhex("160301020001") + bytes(64), id="tls-client-hello"),
        pytest.param(bytes(32), id="zeros"),
        pytest.param(b"\xff" * 32, id="ones"),
        *(pytest.param(random_garbage(seed), id=f"random-{seed}") for seed in range(4)),
    ],
)
def test_garbage_as_first_bytes(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture, data: bytes
) -> None:
    # [MQTT-2.2.2-2] invalid flags / reserved packet types: close without answering [MQTT-4.8.0-1].
    assert_rejected(gateway, bystander, broker_log, data, connect_first=False, log="closing connection")


@pytest.mark.parametrize("seed", [pytest.param(seed, id=f"random-{seed}") for seed in range(4)])
def test_garbage_after_connect(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture, seed: int
) -> None:
    assert_rejected(
        gateway, bystander, broker_log, random_garbage(seed), connect_first=True, log="closing connection"
    )


def test_garbage_in_the_same_write_as_connect(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture
) -> None:
    # The CONNECT is answered (packets after it are held until CONNACK), then the garbage closes it.
    assert_rejected(
        gateway,
        bystander,
        broker_log,
        raw_connect() + random_garbage(7),
        connect_first=False,
        expected=(Connack(),),
        log="closing connection",
    )


def test_protocol_error_publishes_the_will(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture
) -> None:
    # 3.1.2.5: closing the connection for a protocol error publishes the will [MQTT-3.1.2-8].
    will = Will(topic=f"{Bystander.TOPIC}/will/garbage", payload=b"went bad", qos=1)
    with RawClient(gateway.port) as bad:
        assert bad.connect("will-client", will=will).return_code == ConnectReturnCode.ACCEPTED
        bad.send(random_garbage(11))
        assert bad.assert_closed(timeout=CLOSE_TIMEOUT) == []
    bystander.expect(will.topic, will.payload)
    assert stat(gateway, "protocol_errors") == 1
    bystander.assert_served()


# --- remaining length ------------------------------------------------------------------

# 2.2.3: four bytes at most; the fourth must not have its continuation bit set.
FIVE_BYTE_LENGTH = b"\xff\xff\xff\xff\x01"


@pytest.mark.parametrize(
    ("data", "connect_first"),
    [
        pytest.param(b"\x10" + FIVE_BYTE_LENGTH, False, id="connect"),
        pytest.param(b"\x30" + FIVE_BYTE_LENGTH, True, id="publish-after-connect"),
        pytest.param(b"\xc0" + FIVE_BYTE_LENGTH, True, id="pingreq-after-connect"),
    ],
)
def test_remaining_length_of_five_bytes(
    gateway: ThreadedGateway,
    bystander: Bystander,
    broker_log: pytest.LogCaptureFixture,
    data: bytes,
    connect_first: bool,
) -> None:
    assert_rejected(gateway, bystander, broker_log, data, connect_first=connect_first, log="remaining length")


# --- packet order ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(raw_publish(b"a/b", b"payload"), id="publish"),
        pytest.param(b"\xc0\x00", id="pingreq"),
        pytest.param(raw_subscribe(b"a/#"), id="subscribe"),
        pytest.param(b"\xe0\x00", id="disconnect"),
    ],
)
def test_first_packet_not_connect(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture, data: bytes
) -> None:
    # [MQTT-3.1.0-1] the first packet from the client must be CONNECT.
    assert_rejected(
        gateway, bystander, broker_log, data, connect_first=False, log="not CONNECT [MQTT-3.1.0-1]"
    )


@pytest.mark.parametrize(
    ("data", "connect_first", "expected"),
    [
        pytest.param(raw_connect(b"again"), True, (), id="after-connack"),
        # Pipelined before the CONNACK: the first is answered, the second closes [MQTT-3.1.4-5].
        pytest.param(raw_connect() + raw_connect(b"again"), False, (Connack(),), id="same-write"),
    ],
)
def test_second_connect(
    gateway: ThreadedGateway,
    bystander: Bystander,
    broker_log: pytest.LogCaptureFixture,
    data: bytes,
    connect_first: bool,
    expected: tuple[Packet, ...],
) -> None:
    # [MQTT-3.1.0-2] a second CONNECT is a protocol violation: disconnect.
    assert_rejected(
        gateway,
        bystander,
        broker_log,
        data,
        connect_first=connect_first,
        expected=expected,
        log="second CONNECT",
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x20\x02\x00\x00", id="connack"),
        pytest.param(b"\x90\x03\x00\x01\x00", id="suback"),
        pytest.param(b"\xb0\x02\x00\x01", id="unsuback"),
        pytest.param(b"\xd0\x00", id="pingresp"),
    ],
)
def test_server_only_packet_from_client(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture, data: bytes
) -> None:
    # 2.2.1: these flow from server to client only.
    assert_rejected(gateway, bystander, broker_log, data, connect_first=True, log="may not send")


# --- CONNECT: protocol name and level ---------------------------------------------------


def mqtt5_connect(client_id: bytes = b"v5-device") -> bytes:
    """A genuine MQTT 5 CONNECT: level 5 and an (empty) properties field after keep-alive."""
    body = (
        mqtt_string(b"MQTT") + bytes((5, 0x02)) + (60).to_bytes(2, "big") + b"\x00" + mqtt_string(client_id)
    )
    return raw_packet(0x10, body)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(raw_connect(name=b"MQTX"), id="MQTX"),
        pytest.param(raw_connect(name=b"mqtt"), id="lowercase"),
        pytest.param(raw_connect(name=b""), id="empty"),
        pytest.param(raw_connect(name=b"HTTP/1.1"), id="HTTP"),
    ],
)
def test_unknown_protocol_name_closes_without_connack(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture, data: bytes
) -> None:
    # [MQTT-3.1.2-1] a wrong protocol name: the server may disconnect, and must not
    # answer as MQTT 3.1.1 would, so nothing is sent.
    assert_rejected(gateway, bystander, broker_log, data, connect_first=False, log="protocol name")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(mqtt5_connect(), id="MQTT-5"),
        pytest.param(raw_connect(level=3), id="MQTT-3"),
        pytest.param(raw_connect(level=0xFF), id="MQTT-255"),
        pytest.param(raw_connect(name=b"MQIsdp", level=4), id="MQIsdp-4"),
    ],
)
def test_unsupported_protocol_level_gets_connack_1(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture, data: bytes
) -> None:
    # [MQTT-3.1.2-2] respond with CONNACK 0x01 (unacceptable protocol level), then disconnect.
    assert_rejected(
        gateway,
        bystander,
        broker_log,
        data,
        connect_first=False,
        expected=(Connack(return_code=ConnectReturnCode.UNACCEPTABLE_PROTOCOL_VERSION),),
        log="protocol level",
    )


# --- PUBLISH topic names ---------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param(b"a/+", id="plus"),
        pytest.param(b"a/#", id="hash"),
        pytest.param(b"#", id="hash-alone"),
        pytest.param(b"+/b", id="plus-first"),
        pytest.param(b"a/b+c", id="plus-inside-level"),
    ],
)
@pytest.mark.parametrize("qos", [pytest.param(0, id="qos0"), pytest.param(1, id="qos1")])
def test_publish_to_wildcard_topic(
    gateway: ThreadedGateway,
    bystander: Bystander,
    broker_log: pytest.LogCaptureFixture,
    topic: bytes,
    qos: int,
) -> None:
    # [MQTT-3.3.2-2] the topic name in a PUBLISH must not contain wildcards.
    data = raw_publish(topic, first_byte=0x30 | qos << 1, packet_id=1 if qos else None)
    assert_rejected(gateway, bystander, broker_log, data, connect_first=True, log="wildcards")


def test_publish_with_wildcard_topic_is_not_delivered(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture
) -> None:
    # The bystander subscribes to bystander/#: a PUBLISH to "bystander/#" must not reach it.
    with RawClient(gateway.port) as bad:
        bad.connect("bad-client")
        bad.send(raw_publish(f"{Bystander.TOPIC}/#".encode(), b"must not arrive"))
        assert bad.assert_closed(timeout=CLOSE_TIMEOUT) == []
    bystander.assert_served()  # the first message the bystander sees is its own check


def test_publish_with_empty_topic(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture
) -> None:
    # [MQTT-4.7.3-1] a topic name is at least one character long.
    assert_rejected(
        gateway, bystander, broker_log, raw_publish(b""), connect_first=True, log="[MQTT-4.7.3-1]"
    )


# --- reserved flag bits -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "connect_first", "log"),
    [
        # [MQTT-3.6.1-1] PUBREL fixed header flags are 0010.
        pytest.param(b"\x60\x02\x00\x01", True, "[MQTT-2.2.2-2]", id="pubrel-0x60"),
        pytest.param(b"\x6f\x02\x00\x01", True, "[MQTT-2.2.2-2]", id="pubrel-0x6f"),
        # [MQTT-3.8.1-1] SUBSCRIBE fixed header flags are 0010.
        pytest.param(raw_subscribe(b"a/b", first_byte=0x80), True, "[MQTT-2.2.2-2]", id="subscribe-0x80"),
        # [MQTT-3.10.1-1] UNSUBSCRIBE fixed header flags are 0010.
        pytest.param(
            raw_packet(0xA0, b"\x00\x01" + mqtt_string(b"a/b")), True, "[MQTT-2.2.2-2]", id="unsubscribe-0xa0"
        ),
        pytest.param(b"\x41\x02\x00\x01", True, "[MQTT-2.2.2-2]", id="puback-0x41"),
        pytest.param(b"\xc1\x00", True, "[MQTT-2.2.2-2]", id="pingreq-0xc1"),
        pytest.param(b"\xe2\x00", True, "[MQTT-2.2.2-2]", id="disconnect-0xe2"),
        pytest.param(raw_connect(first_byte=0x11), False, "[MQTT-2.2.2-2]", id="connect-0x11"),
        # [MQTT-3.1.2-3] the reserved bit of the CONNECT flags is 0.
        pytest.param(raw_connect(flags=0x03), False, "[MQTT-3.1.2-3]", id="connect-flags-reserved"),
        # [MQTT-3.3.1-4] PUBLISH QoS 3.
        pytest.param(raw_publish(b"a/b", first_byte=0x36, packet_id=1), True, "QoS 3", id="publish-qos3"),
        # [MQTT-3.3.1-2] DUP must be 0 on a QoS 0 PUBLISH.
        pytest.param(raw_publish(b"a/b", first_byte=0x38), True, "DUP", id="publish-qos0-dup"),
        # [MQTT-3-8.3-4] the upper six bits of a requested QoS are reserved, and QoS 3 is malformed.
        pytest.param(raw_subscribe(b"a/b", qos=0x41), True, "requested QoS", id="subscribe-qos-0x41"),
        pytest.param(raw_subscribe(b"a/b", qos=3), True, "requested QoS", id="subscribe-qos-3"),
        # [MQTT-3.1.2-14] Will QoS 3; [MQTT-3.1.2-11] Will QoS without the Will Flag.
        pytest.param(
            raw_connect(flags=0x02 | 0x04 | 0x18, tail=mqtt_string(b"w") + mqtt_string(b"x")),
            False,
            "[MQTT-3.1.2-14]",
            id="connect-will-qos3",
        ),
        pytest.param(raw_connect(flags=0x02 | 0x08), False, "[MQTT-3.1.2-11", id="connect-will-qos-no-flag"),
        pytest.param(
            raw_connect(flags=0x02 | 0x20), False, "[MQTT-3.1.2-11", id="connect-will-retain-no-flag"
        ),
        # [MQTT-3.1.2-22] a password flag without the user name flag.
        pytest.param(
            raw_connect(flags=0x02 | 0x40, tail=mqtt_string(b"pw")),
            False,
            "[MQTT-3.1.2-22]",
            id="password-no-user",
        ),
    ],
)
def test_reserved_flag_bits(
    gateway: ThreadedGateway,
    bystander: Bystander,
    broker_log: pytest.LogCaptureFixture,
    data: bytes,
    connect_first: bool,
    log: str,
) -> None:
    assert_rejected(gateway, bystander, broker_log, data, connect_first=connect_first, log=log)


# --- other malformed packets --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "connect_first"),
    [
        pytest.param(raw_connect(tail=b"\x00"), False, id="connect-trailing-byte"),
        pytest.param(raw_packet(0x10, mqtt_string(b"MQTT") + b"\x04\x02"), False, id="connect-truncated"),
        pytest.param(
            raw_packet(0x10, mqtt_string(b"MQTT") + b"\x04\x02\x00\x3c\x00\x20abc"),
            False,
            id="connect-client-id-runs-past-end",
        ),
        # [MQTT-2.3.1-1] packet identifiers are non-zero.
        pytest.param(raw_publish(b"a/b", first_byte=0x32, packet_id=0), True, id="publish-packet-id-0"),
        pytest.param(raw_packet(0x32, mqtt_string(b"a/b") + b"\x00"), True, id="publish-qos1-no-packet-id"),
        pytest.param(b"\x40\x03\x00\x01\x00", True, id="puback-length-3"),
        pytest.param(b"\xc0\x01\x00", True, id="pingreq-length-1"),
        # [MQTT-3.8.3-3] a SUBSCRIBE carries at least one topic filter.
        pytest.param(raw_packet(0x82, b"\x00\x01"), True, id="subscribe-no-filter"),
        pytest.param(raw_packet(0x82, b"\x00\x01" + mqtt_string(b"a/b")), True, id="subscribe-no-qos-byte"),
        # [MQTT-4.7.1-2] '#' must be last; [MQTT-4.7.1-3] '+' fills a whole level.
        pytest.param(raw_subscribe(b"a/#/b"), True, id="subscribe-hash-not-last"),
        pytest.param(raw_subscribe(b"a/b+"), True, id="subscribe-plus-in-level"),
        # [MQTT-3.10.3-2] an UNSUBSCRIBE carries at least one topic filter.
        pytest.param(raw_packet(0xA2, b"\x00\x01"), True, id="unsubscribe-no-filter"),
    ],
)
def test_malformed_packet(
    gateway: ThreadedGateway,
    bystander: Bystander,
    broker_log: pytest.LogCaptureFixture,
    data: bytes,
    connect_first: bool,
) -> None:
    # [MQTT-4.8.0-1] a malformed packet closes the connection.
    assert_rejected(
        gateway, bystander, broker_log, data, connect_first=connect_first, log="closing connection"
    )


# --- UTF-8 ------------------------------------------------------------------------------

BAD_UTF8 = [
    pytest.param(b"a/\xff", "[MQTT-1.5.3-1]", id="byte-ff"),
    pytest.param(b"a/\xc3", "[MQTT-1.5.3-1]", id="truncated-sequence"),
    pytest.param(b"a\xc0\xafb", "[MQTT-1.5.3-1]", id="overlong-slash"),
    pytest.param(b"a/\xed\xa0\x80", "[MQTT-1.5.3-1]", id="surrogate-d800"),
    pytest.param(b"a/\xf4\x90\x80\x80", "[MQTT-1.5.3-1]", id="above-10ffff"),
    # [MQTT-1.5.3-2], [MQTT-4.7.3-2] U+0000, plainly and as Java's "modified UTF-8" 0xC0 0x80.
    pytest.param(b"a/\x00b", "U+0000", id="nul"),
    pytest.param(b"a/\xc0\x80", "[MQTT-1.5.3-1]", id="modified-utf8-nul"),
]


@pytest.mark.parametrize(("topic", "log"), BAD_UTF8)
def test_ill_formed_utf8_in_publish_topic(
    gateway: ThreadedGateway,
    bystander: Bystander,
    broker_log: pytest.LogCaptureFixture,
    topic: bytes,
    log: str,
) -> None:
    assert_rejected(gateway, bystander, broker_log, raw_publish(topic), connect_first=True, log=log)


@pytest.mark.parametrize(("topic", "log"), BAD_UTF8)
def test_ill_formed_utf8_in_subscribe_filter(
    gateway: ThreadedGateway,
    bystander: Bystander,
    broker_log: pytest.LogCaptureFixture,
    topic: bytes,
    log: str,
) -> None:
    assert_rejected(gateway, bystander, broker_log, raw_subscribe(topic), connect_first=True, log=log)


@pytest.mark.parametrize(
    ("data", "log"),
    [
        pytest.param(raw_connect(b"dev\xff"), "[MQTT-1.5.3-1]", id="client-id"),
        pytest.param(raw_connect(b"dev\x00"), "[MQTT-1.5.3-2]", id="client-id-nul"),
        pytest.param(
            raw_connect(flags=0x06, tail=mqtt_string(b"w/\xed\xa0\x80") + mqtt_string(b"x")),
            "[MQTT-1.5.3-1]",
            id="will-topic",
        ),
        pytest.param(raw_connect(flags=0x82, tail=mqtt_string(b"us\xe9r")), "[MQTT-1.5.3-1]", id="user-name"),
    ],
)
def test_ill_formed_utf8_in_connect(
    gateway: ThreadedGateway,
    bystander: Bystander,
    broker_log: pytest.LogCaptureFixture,
    data: bytes,
    log: str,
) -> None:
    assert_rejected(gateway, bystander, broker_log, data, connect_first=False, log=log)


# --- client identifiers ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        # [MQTT-3.1.3-8] zero-length client id with clean session 0: CONNACK 0x02, then close.
        pytest.param(raw_connect(b"", flags=0x00), id="empty-id-persistent"),
        # MQTT 3.1 requires a client id of 1 to 23 characters.
        pytest.param(raw_connect(b"", name=b"MQIsdp", level=3), id="mqisdp-empty-id"),
        pytest.param(raw_connect(b"x" * 24, name=b"MQIsdp", level=3), id="mqisdp-24-chars"),
    ],
)
def test_client_id_rejected(
    gateway: ThreadedGateway, bystander: Bystander, broker_log: pytest.LogCaptureFixture, data: bytes
) -> None:
    assert_rejected(
        gateway,
        bystander,
        broker_log,
        data,
        connect_first=False,
        expected=(Connack(return_code=ConnectReturnCode.IDENTIFIER_REJECTED),),
        log="refusing CONNECT",
        counter=None,
    )
    assert stat(gateway, "protocol_errors") == 0  # a refusal, not a protocol error


def test_empty_client_id_with_clean_session_gets_an_assigned_id(
    gateway: ThreadedGateway, bystander: Bystander
) -> None:
    def auto_ids() -> list[str]:
        return [client_id for client_id in gateway.broker.sessions if client_id.startswith("auto-")]

    with RawClient(gateway.port) as client:
        # [MQTT-3.1.3-6, MQTT-3.1.3-7] the server assigns a unique id.
        assert client.connect("", clean_session=True) == Connack()
        assigned = gateway.call(auto_ids)
        assert len(assigned) == 1
        subscribe_acked(client, "anon/#", 1)
        bystander.assert_served(publisher=client)
        # Its own subscription works too; the delivery and the PUBACK may come in either order.
        client.send(Publish(topic="anon/echo", payload=b"to myself", qos=1, packet_id=9))
        received = [client.recv(), client.recv()]
        assert Puback(packet_id=9) in received
        echo = next(packet for packet in received if isinstance(packet, Publish))
        assert (echo.topic, echo.payload, echo.qos) == ("anon/echo", b"to myself", 1)
        assert echo.packet_id is not None
        client.send(Puback(packet_id=echo.packet_id))
        client.send(Disconnect())
        assert client.assert_closed(timeout=CLOSE_TIMEOUT) == []
    wait_until(lambda: gateway.call(auto_ids) == [], message="the assigned clean session to end")
    with RawClient(gateway.port) as other:
        assert other.connect("", clean_session=True) == Connack()
        assert gateway.call(auto_ids) not in ([], assigned)  # a fresh id each time
        other.send(Disconnect())


# --- authentication ----------------------------------------------------------------------

USER = "u"
PASSWORD = "correct-Horse-7f3a"  # distinctive, so finding it in the log cannot be a coincidence
WRONG_PASSWORD = "wrong-Battery-91c2"


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def auth_gateway(gateway_factory: Callable[..., ThreadedGateway], password_hash: str) -> ThreadedGateway:
    return gateway_factory(allow_anonymous=False, users=[{"username": USER, "password_hash": password_hash}])


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        # [MQTT-3.2.2-5] refused: CONNACK with a non-zero code, then close.
        pytest.param(None, None, ConnectReturnCode.NOT_AUTHORIZED, id="no-credentials"),
        pytest.param(USER, WRONG_PASSWORD, ConnectReturnCode.BAD_USERNAME_OR_PASSWORD, id="wrong-password"),
        pytest.param("nobody", PASSWORD, ConnectReturnCode.BAD_USERNAME_OR_PASSWORD, id="unknown-user"),
        pytest.param(USER, None, ConnectReturnCode.BAD_USERNAME_OR_PASSWORD, id="user-without-password"),
        pytest.param(USER, "", ConnectReturnCode.BAD_USERNAME_OR_PASSWORD, id="empty-password"),
        pytest.param(USER, PASSWORD, ConnectReturnCode.ACCEPTED, id="right-password"),
    ],
)
def test_authentication(
    auth_gateway: ThreadedGateway,
    caplog: pytest.LogCaptureFixture,
    username: str | None,
    password: str | None,
    code: ConnectReturnCode,
) -> None:
    caplog.set_level(logging.DEBUG, logger="mqttproxy")  # everything: no level may leak the password
    gateway = auth_gateway
    with connected_bystander(gateway, username=USER, password=PASSWORD) as bystander:
        with RawClient(gateway.port) as client:
            peer = peer_of(client)
            raw_password = None if password is None else password.encode()
            assert client.connect("auth-client", username=username, password=raw_password) == Connack(
                return_code=code
            )
            if code == ConnectReturnCode.ACCEPTED:
                assert_ping(client)
                client.send(Disconnect())
            else:
                assert client.assert_closed(timeout=CLOSE_TIMEOUT) == []
        refused = code != ConnectReturnCode.ACCEPTED
        assert stat(gateway, "auth_failures") == int(refused)
        if refused:
            expected = "authentication failed" if username is not None else "anonymous access is off"
            assert_warning_logged(caplog, peer, expected)
        bystander.assert_served()
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in caplog.text
        assert all(secret not in repr(record.args) for record in caplog.records)
