"""mqttproxy: an MQTT edge gateway for IoT fleets."""

__version__ = "0.1.0"
