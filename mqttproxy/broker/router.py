"""Local delivery: subscriptions of connected and persistent sessions."""

from __future__ import annotations

from mqttproxy.broker.message import Message
from mqttproxy.broker.session import Session
from mqttproxy.broker.stats import BrokerStats
from mqttproxy.broker.topic_trie import SubscriptionTrie
from mqttproxy.protocol.codec import publish_bytes


class LocalRouter:
    """Delivers each message once per matching session, at the highest granted QoS."""

    def __init__(self, *, stats: BrokerStats) -> None:
        self._trie: SubscriptionTrie[Session] = SubscriptionTrie()
        self._stats = stats

    @property
    def subscription_count(self) -> int:
        return len(self._trie)

    def subscribe(self, session: Session, topic_filter: str, qos: int) -> None:
        session.subscriptions[topic_filter] = qos
        self._trie.subscribe(topic_filter, session, qos)

    def unsubscribe(self, session: Session, topic_filter: str) -> None:
        session.subscriptions.pop(topic_filter, None)
        self._trie.unsubscribe(topic_filter, session)

    def remove_session(self, session: Session) -> None:
        for topic_filter in session.subscriptions:
            self._trie.unsubscribe(topic_filter, session)
        session.subscriptions.clear()

    def route(self, message: Message) -> None:
        matches = self._trie.match(message.topic)
        if not matches:
            return
        stats = self._stats
        message_qos = message.qos
        # QoS 0 deliveries are the same bytes for every subscriber: encode once.
        # [MQTT-3.3.1-9] RETAIN is 0 when delivering to an established subscription.
        shared: bytes | None = None
        for session, granted in matches:
            qos = granted if granted < message_qos else message_qos
            if qos:
                session.deliver(message, qos)
                continue
            connection = session.connection
            if connection is None:
                continue  # QoS 0 is not queued for offline sessions
            if connection.writing_paused:
                stats.dropped_slow_consumer += 1
                continue
            if shared is None:
                shared = publish_bytes(message.topic.encode(), message.payload, 0, False, False, None)
            connection.write(shared)
            stats.messages_sent += 1
