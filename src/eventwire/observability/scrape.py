"""Observability layer: a worker's ``/metrics`` read back into numbers, for ``eventwire monitor``.

The reading side of ``metrics.py``: it fetches the text exposition over HTTP (stdlib
``urllib``, loopback or any host the operator names) and parses it with
``prometheus_client``'s own parser (the ``metrics`` extra, imported when first used), so
whatever the worker serves, Prometheus and this view read the same figures. Counters are
cumulative; ``rates()`` turns two snapshots into per-second rates.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Final

from eventwire.core.errors import ConfigurationError, ConnectionLostError

METRICS_EXTRA_HINT: Final = "pip install 'eventwire[metrics]'"
# Counter families per subscriber, by the column name the monitor shows.
_COUNTERS: Final = {
    "eventwire_messages_processed": "processed",
    "eventwire_messages_failed": "failed",
    "eventwire_messages_retried": "retried",
    "eventwire_messages_dead_lettered": "dead_lettered",
    "eventwire_messages_duplicates_suppressed": "duplicates",
}
_GAUGES: Final = {
    "eventwire_handlers_in_flight": "in_flight",
    "eventwire_consumer_lag": "lag",
}

SubscriberKey = tuple[str, str, str]  # topic, group ("" for broadcast), handler


@dataclass(slots=True, kw_only=True)
class SubscriberFigures:
    """One subscriber's cumulative counters and current gauges."""

    processed: float = 0.0
    failed: float = 0.0
    retried: float = 0.0
    dead_lettered: float = 0.0
    duplicates: float = 0.0
    in_flight: float = 0.0
    lag: float | None = None  # only when the worker reports consumer lag


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSnapshot:
    """What one scrape said, and when (``time.monotonic()``)."""

    taken_at: float
    subscribers: dict[SubscriberKey, SubscriberFigures] = field(default_factory=dict)
    published: dict[str, float] = field(default_factory=dict)


def parse_exposition(text: str, *, taken_at: float) -> WorkerSnapshot:
    """The eventwire families in ``text`` (Prometheus text format); other families are ignored."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"reading /metrics needs prometheus_client: {METRICS_EXTRA_HINT}"
        ) from exc
    snapshot = WorkerSnapshot(taken_at=taken_at)
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ConfigurationError(f"the worker's /metrics is not Prometheus text: {exc}") from exc
    for family in families:
        for sample in family.samples:
            name = sample.name.removesuffix("_total")
            labels = sample.labels
            if name == "eventwire_messages_published" and "topic" in labels:
                snapshot.published[labels["topic"]] = sample.value
                continue
            column = _COUNTERS.get(name) or _GAUGES.get(name)
            if column is None or "topic" not in labels:
                continue
            key = (labels["topic"], labels.get("group", ""), labels.get("handler", ""))
            figures = snapshot.subscribers.setdefault(key, SubscriberFigures())
            if column == "lag":
                figures.lag = (figures.lag or 0.0) + sample.value  # summed over partitions
            elif column == "dead_lettered":  # one sample per reason
                figures.dead_lettered += sample.value
            else:
                setattr(figures, column, sample.value)
    return snapshot


def fetch_snapshot(worker_url: str, *, timeout: float = 5.0) -> WorkerSnapshot:
    """GET ``worker_url``/metrics and parse it; one-line errors for a wrong URL or a down worker."""
    base = worker_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"--worker takes the worker's HTTP address, like http://127.0.0.1:9000, not {base!r}"
        )
    url = base if base.endswith("/metrics") else f"{base}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        raise ConnectionLostError(f"GET {url} answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionLostError(
            f"cannot read {url}: {reason} (is the worker running with --http-port?)"
        ) from exc
    return parse_exposition(text, taken_at=time.monotonic())


def rates(previous: WorkerSnapshot, current: WorkerSnapshot) -> dict[SubscriberKey, float]:
    """Processed messages per second for each subscriber between two snapshots."""
    elapsed = current.taken_at - previous.taken_at
    if elapsed <= 0:
        return {}
    found: dict[SubscriberKey, float] = {}
    for key, figures in current.subscribers.items():
        before = previous.subscribers.get(key)
        done = figures.processed - (before.processed if before else 0.0)
        found[key] = max(done, 0.0) / elapsed  # a restarted worker resets its counters
    return found
