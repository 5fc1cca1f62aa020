"""Composition root: builds every service from the config, starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from mqttproxy.broker.auth import Authenticator, DeviceAuth, StaticUsers
from mqttproxy.broker.server import Broker
from mqttproxy.config import Config
from mqttproxy.metrics import GatewayCollector, LinkView
from mqttproxy.upstream.fanout import FanOut
from mqttproxy.upstream.store import BrokerStore

if TYPE_CHECKING:
    from mqttproxy.webapp.server import WebServer

logger = logging.getLogger(__name__)


class Gateway:
    """The whole gateway process: today the device-facing broker."""

    def __init__(self, config: Config) -> None:
        self.config = config
        authenticators: list[Authenticator] = []
        if config.auth.users:
            authenticators.append(StaticUsers(config.auth.users))
        self.auth = DeviceAuth(authenticators, allow_anonymous=config.auth.allow_anonymous)
        self.broker = Broker(config=config.mqtt, auth=self.auth)
        self.fanout = FanOut(
            store=BrokerStore(
                config.data_dir / "brokers.json", secret_key=config.upstream.effective_secret_key()
            ),
            gateway_id=config.gateway_id,
            connect_timeout=config.upstream.connect_timeout,
            dispatch=self.broker.dispatcher.dispatch,
        )
        self.broker.dispatcher.add_hook("upstream", self.fanout.on_message)
        self.web: WebServer | None = None
        if config.web.enabled:
            # Imported only when serving HTTP: aiohttp is about a quarter of
            # the process's memory, which an MQTT-only edge box can keep.
            from mqttproxy.webapp.server import WebServer, create_app

            app = create_app(health=self, metrics=GatewayCollector(self))
            self.web = WebServer(app, host=config.web.host, port=config.web.port)

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        # A broken brokers.json stops start-up before any port is bound.
        self.fanout.load()
        if not self.config.auth.allow_anonymous and not self.config.auth.users:
            logger.warning(
                "no device credentials are configured and [auth] allow_anonymous is false: every "
                "CONNECT will be refused. Add [[auth.users]] entries (hashes from `mqttproxy "
                "hash-password`) or set allow_anonymous = true in the config file."
            )
        await self.fanout.start()
        try:
            await self.broker.start()
        except BaseException:
            await self.fanout.stop()
            raise
        if self.web is None:
            logger.info("web listener disabled ([web] enabled = false)")
            return
        try:
            await self.web.start()
        except BaseException:
            await self.broker.stop()
            await self.fanout.stop()
            raise

    async def stop(self) -> None:
        """Stop accepting HTTP, close every device connection, then deliver and close upstream links."""
        if self.web is not None:
            await self.web.stop()
        await self.broker.stop()
        await self.fanout.stop()

    def health(self) -> tuple[bool, dict[str, Any]]:
        broker = self.broker
        listeners = [
            {"protocol": "mqtt", "transport": item.kind, "host": item.host, "port": item.port}
            for item in broker.listeners
        ]
        healthy = broker.is_serving
        return healthy, {
            "mqtt": {"serving": healthy, "listeners": listeners, "connections": broker.connection_count}
        }

    def broker_counters(self) -> dict[str, int]:
        broker = self.broker
        return {
            **broker.stats.as_dict(),
            "connections": broker.connection_count,
            "sessions": len(broker.sessions),
            "subscriptions": broker.router.subscription_count,
            "retained": len(broker.retained),
        }

    def upstream_links(self) -> list[LinkView]:
        return list(self.fanout.links)

    @property
    def mqtt_port(self) -> int:
        return next(listener.port for listener in self.broker.listeners if listener.kind == "tcp")


@asynccontextmanager
async def running_proxy(config: Config) -> AsyncIterator[Gateway]:
    """Start the gateway, yield it, and stop it on exit."""
    gateway = Gateway(config)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM, then shut down cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_proxy(config):
            await stop.wait()
            logger.info("shutting down")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    logger.info("stopped")
