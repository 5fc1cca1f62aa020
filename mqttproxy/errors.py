"""The project's exceptions: one root, split by cause.

This module imports nothing, so every layer (``protocol`` included) may raise
these without depending on anything else of ours.
"""

from __future__ import annotations


class MqttProxyError(Exception):
    """Root of every exception the gateway raises on purpose."""


class ConfigError(MqttProxyError):
    """The configuration file is missing, unreadable or invalid."""

    def __init__(
        self, message: str, *, path: str | None = None, key: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.key = key
        self.line = line


class ProtocolError(MqttProxyError):
    """An MQTT protocol violation; the connection it happened on must close."""


class LocalProtocolError(ProtocolError):
    """We tried to build or send something the MQTT spec forbids (our bug)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the MQTT spec forbids.

    ``return_code`` is the CONNACK return code to send before closing, when the
    spec asks for one (e.g. an unsupported protocol level); ``None`` means
    close without answering.
    """

    def __init__(self, message: str, *, return_code: int | None = None) -> None:
        super().__init__(message)
        self.return_code = return_code
