"""What the web layer uses of the gateway, and the keys it is kept under in the app."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from mqttproxy.config import WebConfig
from mqttproxy.operators import LoginThrottle, Operators
from mqttproxy.registry import Registry
from mqttproxy.shadow import ShadowService
from mqttproxy.timeseries import Recorder
from mqttproxy.upstream.fanout import FanOut


class GatewayView(Protocol):
    """The gateway as the web layer sees it: services, never sockets or SQL."""

    @property
    def fanout(self) -> FanOut: ...

    @property
    def operators(self) -> Operators: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def shadows(self) -> ShadowService: ...

    @property
    def recorder(self) -> Recorder: ...

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def broker_counters(self) -> dict[str, int]: ...

    def clients(self) -> list[dict[str, Any]]: ...


GATEWAY = web.AppKey("gateway", GatewayView)
CONFIG = web.AppKey("web_config", WebConfig)
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
