"""Topic Names and Topic Filters: validation and matching (MQTT 3.1.1, 4.7)."""

from __future__ import annotations

from mqttproxy.errors import LocalProtocolError

SEPARATOR = "/"
SINGLE_LEVEL = "+"
MULTI_LEVEL = "#"


def validate_topic_name(topic: str) -> None:
    """Raise ``LocalProtocolError`` unless ``topic`` may name a published message."""
    if not topic:
        raise LocalProtocolError("a topic name is at least one character long [MQTT-4.7.3-1]")
    if SINGLE_LEVEL in topic or MULTI_LEVEL in topic:
        raise LocalProtocolError(f"wildcards are not allowed in a topic name [MQTT-4.7.1-1]: {topic!r}")
    if "\x00" in topic:
        raise LocalProtocolError("a topic name must not contain U+0000 [MQTT-4.7.3-2]")


def validate_topic_filter(topic_filter: str) -> None:
    """Raise ``LocalProtocolError`` unless ``topic_filter`` may be subscribed to."""
    if not topic_filter:
        raise LocalProtocolError("a topic filter is at least one character long [MQTT-4.7.3-1]")
    if "\x00" in topic_filter:
        raise LocalProtocolError("a topic filter must not contain U+0000 [MQTT-4.7.3-2]")
    if SINGLE_LEVEL not in topic_filter and MULTI_LEVEL not in topic_filter:
        return
    levels = topic_filter.split(SEPARATOR)
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if level == SINGLE_LEVEL:
            continue
        if level == MULTI_LEVEL:
            if index != last:
                raise LocalProtocolError(
                    f"'#' must be the last level of a topic filter [MQTT-4.7.1-2]: {topic_filter!r}"
                )
            continue
        if SINGLE_LEVEL in level or MULTI_LEVEL in level:
            raise LocalProtocolError(
                f"a wildcard must occupy a whole topic level [MQTT-4.7.1-2, MQTT-4.7.1-3]: {topic_filter!r}"
            )


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether the valid ``topic_filter`` matches the valid topic name ``topic``."""
    # [MQTT-4.7.2-1] a filter starting with a wildcard never matches a $-topic.
    if topic.startswith("$") and topic_filter[:1] in (SINGLE_LEVEL, MULTI_LEVEL):
        return False
    filter_levels = topic_filter.split(SEPARATOR)
    topic_levels = topic.split(SEPARATOR)
    for index, level in enumerate(filter_levels):
        if level == MULTI_LEVEL:
            # "sport/#" also matches "sport" itself (4.7.1.2).
            return True
        if index >= len(topic_levels):
            return False
        if level != SINGLE_LEVEL and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)
