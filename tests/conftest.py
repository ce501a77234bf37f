"""Tests: session-wide rules for every test directory.

A test marked with a service (``rabbitmq``, ``redis``, ``nats``, ``kafka``) whose service does
not answer fails at setup with the service's name and what to run, never with a connection
traceback deep in a fixture and never as a silent skip.
"""

from __future__ import annotations

import pytest

from eventwire.testing.services import SERVICES, unreachable_reason

_checked: dict[str, str | None] = {}


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers():
        if marker.name not in SERVICES:
            continue
        if marker.name not in _checked:
            _checked[marker.name] = unreachable_reason(marker.name)
        reason = _checked[marker.name]
        if reason is not None:
            pytest.fail(reason, pytrace=False)
