"""Subscriptions by topic filter, matched against topic names level by level."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from mqttproxy.protocol.topics import MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL

K = TypeVar("K", bound=Hashable)

# Matches are cached per topic name: IoT fleets publish to the same topics
# over and over, and subscriptions change far less often than messages flow.
_CACHE_LIMIT = 65_536


class _Node(Generic[K]):
    __slots__ = ("children", "subscribers")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] = {}
        self.subscribers: dict[K, int] = {}


class SubscriptionTrie(Generic[K]):
    """Topic filter -> {subscriber: granted QoS}, with ``+`` and ``#`` (MQTT 4.7)."""

    def __init__(self) -> None:
        self._root: _Node[K] = _Node()
        self._cache: dict[str, tuple[tuple[K, int], ...]] = {}
        self._count = 0

    def __len__(self) -> int:
        """The number of (filter, subscriber) pairs."""
        return self._count

    def subscribe(self, topic_filter: str, subscriber: K, qos: int) -> None:
        """Add or replace (same filter, same subscriber: [MQTT-3.8.4-3]) a subscription."""
        node = self._root
        for level in topic_filter.split(SEPARATOR):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        if subscriber not in node.subscribers:
            self._count += 1
        node.subscribers[subscriber] = qos
        self._cache.clear()

    def unsubscribe(self, topic_filter: str, subscriber: K) -> bool:
        """Remove a subscription; ``False`` if there was none."""
        path = [self._root]
        levels = topic_filter.split(SEPARATOR)
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        if path[-1].subscribers.pop(subscriber, None) is None:
            return False
        self._count -= 1
        self._cache.clear()
        # Prune nodes left with neither subscribers nor children.
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.subscribers or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]
        return True

    def match(self, topic: str) -> tuple[tuple[K, int], ...]:
        """Every subscriber whose filters match ``topic``, once, at its highest granted QoS."""
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        found: dict[K, int] = {}
        levels = topic.split(SEPARATOR)
        depth_end = len(levels)
        # [MQTT-4.7.2-1] a filter starting with a wildcard never matches a $-topic.
        wildcards_at_root = not topic.startswith("$")
        stack: list[tuple[_Node[K], int]] = [(self._root, 0)]
        while stack:
            node, depth = stack.pop()
            children = node.children
            if depth == 0 and not wildcards_at_root:
                exact = children.get(levels[0])
                if exact is not None:
                    stack.append((exact, 1))
                continue
            multi = children.get(MULTI_LEVEL)
            if multi is not None:
                # "a/#" matches "a" itself as well as everything below it.
                _merge(found, multi.subscribers)
            if depth == depth_end:
                _merge(found, node.subscribers)
                continue
            single = children.get(SINGLE_LEVEL)
            if single is not None:
                stack.append((single, depth + 1))
            exact = children.get(levels[depth])
            if exact is not None:
                stack.append((exact, depth + 1))
        result = tuple(found.items())
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = result
        return result


def _merge(found: dict[K, int], subscribers: dict[K, int]) -> None:
    for subscriber, qos in subscribers.items():
        if found.get(subscriber, -1) < qos:
            found[subscriber] = qos
