from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.broker.bad_clients import Bystander, connected_bystander
from tests.helpers import ThreadedGateway


@pytest.fixture
def bystander(gateway: ThreadedGateway) -> Iterator[Bystander]:
    with connected_bystander(gateway) as connected:
        yield connected


@pytest.fixture
def broker_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """WARNING and above from the broker (logged on the gateway thread, captured all the same)."""
    caplog.set_level(logging.WARNING, logger="mqttproxy")
    return caplog
