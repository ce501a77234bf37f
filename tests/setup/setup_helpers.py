"""Helpers for the setup tests: tools, compose, and generating every broker x pattern."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventwire.setup import scaffold
from eventwire.setup.choices import Pattern
from eventwire.setup.requirements import Broker

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
COMBINATIONS = [(b.value, p.value) for b in Broker for p in Pattern]
ALL_GENERATED = [*COMBINATIONS, ("long", "name")]  # + the longest name init accepts


@dataclass(frozen=True, slots=True, kw_only=True)
class Generated:
    """One generated service."""

    broker: str
    pattern: str
    root: Path
    package: str


def tool(name: str) -> str:
    """A dev tool from the project's virtualenv, else from PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is needed for this test and was not found")
    return found


def docker_compose() -> str | None:
    """Debian's docker-compose; missing is a failure in CI and a skip elsewhere."""
    found = shutil.which("docker-compose")
    if found is None and os.environ.get("CI", "").lower() == "true":
        pytest.fail("docker-compose is not installed (apt-get install -y docker-compose)")
    return found


def generate_all(base: Path) -> dict[tuple[str, str], Generated]:
    """Every combination init offers, each in its own folder under one session root."""
    services: dict[tuple[str, str], Generated] = {}
    for broker, pattern in COMBINATIONS:
        name = f"svc-{broker}-{pattern}"
        plan = scaffold.plan_service(
            name=name, broker=broker, pattern=pattern, directory=base / name
        )
        scaffold.write_service(plan)
        services[broker, pattern] = Generated(
            broker=broker, pattern=pattern, root=base / name, package=plan.package
        )
    # The longest allowed name, so that line lengths hold for every name init accepts.
    long_name = "a-service-name-that-is-forty-chars-long1"
    assert len(long_name) == 40
    plan = scaffold.plan_service(
        name=long_name, broker="kafka", pattern="event-streaming", directory=base / long_name
    )
    scaffold.write_service(plan)
    services["long", "name"] = Generated(
        broker="kafka", pattern="event-streaming", root=base / long_name, package=plan.package
    )
    return services


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one command ended."""

    returncode: int
    output: str


def _run(args: list[str], cwd: Path, env: dict[str, str] | None, timeout: float) -> Outcome:
    try:
        done = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return Outcome(returncode=-1, output=f"timed out after {timeout} s\n{out[-4000:]}")
    return Outcome(returncode=done.returncode, output=done.stdout[-4000:] + done.stderr[-4000:])


def run_parallel(
    commands: dict[tuple[str, str], tuple[list[str], Path]],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 180.0,
    workers: int = 4,
) -> dict[tuple[str, str], Outcome]:
    """Run independent commands a few at a time (each is mostly interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            key: pool.submit(_run, args, cwd, env, timeout) for key, (args, cwd) in commands.items()
        }
        return {key: future.result() for key, future in futures.items()}


def clean_env() -> dict[str, str]:
    """The environment without eventwire settings, so generated code uses its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTWIRE_")}
    env.pop("PYTHONPATH", None)
    return env
