"""Retained messages: the last retained PUBLISH per topic, found by topic filter."""

from __future__ import annotations

from collections.abc import Iterator

from mqttproxy.broker.message import Message
from mqttproxy.protocol.topics import MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL


class _Node:
    __slots__ = ("children", "message")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.message: Message | None = None


class RetainedStore:
    """Topic tree of retained messages (MQTT 3.3.1.3)."""

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def store(self, message: Message) -> None:
        """Keep ``message`` for its topic; an empty payload clears the topic [MQTT-3.3.1-10]."""
        if not message.payload:
            self._remove(message.topic)
            return
        node = self._root
        for level in message.topic.split(SEPARATOR):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        if node.message is None:
            self._count += 1
        node.message = message

    def _remove(self, topic: str) -> None:
        levels = topic.split(SEPARATOR)
        path = [self._root]
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                return
            path.append(child)
        if path[-1].message is None:
            return
        path[-1].message = None
        self._count -= 1
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.message is not None or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]

    def match(self, topic_filter: str) -> Iterator[Message]:
        """Retained messages whose topic matches ``topic_filter``."""
        levels = topic_filter.split(SEPARATOR)
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        while stack:
            node, depth = stack.pop()
            if depth == len(levels):
                if node.message is not None:
                    yield node.message
                continue
            level = levels[depth]
            if level == MULTI_LEVEL:
                # "a/#" also matches "a" itself.
                if node.message is not None and depth > 0:
                    yield node.message
                yield from _descendants(node, skip_dollar=depth == 0)
            elif level == SINGLE_LEVEL:
                for name, child in node.children.items():
                    # [MQTT-4.7.2-1] wildcards at the first level skip $-topics.
                    if depth == 0 and name.startswith("$"):
                        continue
                    stack.append((child, depth + 1))
            elif level in node.children:
                stack.append((node.children[level], depth + 1))


def _descendants(node: _Node, *, skip_dollar: bool) -> Iterator[Message]:
    stack = [child for name, child in node.children.items() if not (skip_dollar and name.startswith("$"))]
    while stack:
        current = stack.pop()
        if current.message is not None:
            yield current.message
        stack.extend(current.children.values())
