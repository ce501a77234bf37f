"""Broker layer: delayed retries through binary-decomposed TTL levels (RabbitMQ adapter).

The scheme of NServiceBus and Kombu's native delayed delivery: level ``k`` is a topic
exchange and a quorum queue whose messages wait ``UNIT * 2**k`` s, then dead-letter to level
``k - 1`` (level 0 to the deliver exchange, which routes to the group queue). The routing key
spells the delay in binary, one word per level, highest first, then a token of the target
queue: ``0.0.....1.0.1.q<hash>``. Each level exchange sends a message whose word is 1 into
its queue and one whose word is 0 straight on to the next exchange (exchange-to-exchange,
no wait), so a delay costs one queue hop per 1 bit. The topology is per eventwire exchange,
shared by every group, declared lazily up to the highest level a delay needs.

Error bound: a delay is rounded UP to ``SIGNIFICANT_BITS`` significant binary digits of
``UNIT`` (never early, at most 2**(1 - SIGNIFICANT_BITS) = 3.1 % late, plus one broker hop
per 1 bit, at most ``SIGNIFICANT_BITS`` hops), up to ``MAX_DELAY`` (76 days).
Every message in a level queue has the same TTL, so the head always expires first.

Quorum-safe: the level queues are quorum queues with at-least-once dead-lettering; each
chain visits every level at most once and the copy entering it carries no ``x-death``, so
RabbitMQ's dead-letter cycle detection (which dropped retried messages in celery#9867) has
no cycle to find.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final

from eventwire.brokers.rabbitmq.options import bounded

UNIT: Final = 0.1  # seconds per step of level 0
# RabbitMQ refuses a TTL above 2**32 - 1 ms (49.7 days): level 25 waits 38.8 days.
LEVELS: Final = 26
SIGNIFICANT_BITS: Final = 6
# The longest delay with SIGNIFICANT_BITS bits set at the top levels (76 days).
MAX_STEPS: Final = ((1 << SIGNIFICANT_BITS) - 1) << (LEVELS - SIGNIFICANT_BITS)
MAX_DELAY: Final = UNIT * MAX_STEPS


def steps(delay: float) -> int:
    """``delay`` in UNITs, rounded up to SIGNIFICANT_BITS significant bits (0: no wait)."""
    if not delay > 0:  # also NaN
        return 0
    if delay >= MAX_DELAY:
        return MAX_STEPS
    units = math.ceil(delay / UNIT - 1e-9)  # 1e-9: 0.3 / 0.1 is 2.9999999999999996
    drop = max(0, units.bit_length() - SIGNIFICANT_BITS)
    return min(-(-units >> drop) << drop, MAX_STEPS)  # ceil to a multiple of 2**drop


def levels_of(count: int) -> list[int]:
    """The levels (set bits) a delay of ``count`` UNITs waits in, highest first."""
    return [k for k in range(LEVELS - 1, -1, -1) if count >> k & 1]


def level_exchange(exchange: str, level: int) -> str:
    return bounded(f"{exchange}.delay-{level}")


def level_queue(exchange: str, level: int) -> str:
    return bounded(f"{exchange}.delay-{level}")


def deliver_exchange(exchange: str) -> str:
    return bounded(f"{exchange}.delay-deliver")


def is_retry_exchange(exchange: str, delivered_via: str) -> bool:
    """Whether a delivery's exchange (set by the broker) is one of the delay exchanges."""
    return delivered_via.startswith(f"{exchange}.delay-")


def target_token(queue: str) -> str:
    """The routing-key word naming ``queue`` (queue names may hold dots and '#')."""
    return "q" + hashlib.sha256(queue.encode()).hexdigest()[:32]


def routing_key(count: int, queue: str) -> str:
    bits = ".".join("1" if count >> k & 1 else "0" for k in range(LEVELS - 1, -1, -1))
    return f"{bits}.{target_token(queue)}"


def bit_pattern(level: int, bit: str) -> str:
    """Binding key matching routing keys whose word for ``level`` is ``bit``."""
    return "*." * (LEVELS - 1 - level) + bit + ".#"


def level_queue_arguments(exchange: str, level: int) -> dict[str, object]:
    """Quorum queue waiting UNIT * 2**level s, then on to the next lower level."""
    below = level_exchange(exchange, level - 1) if level else deliver_exchange(exchange)
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": round(UNIT * 1000) << level,
        "x-dead-letter-exchange": below,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
