"""Metrics: cheap in-process counters, and their Prometheus names.

Counting on the hot path is an integer increment (or a bucket increment for
latencies); a collector turns the counters into Prometheus metrics when
``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left

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
