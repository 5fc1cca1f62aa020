"""Messages per second, sampled once a second from the gateway's counters, for the last minutes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from mqttproxy.webapp.services import GATEWAY, GatewayView

HISTORY_SECONDS = 300


class RateSampler:
    """Turns counters into per-second rates; a background task owned by the web app."""

    def __init__(self, gateway: GatewayView, *, interval: float = 1.0) -> None:
        self._gateway = gateway
        self._interval = interval
        self._samples: deque[dict[str, Any]] = deque(maxlen=int(HISTORY_SECONDS / interval))
        self._previous: dict[str, float] | None = None
        self._previous_at = 0.0

    def _totals(self) -> dict[str, float]:
        counters = self._gateway.broker_counters()
        totals: dict[str, float] = {"in": counters["messages_received"], "out": counters["messages_sent"]}
        for status in self._gateway.fanout.statuses():
            totals[f"forwarded:{status['id']}"] = status["forwarded"]
            totals[f"dropped:{status['id']}"] = sum(status["dropped"].values())
        return totals

    def sample(self) -> None:
        now = time.monotonic()
        totals = self._totals()
        previous = self._previous
        if previous is not None:
            elapsed = max(now - self._previous_at, 1e-6)

            def rate(key: str) -> float:
                # A broker added since the last sample starts from zero.
                return round(max(0.0, totals[key] - previous.get(key, 0.0)) / elapsed, 1)

            brokers = {
                key.removeprefix("forwarded:"): {
                    "forwarded": rate(key),
                    "dropped": rate(key.replace("forwarded:", "dropped:", 1)),
                }
                for key in totals
                if key.startswith("forwarded:")
            }
            self._samples.append(
                {
                    "time": time.time(),
                    "in": rate("in"),
                    "out": rate("out"),
                    "forwarded": round(sum(item["forwarded"] for item in brokers.values()), 1),
                    "brokers": brokers,
                }
            )
        self._previous = totals
        self._previous_at = now

    def latest(self) -> dict[str, Any]:
        if not self._samples:
            return {"time": time.time(), "in": 0.0, "out": 0.0, "forwarded": 0.0, "brokers": {}}
        return self._samples[-1]

    def history(self) -> list[dict[str, Any]]:
        return list(self._samples)

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self._interval)


RATES = web.AppKey("rates", RateSampler)


async def rates_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: sample while the app runs, stop with it."""
    sampler = app[RATES] = RateSampler(app[GATEWAY])
    task = asyncio.get_running_loop().create_task(sampler.run(), name="web-rates")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
