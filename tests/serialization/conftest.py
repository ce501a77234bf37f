"""Fixtures for the schema tests: the real Apicurio registry, unique subjects, file registries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventwire.serialization.registry_file import FileSchemaRegistry
from eventwire.serialization.registry_http import HTTPSchemaRegistry
from eventwire.testing.services import service_url


def unique(prefix: str = "ew-test") -> str:
    """A subject/topic name no other test (or earlier run: the registry keeps them) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def registry_url() -> str:
    return service_url("registry")


@pytest.fixture
async def registry(registry_url: str) -> AsyncIterator[HTTPSchemaRegistry]:
    async with HTTPSchemaRegistry(registry_url) as client:
        yield client


@pytest.fixture
def file_registry(tmp_path: Path) -> FileSchemaRegistry:
    return FileSchemaRegistry(tmp_path / "schemas.json")


@pytest.fixture
def topic() -> str:
    return unique("orders")
