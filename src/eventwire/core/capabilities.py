"""Core layer: what a broker profile claims, read by the conformance suite, advisor and docs."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Support(StrEnum):
    """How a feature is carried out: natively, emulated by the adapter, or not at all."""

    NONE = "none"
    NATIVE = "native"
    EMULATED = "emulated"

    def __bool__(self) -> bool:
        return self is not Support.NONE


class Guarantee(StrEnum):
    """Delivery guarantee of a profile towards a consumer group."""

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """Claims a profile makes; each one is proven by a conformance case or the case skips.

    Over-claiming fails the suite; under-claiming only skips, so keep claims honest.
    """

    guarantee: Guarantee
    persistent: bool  # messages published while a group has no live consumer wait for it
    redelivery: bool  # nack() brings the message back to the group
    delayed_redelivery: Support  # nack(delay=...) waits at least delay before redelivering
    dead_letter: Support  # dead_letter() keeps the message in dead_letter_topic(topic)
    consumer_groups: bool  # subscribers sharing a group compete for messages
    broadcast: bool  # subscribe(group=None) gets every message published after subscribing
    replay: bool  # a group created after publishing still reads the retained history
    ordered_per_key: bool  # one subscriber sees messages of one key in publish order
    ordered_across_members: bool  # ... and so does a group spread over several subscribers
    exclusive_in_flight: bool  # prefetch=1 hands out no next message before the last settles
    publish_confirms: bool  # publish() returns only once the broker has the message
    publish_dedup: bool  # the broker drops a second publish with the same message id
    survives_restart: bool  # acknowledged publishes survive a broker restart
    reconnects: bool  # consumers and publishers come back by themselves after a cut
    max_body_bytes: int  # larger bodies are refused before sending


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerProfile:
    """One way of using a broker, selected by URL scheme (``redis://`` vs ``redis+pubsub://``)."""

    name: str
    schemes: tuple[str, ...]
    factory: str  # "package.module:Class", imported only when a URL with this scheme is opened
    client_library: str | None  # the one third-party client the adapter imports
    extra: str | None  # pip extra that installs that client
    summary: str
    capabilities: Capabilities
