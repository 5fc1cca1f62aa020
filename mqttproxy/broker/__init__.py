"""The device-facing MQTT 3.1.1 broker: listeners, sessions, routing, dispatch."""
