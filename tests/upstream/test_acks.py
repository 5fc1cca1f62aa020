"""Unacknowledged QoS 1 messages are sent again; acknowledged ones complete."""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from mqttproxy.protocol.codec import Decoder, encode_packet
from mqttproxy.protocol.packets import Connack, Connect, Packet, Puback, Publish
from mqttproxy.upstream.models import BrokerRecord
from tests.helpers import TIMEOUT, ThreadedGateway, paho_client, wait_until
from tests.upstream.util import add, status, wait_state


class SilentBroker:
    """Accepts one MQTT client, answers CONNECT, records what it sends, acknowledges nothing unless told."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.packets: list[Packet] = []
        self._connection: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        self._connection = connection
        decoder = Decoder()
        while True:
            try:
                data = connection.recv(65536)
            except OSError:
                return
            if not data:
                return
            decoder.receive_data(data)
            while (packet := decoder.next_packet()) is not None:
                if isinstance(packet, Connect):
                    connection.sendall(encode_packet(Connack()))
                with self._lock:
                    self.packets.append(packet)

    def publishes(self) -> list[Publish]:
        with self._lock:
            return [packet for packet in self.packets if isinstance(packet, Publish)]

    def acknowledge(self, packet_id: int) -> None:
        assert self._connection is not None
        self._connection.sendall(encode_packet(Puback(packet_id=packet_id)))

    def __enter__(self) -> SilentBroker:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        if self._connection is not None:
            self._connection.shutdown(socket.SHUT_RDWR)  # wakes the thread's recv
            self._connection.close()
        self._listener.close()
        self._thread.join(TIMEOUT)


def test_unacknowledged_qos1_is_sent_again_with_dup_until_acked(gateway: ThreadedGateway) -> None:
    with SilentBroker() as upstream:
        add(
            gateway,
            BrokerRecord(id="slow", name="slow", address="127.0.0.1", port=upstream.port, ack_timeout=0.3),
        )
        wait_state(gateway, "slow")
        device = paho_client(gateway.port, "device")
        for seq in range(3):
            device.publish("t", str(seq), qos=1)
        wait_until(lambda: len(upstream.publishes()) >= 6, message="three messages sent twice")
        first, again = upstream.publishes()[:3], upstream.publishes()[3:6]
        assert [packet.payload for packet in first] == [b"0", b"1", b"2"]
        assert [packet.dup for packet in first] == [False] * 3
        # The same packets again, DUP set, same identifiers [MQTT-3.3.1-1].
        assert [(p.payload, p.packet_id, p.dup) for p in again] == [
            (p.payload, p.packet_id, True) for p in first
        ]
        assert status(gateway, "slow")["forwarded"] == 0
        assert status(gateway, "slow")["republished"] >= 3
        for packet in first:
            assert packet.packet_id is not None
            upstream.acknowledge(packet.packet_id)
        wait_until(lambda: status(gateway, "slow")["forwarded"] == 3)
        assert status(gateway, "slow")["inflight"] == 0
        device.disconnect()
