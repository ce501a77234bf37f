"""Reliability layer: which dead letters a ``dlq`` command acts on (``--where KEY=VALUE``).

A filter is a conjunction of conditions on one letter; each value is an exact text or a
shell-style pattern (``reason=unreadable*``). Keys name the letter's own fields (``reason``,
``group``, ``attempts``, ``exception``, ``id``, ``key``, ``content-type``) or, otherwise, a
header by its exact name (``tenant=acme``). An empty filter matches every letter. Purge also
restricts a filter to the ids it showed, so what is removed is what was confirmed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

from eventwire.core import headers as h
from eventwire.core.errors import ConfigurationError
from eventwire.core.message import Message

_FIELDS: Final[dict[str, Callable[[Message], str | None]]] = {
    "reason": lambda m: m.headers.get(h.DLQ_REASON),
    "group": lambda m: m.headers.get(h.DLQ_GROUP, ""),
    "attempts": lambda m: m.headers.get(h.DLQ_ATTEMPTS),
    "exception": lambda m: m.headers.get(h.DLQ_EXCEPTION_TYPE),
    "id": lambda m: m.id,
    "key": lambda m: m.key,
    "content-type": lambda m: m.content_type,
}
FIELD_NAMES: Final = tuple(_FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class LetterFilter:
    """Every condition must hold; ``ids``, when set, also limits the letters to those ids."""

    conditions: tuple[tuple[str, str], ...] = ()
    ids: frozenset[str] | None = None

    @classmethod
    def parse(cls, pairs: Iterable[str]) -> LetterFilter:
        """``KEY=VALUE`` texts (``--where``); ``ConfigurationError`` for one without ``=``."""
        conditions = []
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or not name.strip():
                raise ConfigurationError(
                    f"--where {pair!r} is not KEY=VALUE: write it like --where reason=max-attempts "
                    f"(keys: {', '.join(FIELD_NAMES)}, or any header name)"
                )
            conditions.append((name.strip(), value))
        return cls(conditions=tuple(conditions))

    def with_condition(self, name: str, value: str | None) -> LetterFilter:
        """This filter and ``name=value`` (unchanged when ``value`` is None)."""
        if value is None:
            return self
        return LetterFilter(conditions=(*self.conditions, (name, value)), ids=self.ids)

    def only(self, ids: Iterable[str]) -> LetterFilter:
        """This filter, restricted to letters whose id is in ``ids``."""
        return LetterFilter(conditions=self.conditions, ids=frozenset(ids))

    def __call__(self, message: Message) -> bool:
        if self.ids is not None and message.id not in self.ids:
            return False
        for name, pattern in self.conditions:
            read = _FIELDS.get(name)
            actual = read(message) if read is not None else message.headers.get(name)
            if actual is None or not fnmatchcase(actual, pattern):
                return False
        return True

    def __str__(self) -> str:
        return " and ".join(f"{n}={v}" for n, v in self.conditions) or "every letter"
