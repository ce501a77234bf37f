"""Shared fixtures for the setup tests: every broker x pattern service, generated once."""

from __future__ import annotations

import pytest
from setup_helpers import Generated, generate_all


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Generated]:
    """Every combination init offers, each in its own folder under one session root."""
    return generate_all(tmp_path_factory.mktemp("services"))
