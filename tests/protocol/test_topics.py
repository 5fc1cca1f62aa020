"""Topic names, topic filters and matching (MQTT 3.1.1 section 4.7)."""

from __future__ import annotations

import pytest

from mqttproxy.errors import LocalProtocolError
from mqttproxy.protocol.topics import topic_matches, validate_topic_filter, validate_topic_name

VALID_NAMES = [
    "a",
    "/",
    "//",
    "a/b/c",
    "sport/tennis/player1",
    "/finance",
    "finance/",
    "$SYS/broker/uptime",
    "Accounts payable",  # 4.7.3: spaces are allowed
    " ",
    "caf\u00e9/\u20ac",
    "\ufeff",
    "a\x01b",  # control characters are allowed (1.5.3, SHOULD NOT only)
]

INVALID_NAMES = [
    "",  # [MQTT-4.7.3-1]
    "+",  # [MQTT-4.7.1-1]
    "#",
    "a/+",
    "a/#",
    "+/a",
    "sport+",
    "sp#ort",
    "a\x00b",  # [MQTT-4.7.3-2]
    "\x00",
]


@pytest.mark.parametrize("topic", VALID_NAMES, ids=repr)
def test_valid_topic_name(topic: str) -> None:
    validate_topic_name(topic)


@pytest.mark.parametrize("topic", INVALID_NAMES, ids=repr)
def test_invalid_topic_name(topic: str) -> None:
    with pytest.raises(LocalProtocolError):
        validate_topic_name(topic)


VALID_FILTERS = [
    "#",
    "+",
    "+/+",
    "/+",
    "+/",
    "/",
    "a//b",
    "sport/#",
    "sport/tennis/#",
    "sport/tennis/player1/#",
    "sport/+",
    "sport/tennis/+",
    "sport/+/player1",
    "+/tennis/#",
    "$SYS/#",
    "$SYS/monitor/+",
    "a/+/+/#",
    "Accounts payable",
]

INVALID_FILTERS = [
    "",  # [MQTT-4.7.3-1]
    "a/#/b",  # [MQTT-4.7.1-2] '#' is the last character
    "#/",
    "#/a",
    "##",
    "sport/tennis#",  # 4.7.1.2: '#' occupies a whole level
    "#a",
    "a+",  # [MQTT-4.7.1-3] '+' occupies a whole level
    "+a",
    "sport+",
    "sport/+tennis",
    "++",
    "a/b#",
    "+/#/+",
    "a\x00",  # [MQTT-4.7.3-2]
    "\x00/#",
]


@pytest.mark.parametrize("topic_filter", VALID_FILTERS, ids=repr)
def test_valid_topic_filter(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize("topic_filter", INVALID_FILTERS, ids=repr)
def test_invalid_topic_filter(topic_filter: str) -> None:
    with pytest.raises(LocalProtocolError):
        validate_topic_filter(topic_filter)


@pytest.mark.parametrize("topic", [name for name in VALID_NAMES if name], ids=repr)
def test_every_valid_name_is_a_valid_filter(topic: str) -> None:
    validate_topic_filter(topic)


MATCHES = [
    # 4.7.1.2 multi-level wildcard
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/tennis/player1/#", "sport/tennis/player2", False),
    ("sport/tennis/player1/#", "sport/tennis", False),
    ("sport/#", "sport", True),  # '#' also matches the parent level
    ("sport/#", "sport/", True),
    ("sport/#", "sports", False),
    ("sport/tennis/#", "sport/tennis", True),
    ("#", "sport", True),
    ("#", "sport/tennis/player1", True),
    ("#", "/", True),
    ("#", "/finance", True),
    ("/#", "/finance", True),
    ("/#", "finance", False),
    ("+/#", "sport", True),
    # 4.7.1.3 single-level wildcard
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+", "sport", True),
    ("+", "sport/tennis", False),
    ("+/tennis/#", "sport/tennis/player1/ranking", True),
    ("+/tennis/#", "sport/football", False),
    ("sport/+/player1", "sport/tennis/player1", True),
    ("sport/+/player1", "sport/tennis/player2", False),
    ("a/+/b", "a//b", True),
    ("a/+", "a//b", False),
    # 4.7.2 topics beginning with $ [MQTT-4.7.2-1]
    ("#", "$SYS/monitor/Clients", False),
    ("#", "$SYS", False),
    ("#", "$", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("+", "$SYS", False),
    ("+/#", "$SYS/x", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/Clients", "$SYS/monitor/Clients", True),
    ("#", "a/$SYS", True),  # only a leading $ is special
    ("+/$x", "a/$x", True),
    # 4.7.3 literal levels: case-sensitive, exact
    ("ACCOUNTS", "Accounts", False),
    ("Accounts", "Accounts", True),
    ("Accounts payable", "Accounts payable", True),
    ("sport/tennis", "sport/tennis/player1", False),
    ("sport/tennis/player1", "sport/tennis", False),
    ("sport/tennis", "sport/tennis/", False),
    ("/finance", "finance", False),
    ("a//b", "a//b", True),
    ("a//b", "a/b", False),
]


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    MATCHES,
    ids=[f"{f}~{t}" for f, t, _ in MATCHES],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def test_match_table_uses_valid_filters_and_names() -> None:
    for topic_filter, topic, _ in MATCHES:
        validate_topic_filter(topic_filter)
        validate_topic_name(topic)
