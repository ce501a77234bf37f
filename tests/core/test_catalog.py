"""Tests: the catalog's profiles, lookups and the errors it gives for unknown names."""

from __future__ import annotations

import pytest

from eventwire.brokers import catalog
from eventwire.brokers.catalog import open_broker, profile_for, profile_named, profiles
from eventwire.core.capabilities import BrokerProfile
from eventwire.core.errors import ConfigurationError
from eventwire.core.url import BrokerURL


def test_memory_profile_is_listed_and_found() -> None:
    names = [p.name for p in profiles()]
    assert "memory" in names
    assert len(names) == len(set(names)), "profile names must be unique"
    memory = profile_named("memory")
    assert profile_for(BrokerURL.parse("memory://x")) is memory
    assert memory.client_library is None


def test_schemes_are_unique_across_profiles() -> None:
    schemes = [s for p in profiles() for s in p.schemes]
    assert len(schemes) == len(set(schemes))


def test_unknown_profile_name_lists_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown broker profile 'nope'.*memory"):
        profile_named("nope")


def test_unknown_scheme_lists_known_ones_without_password() -> None:
    with pytest.raises(ConfigurationError, match="unknown broker URL scheme 'zmq'") as info:
        open_broker("zmq://user:hunter2@host:1")
    assert "memory://" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_open_broker_returns_an_unconnected_broker() -> None:
    broker = open_broker("memory://catalog-test")
    assert broker.profile.name == "memory"
    assert "new" in repr(broker)


def test_missing_client_library_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = profile_named("memory")
    fake = BrokerProfile(
        name="fake",
        schemes=("fake",),
        factory="eventwire_no_such_module.adapter:FakeBroker",
        client_library="fakeclient",
        extra="fake",
        summary="",
        capabilities=memory.capabilities,
    )
    monkeypatch.setattr(catalog, "profiles", lambda: (fake,))
    with pytest.raises(ConfigurationError, match=r"fake needs the fakeclient package.*\[fake\]"):
        open_broker("fake://host")
