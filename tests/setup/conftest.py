"""Shared fixtures for the setup tests: every broker x pattern service, generated once."""

from __future__ import annotations

import sys

import pytest

from setup.setup_helpers import (
    Generated,
    Outcome,
    clean_env,
    docker_compose,
    generate_all,
    run_parallel,
)


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Generated]:
    """Every combination init offers, each in its own folder under one session root."""
    return generate_all(tmp_path_factory.mktemp("services"))


@pytest.fixture(scope="session")
def own_test_results(generated: dict[tuple[str, str], Generated]) -> dict[tuple[str, str], Outcome]:
    """Each generated service's own test suite, run in its folder (on memory://)."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    commands = {key: (args, g.root) for key, g in generated.items()}
    return run_parallel(commands, env=clean_env(), timeout=240)


@pytest.fixture(scope="session")
def compose_results(generated: dict[tuple[str, str], Generated]) -> dict[tuple[str, str], Outcome]:
    """``docker-compose -f docker-compose.yml config`` for every generated service."""
    compose = docker_compose()
    if compose is None:
        pytest.skip("docker-compose is not installed (outside CI)")
    args = [compose, "-f", "docker-compose.yml", "config"]
    return run_parallel({key: (args, g.root) for key, g in generated.items()}, timeout=120)
