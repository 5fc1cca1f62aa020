"""The shadow service on its own: requests of one shadow in turn, and no state left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mqttproxy.broker.message import Message
from mqttproxy.shadow import Limits, ShadowKey, ShadowService
from mqttproxy.storage import Database


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "gateway.db")
    await database.open()
    yield database
    await database.close()


async def test_requests_of_one_shadow_are_served_in_turn_and_leave_no_lock_behind(
    database: Database,
) -> None:
    published: list[Message] = []
    service = ShadowService(database, dispatch=published.append, limits=Limits())
    things = [f"thing-{number}" for number in range(5)]
    requests = [
        service.handle(ShadowKey(thing, ""), "update", b'{"state": {"reported": {"n": %d}}}' % turn)
        for turn in range(20)
        for thing in things
    ]
    answers = await asyncio.gather(*requests)
    versions: dict[str, list[int]] = {thing: [] for thing in things}
    for number, answer in enumerate(answers):
        assert isinstance(answer, dict), answer
        versions[things[number % len(things)]].append(answer["version"])
    # Each update of a shadow saw the one before it: versions 1..20, in the order asked.
    assert versions == {thing: list(range(1, 21)) for thing in things}
    assert service._locks == {}  # a lock lives only while requests hold or wait for it
    assert len([m for m in published if m.topic.endswith("/update/accepted")]) == 100
