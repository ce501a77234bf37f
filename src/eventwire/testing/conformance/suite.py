"""Testing layer: ``ConformanceSuite``, every case mixin combined for a broker's test module."""

from __future__ import annotations

from eventwire.testing.conformance.basic_cases import BasicCases
from eventwire.testing.conformance.context import CaseContext, requirements_of
from eventwire.testing.conformance.group_cases import GroupCases
from eventwire.testing.conformance.harness import Harness
from eventwire.testing.conformance.lifecycle_cases import LifecycleCases
from eventwire.testing.conformance.ordering_cases import OrderingCases
from eventwire.testing.conformance.reconnect_cases import ReconnectCases
from eventwire.testing.conformance.redelivery_cases import RedeliveryCases


class ConformanceSuite(
    BasicCases,
    GroupCases,
    RedeliveryCases,
    OrderingCases,
    LifecycleCases,
    ReconnectCases,
):
    """Subclass as ``class TestXConformance(ConformanceSuite)`` with ``PROFILE = "x"`` and a
    ``harness`` fixture; see the package docstring."""

    async def test_harness_matches_profile(self, ctx: CaseContext, harness: Harness) -> None:
        # The meta-test trusts PROFILE; this ties it to what the harness really opens.
        assert type(self).PROFILE, "set PROFILE = '<catalog profile name>' on the test class"
        assert harness.profile.name == type(self).PROFILE
        broker = await ctx.open()
        assert broker.profile.name == harness.profile.name


def case_names() -> list[str]:
    """Every case of the suite, sorted by name."""
    return sorted(name for name in dir(ConformanceSuite) if name.startswith("test_"))


def capability_map() -> dict[str, list[str]]:
    """Requirement (capability or harness ability) -> cases that prove it."""
    mapping: dict[str, list[str]] = {}
    for name in case_names():
        for requirement in requirements_of(getattr(ConformanceSuite, name)):
            mapping.setdefault(requirement, []).append(name)
    return mapping
