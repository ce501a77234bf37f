"""Runtime layer: counters an ``App`` keeps, exposed as a frozen ``AppStats`` snapshot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class AppStats:
    """Counts since the app was created.

    ``processed``: handler calls that succeeded (ack="before" included);
    ``retried``: retries scheduled (a delayed nack or an in-place retry);
    ``dead_lettered``: messages moved to the DLQ (decode errors included);
    ``duplicates_suppressed``: deliveries acked without calling the handler (idempotency);
    ``failed``: handler calls that raised, whatever happened next.
    """

    published: int = 0
    processed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    duplicates_suppressed: int = 0
    failed: int = 0


class StatsCounter:
    """The mutable counters behind ``App.stats``; updated from one event loop only."""

    __slots__ = (
        "dead_lettered",
        "duplicates_suppressed",
        "failed",
        "processed",
        "published",
        "retried",
    )

    def __init__(self) -> None:
        self.published = 0
        self.processed = 0
        self.retried = 0
        self.dead_lettered = 0
        self.duplicates_suppressed = 0
        self.failed = 0

    def snapshot(self) -> AppStats:
        return AppStats(
            published=self.published,
            processed=self.processed,
            retried=self.retried,
            dead_lettered=self.dead_lettered,
            duplicates_suppressed=self.duplicates_suppressed,
            failed=self.failed,
        )
