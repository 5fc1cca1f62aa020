"""Test utilities: the gateway in a background thread, paho clients, raw sockets."""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mqttproxy.app import Gateway
from mqttproxy.config import AuthConfig, Config, MqttConfig, UpstreamConfig, WebConfig
from mqttproxy.errors import RemoteProtocolError
from mqttproxy.protocol.codec import Decoder, encode_packet
from mqttproxy.protocol.packets import Connack, Connect, Packet

T = TypeVar("T")
TIMEOUT = 5.0


def require_binary(name: str) -> str:
    """Path of an external program a test needs: skip without it, but fail on CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package: see README)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def make_config(
    tmp_path: Path,
    *,
    mqtt: dict[str, Any] | None = None,
    upstream: dict[str, Any] | None = None,
    **auth: Any,
) -> Config:
    """A config for tests: loopback, ephemeral ports, anonymous allowed unless overridden."""
    auth.setdefault("allow_anonymous", True)
    return Config(
        gateway_id="test-gateway",
        data_dir=tmp_path / "data",
        mqtt=MqttConfig(host="127.0.0.1", port=0, **(mqtt or {})),
        auth=AuthConfig(**auth),
        upstream=UpstreamConfig(**{"connect_timeout": 2.0, **(upstream or {})}),
        web=WebConfig(host="127.0.0.1", port=0),
    )


class ThreadedGateway:
    """The whole gateway on its own event loop in a background thread.

    Lets blocking clients (paho, sockets) run in the test's thread. Touch the
    broker's state only through ``call``, which runs on the gateway's loop.
    """

    def __init__(
        self, config: Config, *, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    ) -> None:
        self.config = config
        self.loop = (loop_factory or asyncio.new_event_loop)()
        self.gateway: Gateway | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)

    def start(self) -> ThreadedGateway:
        self._thread.start()
        self.gateway = Gateway(self.config)
        self.run(self.gateway.start())
        return self

    def stop(self) -> None:
        if self.gateway is not None:
            self.run(self.gateway.stop())
            self.gateway = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()

    @property
    def port(self) -> int:
        assert self.gateway is not None
        return self.gateway.mqtt_port

    @property
    def broker(self) -> Any:
        assert self.gateway is not None
        return self.gateway.broker

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = TIMEOUT) -> T:
        """Run ``fn`` on the gateway's loop and return its result."""
        future: Future[T] = Future()

        def target() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the test thread
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(target)
        return future.result(timeout)


@contextmanager
def running_gateway(config: Config) -> Iterator[ThreadedGateway]:
    gateway = ThreadedGateway(config).start()
    try:
        yield gateway
    finally:
        gateway.stop()


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.01)


# --- paho -----------------------------------------------------------------------


@dataclass
class PahoClient:
    """A connected paho client whose received messages land in ``messages``."""

    client: paho.Client
    session_present: bool = False
    messages: queue.Queue[paho.MQTTMessage] = field(default_factory=queue.Queue)
    connack: queue.Queue[tuple[bool, int]] = field(default_factory=queue.Queue)
    disconnects: queue.Queue[int] = field(default_factory=queue.Queue)

    def get(self, timeout: float = TIMEOUT) -> paho.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def assert_no_message(self, wait: float = 0.3) -> None:
        try:
            message = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {message.topic}: {message.payload!r}")

    def subscribe(self, topic: str, qos: int = 0) -> list[int]:
        done: queue.Queue[list[int]] = queue.Queue()

        def on_subscribe(client: Any, userdata: Any, mid: int, codes: Any, properties: Any) -> None:
            done.put([int(code.value) for code in codes])

        self.client.on_subscribe = on_subscribe
        result, _ = self.client.subscribe(topic, qos)
        assert result == paho.MQTT_ERR_SUCCESS
        return done.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


_V5_TO_CONNACK = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


def paho_client(
    port: int,
    client_id: str = "",
    *,
    clean_session: bool = True,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
    keepalive: int = 60,
    expect_code: int = 0,
) -> PahoClient:
    """Connect a paho MQTT 3.1.1 client and wait for its CONNACK."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=paho.MQTTv311,
    )
    wrapper = PahoClient(client)
    client.on_message = lambda _c, _u, message: wrapper.messages.put(message)

    def on_connect(_c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        # paho reports MQTT 5 reason codes even for 3.1.1; map back to CONNACK's.
        code = _V5_TO_CONNACK.get(reason.value, reason.value)
        wrapper.connack.put((bool(flags.session_present), code))

    client.on_connect = on_connect
    client.on_disconnect = lambda _c, _u, _f, reason, _p: wrapper.disconnects.put(reason.value)
    if username is not None:
        client.username_pw_set(username, password)
    if will is not None:
        client.will_set(will[0], will[1], will[2], will[3])
    client.connect("127.0.0.1", port, keepalive=keepalive)
    client.loop_start()
    wrapper.session_present, code = wrapper.connack.get(timeout=TIMEOUT)
    if code != expect_code:
        client.loop_stop()
        raise AssertionError(f"CONNACK code {code}, expected {expect_code}")
    if code:
        client.loop_stop()
    return wrapper


# --- raw sockets ----------------------------------------------------------------


class RawClient:
    """A bare TCP socket speaking bytes, for what no client library will send."""

    def __init__(self, port: int, *, source: str | None = None) -> None:
        """``source``: another loopback address (127.x.y.z) to connect from."""
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0) if source else None
        )
        self._decoder = Decoder()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes | Packet) -> None:
        self.sock.sendall(data if isinstance(data, bytes) else encode_packet(data))

    def connect(self, client_id: str = "raw", **fields: Any) -> Connack:
        self.send(Connect(client_id=client_id, **fields))
        packet = self.recv()
        assert isinstance(packet, Connack), packet
        return packet

    def recv(self, timeout: float = TIMEOUT) -> Packet:
        """The next packet from the broker; fails on close or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            packet = self._decoder.next_packet()
            if packet is not None:
                return packet
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no packet from the broker in time")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("the broker closed the connection")
            self._decoder.receive_data(data)

    def assert_closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Wait for the broker to close the socket; return the packets it sent before."""
        packets: list[Packet] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("the broker did not close the connection")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return packets
            except TimeoutError:
                continue
            if not data:
                return packets
            self._decoder.receive_data(data)
            try:
                while (packet := self._decoder.next_packet()) is not None:
                    packets.append(packet)
            except RemoteProtocolError:
                return packets

    def assert_open(self, wait: float = 0.3) -> None:
        """The broker keeps the connection open (and sends nothing) for ``wait`` seconds."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        raise AssertionError(f"expected silence, got {data!r}")
