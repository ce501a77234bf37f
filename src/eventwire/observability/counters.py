"""Observability layer: the plain counters of an app, the one place every outcome is counted.

Each (topic, group, handler) gets a ``SubscriberMetrics`` of slot counters and a bucket
list, bumped with a few integer additions (well under a microsecond per message); nothing
here imports ``prometheus_client``: ``metrics.MetricsRecorder`` turns them into metric
families only when someone scrapes, and ``runtime.stats`` sums them into ``AppStats``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from time import perf_counter
from typing import Final, TypeAlias

from eventwire.core.lag import Backlog

# Ages in seconds of the oldest unsettled and the oldest waiting delivery (None: there is none).
OldestAges: TypeAlias = Callable[[], tuple[float | None, float | None]]

# Seconds; handlers range from sub-millisecond to calls of slow services.
DURATION_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
PUBLISH_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
)  # fmt: skip


class Histogram:
    """Bucket counts (non-cumulative), count and sum; cumulated only when scraped."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


class SubscriberMetrics:
    """Live counters of one (topic, group, handler); updated from one event loop only."""

    __slots__ = (
        "backlog",
        "breaker_open",
        "breaker_opened",
        "dead_letters",
        "duplicates",
        "duration",
        "failures",
        "group",
        "handler",
        "in_flight",
        "lag_read_failures",
        "oldest",
        "processed_count",
        "restarts",
        "retries",
        "topic",
    )

    def __init__(self, topic: str, group: str | None, handler: str) -> None:
        self.topic = topic
        self.group = group or ""  # broadcast subscribers have no group
        self.handler = handler
        self.processed_count = 0
        self.failures = 0
        self.retries = 0
        self.duplicates = 0
        self.in_flight = 0
        # Consumer tasks (or their handler workers) that died unexpectedly and were restarted.
        self.restarts = 0
        self.breaker_open = 0  # 1 while the subscriber's circuit breaker is open or half-open
        self.breaker_opened = 0
        self.dead_letters: dict[str, int] = {}
        self.duration = Histogram(DURATION_BUCKETS)
        # Set by observability.lag's reader (None until read, or after a failed read) and by
        # the runtime's dispatcher of the live subscription (None while not subscribed).
        self.backlog: Backlog | None = None
        self.lag_read_failures = 0
        self.oldest: OldestAges | None = None

    @property
    def labels(self) -> list[str]:
        return [self.topic, self.group, self.handler]

    def handler_started(self) -> float:
        self.in_flight += 1
        return perf_counter()

    def handler_finished(self, started: float) -> None:
        self.in_flight -= 1
        # Histogram.observe inlined: this runs for every handler call.
        elapsed = perf_counter() - started
        duration = self.duration
        duration.counts[bisect_left(duration.bounds, elapsed)] += 1
        duration.total += elapsed

    def processed(self) -> None:
        self.processed_count += 1

    def failed(self) -> None:
        self.failures += 1

    def retried(self) -> None:
        self.retries += 1

    def dead_lettered(self, reason: str) -> None:
        self.dead_letters[reason] = self.dead_letters.get(reason, 0) + 1

    def duplicate_suppressed(self) -> None:
        self.duplicates += 1


class AppCounters:
    """Every outcome of one app, counted once: per subscriber, and published per topic.

    ``App.stats`` sums these and ``/metrics`` renders them, so the two can never disagree.
    The same ``SubscriberMetrics`` object is handed out across restarts of ``run`` (and of a
    consumer), so counters only ever grow, as Prometheus expects.
    """

    __slots__ = ("publish_latency", "published", "subscribers")

    def __init__(self) -> None:
        self.subscribers: dict[tuple[str, str | None, str], SubscriberMetrics] = {}
        self.published: dict[str, int] = {}
        self.publish_latency: dict[str, Histogram] = {}

    def subscriber(self, topic: str, group: str | None, handler: str) -> SubscriberMetrics:
        """The counters of ``(topic, group, handler)``, created on first use."""
        key = (topic, group, handler)
        found = self.subscribers.get(key)
        if found is None:
            found = self.subscribers[key] = SubscriberMetrics(topic, group, handler)
        return found

    def record_published(self, topic: str, count: int, seconds: float) -> None:
        """``count`` messages confirmed by one broker call that took ``seconds``."""
        self.published[topic] = self.published.get(topic, 0) + count
        latency = self.publish_latency.get(topic)
        if latency is None:
            latency = self.publish_latency[topic] = Histogram(PUBLISH_BUCKETS)
        latency.observe(seconds)
