from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mosquitto import Mosquitto


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start Mosquitto brokers; all are stopped after the test."""
    started: list[Mosquitto] = []

    def start(extra_config: str = "", *, persistence: bool = False) -> Mosquitto:
        directory = tmp_path / f"mosquitto-{len(started)}"
        broker = Mosquitto(directory, extra_config=extra_config, persistence=persistence).start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def upstream(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return mosquitto_factory()
