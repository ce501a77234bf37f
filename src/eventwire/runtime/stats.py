"""Runtime layer: ``AppStats``, a frozen snapshot summed from the app's one set of counters."""

from __future__ import annotations

from dataclasses import dataclass

from eventwire.observability.counters import AppCounters


@dataclass(frozen=True, slots=True, kw_only=True)
class AppStats:
    """Counts since the app was created (summed over its subscribers).

    ``processed``: handler calls that succeeded (ack="before" included);
    ``retried``: retries scheduled (a delayed nack or an in-place retry);
    ``dead_lettered``: messages moved to the DLQ (decode errors included);
    ``duplicates_suppressed``: deliveries acked without calling the handler (idempotency);
    ``failed``: handler calls that raised, whatever happened next;
    ``consumer_restarts``: consumer tasks or handler workers that died and were restarted.
    """

    published: int = 0
    processed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    duplicates_suppressed: int = 0
    failed: int = 0
    consumer_restarts: int = 0

    @classmethod
    def of(cls, counters: AppCounters) -> AppStats:
        """The snapshot of ``counters`` now: the same numbers ``/metrics`` renders."""
        subs = list(counters.subscribers.values())
        return cls(
            published=sum(counters.published.values()),
            processed=sum(s.processed_count for s in subs),
            retried=sum(s.retries for s in subs),
            dead_lettered=sum(sum(s.dead_letters.values()) for s in subs),
            duplicates_suppressed=sum(s.duplicates for s in subs),
            failed=sum(s.failures for s in subs),
            consumer_restarts=sum(s.restarts for s in subs),
        )
