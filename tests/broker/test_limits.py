"""Limits and timers of the device listener: each protects the broker from one client.

Packet size, connect timeout, connection count, keep-alive, in-flight window,
offline queue and write buffer. As in ``test_bad_input``, each test checks that
the offending connection alone is affected, that a ``Bystander`` connected
before it is still served, and that the matching counter and log line moved.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mqttproxy.protocol.codec import encode_packet, encode_remaining_length
from mqttproxy.protocol.packets import (
    Connack,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Subscribe,
    Will,
)
from tests.broker.bad_clients import (
    CLOSE_TIMEOUT,
    Bystander,
    assert_ping,
    assert_warning_logged,
    connected_bystander,
    connection_count,
    mqtt_string,
    peer_of,
    publish_acked,
    raw_connect,
    stat,
    subscribe_acked,
    wait_for_connections,
)
from tests.helpers import RawClient, ThreadedGateway, make_config, wait_until

GatewayFactory = Callable[..., ThreadedGateway]


@pytest.fixture
def broker_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="mqttproxy")
    return caplog


def expect_publish(client: RawClient, topic: str, payload: bytes, *, qos: int) -> Publish:
    packet = client.recv()
    assert isinstance(packet, Publish), packet
    assert (packet.topic, packet.payload, packet.qos) == (topic, payload, qos)
    return packet


# --- max_packet_size ----------------------------------------------------------------------

MAX_PACKET = 1024


def publish_of_total_size(topic: bytes, total: int) -> bytes:
    """A QoS 0 PUBLISH exactly ``total`` bytes long on the wire, fixed header included."""
    remaining = total - 3  # first byte + two remaining-length bytes (128..16383)
    assert 128 <= remaining < 16384
    payload = b"p" * (remaining - 2 - len(topic))
    data = b"\x30" + encode_remaining_length(remaining) + mqtt_string(topic) + payload
    assert len(data) == total
    return data


@pytest.mark.parametrize(
    ("header", "connect_first"),
    [
        pytest.param(b"\x30" + encode_remaining_length(MAX_PACKET), True, id="publish-just-over"),
        pytest.param(b"\x30" + encode_remaining_length(100_000_000), True, id="publish-100MB"),
        pytest.param(b"\x10" + encode_remaining_length(5_000), False, id="connect"),
        pytest.param(b"\x82" + encode_remaining_length(2_000), True, id="subscribe"),
    ],
)
def test_packet_over_max_packet_size_is_refused_from_its_header(
    gateway_factory: GatewayFactory,
    broker_log: pytest.LogCaptureFixture,
    header: bytes,
    connect_first: bool,
) -> None:
    # Only the fixed header is sent: the broker refuses on the declared length,
    # without waiting for (or buffering) the body.
    gateway = gateway_factory(mqtt={"max_packet_size": MAX_PACKET})
    with connected_bystander(gateway) as bystander, RawClient(gateway.port) as big:
        peer = peer_of(big)
        if connect_first:
            assert big.connect("big-client") == Connack()
        big.send(header)
        assert big.assert_closed(timeout=CLOSE_TIMEOUT) == []
        assert stat(gateway, "protocol_errors") == 1
        assert_warning_logged(broker_log, peer, "exceeds the maximum packet size 1024")
        bystander.assert_served()


def test_max_packet_size_is_inclusive(
    gateway_factory: GatewayFactory, broker_log: pytest.LogCaptureFixture
) -> None:
    # The limit counts the whole packet: exactly 1024 bytes passes, 1025 does not.
    gateway = gateway_factory(mqtt={"max_packet_size": MAX_PACKET})
    topic = f"{Bystander.TOPIC}/big".encode()
    with connected_bystander(gateway) as bystander:
        with RawClient(gateway.port) as client:
            assert client.connect("fits") == Connack()
            client.send(publish_of_total_size(topic, MAX_PACKET))
            message = bystander.client.get()
            assert (message.topic, len(message.payload)) == (topic.decode(), MAX_PACKET - 5 - len(topic))
            assert_ping(client)
            client.send(publish_of_total_size(topic, MAX_PACKET + 1))
            assert client.assert_closed(timeout=CLOSE_TIMEOUT) == []
        bystander.client.assert_no_message(wait=0.2)
        assert stat(gateway, "protocol_errors") == 1
        bystander.assert_served()


# --- connect_timeout ------------------------------------------------------------------------

CONNECT_TIMEOUT = 0.5
TIMER_SLACK = 1.0  # how late a timer may fire on a loaded machine


def trickle(client: RawClient, data: bytes, interval: float) -> None:
    """Send ``data`` one byte at a time (a slowloris client), until the broker hangs up."""
    for index in range(len(data)):
        try:
            client.sock.sendall(data[index : index + 1])
        except OSError:  # reset by the broker: it has closed already
            return
        time.sleep(interval)  # pacing the client, not waiting for the broker


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(lambda client: None, id="sends-nothing"),
        pytest.param(lambda client: client.send(raw_connect()[:7]), id="half-connect"),
        pytest.param(lambda client: client.send(b"\x10"), id="first-byte-only"),
        # The timer bounds the whole CONNECT, not the gap between bytes.
        pytest.param(lambda client: trickle(client, raw_connect(), 0.1), id="trickles-bytes"),
    ],
)
def test_incomplete_connect_is_closed_after_connect_timeout(
    gateway_factory: GatewayFactory,
    broker_log: pytest.LogCaptureFixture,
    behaviour: Callable[[RawClient], None],
) -> None:
    gateway = gateway_factory(mqtt={"connect_timeout": CONNECT_TIMEOUT})
    with connected_bystander(gateway) as bystander:
        with RawClient(gateway.port) as stalled:
            opened = time.monotonic()
            peer = peer_of(stalled)
            behaviour(stalled)
            assert stalled.assert_closed(timeout=CONNECT_TIMEOUT + TIMER_SLACK + 1) == []
            elapsed = time.monotonic() - opened
        assert CONNECT_TIMEOUT - 0.05 <= elapsed <= CONNECT_TIMEOUT + TIMER_SLACK
        assert_warning_logged(broker_log, peer, "no CONNECT within")
        bystander.assert_served()
        wait_for_connections(gateway, 1)


def test_connect_timeout_log_names_the_configured_timeout(
    gateway_factory: GatewayFactory, broker_log: pytest.LogCaptureFixture
) -> None:
    # An operator reading "no CONNECT within 0s" for a 0.5 s timeout is misled.
    gateway = gateway_factory(mqtt={"connect_timeout": CONNECT_TIMEOUT})
    with RawClient(gateway.port) as stalled:
        peer = peer_of(stalled)
        assert stalled.assert_closed(timeout=CONNECT_TIMEOUT + TIMER_SLACK + 1) == []
    assert_warning_logged(broker_log, peer, "no CONNECT within 0.5s")


def test_complete_connect_cancels_the_connect_timeout(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(mqtt={"connect_timeout": CONNECT_TIMEOUT})
    with RawClient(gateway.port) as client:
        assert client.connect("prompt", keep_alive=0) == Connack()
        client.assert_open(wait=CONNECT_TIMEOUT + 0.3)  # past the timeout: still open, nothing sent
        assert_ping(client)
        client.send(Disconnect())


# --- max_connections ------------------------------------------------------------------------


def test_connections_over_max_connections_are_closed_at_once(
    gateway_factory: GatewayFactory, broker_log: pytest.LogCaptureFixture
) -> None:
    first_n, extras = 3, 5
    # The bystander holds one of the slots.
    gateway = gateway_factory(mqtt={"max_connections": first_n + 1})
    with connected_bystander(gateway) as bystander:
        first = [RawClient(gateway.port) for _ in range(first_n)]
        try:
            for index, client in enumerate(first):
                assert client.connect(f"first-{index}") == Connack()
            for _ in range(extras):
                with RawClient(gateway.port) as extra:
                    peer = peer_of(extra)
                    started = time.monotonic()
                    # Dropped on accept: no CONNACK, no waiting for a CONNECT.
                    assert extra.assert_closed(timeout=CLOSE_TIMEOUT) == []
                    assert time.monotonic() - started < 1.0
                assert_warning_logged(broker_log, peer, "refusing connection", "max_connections 4")
            assert stat(gateway, "connections_refused") == extras
            assert connection_count(gateway) == first_n + 1
            # The first N (and the bystander) are untouched.
            for client in first:
                assert_ping(client)
            bystander.assert_served(publisher=first[0])
            for client in first:
                client.send(Disconnect())
                assert client.assert_closed(timeout=CLOSE_TIMEOUT) == []
        finally:
            for client in first:
                client.close()
        wait_for_connections(gateway, 1)
        # Slots freed: new connections are accepted again, up to the limit.
        again = [RawClient(gateway.port) for _ in range(first_n)]
        try:
            for index, client in enumerate(again):
                assert client.connect(f"again-{index}") == Connack()
            bystander.assert_served(publisher=again[-1])
        finally:
            for client in again:
                client.close()
        assert stat(gateway, "connections_refused") == extras


# --- keep-alive -------------------------------------------------------------------------------


def test_silent_client_is_closed_after_one_and_a_half_keep_alive(
    gateway: ThreadedGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mqttproxy")
    will = Will(topic=f"{Bystander.TOPIC}/will/silent", payload=b"went silent", qos=1)
    with connected_bystander(gateway) as bystander:
        with RawClient(gateway.port) as silent:
            assert silent.connect("silent", keep_alive=1, will=will) == Connack()
            connected = time.monotonic()
            # [MQTT-3.1.2-24] nothing for 1.5 x keep-alive: the server disconnects.
            assert silent.assert_closed(timeout=1.5 + TIMER_SLACK + 1) == []
            elapsed = time.monotonic() - connected
        assert 1.4 <= elapsed <= 1.5 + TIMER_SLACK
        # [MQTT-3.1.2-8] the will is published when the server closes the connection.
        bystander.expect(will.topic, will.payload)
        assert any("silent" in message and "keep-alive" in message for message in caplog.messages)
        bystander.assert_served()


def test_client_sending_pingreq_stays_connected(gateway: ThreadedGateway) -> None:
    will = Will(topic=f"{Bystander.TOPIC}/will/pinger", payload=b"pinger gone", qos=1)
    with connected_bystander(gateway) as bystander, RawClient(gateway.port) as pinger:
        assert pinger.connect("pinger", keep_alive=1, will=will) == Connack()
        connected = time.monotonic()
        # [MQTT-3.1.2-23] a PINGREQ within the keep-alive keeps the connection.
        while time.monotonic() - connected < 2.0:  # well past the 1.5 s window
            time.sleep(0.5)  # the client's own keep-alive interval
            pinger.send(Pingreq())
            assert pinger.recv() == Pingresp()
        assert_ping(pinger)
        bystander.assert_served()  # no will before the check's own message
        pinger.send(Disconnect())
        assert pinger.assert_closed(timeout=CLOSE_TIMEOUT) == []
    bystander.client.assert_no_message(wait=0.2)  # DISCONNECT discards the will [MQTT-3.14.4-3]


# --- max_inflight_messages ------------------------------------------------------------------


def test_inflight_window_holds_back_until_acknowledged(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(mqtt={"max_inflight_messages": 2})
    with RawClient(gateway.port) as subscriber, RawClient(gateway.port) as publisher:
        assert subscriber.connect("window") == Connack()
        subscribe_acked(subscriber, "window/#", 1)
        assert publisher.connect("window-pub") == Connack()
        payloads = [f"m{index}".encode() for index in range(5)]
        for index, payload in enumerate(payloads):
            publish_acked(publisher, "window/t", payload, packet_id=index + 1)
        first = expect_publish(subscriber, "window/t", payloads[0], qos=1)
        expect_publish(subscriber, "window/t", payloads[1], qos=1)
        subscriber.assert_open(wait=0.3)  # the window is full: nothing more until an ack
        assert gateway.call(lambda: len(gateway.broker.sessions["window"].queue)) == 3
        assert first.packet_id is not None
        subscriber.send(Puback(packet_id=first.packet_id))
        third = expect_publish(subscriber, "window/t", payloads[2], qos=1)
        subscriber.assert_open(wait=0.3)
        # Each ack lets the next queued message through, in order [MQTT-4.6.0-6].
        latest = third
        for payload in payloads[3:]:
            assert latest.packet_id is not None
            subscriber.send(Puback(packet_id=latest.packet_id))
            latest = expect_publish(subscriber, "window/t", payload, qos=1)
        assert stat(gateway, "dropped_queue_full") == 0


# --- max_queued_messages --------------------------------------------------------------------


def test_offline_queue_keeps_the_first_messages_and_counts_the_rest(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(mqtt={"max_queued_messages": 3})
    with RawClient(gateway.port) as subscriber:
        assert subscriber.connect("offline", clean_session=False) == Connack()
        subscribe_acked(subscriber, "queued/#", 1)
        subscriber.send(Disconnect())
        assert subscriber.assert_closed(timeout=CLOSE_TIMEOUT) == []
    wait_until(
        lambda: gateway.call(lambda: gateway.broker.sessions["offline"].connection is None),
        message="the persistent session to go offline",
    )
    payloads = [f"q{index}".encode() for index in range(10)]
    with RawClient(gateway.port) as publisher:
        assert publisher.connect("queue-pub") == Connack()
        for index, payload in enumerate(payloads):
            publish_acked(publisher, "queued/t", payload, packet_id=index + 1)
        publisher.send(Disconnect())
    assert stat(gateway, "dropped_queue_full") == 7
    with RawClient(gateway.port) as subscriber:
        # [MQTT-3.2.2-2] the session is resumed.
        assert subscriber.connect("offline", clean_session=False) == Connack(session_present=True)
        received = [expect_publish(subscriber, "queued/t", payload, qos=1) for payload in payloads[:3]]
        subscriber.assert_open(wait=0.3)  # nothing past the queue's three
        for packet in received:
            assert packet.packet_id is not None
            subscriber.send(Puback(packet_id=packet.packet_id))
        assert_ping(subscriber)
        subscriber.send(Disconnect())
    assert stat(gateway, "dropped_queue_full") == 7


def test_queue_behind_a_full_window_is_bounded_online(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(mqtt={"max_inflight_messages": 1, "max_queued_messages": 2})
    with RawClient(gateway.port) as subscriber, RawClient(gateway.port) as publisher:
        assert subscriber.connect("online") == Connack()
        subscribe_acked(subscriber, "online/#", 1)
        assert publisher.connect("online-pub") == Connack()
        payloads = [f"o{index}".encode() for index in range(6)]
        for index, payload in enumerate(payloads):
            publish_acked(publisher, "online/t", payload, packet_id=index + 1)
        # One in flight, two queued, three dropped.
        assert stat(gateway, "dropped_queue_full") == 3
        for payload in payloads[:3]:
            packet = expect_publish(subscriber, "online/t", payload, qos=1)
            assert packet.packet_id is not None
            subscriber.send(Puback(packet_id=packet.packet_id))
        subscriber.assert_open(wait=0.3)


# --- write_buffer_limit ---------------------------------------------------------------------

WRITE_BUFFER_LIMIT = 4096
CHUNK = 16 * 1024
MAX_FLOOD = 256 * 1024 * 1024  # give up (and fail) after this much


def test_slow_qos0_consumer_gets_drops_not_a_growing_buffer(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(mqtt={"write_buffer_limit": WRITE_BUFFER_LIMIT})
    with (
        connected_bystander(gateway) as bystander,
        RawClient(gateway.port) as slow,
        RawClient(gateway.port) as publisher,
    ):
        assert slow.connect("slow") == Connack()
        subscribe_acked(slow, "bulk/#", 0)
        # A small receive buffer fills sooner; from here on `slow` never reads.
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert publisher.connect("flood") == Connack()
        message = b"\x30" + encode_remaining_length(2 + 6 + CHUNK) + mqtt_string(b"bulk/t") + b"b" * CHUNK
        sent = 0
        while stat(gateway, "dropped_slow_consumer") == 0:
            assert sent < MAX_FLOOD, "the broker never dropped a message for the stalled reader"
            publisher.send(message * 16)
            sent += len(message) * 16
        # While `slow` is stalled, everyone else is served, new connections included.
        assert_ping(publisher)
        bystander.assert_served()
        bystander.assert_served(publisher=publisher)

        def buffered() -> int:
            connection = gateway.broker.sessions["slow"].connection
            size: int = connection._transport.get_write_buffer_size()
            return size

        # What is held for `slow` stays near the limit (one flush batch over it at
        # most), however much more is published.
        for _ in range(16):
            publisher.send(message * 16)
            sent += len(message) * 16
        assert_ping(publisher)
        assert gateway.call(buffered) < 1024 * 1024 < sent
        assert stat(gateway, "dropped_slow_consumer") > 0
        assert connection_count(gateway) == 3
        assert gateway.call(lambda: gateway.broker.stats.protocol_errors) == 0


def test_retained_qos0_replay_to_a_stalled_reader_respects_write_buffer_limit(
    gateway_factory: GatewayFactory,
) -> None:
    # README: write_buffer_limit is what is buffered for a slow client "before QoS 0
    # messages to it are dropped and counted". Retained QoS 0 messages sent on
    # SUBSCRIBE [MQTT-3.3.1-6] are QoS 0 messages to it as well: a client that
    # never reads must not make the broker buffer them without bound by
    # subscribing again and again (each SUBSCRIBE of a few bytes replays them all).
    gateway = gateway_factory(mqtt={"write_buffer_limit": WRITE_BUFFER_LIMIT})
    retained_count, subscribes = 20, 40
    with RawClient(gateway.port) as publisher, RawClient(gateway.port) as slow:
        assert publisher.connect("retainer") == Connack()
        for index in range(retained_count):
            publisher.send(Publish(topic=f"retained/{index}", payload=b"r" * CHUNK, retain=True))
        assert_ping(publisher)  # every retained message is stored
        assert slow.connect("stalled") == Connack()
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        received_before = stat(gateway, "bytes_received")
        requests = b"".join(
            raw_subscribe_bytes(packet_id, "retained/#") for packet_id in range(1, subscribes + 1)
        )
        slow.send(requests)
        # Wait until the broker has read every SUBSCRIBE (a broker that stops
        # reading from a stalled client instead never gets there, which is fine).
        deadline = time.monotonic() + 2.0
        while stat(gateway, "bytes_received") < received_before + len(requests):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)

        def buffered() -> int:
            connection = gateway.broker.sessions["stalled"].connection
            size: int = connection._transport.get_write_buffer_size()
            return size

        replayed = retained_count * CHUNK * subscribes
        assert gateway.call(buffered) < 1024 * 1024, (
            f"{gateway.call(buffered)} bytes buffered for a client with write_buffer_limit "
            f"{WRITE_BUFFER_LIMIT} ({replayed} bytes of retained replays requested); "
            f"dropped_slow_consumer={stat(gateway, 'dropped_slow_consumer')}"
        )


def raw_subscribe_bytes(packet_id: int, topic_filter: str, qos: int = 0) -> bytes:
    return encode_packet(Subscribe(packet_id=packet_id, subscriptions=((topic_filter, qos),)))


def test_a_client_that_stops_reading_is_not_read_from(gateway: ThreadedGateway) -> None:
    """While its socket buffer is full, a client's requests wait, so its answers cannot pile up."""
    with RawClient(gateway.port) as client:
        client.connect("not-reading")
        connection = gateway.call(lambda: gateway.broker.sessions["not-reading"].connection)
        # What the transport does once the client's unread bytes pass the high-water
        # mark; filling a loopback socket for real takes megabytes.
        gateway.call(connection.pause_writing)
        assert not gateway.call(connection._transport.is_reading)
        client.send(Pingreq())
        client.assert_open()  # not answered while paused
        gateway.call(connection.resume_writing)
        assert client.recv() == Pingresp()


def _event_loops() -> list[object]:
    loops: list[object] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # the 'fast' extra is optional
        return loops
    return [*loops, pytest.param(uvloop.new_event_loop, id="uvloop")]


@pytest.mark.parametrize("loop_factory", _event_loops())
def test_a_flooding_publisher_is_read_no_faster_than_delivered(
    tmp_path: Path, loop_factory: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    """QoS 0 to a subscriber that keeps reading is not dropped however hard one client publishes.

    uvloop reads a busy socket up to 32 times per loop iteration; the broker
    must still hand each burst on before reading the next, not buffer
    megabytes for one iteration and drop them as a "slow" consumer.
    """
    count = 40_000  # about 5 MB of PUBLISH in one sendall
    gateway = ThreadedGateway(make_config(tmp_path), loop_factory=loop_factory).start()
    try:
        with RawClient(gateway.port) as subscriber, RawClient(gateway.port) as publisher:
            subscriber.connect("reader")
            subscribe_acked(subscriber, "flood", 0)
            publisher.connect("flooder")
            packet = encode_packet(Publish(topic="flood", payload=bytes(100)))
            sender = threading.Thread(target=publisher.sock.sendall, args=(packet * count,))
            sender.start()
            expected = count * len(packet)  # each delivery is the same bytes as published
            received = 0
            subscriber.sock.settimeout(10)
            while received < expected:
                data = subscriber.sock.recv(1 << 20)
                assert data, "closed"
                received += len(data)
            sender.join(10)
            assert received == expected
        assert stat(gateway, "dropped_slow_consumer") == 0
    finally:
        gateway.stop()
