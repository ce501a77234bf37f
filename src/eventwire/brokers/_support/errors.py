"""Broker layer: the one mapping of client exceptions onto eventwire's tree (httpx-style).

Each adapter states *what* maps to what in an ``ErrorTable`` (its ``errors`` module); this
module alone decides *how*: the first matching rule wins, an eventwire error passes through
unchanged, and every message reads "{doing} on {broker} at {redacted url} failed: {reason}"
(plus the rule's hint, what the user can do). The caller raises the result ``from exc`` so
the client's exception stays reachable as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from eventwire.core.errors import BrokerError, EventwireError
from eventwire.core.url import BrokerURL

# A rule matches by exception class(es), or by a predicate for what classes cannot tell
# (an error code inside a generic exception).
Matcher = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def reason_of(exc: BaseException) -> str:
    """The client's own words: ``Type: message``, or the type alone when it has none."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRule:
    """Exceptions that ``match`` become ``error``; ``hint`` says what the user can do."""

    match: Matcher
    error: type[EventwireError]
    hint: str = ""

    def matches(self, exc: BaseException) -> bool:
        match = self.match
        if isinstance(match, type | tuple):
            return isinstance(exc, match)
        return match(exc)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorTable:
    """One adapter's mapping: its broker's display name and its rules, most specific first;
    what no rule matches becomes ``default``. ``describe`` gives the client's words (an
    adapter whose client wraps a readable error in a verbose repr states its own)."""

    broker: str
    rules: tuple[ErrorRule, ...]
    default: type[EventwireError] = BrokerError
    describe: Callable[[BaseException], str] = reason_of


def map_error(
    exc: BaseException,
    table: ErrorTable,
    *,
    doing: str,
    where: str,
    redact: Callable[[str], str],
) -> EventwireError:
    """The eventwire error for ``exc`` raised while ``doing`` against ``where`` (a URL shown
    to users, already redacted); ``redact`` masks secrets in the client's message."""
    if isinstance(exc, EventwireError):
        return exc
    text = f"{doing} on {table.broker} at {where} failed: {redact(table.describe(exc))}"
    for rule in table.rules:
        if rule.matches(exc):
            return rule.error(f"{text}; {rule.hint}" if rule.hint else text)
    return table.default(text)


def translate(table: ErrorTable, exc: BaseException, url: BrokerURL, doing: str) -> EventwireError:
    """``map_error`` for an adapter that knows its ``BrokerURL``: shown redacted, and the
    client's message scrubbed of the URL's password and any URL credentials."""
    return map_error(exc, table, doing=doing, where=str(url), redact=url.scrub)
