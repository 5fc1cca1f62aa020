"""The application message every part of the gateway passes around."""

from __future__ import annotations

from typing import NamedTuple


class Message(NamedTuple):
    """One accepted PUBLISH, decoded once and shared by every consumer.

    A tuple, so it is immutable and cheap to build: one is made per message on
    the hot path. ``source`` says where it came from (``client:<id>``,
    ``upstream:<id>``, ``broker``) so a consumer can avoid sending a message
    back where it came from. ``received_at`` is the event-loop clock when it
    arrived.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    source: str
    received_at: float
