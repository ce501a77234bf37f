"""Observability layer: per-subscriber and per-topic Prometheus metrics, one registry per App.

The hot path never touches ``prometheus_client``: it bumps the plain counters of
``counters.SubscriberMetrics``. A custom collector turns them into metric families only when
someone scrapes, so recording costs well under a microsecond per message and the registry is
private to its app (tests and several apps in one process never collide).
``prometheus_client`` (the ``metrics`` extra) is imported lazily, at the first scrape;
without it ``new_recorder(counters)`` returns a ``NoopRecorder`` and the runtime works the same,
minus ``/metrics``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final, Protocol

from eventwire.observability.counters import AppCounters, SubscriberMetrics

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

# The classic text format: every scraper reads it, and these names need nothing newer
# (prometheus_client >= 0.22 labels its output version=1.0.0, which older servers reject).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS: Final = "application/openmetrics-text"
METRICS_EXTRA_HINT: Final = "pip install 'eventwire[metrics]'"


class Recorder(Protocol):
    """An app's metrics: the text ``/metrics`` serves, rendered from the app's counters."""

    @property
    def enabled(self) -> bool: ...
    def exposition(self, accept: str = "") -> tuple[bytes, str]: ...


def wants_openmetrics(accept: str) -> bool:
    """Whether an ``Accept`` header asks for OpenMetrics (as Prometheus itself does), the way
    ``prometheus_client`` negotiates it: any listed media type of that name, whatever its q."""
    return any(part.split(";", 1)[0].strip() == OPENMETRICS for part in accept.split(","))


class NoopRecorder:
    """The recorder used when ``prometheus_client`` is missing: renders nothing (the app's
    counters still count, for ``App.stats``)."""

    enabled = False

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        text = f"# metrics are off: prometheus_client is not installed ({METRICS_EXTRA_HINT})\n"
        return text.encode(), "text/plain; charset=utf-8"


class MetricsRecorder:
    """Metrics of one app's ``counters``, in a registry of its own (``registry``), rendered
    only when scraped."""

    enabled = True

    def __init__(self, counters: AppCounters | None = None) -> None:
        self.counters = counters if counters is not None else AppCounters()
        self._registry: CollectorRegistry | None = None

    @property
    def registry(self) -> CollectorRegistry:
        """This app's registry (created, and ``prometheus_client`` imported, on first use)."""
        if self._registry is None:
            from prometheus_client.registry import Collector, CollectorRegistry

            recorder = self

            class _Collector(Collector):
                # Defined here so that importing this module never imports prometheus_client.
                def collect(self) -> Iterator[Metric]:
                    return recorder.collect()

            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Collector())
            self._registry = registry
        return self._registry

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Every metric and its content type: OpenMetrics when ``accept`` (the request's
        ``Accept`` header) asks for it, else the classic Prometheus text format."""
        if wants_openmetrics(accept):
            from prometheus_client.openmetrics import exposition as openmetrics

            text: bytes = openmetrics.generate_latest(self.registry)  # type: ignore[no-untyped-call]
            return text, openmetrics.CONTENT_TYPE_LATEST
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry), CONTENT_TYPE

    def collect(self) -> Iterator[Metric]:
        """Metric families built from the live counters (what the registry scrapes)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        names = ["topic", "group", "handler"]
        counts = self.counters
        subs = list(counts.subscribers.values())
        counters: list[tuple[str, str, Callable[[SubscriberMetrics], int]]] = [
            ("processed", "Handler calls that succeeded.", lambda s: s.processed_count),
            ("failed", "Handler calls that raised, whatever happened next.", lambda s: s.failures),
            ("retried", "Retries scheduled (delayed nack or in place).", lambda s: s.retries),
            (
                "duplicates_suppressed",
                "Deliveries acked without calling the handler (idempotency).",
                lambda s: s.duplicates,
            ),
            (
                "eventwire_consumer_restarts",
                "Consumer tasks or handler workers that died unexpectedly and were restarted.",
                lambda s: s.restarts,
            ),
            (
                "eventwire_breaker_opened",
                "Times the subscriber's circuit breaker opened (consumption paused).",
                lambda s: s.breaker_opened,
            ),
        ]
        for name, doc, value in counters:
            full = name if name.startswith("eventwire_") else f"eventwire_messages_{name}"
            family = CounterMetricFamily(full, doc, labels=names)
            for sub in subs:
                family.add_metric(sub.labels, value(sub))
            yield family
        dead = CounterMetricFamily(
            "eventwire_messages_dead_lettered",
            "Messages moved to the dead-letter topic, by reason.",
            labels=[*names, "reason"],
        )
        for sub in subs:
            for reason, count in sorted(sub.dead_letters.items()):
                dead.add_metric([*sub.labels, reason], count)
        yield dead
        duration = HistogramMetricFamily(
            "eventwire_handler_duration_seconds", "Handler call duration.", labels=names
        )
        for sub in subs:
            duration.add_metric(sub.labels, sub.duration.cumulative(), sub.duration.total)
        yield duration
        in_flight = GaugeMetricFamily(
            "eventwire_handlers_in_flight", "Handler calls running now.", labels=names
        )
        for sub in subs:
            in_flight.add_metric(sub.labels, sub.in_flight)
        yield in_flight
        breaker = GaugeMetricFamily(
            "eventwire_breaker_open",
            "1 while the subscriber's circuit breaker is open or half-open (not consuming).",
            labels=names,
        )
        for sub in subs:
            breaker.add_metric(sub.labels, sub.breaker_open)
        yield breaker
        yield from _lag_families(subs, names)
        published = CounterMetricFamily(
            "eventwire_messages_published", "Messages the broker confirmed.", labels=["topic"]
        )
        latency = HistogramMetricFamily(
            "eventwire_publish_duration_seconds",
            "Publish call duration, until the broker confirmed.",
            labels=["topic"],
        )
        for topic, count in sorted(counts.published.items()):
            published.add_metric([topic], count)
            hist = counts.publish_latency[topic]
            latency.add_metric([topic], hist.cumulative(), hist.total)
        yield published
        yield latency
        from eventwire.brokers._support.retention import dropped_counts

        dropped = CounterMetricFamily(
            "eventwire_retention_dropped",
            "Messages a user-set retention limit removed before every group acknowledged them.",
            labels=["profile", "topic"],
        )
        for (profile, topic), count in sorted(dropped_counts().items()):
            dropped.add_metric([profile, topic], count)
        yield dropped


def _lag_families(subs: list[SubscriberMetrics], names: list[str]) -> Iterator[Metric]:
    """What the broker says each group has not acknowledged (``observability.lag``), and
    how long the oldest deliveries this app holds have been waiting."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    lag = GaugeMetricFamily(
        "eventwire_consumer_lag",
        "Messages the group has not acknowledged yet, as the broker reports them "
        "(waiting + delivered-unacked where the broker tells; see the README per broker).",
        labels=names,
    )
    unacked = GaugeMetricFamily(
        "eventwire_consumer_unacked",
        "Messages delivered to the group and not acknowledged yet, where the broker reports it.",
        labels=names,
    )
    partitions = GaugeMetricFamily(
        "eventwire_consumer_partition_lag",
        "The group's lag per partition (committed offset to high watermark).",
        labels=[*names, "partition"],
    )
    failures = CounterMetricFamily(
        "eventwire_consumer_lag_read_failures",
        "Reads of the group's backlog from the broker that failed or timed out.",
        labels=names,
    )
    unsettled = GaugeMetricFamily(
        "eventwire_oldest_unsettled_age_seconds",
        "Age of the oldest delivery this subscriber took and has not settled (0: none).",
        labels=names,
    )
    waiting = GaugeMetricFamily(
        "eventwire_oldest_waiting_age_seconds",
        "Age of the oldest delivery taken but not handed to a handler yet, such as one queued "
        "behind a slow key (0: none).",
        labels=names,
    )
    for sub in subs:
        backlog = sub.backlog
        if backlog is not None:
            lag.add_metric(sub.labels, backlog.total)
            if backlog.unacked is not None:
                unacked.add_metric(sub.labels, backlog.unacked)
            for partition, count in sorted(backlog.partitions.items()):
                partitions.add_metric([*sub.labels, partition], count)
        if sub.group:
            failures.add_metric(sub.labels, sub.lag_read_failures)
        if sub.oldest is not None:
            oldest_unsettled, oldest_waiting = sub.oldest()
            unsettled.add_metric(sub.labels, oldest_unsettled or 0.0)
            waiting.add_metric(sub.labels, oldest_waiting or 0.0)
    yield from (lag, unacked, partitions, failures, unsettled, waiting)


def metrics_available() -> bool:
    """Whether ``prometheus_client`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("prometheus_client") is not None
    except (ImportError, ValueError):  # a broken or blocked module counts as missing
        return False


def new_recorder(counters: AppCounters) -> MetricsRecorder | NoopRecorder:
    """A recorder of an app's ``counters``: real when the ``metrics`` extra is installed,
    else one that renders nothing."""
    return MetricsRecorder(counters) if metrics_available() else NoopRecorder()
