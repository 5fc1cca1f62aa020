"""Unacknowledged QoS 1/2 messages are sent again: after ack_timeout, and when a session resumes.

A real Mosquitto acknowledges at once, so these tests use a broker that
acknowledges only when told: the fault a real one cannot produce on demand.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any

import pytest

from mqttproxy.protocol.codec import Decoder, encode_packet
from mqttproxy.protocol.packets import Connack, Connect, Packet, Puback, Pubcomp, Publish, Pubrec, Pubrel
from mqttproxy.upstream.models import BrokerRecord
from tests.helpers import TIMEOUT, ThreadedGateway, paho_client, wait_until
from tests.upstream.util import add, samples, scrape, status, wait_state


class SilentBroker:
    """Accepts MQTT clients one after the other, answers CONNECT, records what they send.

    It acknowledges nothing unless told. From the second connection on, its
    CONNACK says a session is present when ``resume_session`` is set.
    """

    def __init__(self, *, resume_session: bool = False) -> None:
        self._resume_session = resume_session
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.packets: list[tuple[int, Packet]] = []  # (connection number from 1, packet)
        self.connections = 0
        self._connection: socket.socket | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._connection = connection
                number = self.connections
            self._read(connection, number)

    def _read(self, connection: socket.socket, number: int) -> None:
        decoder = Decoder()
        while True:
            try:
                data = connection.recv(65536)
            except OSError:
                return
            if not data:
                connection.close()
                return
            decoder.receive_data(data)
            while (packet := decoder.next_packet()) is not None:
                if isinstance(packet, Connect):
                    present = self._resume_session and number > 1
                    connection.sendall(encode_packet(Connack(session_present=present)))
                with self._lock:
                    self.packets.append((number, packet))

    def received(self, kind: type[Packet], connection: int | None = None) -> list[Any]:
        """The packets of ``kind`` received (on connection number ``connection``), in order."""
        with self._lock:
            return [
                packet
                for number, packet in self.packets
                if isinstance(packet, kind) and connection in (None, number)
            ]

    def send(self, packet: Packet) -> None:
        assert self._connection is not None
        self._connection.sendall(encode_packet(packet))

    def drop(self) -> None:
        """Close the current connection, as a network failure would."""
        assert self._connection is not None
        self._connection.shutdown(socket.SHUT_RDWR)  # wakes the thread's recv

    def __enter__(self) -> SilentBroker:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self._stopping.set()
        if self._connection is not None:
            self._connection.shutdown(socket.SHUT_RDWR)
            self._connection.close()
        self._thread.join(TIMEOUT)
        self._listener.close()


def silent_record(upstream: SilentBroker, **fields: Any) -> BrokerRecord:
    fields.setdefault("reconnect_min_delay", 0.05)
    fields.setdefault("reconnect_max_delay", 0.2)
    return BrokerRecord(id="slow", name="slow", address="127.0.0.1", port=upstream.port, **fields)


def test_unacknowledged_qos1_is_sent_again_with_dup_until_acked(gateway: ThreadedGateway) -> None:
    with SilentBroker() as upstream:
        add(gateway, silent_record(upstream, ack_timeout=0.3))
        wait_state(gateway, "slow")
        device = paho_client(gateway.port, "device")
        for seq in range(3):
            device.publish("t", str(seq), qos=1)
        wait_until(lambda: len(upstream.received(Publish)) >= 6, message="three messages sent twice")
        first, again = upstream.received(Publish)[:3], upstream.received(Publish)[3:6]
        assert [packet.payload for packet in first] == [b"0", b"1", b"2"]
        assert [packet.dup for packet in first] == [False] * 3
        # The same packets again, DUP set, same identifiers [MQTT-3.3.1-1].
        assert [(p.payload, p.packet_id, p.dup) for p in again] == [
            (p.payload, p.packet_id, True) for p in first
        ]
        assert status(gateway, "slow")["forwarded"] == 0
        assert status(gateway, "slow")["republished"] >= 3
        found = samples(scrape(gateway))
        slow = (("broker", "slow"),)
        assert found[("mqtt_upstream_inflight", slow)] == 3
        assert found[("mqtt_upstream_republished_total", slow)] >= 3
        assert found[("mqtt_messages_forwarded_total", slow)] == 0
        for packet in first:
            upstream.send(Puback(packet_id=packet.packet_id))
        wait_until(lambda: status(gateway, "slow")["forwarded"] == 3)
        assert status(gateway, "slow")["inflight"] == 0
        device.disconnect()


def test_qos2_without_pubcomp_gets_its_pubrel_again_not_the_publish(gateway: ThreadedGateway) -> None:
    with SilentBroker() as upstream:
        add(gateway, silent_record(upstream, ack_timeout=0.3, max_qos=2))
        wait_state(gateway, "slow")
        device = paho_client(gateway.port, "device")
        device.publish("t", b"exactly once", qos=2)
        wait_until(lambda: len(upstream.received(Publish)) >= 1, message="the PUBLISH")
        publish = upstream.received(Publish)[0]
        assert (publish.qos, publish.payload) == (2, b"exactly once")
        upstream.send(Pubrec(packet_id=publish.packet_id))
        # Released: from now on the PUBREL is what goes again [MQTT-4.3.3-1], never the PUBLISH.
        wait_until(lambda: len(upstream.received(Pubrel)) >= 3, message="the PUBREL sent again")
        assert {packet.packet_id for packet in upstream.received(Pubrel)} == {publish.packet_id}
        assert len(upstream.received(Publish)) == 1
        assert status(gateway, "slow")["forwarded"] == 0
        upstream.send(Pubcomp(packet_id=publish.packet_id))
        wait_until(lambda: status(gateway, "slow")["forwarded"] == 1)
        assert status(gateway, "slow")["inflight"] == 0
        device.disconnect()


@pytest.mark.parametrize("clean_session", [False, True], ids=["session-resumed", "clean-session"])
def test_in_flight_messages_after_a_reconnect(gateway: ThreadedGateway, clean_session: bool) -> None:
    """Resumed session: the same packets again, DUP set [MQTT-4.4.0-1]. Clean: sent anew, in order."""
    with SilentBroker(resume_session=not clean_session) as upstream:
        add(gateway, silent_record(upstream, clean_session=clean_session))  # ack_timeout: 30 s
        wait_state(gateway, "slow")
        device = paho_client(gateway.port, "device")
        for seq in range(3):
            device.publish("t", str(seq), qos=1)
        wait_until(lambda: len(upstream.received(Publish, 1)) == 3, message="three messages in flight")
        upstream.drop()
        wait_until(lambda: len(upstream.received(Publish, 2)) == 3, message="the three sent again")
        assert [connect.clean_session for connect in upstream.received(Connect)] == [clean_session] * 2
        before, after = upstream.received(Publish, 1), upstream.received(Publish, 2)
        assert [packet.payload for packet in after] == [b"0", b"1", b"2"]
        if clean_session:
            assert [packet.dup for packet in after] == [False] * 3
        else:
            assert [(p.packet_id, p.dup) for p in after] == [(p.packet_id, True) for p in before]
        assert status(gateway, "slow")["reconnects"] == 1
        for packet in after:
            upstream.send(Puback(packet_id=packet.packet_id))
        wait_until(lambda: status(gateway, "slow")["forwarded"] == 3)
        assert status(gateway, "slow")["republished"] == (0 if clean_session else 3)
        device.disconnect()
