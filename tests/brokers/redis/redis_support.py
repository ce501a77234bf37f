"""Tests: shared constants and scale for the Redis adapter tests (imported by module name)."""

from __future__ import annotations

from eventwire.testing.helpers import full_scale

SHARED = "redis://127.0.0.1:6379/0"
# Short claim/poll/timeout settings so redelivery and fault cases take seconds, not minutes.
FAST = "claim_idle=1&poll_interval=0.05&block=0.5&socket_timeout=3&publish_timeout=10"
FULL = full_scale()

# What the raw client (no decode_responses) returns, for the tests to cast redis-py's reply
# unions to: XRANGE's entries, and XREADGROUP's [stream, entries] pairs.
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]
GroupRead = list[tuple[bytes, StreamEntries]]
