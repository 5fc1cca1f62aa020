"""The one dispatch point every accepted PUBLISH passes through.

Order, for each message:

1. the retained store, when RETAIN is set;
2. the local router (subscribed devices and dashboards);
3. the hooks, in the order they were added. The upstream fan-out, the shadow
   service and the timeseries tap attach here, without touching session code.

A hook is ``Callable[[Message], None]`` and must:

- return at once: it runs on the event loop for every message, so it only
  looks at the topic and hands the message to its own bounded queue;
- never await or block, and never hold the message beyond its own queue's
  bound (the message is immutable; keep a reference, not a copy);
- not raise. If it does, the error is logged and counted
  (``hook_errors``) and the message still reaches the other hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mqttproxy.broker.message import Message
from mqttproxy.broker.retained import RetainedStore
from mqttproxy.broker.router import LocalRouter
from mqttproxy.broker.stats import BrokerStats

logger = logging.getLogger(__name__)

Hook = Callable[[Message], None]


class Dispatcher:
    def __init__(self, *, router: LocalRouter, retained: RetainedStore, stats: BrokerStats) -> None:
        self._router = router
        self._retained = retained
        self._stats = stats
        self._hooks: list[tuple[str, Hook]] = []
        self._errors: dict[str, int] = {}

    @property
    def hook_names(self) -> list[str]:
        return [name for name, _ in self._hooks]

    def add_hook(self, name: str, hook: Hook) -> None:
        if name in self.hook_names:
            raise ValueError(f"a dispatch hook named {name!r} is already attached")
        self._hooks.append((name, hook))

    def remove_hook(self, name: str) -> None:
        self._hooks = [(existing, hook) for existing, hook in self._hooks if existing != name]

    def dispatch(self, message: Message) -> None:
        if message.retain:
            self._retained.store(message)
        self._router.route(message)
        for name, hook in self._hooks:
            try:
                hook(message)
            except Exception:
                self._stats.hook_errors += 1
                count = self._errors[name] = self._errors.get(name, 0) + 1
                # Log the first failure in full, then a reminder every 1000.
                if count == 1 or count % 1000 == 0:
                    logger.exception("dispatch hook %s failed (%d times so far)", name, count)
