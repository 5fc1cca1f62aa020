"""One MQTT client connection to an upstream broker: gmqtt underneath, our API on top.

The only module that imports gmqtt. gmqtt does what it is good at: the
connection, TLS, CONNECT/CONNACK for MQTT 3.1.1 and 5, keep-alive, SUBSCRIBE
and parsing what the upstream sends. Its publish path writes one socket
send per message (a third of its time in a profile of 100k QoS 1
publishes), so outgoing PUBLISH packets take a faster route: the link
encodes them itself, writes them in batches to gmqtt's transport, takes
packet identifiers from gmqtt's own allocator (so SUBSCRIBE and PUBLISH
never share one), and learns of PUBACK/PUBCOMP through the client's
message-store callbacks, which gmqtt calls with the identifier.

gmqtt's own reconnect loop is switched off: the link reconnects itself,
with backoff, jitter and failover addresses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError
from gmqtt.mqtt.package import PackageFactory

from mqttproxy.errors import MqttProxyError
from mqttproxy.upstream.models import BrokerSettings

logger = logging.getLogger(__name__)
# gmqtt logs every connection loss with a traceback at WARNING; the link logs
# one clear line of its own instead.
logging.getLogger("gmqtt").setLevel(logging.CRITICAL)

HOP_PROPERTY = "mqttproxy-hop"

InboundCallback = Callable[[str, bytes, int, bool, dict[str, Any]], None]


class UpstreamError(MqttProxyError):
    """Connecting to or talking with an upstream broker failed."""


class UpstreamRefused(UpstreamError):
    """The upstream answered CONNECT with a refusal (credentials, client id, version)."""


def ssl_context(settings: BrokerSettings) -> ssl.SSLContext | None:
    """The TLS context of a connection; ``UpstreamError`` naming the file it cannot use.

    Built for every attempt: a file replaced on disk is read at the next one.
    """
    if not settings.use_tls:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.ca_cert_path)
    except OSError as exc:  # ssl.SSLError included
        raise UpstreamError(f"ca_cert_path {settings.ca_cert_path}: {_tls_reason(exc)}") from exc
    if settings.client_cert_path is not None:
        try:
            context.load_cert_chain(settings.client_cert_path, settings.client_key_path)
        except OSError as exc:
            raise UpstreamError(
                f"client_cert_path {settings.client_cert_path} with client_key_path "
                f"{settings.client_key_path}: {_tls_reason(exc)}"
            ) from exc
    if settings.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _tls_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        # e.g. "cannot be loaded (NO_CERTIFICATE_OR_CRL_FOUND)", "(KEY_VALUES_MISMATCH)"
        return f"cannot be loaded ({exc.reason or exc.strerror or exc})"
    return exc.strerror or str(exc)


def hop_properties(gateway_id: str) -> bytes:
    """The MQTT 5 property block that marks a PUBLISH as forwarded by this gateway."""
    data = PackageFactory._build_properties_data({"user_property": [(HOP_PROPERTY, gateway_id)]}, MQTTv50)
    return bytes(data)


class _Client(gmqtt.Client):  # type: ignore[misc]
    """gmqtt's client with its reconnect and message store handed to us."""

    def __init__(self, owner: UpstreamClient, client_id: str, **kwargs: Any) -> None:
        super().__init__(client_id, **kwargs)
        self._owner = owner

    async def reconnect(self, delay: bool = False) -> None:
        # gmqtt calls this when the connection drops or CONNACK refuses; the
        # link decides when and where to connect again.
        self._owner._on_connection_lost()

    def _store_message_in_queue(self, mid: int, raw_package: bytes) -> None:
        # Called with the PUBREL once a QoS 2 PUBLISH is PUBREC'd.
        self._owner._on_pubrec(mid)

    def _remove_message_from_queue(self, mid: int) -> None:
        # Called on PUBACK and PUBCOMP (and a refusing PUBREC): the flow is complete.
        self._owner._on_complete(mid)

    async def _resend_qos_messages(self) -> None:
        return  # the link resends its own in-flight messages

    def _clear_resend_qos_queue(self) -> None:
        return


class UpstreamClient:
    """A reusable client: ``connect`` again after a loss keeps packet identifiers consistent."""

    def __init__(
        self,
        *,
        client_id: str,
        settings: BrokerSettings,
        on_message: InboundCallback,
        on_complete: Callable[[int], None],
        on_pubrec: Callable[[int], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.settings = settings
        self._on_message = on_message
        self._complete = on_complete
        self._pubrec = on_pubrec
        self._lost = on_lost
        self._connected = False
        self._client = _Client(
            self,
            client_id,
            clean_session=settings.clean_session,
            optimistic_acknowledgement=True,
            logger=logger,
        )
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password is not None else None
            self._client.set_auth_credentials(settings.username, password)
        self._client.on_message = self._message
        self._client.on_connect = self._connack
        self._session_present = False
        self._attempt_lost: asyncio.Event | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def mqtt5(self) -> bool:
        return self.settings.mqtt_version == "5"

    async def connect(self, host: str, port: int, *, timeout: float) -> bool:
        """Connect and wait for CONNACK; return session present. Raises ``UpstreamError``."""
        version = MQTTv50 if self.mqtt5 else MQTTv311
        context = ssl_context(self.settings)
        connecting = asyncio.ensure_future(
            self._client.connect(
                host,
                port,
                ssl=context or False,
                keepalive=self.settings.keepalive,
                version=version,
            )
        )
        self._attempt_lost = lost = asyncio.Event()
        lost_waiter = asyncio.ensure_future(lost.wait())
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait({connecting, lost_waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not connecting.done():
                # The upstream closed or reset the connection before any CONNACK.
                connecting.cancel()
                raise UpstreamError(f"{host}:{port} closed the connection before answering CONNECT")
            connecting.result()
        except TimeoutError as exc:
            connecting.cancel()
            raise UpstreamError(f"no CONNACK from {host}:{port} within {timeout:g}s") from exc
        except MQTTConnectError as exc:
            raise UpstreamRefused(f"{host}:{port} refused the connection: {exc.message}") from exc
        except (OSError, ssl.SSLError) as exc:
            reason = os.strerror(exc.errno) if exc.errno and not isinstance(exc, ssl.SSLError) else str(exc)
            raise UpstreamError(f"cannot connect to {host}:{port}: {reason}") from exc
        except BaseException:
            connecting.cancel()
            raise
        finally:
            lost_waiter.cancel()
            self._attempt_lost = None
            if not connecting.done() or connecting.cancelled() or connecting.exception() is not None:
                self._drop_transport()
        if self._client._connection is None or self._client._connection.is_closing():
            raise UpstreamError(f"{host}:{port} closed the connection during CONNECT")
        if self.mqtt5 and self._client._connection_state.protocol_version != MQTTv50:
            self._drop_transport()
            raise UpstreamRefused(f"{host}:{port} does not speak MQTT 5")
        self._connected = True
        return self._session_present

    def _connack(self, client: Any, flags: int, rc: int, properties: dict[str, Any]) -> None:
        self._session_present = bool(flags)

    def subscribe(self, subscriptions: list[tuple[str, int]]) -> None:
        if not subscriptions:
            return
        # gmqtt appends to its list on every subscribe; these are the whole set.
        self._client.subscriptions = []
        self._client.subscribe(
            [gmqtt.Subscription(topic, qos=qos, no_local=self.mqtt5) for topic, qos in subscriptions]
        )

    @property
    def receive_maximum(self) -> int:
        """How many QoS 1/2 PUBLISH the upstream accepts in flight (MQTT 5; else unlimited)."""
        values = self._client._package_handler._connack_properties.get("receive_maximum")
        return int(values[0]) if values else 65_535

    def next_packet_id(self) -> int:
        return int(self._client._package_handler.id_generator.next_id())

    def free_packet_id(self, packet_id: int) -> None:
        self._client._package_handler.id_generator.free_id(packet_id)

    def write(self, data: bytes) -> None:
        connection = self._client._connection
        if connection is not None and self._connected:
            connection.send_package(data)

    def write_buffer_size(self) -> int:
        connection = self._client._connection
        if connection is None:
            return 0
        return int(connection._transport.get_write_buffer_size())

    async def disconnect(self) -> None:
        """Send DISCONNECT and close; no reconnect follows."""
        self._connected = False
        if self._client._connection is not None:
            try:
                async with asyncio.timeout(2):
                    await self._client.disconnect()
            except (TimeoutError, OSError):
                self._drop_transport()

    def abort(self) -> None:
        """Drop the connection now; the link hears of it as a loss and reconnects."""
        was_connected = self._connected
        self._drop_transport()
        if was_connected:
            self._lost()

    def _drop_transport(self) -> None:
        self._connected = False
        connection = self._client._connection
        if connection is not None:
            connection._transport.abort()
            self._client._connection = None  # its late loss report is then recognised as stale

    # --- gmqtt callbacks --------------------------------------------------------

    def _on_connection_lost(self) -> None:
        # gmqtt reports a loss some iterations after it happened: only the
        # current connection's loss counts, not a late one from a dropped attempt.
        connection = self._client._connection
        if connection is None or not connection.is_closing():
            return
        if self._connected:
            self._connected = False
            self._lost()
        elif self._attempt_lost is not None and not self._client._connack_received.is_set():
            self._attempt_lost.set()  # closed before CONNACK; a refusing CONNACK is reported as such

    def _on_pubrec(self, packet_id: int) -> None:
        self._pubrec(packet_id)

    def _on_complete(self, packet_id: int) -> None:
        self._complete(packet_id)

    def _message(self, client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]) -> None:
        self._on_message(topic, payload, qos, bool(properties.get("retain")), properties)
