"""Device shadows compatible with AWS IoT: classic and named, over MQTT and REST, persisted."""

from mqttproxy.shadow.document import Limits, ShadowError
from mqttproxy.shadow.service import ShadowKey, ShadowService

__all__ = ["Limits", "ShadowError", "ShadowKey", "ShadowService"]
