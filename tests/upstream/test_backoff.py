"""A link's reconnect delays: exponential, capped, jittered, for as long as the upstream stays away."""

from __future__ import annotations

import pytest

from mqttproxy.upstream.link import Link
from mqttproxy.upstream.models import BrokerRecord


def _link(min_delay: float, max_delay: float) -> Link:
    record = BrokerRecord(
        id="b",
        name="b",
        address="127.0.0.1",
        port=1,
        reconnect_min_delay=min_delay,
        reconnect_max_delay=max_delay,
    )
    return Link(record, gateway_id="g", connect_timeout=1.0, deliver=lambda _: None, on_state=lambda _: None)


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (60, 8.0)]
)
async def test_delay_doubles_up_to_the_cap_with_jitter(attempt: int, ceiling: float) -> None:
    link = _link(0.5, 8.0)
    delays = [link._backoff(attempt) for _ in range(200)]
    # Jittered between half the ceiling and the ceiling, so gateways spread out.
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 100


@pytest.mark.parametrize("attempt", [1_023, 1_024, 5_000, 10**9])
async def test_an_upstream_away_for_days_still_gets_a_delay(attempt: int) -> None:
    """At 60 s a retry, a day is about 2,000 attempts: the delay must not overflow."""
    link = _link(0.001, 60.0)
    assert 30.0 <= link._backoff(attempt) <= 60.0
