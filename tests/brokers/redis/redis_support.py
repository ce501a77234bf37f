"""Tests: shared constants and scale for the Redis adapter tests (imported by module name)."""

from __future__ import annotations

import os

SHARED = "redis://127.0.0.1:6379/0"
# Short claim/poll/timeout settings so redelivery and fault cases take seconds, not minutes.
FAST = "claim_idle=1&poll_interval=0.05&block=0.5&socket_timeout=3&publish_timeout=10"
FULL = os.environ.get("EVENTWIRE_TEST_SCALE") == "full"

# What the raw client (no decode_responses) returns, for the tests to cast redis-py's reply
# unions to: XRANGE's entries, and XREADGROUP's [stream, entries] pairs.
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]
GroupRead = list[tuple[bytes, StreamEntries]]


def scale(quick: int, full: int) -> int:
    """``quick`` by default, ``full`` when EVENTWIRE_TEST_SCALE=full."""
    return full if FULL else quick
