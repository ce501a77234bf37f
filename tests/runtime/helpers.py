"""Shared helpers for runtime behaviour tests on real embedded brokers."""

from __future__ import annotations

import uuid
from pathlib import Path

# Running an App and reading its dead letters: one helper for every test directory.
from eventwire.testing.app_runs import read_dead_letters as read_dlq
from eventwire.testing.app_runs import running, wait_until
from eventwire.testing.helpers import full_scale, scale

__all__ = ["broker_url", "memory_url", "read_dlq", "running", "scale", "wait_until"]

FULL = full_scale()


def memory_url() -> str:
    """A named hub, so several App instances in one test share a broker."""
    return f"memory://rt-{uuid.uuid4().hex[:12]}"


def broker_url(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return memory_url()
    return f"sqlite:///{tmp_path / 'broker.db'}?poll=0.02"
