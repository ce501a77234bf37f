"""Observability layer: loggers bound to a message's correlation id, for handlers and runtime.

``bind(logger, correlation_id=..., message_id=...)`` returns a ``LoggerAdapter`` that puts the
ids in every record (``record.correlation_id``, ``record.message_id``, usable in formats) and
in the message text, so plain ``logging.basicConfig`` output can be grepped by correlation id.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

LOGGER_NAME = "eventwire"


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``eventwire`` logger or one of its children (``eventwire.runtime``...)."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


class BoundLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger adapter that stamps fixed fields (correlation id, message id...) on each record."""

    def __init__(self, logger: logging.Logger, fields: Mapping[str, str]) -> None:
        super().__init__(logger, dict(fields))
        self._prefix = " ".join(f"{k}={v}" for k, v in fields.items())

    @property
    def fields(self) -> Mapping[str, str]:
        return {k: str(v) for k, v in (self.extra or {}).items()}

    def bind(self, **fields: str) -> BoundLogger:
        """A new adapter with ``fields`` added to those already bound."""
        return BoundLogger(self.logger, {**self.fields, **fields})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return (f"[{self._prefix}] {msg}" if self._prefix else msg), kwargs


def bind(
    logger: logging.Logger | None = None,
    *,
    correlation_id: str | None,
    message_id: str | None = None,
    **fields: str,
) -> BoundLogger:
    """``logger`` (default: the eventwire logger) bound to a correlation id and other fields."""
    bound: dict[str, str] = {}
    if correlation_id is not None:
        bound["correlation_id"] = correlation_id
    if message_id is not None:
        bound["message_id"] = message_id
    bound.update(fields)
    return BoundLogger(logger or get_logger(), bound)
