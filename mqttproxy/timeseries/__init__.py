"""The timeseries recorder: numbers pulled out of MQTT payloads, stored compactly, queried and plotted."""

from mqttproxy.timeseries.models import DataConfig
from mqttproxy.timeseries.recorder import (
    DataConfigExists,
    DataConfigNotFound,
    Recorder,
    RecorderSettings,
)
from mqttproxy.timeseries.store import Samples, Series

__all__ = [
    "DataConfig",
    "DataConfigExists",
    "DataConfigNotFound",
    "Recorder",
    "RecorderSettings",
    "Samples",
    "Series",
]
