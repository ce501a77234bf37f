"""Broker layer: URL scheme -> broker profile, with adapters imported only when a URL is opened."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from eventwire.core.capabilities import BrokerProfile
from eventwire.core.contract import Broker
from eventwire.core.errors import ConfigurationError
from eventwire.core.url import BrokerURL

# Each module holds only data (a PROFILES tuple) and imports no client library, so listing
# profiles for the advisor, docs or `--help` stays cheap and works without any extra installed.
_PROFILE_MODULES = (
    "eventwire.brokers.memory.profile",
    "eventwire.brokers.sqlite.profile",
    "eventwire.brokers.rabbitmq.profile",
    "eventwire.brokers.redis.profile",
    "eventwire.brokers.nats.profile",
    "eventwire.brokers.kafka.profile",
)


def profiles() -> tuple[BrokerProfile, ...]:
    """Every profile eventwire ships whose profile module is present."""
    found: list[BrokerProfile] = []
    for name in _PROFILE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.extend(cast("tuple[BrokerProfile, ...]", module.PROFILES))
    return tuple(found)


def profile_named(name: str) -> BrokerProfile:
    """The profile called ``name`` (for example "redis-streams")."""
    for profile in profiles():
        if profile.name == name:
            return profile
    known = ", ".join(p.name for p in profiles())
    raise ConfigurationError(f"unknown broker profile {name!r}: use one of {known}")


def profile_for(url: BrokerURL) -> BrokerProfile:
    """The profile selected by ``url``'s scheme, or a ``ConfigurationError`` naming the schemes."""
    for profile in profiles():
        if url.scheme in profile.schemes:
            return profile
    schemes = ", ".join(f"{s}://" for p in profiles() for s in p.schemes)
    raise ConfigurationError(f"unknown broker URL scheme {url.scheme!r}: use one of {schemes}")


def open_broker(url: str | BrokerURL) -> Broker:
    """A not-yet-connected broker for ``url``; use it as ``async with open_broker(url) as b``."""
    parsed = url if isinstance(url, BrokerURL) else BrokerURL.parse(url)
    profile = profile_for(parsed)
    module_name, _, attr = profile.factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = (
            f"pip install 'eventwire[{profile.extra}]'" if profile.extra else "reinstall eventwire"
        )
        raise ConfigurationError(
            f"{profile.name} needs the {profile.client_library or exc.name} package: {hint}"
        ) from None
    factory = cast("Callable[[BrokerURL, BrokerProfile], Broker]", getattr(module, attr))
    return factory(parsed, profile)
