"""A link's queue: bounded in messages and bytes, dropping by policy and counting every drop."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from mqttproxy.broker.message import Message
from mqttproxy.upstream.link import Link
from mqttproxy.upstream.models import BrokerRecord, Route


def _link(**fields: Any) -> Link:
    # An upstream nobody listens on, and never started: the queue only fills.
    record = BrokerRecord(id="q", name="q", address="127.0.0.1", port=1, **fields)
    return Link(record, gateway_id="g", connect_timeout=1.0, deliver=lambda _: None, on_state=lambda _: None)


def _offer(link: Link, *payloads: bytes, topic: str = "t", source: str = "client:d") -> None:
    for payload in payloads:
        link.offer(Message(topic, payload, 1, False, source, 0.0))


def _queued(link: Link) -> list[bytes]:
    return [entry.payload for entry in link._queue]


async def test_full_queue_drops_the_oldest_by_default() -> None:
    link = _link(queue_max_messages=3)
    _offer(link, b"1", b"2", b"3", b"4", b"5")
    assert _queued(link) == [b"3", b"4", b"5"]
    assert link.dropped == {"queue_full": 2}


async def test_overflow_is_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mqttproxy")
    link = _link(queue_max_messages=2)
    _offer(link, *[b"m"] * 10)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert "upstream q: queue full (2 messages" in warnings[0]
    assert "dropping the oldest" in warnings[0]


async def test_drop_newest_keeps_what_was_queued() -> None:
    link = _link(queue_max_messages=3, drop_policy="newest")
    _offer(link, b"1", b"2", b"3", b"4", b"5")
    assert _queued(link) == [b"1", b"2", b"3"]
    assert link.dropped == {"queue_full": 2}


async def test_queue_is_bounded_in_bytes_too() -> None:
    link = _link(queue_max_bytes=1024)
    payload = bytes(300)  # + the 1-byte topic: 301 bytes an entry
    _offer(link, *[payload] * 5)
    assert link.queue_depth == 3
    assert link.queue_bytes == 3 * 301
    assert link.dropped == {"queue_full": 2}
    _offer(link, bytes(2000))  # larger than the whole queue may hold
    assert link.queue_depth == 3
    assert link.dropped == {"queue_full": 3}


async def test_messages_outside_the_routes_or_from_this_upstream_are_not_queued() -> None:
    link = _link(routes=[Route(filter="devices/#")])
    _offer(link, b"elsewhere", topic="other/t")
    _offer(link, b"echo", topic="devices/d1", source="upstream:q")  # came in from this upstream
    _offer(link, b"from another upstream", topic="devices/d1", source="upstream:other")
    assert _queued(link) == [b"from another upstream"]
    assert link.dropped == {}


@pytest.mark.parametrize(
    ("message_qos", "route_qos", "link_qos", "expected"), [(2, 2, 1, 1), (2, 0, 2, 0), (0, 2, 2, 0)]
)
async def test_qos_is_capped_by_route_and_link(
    message_qos: int, route_qos: int, link_qos: int, expected: int
) -> None:
    link = _link(routes=[Route(filter="#", max_qos=route_qos)], max_qos=link_qos)
    link.offer(Message("t", b"x", message_qos, False, "client:d", 0.0))
    assert link._queue[0].qos == expected


async def test_disabled_link_counts_instead_of_queueing() -> None:
    link = _link(enabled=False)
    _offer(link, b"1", b"2")
    assert link.queue_depth == 0
    assert link.dropped == {"disabled": 2}
