"""Metrics: cheap in-process counters, and their Prometheus names.

Counting on the hot path is an integer increment (or a bucket increment for
latencies); a collector turns the counters into Prometheus metrics when
``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client.core import Metric

# Seconds from a message's arrival at the gateway to its being written to an
# upstream (QoS 0) or acknowledged by it (QoS 1/2).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """A Prometheus-style histogram kept as plain integers: one bisect and two additions per sample."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, cumulative count) pairs, ending with +Inf, as Prometheus wants them."""
        total = 0
        result = []
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.counts, strict=True):
            total += count
            result.append((bound, total))
        return result


# --- Prometheus ------------------------------------------------------------------
#
# Every metric the gateway exposes, defined once. The services keep plain
# integers; ``GatewayCollector`` reads them when /metrics is scraped.


class BrokerSource(Protocol):
    def broker_counters(self) -> dict[str, int]:
        """BrokerStats counters plus gauges: connections, sessions, subscriptions, retained."""
        ...

    def upstream_links(self) -> Iterable[LinkView]: ...

    @property
    def recorder(self) -> RecorderView: ...


class RecorderView(Protocol):
    """The timeseries recorder's counters."""

    points: int
    dropped: int
    lost_points: int
    flush_seconds: LatencyHistogram

    @property
    def bytes_on_disk(self) -> int: ...

    def config_counters(self) -> Iterable[tuple[str, int, int, Mapping[str, int]]]:
        """(data config id, messages, points, failures by reason) for every data config."""
        ...


class LinkView(Protocol):
    id: str
    forwarded: int
    received: int
    republished: int
    connections: int
    latency: LatencyHistogram

    @property
    def dropped(self) -> Mapping[str, int]: ...

    @property
    def queue_depth(self) -> int: ...

    @property
    def queue_bytes(self) -> int: ...

    @property
    def inflight(self) -> int: ...

    @property
    def is_connected(self) -> bool: ...


_BROKER_COUNTERS = {
    # name -> (BrokerStats field, help)
    "mqtt_messages_received_total": ("messages_received", "PUBLISH messages accepted from devices"),
    "mqtt_messages_sent_total": ("messages_sent", "PUBLISH messages delivered to local subscribers"),
    "mqtt_bytes_received_total": ("bytes_received", "Bytes read from device connections"),
    "mqtt_connections_total": ("connections_total", "Device TCP connections accepted"),
    "mqtt_connections_refused_total": ("connections_refused", "Device connections over max_connections"),
    "mqtt_protocol_errors_total": ("protocol_errors", "Device connections closed for a protocol error"),
    "mqtt_auth_failures_total": ("auth_failures", "CONNECTs refused by authentication"),
    "mqtt_dispatch_hook_errors_total": ("hook_errors", "Exceptions raised by dispatch hooks"),
    "mqtt_subscriptions_denied_total": ("subscriptions_denied", "Topic filters refused by a device's ACL"),
}
_LOCAL_DROPS = {
    "queue_full": "dropped_queue_full",
    "slow_consumer": "dropped_slow_consumer",
    "sys_topic": "dropped_sys_topic",
    "acl_denied": "dropped_acl",
}
_BROKER_GAUGES = {
    "mqtt_active_connections": ("connections", "Open device connections"),
    "mqtt_sessions": ("sessions", "Sessions held, connected or persistent"),
    "mqtt_subscriptions": ("subscriptions", "Subscriptions of all sessions"),
    "mqtt_retained_messages": ("retained", "Retained messages stored"),
}
# Per upstream link, label "broker": name -> (LinkView attribute, help)
_LINK_COUNTERS = {
    "mqtt_messages_forwarded_total": ("forwarded", "Messages written (QoS 0) or acked (QoS 1/2) upstream"),
    "mqtt_upstream_messages_received_total": ("received", "Messages received from an upstream (bridge-in)"),
    "mqtt_upstream_republished_total": ("republished", "QoS 1/2 messages sent again (timeout, reconnect)"),
    "mqtt_upstream_reconnects_total": ("reconnects", "Reconnections to an upstream"),
}
_LINK_GAUGES = {
    "mqtt_broker_connection_status": ("is_connected", "1 while the upstream is connected"),
    "mqtt_upstream_queue_depth": ("queue_depth", "Messages queued for an upstream"),
    "mqtt_upstream_queue_bytes": ("queue_bytes", "Bytes queued for an upstream"),
    "mqtt_upstream_inflight": ("inflight", "QoS 1/2 messages sent upstream and not yet acknowledged"),
}
_LATENCY_HELP = "Device PUBLISH received to written to (QoS 0) or acknowledged by (QoS 1/2) an upstream"


class GatewayCollector:
    """Turns the gateway's counters into Prometheus metric families at scrape time."""

    def __init__(self, source: BrokerSource) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []  # collected fresh on every scrape

    def collect(self) -> Iterator[Metric]:
        # Imported here: prometheus_client costs 5 MB, which an MQTT-only gateway keeps.
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counters = self._source.broker_counters()
        for name, (field, text) in _BROKER_COUNTERS.items():
            yield CounterMetricFamily(name.removesuffix("_total"), text, value=counters[field])
        for name, (field, text) in _BROKER_GAUGES.items():
            yield GaugeMetricFamily(name, text, value=counters[field])
        local = CounterMetricFamily(
            "mqtt_local_messages_dropped", "Messages not delivered to a local subscriber", labels=["reason"]
        )
        for reason, field in _LOCAL_DROPS.items():
            local.add_metric([reason], counters[field])
        yield local
        yield from self._links(list(self._source.upstream_links()))
        yield from _recorder(self._source.recorder)

    def _links(self, links: list[LinkView]) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        for name, (attribute, text) in _LINK_COUNTERS.items():
            counter = CounterMetricFamily(name.removesuffix("_total"), text, labels=["broker"])
            for link in links:
                counter.add_metric([link.id], _value(link, attribute))
            yield counter
        for name, (attribute, text) in _LINK_GAUGES.items():
            gauge = GaugeMetricFamily(name, text, labels=["broker"])
            for link in links:
                gauge.add_metric([link.id], _value(link, attribute))
            yield gauge
        dropped_help = "Messages an upstream link dropped, by reason"
        dropped = CounterMetricFamily("mqtt_messages_dropped", dropped_help, labels=["broker", "reason"])
        latency = HistogramMetricFamily("mqtt_message_latency_seconds", _LATENCY_HELP, labels=["broker"])
        for link in links:
            for reason, count in sorted(link.dropped.items()):
                dropped.add_metric([link.id, reason], count)
            latency.add_metric([link.id], link.latency.cumulative(), sum_value=link.latency.sum)
        yield dropped
        yield latency


def _recorder(recorder: RecorderView) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    yield CounterMetricFamily(
        "mqtt_timeseries_points", "Samples stored by the timeseries recorder", value=recorder.points
    )
    yield CounterMetricFamily(
        "mqtt_timeseries_messages_dropped",
        "Messages the recorder dropped because its queue was full",
        value=recorder.dropped,
    )
    yield CounterMetricFamily(
        "mqtt_timeseries_points_lost",
        "Samples lost to failed database writes",
        value=recorder.lost_points,
    )
    yield GaugeMetricFamily(
        "mqtt_timeseries_bytes", "Bytes of compressed samples on disk", value=recorder.bytes_on_disk
    )
    flush = recorder.flush_seconds
    yield HistogramMetricFamily(
        "mqtt_timeseries_flush_duration_seconds",
        "Time to extract and store one batch",
        buckets=flush.cumulative(),
        sum_value=flush.sum,
    )
    messages = CounterMetricFamily(
        "mqtt_timeseries_messages", "Messages a data config matched", labels=["config"]
    )
    points = CounterMetricFamily(
        "mqtt_timeseries_extracted_points", "Samples a data config extracted", labels=["config"]
    )
    failures = CounterMetricFamily(
        "mqtt_timeseries_extraction_failures",
        "Values a data config could not extract, by reason",
        labels=["config", "reason"],
    )
    for config_id, matched, extracted, failed in recorder.config_counters():
        messages.add_metric([config_id], matched)
        points.add_metric([config_id], extracted)
        for reason, count in sorted(failed.items()):
            failures.add_metric([config_id, reason], count)
    yield messages
    yield points
    yield failures


def _value(link: LinkView, attribute: str) -> float:
    if attribute == "reconnects":
        return max(0, link.connections - 1)
    return float(getattr(link, attribute))
