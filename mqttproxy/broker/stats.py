"""Counters of the device-facing broker.

Plain integer attributes: counting on the hot path is one increment. The
metrics layer reads them when scraped.
"""

from __future__ import annotations


class BrokerStats:
    __slots__ = (
        "auth_failures",
        "bytes_received",
        "connections_refused",
        "connections_total",
        "dropped_acl",
        "dropped_queue_full",
        "dropped_slow_consumer",
        "dropped_sys_topic",
        "hook_errors",
        "messages_acknowledged",
        "messages_received",
        "messages_sent",
        "protocol_errors",
        "subscriptions_denied",
    )

    def __init__(self) -> None:
        self.connections_total = 0  # TCP connections accepted
        self.connections_refused = 0  # over max_connections
        self.protocol_errors = 0  # connections closed for breaking the protocol
        self.auth_failures = 0  # CONNECTs refused by authentication
        self.bytes_received = 0
        self.messages_received = 0  # PUBLISH accepted from clients
        self.messages_sent = 0  # PUBLISH written to clients (first delivery)
        self.messages_acknowledged = 0  # QoS 1/2 deliveries the client completed
        self.dropped_queue_full = 0  # QoS 1/2 for a session whose queue was full
        self.dropped_slow_consumer = 0  # QoS 0 for a client not reading fast enough
        self.dropped_sys_topic = 0  # client PUBLISH to $SYS/, which only the broker writes
        self.dropped_acl = 0  # client PUBLISH its ACL does not allow
        self.subscriptions_denied = 0  # topic filters refused by the client's ACL
        self.hook_errors = 0  # exceptions raised by dispatch hooks

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
