"""Setup layer: what generated code must know of a broker profile, read from the catalog."""

from __future__ import annotations

from dataclasses import dataclass

from eventwire.brokers.catalog import profile_named
from eventwire.core.capabilities import Guarantee
from eventwire.setup.choices import BrokerChoice

PARTITIONS = 8  # partition topics of a partitioned stream (messages.PARTITIONS in the service)


@dataclass(frozen=True, slots=True, kw_only=True)
class Traits:
    """What the generated code must know of the profile, from the catalog."""

    consumer_groups: bool  # members of a group compete (False: every worker gets everything)
    ordered_across_members: bool  # a key's order holds across a group's members
    dead_letters_kept: bool  # dead letters are stored where `make dlq` can read them
    at_most_once: bool
    client: str  # the client library under the adapter, as the catalog names it


def traits_of(choice: BrokerChoice) -> Traits:
    """The profile's proven traits, from the catalog (every choice init offers has one)."""
    profile = profile_named(choice.profile)
    caps = profile.capabilities
    return Traits(
        consumer_groups=caps.consumer_groups,
        ordered_across_members=caps.ordered_across_members,
        dead_letters_kept=bool(caps.dead_letter),
        at_most_once=caps.guarantee is Guarantee.AT_MOST_ONCE,
        client=profile.client_library or "the Python standard library",
    )
