from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mqttproxy.config import Config
from tests.helpers import ThreadedGateway, make_config


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[Callable[..., ThreadedGateway]]:
    """Start gateways with ``make_config`` overrides; all are stopped after the test."""
    started: list[ThreadedGateway] = []

    def start(config: Config | None = None, **overrides: Any) -> ThreadedGateway:
        gateway = ThreadedGateway(config or make_config(tmp_path, **overrides)).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in reversed(started):
        gateway.stop()


@pytest.fixture
def gateway(gateway_factory: Callable[..., ThreadedGateway]) -> ThreadedGateway:
    """A gateway on an ephemeral loopback port with anonymous access."""
    return gateway_factory()
