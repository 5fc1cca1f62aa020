"""Topic access control for one device: which topics it may publish to and subscribe to.

Rules are tried in order and the first that applies decides; no rule means
deny. ``{device_id}`` and ``{tenant_id}`` in a rule's topic stand for the
device's own ids. A SUBSCRIBE is allowed when an allow rule covers every
topic its filter could match, and refused when a deny rule could match any
of them. Decisions are cached per connection: the hot path is a dict lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mqttproxy.protocol.topics import MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL, topic_matches

_CACHE_LIMIT = 1024  # topics remembered per connection


@dataclass(frozen=True, slots=True)
class AclRule:
    """A compiled rule: ``topic`` is a filter with the ids already filled in."""

    topic: str
    publish: bool
    subscribe: bool
    allow: bool


def covers(pattern: str, topic_filter: str) -> bool:
    """Whether every topic ``topic_filter`` matches is matched by ``pattern``."""
    pattern_levels = pattern.split(SEPARATOR)
    filter_levels = topic_filter.split(SEPARATOR)
    for index, level in enumerate(pattern_levels):
        if level == MULTI_LEVEL:
            return True
        if index >= len(filter_levels):
            return False
        wanted = filter_levels[index]
        if wanted == MULTI_LEVEL:
            return False
        if level == SINGLE_LEVEL:
            continue
        if wanted != level:  # also when the filter has '+' where the pattern is literal
            return False
    return len(pattern_levels) == len(filter_levels)


def overlaps(first: str, second: str) -> bool:
    """Whether some topic is matched by both filters."""
    a, b = first.split(SEPARATOR), second.split(SEPARATOR)
    for index in range(max(len(a), len(b))):
        if index >= len(a) or index >= len(b):
            # "x/#" also matches "x": one side may end where the other has '#'.
            rest = a[index:] if index < len(a) else b[index:]
            return rest == [MULTI_LEVEL]
        if MULTI_LEVEL in (a[index], b[index]):
            return True
        if SINGLE_LEVEL in (a[index], b[index]) or a[index] == b[index]:
            continue
        return False
    return True


class TopicAcl:
    """The compiled rules of one connected device, with its decisions cached."""

    __slots__ = ("_publish_cache", "_rules")

    def __init__(self, rules: Sequence[AclRule]) -> None:
        self._rules = tuple(rules)
        self._publish_cache: dict[str, bool] = {}

    def may_publish(self, topic: str) -> bool:
        decision = self._publish_cache.get(topic)
        if decision is not None:
            return decision
        decision = False
        for rule in self._rules:
            if rule.publish and topic_matches(rule.topic, topic):
                decision = rule.allow
                break
        if len(self._publish_cache) >= _CACHE_LIMIT:
            self._publish_cache.clear()
        self._publish_cache[topic] = decision
        return decision

    def may_subscribe(self, topic_filter: str) -> bool:
        for rule in self._rules:
            if not rule.subscribe:
                continue
            if rule.allow and covers(rule.topic, topic_filter):
                return True
            if not rule.allow and overlaps(rule.topic, topic_filter):
                return False
        return False
