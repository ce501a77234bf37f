"""Broker layer: per-partition progress of a Kafka consumer: the safe commit point (pure).

Deliveries of one partition finish in any order under concurrency; the group's committed
offset may only move up to the lowest offset still unfinished, or a crash would skip it. The
commit metadata carries the attempt each unfinished offset was handed out with, so the member
that reads them next (after a close, a rebalance or a crash) counts the attempt on.
"""

from __future__ import annotations

from typing import Final

# Kafka's offset.metadata.max.bytes defaults to 4096: "offset:attempt," entries fit well
# within it at this count; offsets beyond it are redelivered with their header's attempt.
_MAX_METADATA_ENTRIES: Final = 100


def parse_metadata(text: str | None) -> dict[int, int]:
    """``{offset: attempt}`` from commit metadata written by ``PartitionProgress.metadata``."""
    result: dict[int, int] = {}
    for entry in (text or "").split(","):
        offset, sep, attempt = entry.partition(":")
        if sep and offset.isdigit() and attempt.isdigit():
            result[int(offset)] = int(attempt)
    return result


class PartitionProgress:
    """Offsets handed out and finished for one assigned partition."""

    __slots__ = ("_committed", "_held", "_next", "_open", "epoch", "prior")

    def __init__(self, epoch: int, prior: dict[int, int] | None = None) -> None:
        self.epoch = epoch  # which assignment of the partition this is
        self.prior = prior or {}  # attempts of offsets left unfinished by an earlier member
        self._open: dict[int, int] = {}  # offset -> attempt it was handed out with
        self._next: int | None = None  # offset after the highest one handed out or skipped
        self._committed: tuple[int, str] | None = None
        # Offsets whose transaction may be committing the point past them right now.
        self._held: set[int] = set()

    @property
    def open_count(self) -> int:
        return len(self._open)

    def attempt_for(self, offset: int, header_attempt: int) -> int:
        """The attempt of a record: one more than an earlier member's unfinished try."""
        earlier = self.prior.pop(offset, None)
        return header_attempt if earlier is None else max(earlier + 1, header_attempt)

    def handed(self, offset: int, attempt: int) -> None:
        self._open[offset] = attempt
        self._advance(offset)

    def skipped(self, offset: int) -> None:
        """A record this member does not hand out (another group's retry copy)."""
        self._advance(offset)

    def _advance(self, offset: int) -> None:
        if self._next is None or offset + 1 > self._next:
            self._next = offset + 1

    def finished(self, offset: int) -> bool:
        """Mark ``offset`` done; False when it was not open (already done, or never handed)."""
        self._held.discard(offset)
        return self._open.pop(offset, None) is not None

    def unhanded(self, offset: int) -> None:
        """Handed to the subscription but never to the application: no attempt was used."""
        if offset in self._open:
            self._open[offset] = 0

    def commit_point(self) -> int | None:
        """The offset to commit: the lowest unfinished one, else one past the last seen."""
        if self._open:
            return min(self._open)
        return self._next

    def point_after(self, offset: int) -> int | None:
        """The commit point once ``offset`` is finished too (a transaction commits it), and
        ``offset`` held until it is settled: see ``to_commit``."""
        if offset in self._open:
            self._held.add(offset)
        rest = [o for o in self._open if o != offset]
        if rest:
            return min(rest)
        return self._next

    def metadata(self) -> str:
        entries = sorted((o, a) for o, a in self._open.items() if a > 0)
        return ",".join(f"{o}:{a}" for o, a in entries[:_MAX_METADATA_ENTRIES])

    def to_commit(self) -> tuple[int, str] | None:
        """(offset, metadata) when they changed since the last ``committed``, else None."""
        point = self.commit_point()
        if point is None or point in self._held:
            # The lowest open offset is in a transaction that commits the point past it. The
            # delivery is settled here only after that commit, so committing ``point`` now
            # could land after it and move the group's offset back: a crash then would run
            # the transaction's input again. Wait for the settle (or its abort's nack).
            return None
        current = (point, self.metadata())
        return None if current == self._committed else current

    def committed(self, value: tuple[int, str]) -> None:
        self._committed = value
