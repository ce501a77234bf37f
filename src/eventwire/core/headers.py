"""Core layer: reserved header names and the validation every outgoing message passes."""

from __future__ import annotations

import re
from collections.abc import Mapping

from eventwire.core.errors import InvalidHeaderError

PREFIX = "x-eventwire-"

# Envelope fields that travel as headers on brokers without native slots for them.
MESSAGE_ID = "x-eventwire-id"
KEY = "x-eventwire-key"
CONTENT_TYPE = "content-type"
CORRELATION_ID = "x-eventwire-correlation-id"
CAUSATION_ID = "x-eventwire-causation-id"
TIMESTAMP = "x-eventwire-timestamp"
ATTEMPT = "x-eventwire-attempt"

# Written on a dead letter, next to the original headers; replay strips every DLQ_PREFIX one.
DLQ_PREFIX = "x-eventwire-dlq-"
DLQ_REASON = "x-eventwire-dlq-reason"
DLQ_DETAIL = "x-eventwire-dlq-detail"
DLQ_EXCEPTION_TYPE = "x-eventwire-dlq-exception-type"
DLQ_EXCEPTION_MESSAGE = "x-eventwire-dlq-exception-message"
DLQ_ATTEMPTS = "x-eventwire-dlq-attempts"
DLQ_ORIGINAL_TOPIC = "x-eventwire-dlq-original-topic"
DLQ_GROUP = "x-eventwire-dlq-group"
DLQ_FIRST_FAILURE = "x-eventwire-dlq-first-failure"
DLQ_LAST_FAILURE = "x-eventwire-dlq-last-failure"
# On a raw dead letter (bytes eventwire could not read): how its body is laid out, and on
# NATS the original headers (base64 of a JSON list of [name, value]) when they fit.
DLQ_RAW_FORMAT = "x-eventwire-dlq-raw-format"
DLQ_RAW_HEADERS = "x-eventwire-dlq-raw-headers"

# Carried across delayed redeliveries so the first failure time survives retries.
FIRST_FAILURE = "x-eventwire-first-failure"

# Written by `eventwire dlq replay` on a replayed message: the one group it is for (the
# others ack it unseen, see ``brokers._support.lifecycle``) and the replay run that sent it
# (so that run never replays its own replays when they fail again).
REPLAY_GROUP = "x-eventwire-replay-group"
REPLAY_RUN = "x-eventwire-replay-run"

# Kafka only (retries go through retry topics, not broker delays): when a retry copy is due
# and which group it is for, and where a dead letter was read (the original record's place).
RETRY_DUE = "x-eventwire-due"
RETRY_GROUP = "x-eventwire-retry-group"
DLQ_ORIGINAL_PARTITION = "x-eventwire-dlq-original-partition"
DLQ_ORIGINAL_OFFSET = "x-eventwire-dlq-original-offset"

# NATS only: a message whose header block nats-py could not parse is handed on with the raw
# block (base64) and what failed, so it is dead-lettered as it came instead of ending the
# client's read loop.
UNPARSED_HEADERS = "x-eventwire-unparsed-headers"
UNPARSED_WHY = "x-eventwire-unparsed-why"

# Compiled once: this runs for every header of every published message, so it must be cheap.
_BAD_NAME = re.compile(r"[\r\n\x00 :]")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
MAX_HEADER_VALUE = 16 * 1024


def validate_headers(headers: Mapping[str, str]) -> None:
    """Raise ``InvalidHeaderError`` unless every header can travel safely on every broker.

    CR, LF and NUL are refused in names and values because several wire protocols (NATS,
    HTTP-like header blocks) would let them inject or truncate headers.
    """
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidHeaderError(
                f"header {name!r}: names and values must be str, got {type(value).__name__}"
            )
        if not name or name.strip() != name or _BAD_NAME.search(name):
            raise InvalidHeaderError(
                f"header name {name!r} is not allowed: use a non-empty name without "
                "spaces, colons or control characters"
            )
        if _BAD_VALUE.search(value):
            raise InvalidHeaderError(
                f"header {name!r} contains CR, LF or NUL: remove control characters"
            )
        if len(value) > MAX_HEADER_VALUE:
            raise InvalidHeaderError(
                f"header {name!r} is {len(value)} characters; the limit is {MAX_HEADER_VALUE}"
            )
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:  # lone surrogates, e.g. from surrogateescape
                raise InvalidHeaderError(f"header {name!r} is not valid UTF-8 text") from exc
