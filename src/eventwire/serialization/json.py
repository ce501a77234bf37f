"""Serialization layer: JSON via orjson, with failures translated into eventwire's errors."""

from __future__ import annotations

from typing import Any

import orjson

from eventwire.core.errors import DecodeError, MessageError

JSON_CONTENT_TYPE = "application/json"


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; a ``MessageError`` if it cannot be serialized."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise MessageError(f"payload is not JSON-serializable: {exc}") from exc


def loads(body: bytes) -> Any:
    """Parse ``body`` as JSON; a ``DecodeError`` (never orjson's own) if it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from exc
