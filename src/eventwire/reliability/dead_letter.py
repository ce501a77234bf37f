"""Reliability layer: dead-letter reasons, failure headers and first-failure bookkeeping."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from eventwire.core import headers as h

REASON_DECODE: Final = "decode-error"
REASON_VALIDATION: Final = "validation-error"
REASON_MAX_ATTEMPTS: Final = "max-attempts"
REASON_PERMANENT: Final = "permanent-error"

# Exception text goes into headers, which refuse CR/LF/NUL and cap values; keep it readable.
_MAX_TEXT = 2000
_CONTROL = dict.fromkeys(range(32), " ") | {127: " "}


def header_text(text: str, limit: int = _MAX_TEXT) -> str:
    """``text`` made safe for a header value: control characters blanked, length capped."""
    clean = text.translate(_CONTROL).encode("utf-8", "replace").decode("utf-8")
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def iso_time(epoch: float) -> str:
    """An epoch time as an ISO-8601 UTC string (what the DLQ headers carry)."""
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """What went wrong with a message, ready to be written next to it in the DLQ."""

    reason: str
    exception: BaseException | None = None
    detail: str | None = None
    first_failure: float | None = None
    last_failure: float | None = None

    def headers(self) -> dict[str, str]:
        """The ``x-eventwire-dlq-*`` headers beyond those ``Delivery.dead_letter`` adds."""
        out: dict[str, str] = {}
        if self.detail is not None:
            out[h.DLQ_DETAIL] = header_text(self.detail)
        if self.exception is not None:
            out[h.DLQ_EXCEPTION_TYPE] = header_text(_qualified(type(self.exception)), 300)
            out[h.DLQ_EXCEPTION_MESSAGE] = header_text(str(self.exception))
        if self.first_failure is not None:
            out[h.DLQ_FIRST_FAILURE] = iso_time(self.first_failure)
        if self.last_failure is not None:
            out[h.DLQ_LAST_FAILURE] = iso_time(self.last_failure)
        return out


def _qualified(cls: type) -> str:
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class FailureLog:
    """First-failure time per message id, kept in memory across delayed redeliveries.

    ``nack(delay)`` cannot add headers on most brokers, so the first failure of a message is
    remembered here instead. The map is bounded (oldest entries dropped first) and per
    process: after a restart, or when a redelivery lands on another group member, the first
    failure recorded is that member's first, an approximation the DLQ headers accept.
    """

    def __init__(
        self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._first: OrderedDict[str, float] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    def record(self, message_id: str) -> tuple[float, float]:
        """Note a failure now; return (first failure, this failure) times."""
        now = self._clock()
        first = self._first.setdefault(message_id, now)
        self._first.move_to_end(message_id)
        while len(self._first) > self._max:
            self._first.popitem(last=False)
        return first, now

    def forget(self, message_id: str) -> None:
        """The message is settled for good (processed or dead-lettered)."""
        self._first.pop(message_id, None)

    def __len__(self) -> int:
        return len(self._first)
