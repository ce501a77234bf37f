"""Observability layer: loggers bound to a message's ids, for handlers and runtime; text or
JSON log lines.

``bind(logger, correlation_id=..., causation_id=..., message_id=...)`` returns a
``LoggerAdapter`` that puts the ids in every record (``record.correlation_id``..., usable in
formats) and in the message text, so plain ``logging.basicConfig`` output can be grepped by
correlation id. ``JsonFormatter`` writes one JSON object per line with those ids as fields
(and the current trace and span ids while a span is current); ``configure_logging`` installs
it or the text format (``eventwire run --log-format json``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import IO, Any, Literal, TypeAlias

from eventwire.core.message import Message
from eventwire.observability.tracing import current_trace_ids

LOGGER_NAME = "eventwire"
LogFormat: TypeAlias = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The fields every JSON line has about its message (null on lines about no message).
MESSAGE_FIELDS = ("correlation_id", "causation_id", "message_id", "topic")
_PREFIX = "eventwire_prefix"  # the record attribute holding the "[k=v ...] " put before msg


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
        if not self._prefix:
            return msg, kwargs
        prefix = f"[{self._prefix}] "
        kwargs["extra"][_PREFIX] = prefix  # JsonFormatter leaves it out of "message"
        return f"{prefix}{msg}", kwargs


def bind(
    logger: logging.Logger | None = None,
    *,
    correlation_id: str | None,
    causation_id: str | None = None,
    message_id: str | None = None,
    **fields: str,
) -> BoundLogger:
    """``logger`` (default: the eventwire logger) bound to a correlation id (the chain's), a
    causation id (the message that caused this one) and other fields; None ones are left out."""
    bound: dict[str, str] = {}
    if correlation_id is not None:
        bound["correlation_id"] = correlation_id
    if causation_id is not None:
        bound["causation_id"] = causation_id
    if message_id is not None:
        bound["message_id"] = message_id
    bound.update(fields)
    return BoundLogger(logger or get_logger(), bound)


def bind_message(logger: logging.Logger, message: Message, topic: str) -> BoundLogger:
    """``logger`` bound to ``message``'s ids (its own id when it has no correlation id: it
    starts the chain) and ``topic``: how the runtime and ``ctx.logger`` log about a message."""
    return bind(
        logger,
        correlation_id=message.correlation_id or message.id,
        causation_id=message.causation_id,
        message_id=message.id,
        topic=topic,
    )


# Attributes every LogRecord has; anything else on a record came from ``extra`` (bound ids).
_STANDARD_ATTRS = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", _PREFIX}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message`` (without the bound-fields prefix), ``correlation_id``, ``causation_id``,
    ``message_id`` and ``topic`` (null when not about a message), any other ``extra`` field,
    ``trace_id``/``span_id`` while a span is current, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        prefix = getattr(record, _PREFIX, None)
        if prefix and text.startswith(prefix):
            text = text[len(prefix) :]
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": text,
        }
        entry.update((name, None) for name in MESSAGE_FIELDS)
        entry.update(
            (name, value)
            for name, value in record.__dict__.items()
            if name not in _STANDARD_ATTRS and not name.startswith("_")
        )
        ids = current_trace_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    """The formatter of ``log_format``: ``TEXT_FORMAT`` or ``JsonFormatter``."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(
    log_format: LogFormat = "text", *, level: int = logging.INFO, stream: IO[str] | None = None
) -> bool:
    """Log to ``stream`` (default stderr) in ``log_format`` at ``level``, unless logging is
    set up already (a root handler exists: the service's own set-up wins). True if it did."""
    root = logging.getLogger()
    if root.handlers:
        return False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    root.addHandler(handler)
    root.setLevel(level)
    return True
