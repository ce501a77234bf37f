"""Testing layer: the per-case context (topic, clients, claims) and the ``requires`` marker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from typing import Any, ClassVar, Final, TypeVar

import pytest

from eventwire.core.capabilities import Capabilities, Guarantee
from eventwire.core.contract import Broker
from eventwire.testing.conformance.harness import Harness, Scale, open_connected
from eventwire.testing.conformance.helpers import group_for, topic_for

F = TypeVar("F", bound=Callable[..., Any])

REQUIRES_ATTR: Final = "__eventwire_requires__"
AT_LEAST_ONCE: Final = "at_least_once"  # guarantee is AT_LEAST_ONCE
RESTART: Final = "restart"  # the harness can restart the broker
PROXY: Final = "proxy"  # the harness has an upstream a fault proxy can stand in front of
_CAPABILITY_NAMES = frozenset(f.name for f in fields(Capabilities))
_KNOWN = _CAPABILITY_NAMES | {AT_LEAST_ONCE, RESTART, PROXY}


def requires(*names: str) -> Callable[[F], F]:
    """Mark a case as proving ``names`` (Capabilities fields, or at_least_once/restart/proxy).

    The ``ctx`` fixture skips the case with "profile does not claim <name>" when the profile
    does not claim one of them; when it does, the case runs and must pass (over-claiming fails).
    """
    unknown = set(names) - _KNOWN
    if unknown:
        raise ValueError(f"unknown requirement(s) {sorted(unknown)}; use {sorted(_KNOWN)}")

    def mark(func: F) -> F:
        setattr(func, REQUIRES_ATTR, (*getattr(func, REQUIRES_ATTR, ()), *names))
        return func

    return mark


def requirements_of(func: object) -> tuple[str, ...]:
    """What a case was marked with by ``requires``."""
    return tuple(getattr(func, REQUIRES_ATTR, ()))


def missing_reason(harness: Harness, names: tuple[str, ...]) -> str | None:
    """The skip reason for the first requirement ``harness`` does not meet, else None."""
    caps = harness.profile.capabilities
    for name in names:
        if name == AT_LEAST_ONCE:
            if caps.guarantee is not Guarantee.AT_LEAST_ONCE:
                return f"profile does not claim {AT_LEAST_ONCE}"
        elif name == RESTART:
            if not harness.supports_restart:
                return "harness cannot restart the broker"
        elif name == PROXY:
            if harness.upstream is None:
                return "harness has no network upstream for a fault proxy"
        elif not getattr(caps, name):
            return f"profile does not claim {name}"
    return None


class CaseContext:
    """One case's world: its own topic, the clients it opened (closed after), its claims."""

    def __init__(self, harness: Harness, case_name: str) -> None:
        self.harness = harness
        self.profile = harness.profile
        self.caps: Capabilities = harness.profile.capabilities
        self.scale: Scale = harness.scale
        self.name = case_name
        self.topic = topic_for(case_name)
        self._brokers: list[Broker] = []

    async def open(self, url: str | None = None) -> Broker:
        """A new connected client (via ``url`` if given, e.g. a fault proxy's); closed after."""
        broker = await (self.harness.open() if url is None else open_connected(url))
        self._brokers.append(broker)
        return broker

    def track(self, broker: Broker) -> Broker:
        """Have the context close ``broker`` after the case."""
        self._brokers.append(broker)
        return broker

    def new_topic(self, label: str = "t") -> str:
        """Another topic unique to this case."""
        return topic_for(self.name, label)

    def group(self, label: str = "g") -> str:
        """A consumer group name unique to this case."""
        return group_for(label)

    def default_group(self) -> str | None:
        """A fresh group where the profile has groups, else None (broadcast subscription)."""
        return self.group() if self.caps.consumer_groups else None

    async def aclose(self) -> None:
        errors: list[BaseException] = []
        for broker in reversed(self._brokers):
            try:
                await broker.aclose()
            except Exception as exc:  # close all; report the first afterwards  # noqa: BLE001
                errors.append(exc)
        self._brokers.clear()
        if errors:
            raise AssertionError(f"aclose() raised {errors[0]!r}") from errors[0]


class CaseFixtures:
    """Base of every case mixin: the ``ctx`` fixture built from the module's ``harness``."""

    # The catalog profile name this test class covers; read by the profiles meta-test.
    PROFILE: ClassVar[str] = ""

    @pytest.fixture
    async def ctx(
        self, harness: Harness, request: pytest.FixtureRequest
    ) -> AsyncIterator[CaseContext]:
        reason = missing_reason(harness, requirements_of(request.function))
        if reason is not None:
            pytest.skip(reason)
        context = CaseContext(harness, request.node.name)
        try:
            yield context
        finally:
            await context.aclose()
