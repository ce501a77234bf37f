"""Broker layer: Message <-> Redis stream entry fields and Pub/Sub payloads (no client import)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, cast

from eventwire.brokers._support.envelope import (
    MAX_HEADER_BLOCK,
    MAX_HEADERS,
    MAX_ID,
    EnvelopeError,
    check_timestamp,
    checked,
)
from eventwire.core.message import DEFAULT_CONTENT_TYPE, Message

# Stream entry field names: short, because they are stored with every entry.
F_ID = b"id"
F_BODY = b"body"
F_KEY = b"key"
F_CONTENT_TYPE = b"ct"
F_CORRELATION = b"cid"
F_CAUSATION = b"caid"
F_TIMESTAMP = b"ts"
F_HEADERS = b"h"  # JSON object of str -> str, omitted when there are no headers

PUBSUB_MAGIC = b"EW1\n"

_EMPTY: Mapping[str, str] = MappingProxyType({})
RAW_ENTRY_FORMAT = "redis-stream-entry+json-base64"  # {"fields": [[name, value], ...]}
RAW_PAYLOAD_FORMAT = "redis-pubsub-payload"  # the payload's bytes, unchanged


def to_fields(message: Message) -> dict[bytes, bytes]:
    fields: dict[bytes, bytes] = {
        F_ID: message.id.encode(),
        F_BODY: message.body,
        F_TIMESTAMP: repr(message.timestamp).encode(),
    }
    if message.content_type != DEFAULT_CONTENT_TYPE:
        fields[F_CONTENT_TYPE] = message.content_type.encode()
    if message.key is not None:
        fields[F_KEY] = message.key.encode()
    if message.correlation_id is not None:
        fields[F_CORRELATION] = message.correlation_id.encode()
    if message.causation_id is not None:
        fields[F_CAUSATION] = message.causation_id.encode()
    if message.headers:
        fields[F_HEADERS] = json.dumps(dict(message.headers), separators=(",", ":")).encode()
    return fields


def from_fields(fields: Mapping[bytes, bytes]) -> Message:
    """The message an entry holds; ``EnvelopeError`` (only) if it is not one eventwire can
    read: not written by eventwire, or beyond the limits (header block size and count, id
    length, a finite timestamp), whatever its bytes."""
    # Hot path (every delivery): plain lookups, no helper calls.
    get = fields.get
    try:
        body = fields[F_BODY]
        message_id = fields[F_ID].decode()
        raw_headers = get(F_HEADERS)
        key = get(F_KEY)
        content_type = get(F_CONTENT_TYPE)
        correlation = get(F_CORRELATION)
        causation = get(F_CAUSATION)
        raw_ts = get(F_TIMESTAMP)
        if raw_headers is not None and len(raw_headers) > MAX_HEADER_BLOCK:
            raise EnvelopeError(f"headers field is over {MAX_HEADER_BLOCK} bytes")
        if len(message_id) > MAX_ID or not isinstance(body, bytes):
            raise EnvelopeError("id too long or body not bytes")
        return Message.trusted(
            body,
            message_id,
            None if key is None else key.decode(),
            _EMPTY if raw_headers is None else MappingProxyType(_headers(json.loads(raw_headers))),
            DEFAULT_CONTENT_TYPE if content_type is None else content_type.decode(),
            None if correlation is None else correlation.decode(),
            None if causation is None else causation.decode(),
            0.0 if raw_ts is None else check_timestamp(float(raw_ts)),
        )
    except EnvelopeError as exc:
        raise EnvelopeError(f"not an eventwire stream entry: {exc}") from exc
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise EnvelopeError(f"not an eventwire stream entry: {type(exc).__name__}: {exc}") from exc
    except RecursionError as exc:
        raise EnvelopeError("not an eventwire stream entry: a field is nested too deeply") from exc


def raw_entry(fields: Mapping[bytes, bytes]) -> bytes:
    """Every field of an entry, names and values byte for byte (``RAW_ENTRY_FORMAT``)."""
    pairs = [
        [base64.b64encode(k).decode(), base64.b64encode(v).decode()]
        for k, v in fields.items()
        if isinstance(k, bytes) and isinstance(v, bytes)
    ]
    return json.dumps({"fields": pairs}, separators=(",", ":")).encode()


def fields_of_raw_entry(raw: bytes) -> dict[bytes, bytes]:
    """The fields ``raw_entry`` laid out (for ``dlq show`` and tests)."""
    return {base64.b64decode(k): base64.b64decode(v) for k, v in json.loads(raw)["fields"]}


def _headers(value: object) -> dict[str, str]:
    if isinstance(value, dict) and len(value) > MAX_HEADERS:
        raise EnvelopeError(f"more than {MAX_HEADERS} headers")
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise EnvelopeError("headers field is not a JSON object of strings")
    return value


def to_payload(message: Message) -> bytes:
    """A Pub/Sub payload: magic line, JSON envelope line (JSON holds no raw newline), body."""
    envelope: dict[str, object] = {"id": message.id, "ts": message.timestamp}
    if message.content_type != DEFAULT_CONTENT_TYPE:
        envelope["ct"] = message.content_type
    if message.key is not None:
        envelope["key"] = message.key
    if message.correlation_id is not None:
        envelope["cid"] = message.correlation_id
    if message.causation_id is not None:
        envelope["caid"] = message.causation_id
    if message.headers:
        envelope["h"] = dict(message.headers)
    head = json.dumps(envelope, separators=(",", ":")).encode()
    return PUBSUB_MAGIC + head + b"\n" + message.body


def from_payload(payload: bytes) -> Message:
    """The message of a Pub/Sub payload; ``EnvelopeError`` (only) if eventwire cannot read it."""
    if not payload.startswith(PUBSUB_MAGIC):
        raise EnvelopeError("payload does not start with the eventwire marker")
    head, sep, body = payload[len(PUBSUB_MAGIC) :].partition(b"\n")
    try:
        if not sep:
            raise EnvelopeError("payload has no envelope line")
        if len(head) > MAX_HEADER_BLOCK:
            raise EnvelopeError(f"envelope line is over {MAX_HEADER_BLOCK} bytes")
        env = json.loads(head)
        if not isinstance(env, dict):
            raise EnvelopeError("envelope is not a JSON object")
        return checked(
            Message(
                body=body,
                id=_text(env["id"], "id"),
                key=_opt(env.get("key")),
                headers=_headers(env.get("h", {})),
                content_type=_opt(env.get("ct")) or DEFAULT_CONTENT_TYPE,
                correlation_id=_opt(env.get("cid")),
                causation_id=_opt(env.get("caid")),
                timestamp=check_timestamp(_number(env.get("ts", 0.0))),
            )
        )
    except EnvelopeError as exc:
        raise EnvelopeError(f"not an eventwire payload: {exc}") from exc
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise EnvelopeError(f"not an eventwire payload: {type(exc).__name__}: {exc}") from exc
    except RecursionError as exc:
        raise EnvelopeError("not an eventwire payload: envelope nested too deeply") from exc


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EnvelopeError("timestamp is not a number")
    return float(value)  # OverflowError for a 400-digit integer: caught by the caller


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise EnvelopeError(f"{what} is not text")
    return value


def _opt(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EnvelopeError("an envelope field is not text")
    return value


def stream_entries(reply: object) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    """(entry id, fields) pairs of an XREAD/XREADGROUP reply, in the RESP2 or RESP3 shape."""
    streams: Any = reply.items() if isinstance(reply, dict) else (reply or ())
    for _name, entries in streams:
        for entry_id, fields in entries:
            if fields is not None:  # None: the entry was trimmed while pending
                yield entry_id, as_fields(fields)


def as_fields(fields: object) -> dict[bytes, bytes]:
    """Entry fields from a dict or from the flat [field, value, ...] list Lua scripts return."""
    if isinstance(fields, dict):
        return cast("dict[bytes, bytes]", fields)
    flat = cast("list[bytes]", fields)
    return dict(zip(flat[::2], flat[1::2], strict=True))
