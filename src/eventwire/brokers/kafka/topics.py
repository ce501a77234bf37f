"""Broker layer: the names of a Kafka topic's retry and dead-letter topics, and retry levels.

``nack(delay)`` copies the message to ``<topic>.retry.<n>``: level n is the smallest one whose
delay is at least the asked delay, and the copy carries its exact due time, so a level only
decides where the copy waits. A group reads its topic's retry topics with the same consumer
and pauses a retry partition until its head is due: later copies in that partition are due
later or within one level's delay, so waiting behind the head never blocks the main topic.
Retry topics are shared by every group of the topic; each copy names its group and the
others skip it. The dead-letter topic is ``<topic>.dlq`` (``dead_letter_topic``).
"""

from __future__ import annotations

from typing import Final

from eventwire.core.message import DEAD_LETTER_GROUP, DEAD_LETTER_SUFFIX, dead_letter_topic

# Seconds of delay each retry level is for; level 0 is an immediate redelivery.
RETRY_LEVELS: Final = (0.0, 1.0, 10.0, 60.0, 600.0, 3600.0, 86400.0)
RETRY_INFIX: Final = ".retry."


def retry_level(delay: float | None) -> int:
    """The level whose topic a copy nacked with ``delay`` waits in."""
    if not delay or delay <= 0:
        return 0
    for level, seconds in enumerate(RETRY_LEVELS):
        if delay <= seconds:
            return level
    return len(RETRY_LEVELS) - 1


def retry_topic(topic: str, level: int) -> str:
    return f"{topic}{RETRY_INFIX}{level}"


def retry_topics(topic: str) -> list[str]:
    return [retry_topic(topic, level) for level in range(len(RETRY_LEVELS))]


def source_of(record_topic: str) -> str:
    """The application topic a record of ``record_topic`` (maybe a retry topic) belongs to."""
    base, infix, level = record_topic.rpartition(RETRY_INFIX)
    return base if infix and level.isdigit() else record_topic


def level_delay(record_topic: str) -> float:
    """The longest delay a copy on retry topic ``record_topic`` was written for (the last
    level's for a name without a level number)."""
    level = record_topic.rpartition(RETRY_INFIX)[2]
    if level.isdigit() and int(level) < len(RETRY_LEVELS):
        return RETRY_LEVELS[int(level)]
    return RETRY_LEVELS[-1]


def retry_group(group: str) -> str:
    """The consumer group that reads a group's retry topics (kept apart from the main one)."""
    return f"{group}.retry"


def is_terminal(topic: str, group: str | None) -> bool:
    """The dead-letter topic read by the DLQ group: no retry or dead-letter topics of its own."""
    return group == DEAD_LETTER_GROUP and topic.endswith(DEAD_LETTER_SUFFIX)


def subscription_topics(topic: str, group: str | None) -> list[str]:
    """Topics a subscription reads: the topic, plus its retry topics for a group."""
    if group is None or is_terminal(topic, group):
        return [topic]
    return [topic, *retry_topics(topic)]


def topology(topic: str, group: str | None) -> list[str]:
    """Every topic that must exist before subscribing: what is read and the dead-letter topic."""
    if is_terminal(topic, group):
        return [topic]
    return [*subscription_topics(topic, group), dead_letter_topic(topic)]
