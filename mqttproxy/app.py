"""Composition root: builds every service from the config, starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from mqttproxy.broker.auth import Authenticator, DeviceAuth, StaticUsers
from mqttproxy.broker.server import Broker
from mqttproxy.config import Config
from mqttproxy.metrics import GatewayCollector, LinkView
from mqttproxy.operators import Operators
from mqttproxy.registry import Registry
from mqttproxy.shadow import Limits, ShadowService
from mqttproxy.storage import Database
from mqttproxy.timeseries import Recorder, RecorderSettings
from mqttproxy.upstream.fanout import FanOut
from mqttproxy.upstream.store import BrokerStore

if TYPE_CHECKING:
    from mqttproxy.webapp.server import WebServer

logger = logging.getLogger(__name__)


class Gateway:
    """The whole gateway process: broker, fan-out, and (unless disabled) the web layer."""

    def __init__(self, config: Config) -> None:
        self.config = config
        authenticators: list[Authenticator] = []
        if config.auth.users:
            authenticators.append(StaticUsers(config.auth.users))
        self.auth = DeviceAuth(authenticators, allow_anonymous=config.auth.allow_anonymous)
        self.broker = Broker(config=config.mqtt, auth=self.auth)
        self.database = Database(config.data_dir / "mqttproxy.db")
        self.registry = Registry(
            self.database,
            key_path=config.data_dir / "registry.key",
            disconnect=self.broker.disconnect_principal,
            trust_ca=self.broker.trust_client_ca,
        )
        # Static users from the config first, then the registry's devices.
        self.auth.add(self.registry)
        self.broker.add_presence_listener(self.registry)
        self.fanout = FanOut(
            store=BrokerStore(
                config.data_dir / "brokers.json", secret_key=config.upstream.effective_secret_key()
            ),
            gateway_id=config.gateway_id,
            connect_timeout=config.upstream.connect_timeout,
            dispatch=self.broker.dispatcher.dispatch,
        )
        self.broker.dispatcher.add_hook("upstream", self.fanout.on_message)
        self.shadows = ShadowService(
            self.database,
            dispatch=self.broker.dispatcher.dispatch,
            limits=Limits(**config.shadow.model_dump()),
        )
        self.broker.dispatcher.add_hook("shadow", self.shadows.on_message)
        self.recorder = Recorder(self.database, RecorderSettings(**config.timeseries.model_dump()))
        self.broker.dispatcher.add_hook("timeseries", self.recorder.on_message)
        self.operators = Operators(self.database, session_ttl=config.web.session_ttl)
        self.web: WebServer | None = None
        if config.web.enabled:
            # Imported only when serving HTTP: aiohttp is about a quarter of
            # the process's memory, which an MQTT-only edge box can keep.
            from mqttproxy.webapp.server import WebServer, create_app

            app = create_app(gateway=self, config=config.web, metrics=GatewayCollector(self))
            self.web = WebServer(app, host=config.web.host, port=config.web.port)
        self._running = AsyncExitStack()

    async def start(self) -> None:
        """Start every service; if one fails, stop those already started, in reverse."""
        async with AsyncExitStack() as starting:
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
            # A broken brokers.json stops start-up before any port is bound.
            self.fanout.load()
            await self.database.open()
            starting.push_async_callback(self.database.close)
            await self.registry.start()
            starting.push_async_callback(self.registry.stop)
            starting.push_async_callback(self.shadows.stop)
            await self.recorder.start()
            # Stopped after the broker (unwinding runs in reverse), so its final flush has everything.
            starting.push_async_callback(self.recorder.stop)
            if (
                not self.config.auth.allow_anonymous
                and not self.config.auth.users
                and not await self.registry.count()
            ):
                logger.warning(
                    "no device credentials are configured and [auth] allow_anonymous is false: every "
                    "CONNECT will be refused. Register devices on the dashboard or API, add "
                    "[[auth.users]] (hashes from `mqttproxy hash-password`) or set allow_anonymous = true."
                )
            if self.web is not None:
                await self._ensure_admin()
            await self.fanout.start()
            starting.push_async_callback(self.fanout.stop)
            await self.broker.start()
            starting.push_async_callback(self.broker.stop)
            if self.web is None:
                logger.info("web listener disabled ([web] enabled = false)")
            else:
                await self.web.start()
                starting.push_async_callback(self.web.stop)
            self._running = starting.pop_all()

    async def _ensure_admin(self) -> None:
        generated = await self.operators.ensure_admin(self.config.web.effective_admin_password())
        if generated is not None:
            # Shown this once, so that a fresh install can be logged into.
            logger.warning(
                "created the dashboard operator 'admin' with password %s (shown once; set [web] "
                "admin_password or MQTTPROXY_ADMIN_PASSWORD to choose it)",
                generated,
            )

    async def stop(self) -> None:
        """Stop HTTP, close device connections, deliver and close upstream links, close storage."""
        await self._running.aclose()

    def health(self) -> tuple[bool, dict[str, Any]]:
        broker = self.broker
        listeners = [
            {"protocol": "mqtt", "transport": item.kind, "host": item.host, "port": item.port}
            for item in broker.listeners
        ]
        healthy = broker.is_serving and self.database.is_open
        return healthy, {
            "mqtt": {
                "serving": broker.is_serving,
                "listeners": listeners,
                "connections": broker.connection_count,
            },
            "storage": {"open": self.database.is_open, "path": str(self.database.path)},
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

    def clients(self) -> list[dict[str, Any]]:
        return self.broker.clients()

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
