"""Topic routes between the local broker and one upstream, with remapping.

Like Mosquitto's ``topic`` lines, but a route can exclude filters and
rewrite topics with wildcard captures: ``devices/+/telemetry`` remapped to
``site7/{1}/t`` sends ``devices/d1/telemetry`` as ``site7/d1/t``. ``{1}``,
``{2}``... are the levels matched by the filter's wildcards in order (``#``
captures every remaining level); ``{topic}`` is the whole topic. Pure
functions and small classes, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mqttproxy.protocol.topics import MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL, topic_matches

_PLACEHOLDER = re.compile(r"\{(\d+|topic)\}")
_PLACEHOLDER_WITH_SEPARATOR = re.compile(r"(/?)\{(\d+|topic)\}")
_CACHE_LIMIT = 65_536


def wildcard_count(topic_filter: str) -> int:
    return sum(level in (SINGLE_LEVEL, MULTI_LEVEL) for level in topic_filter.split(SEPARATOR))


def check_template(template: str, topic_filter: str) -> None:
    """Raise ``ValueError`` unless ``template`` can remap topics matching ``topic_filter``."""
    if not template:
        raise ValueError("a remap template cannot be empty")
    literal = _PLACEHOLDER.sub("", template)
    if "\x00" in literal:
        raise ValueError(f"remap {template!r}: U+0000 is not allowed in topics [MQTT-4.7.3-2]")
    if SINGLE_LEVEL in literal or MULTI_LEVEL in literal or "{" in literal or "}" in literal:
        raise ValueError(
            f"remap {template!r}: only {{1}}..{{n}} and {{topic}} may stand in braces, no wildcards"
        )
    available = wildcard_count(topic_filter)
    for name in _PLACEHOLDER.findall(template):
        if name != "topic" and not 1 <= int(name) <= available:
            raise ValueError(
                f"remap {template!r} uses {{{name}}} but {topic_filter!r} has {available} wildcard(s)"
            )


def captures(topic_filter: str, topic: str) -> list[str | None] | None:
    """What each wildcard of ``topic_filter`` matched in ``topic``, or ``None`` if it does not match.

    A ``#`` that matched the parent level itself (``a/#`` matching ``a``)
    captures ``None``; one that matched a single empty level (``a/``) captures "".
    """
    if not topic_matches(topic_filter, topic):
        return None
    topic_levels = topic.split(SEPARATOR)
    found: list[str | None] = []
    for index, level in enumerate(topic_filter.split(SEPARATOR)):
        if level == SINGLE_LEVEL:
            found.append(topic_levels[index])
        elif level == MULTI_LEVEL:
            found.append(SEPARATOR.join(topic_levels[index:]) if index < len(topic_levels) else None)
    return found


def render(template: str, topic: str, found: Sequence[str | None]) -> str:
    """Fill ``template`` for ``topic``.

    A ``#`` capture of ``None`` (``a/#`` matched ``a`` itself) takes the
    separator before its placeholder with it: ``x/{1}`` gives ``x``, not ``x/``.
    """

    def replace(match: re.Match[str]) -> str:
        separator, name = match.group(1), match.group(2)
        if name == "topic":
            return separator + topic
        value = found[int(name) - 1]
        return "" if value is None else separator + value

    return _PLACEHOLDER_WITH_SEPARATOR.sub(replace, template)


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One compiled route: match ``topic_filter`` minus ``exclude``, then remap and cap QoS."""

    topic_filter: str
    exclude: tuple[str, ...]
    remap: str | None
    max_qos: int
    retain: bool

    def apply(self, topic: str) -> str | None:
        found = captures(self.topic_filter, topic)
        if found is None or any(topic_matches(excluded, topic) for excluded in self.exclude):
            return None
        if self.remap is None:
            return topic
        return render(self.remap, topic, found) or None


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a topic goes on the other side, at which QoS cap, keeping RETAIN or not."""

    topic: str
    topic_bytes: bytes
    max_qos: int
    retain: bool


class RouteTable:
    """Ordered rules of one direction; the first rule that matches decides. Cached per topic."""

    def __init__(self, rules: Sequence[RouteRule]) -> None:
        self.rules = tuple(rules)
        self._cache: dict[str, Resolved | None] = {}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def resolve(self, topic: str) -> Resolved | None:
        try:
            return self._cache[topic]
        except KeyError:
            pass
        resolved = None
        for rule in self.rules:
            target = rule.apply(topic)
            if target is not None:
                resolved = Resolved(target, target.encode(), rule.max_qos, rule.retain)
                break
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = resolved
        return resolved
