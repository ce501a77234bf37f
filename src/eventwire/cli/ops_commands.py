"""CLI layer: run, publish and the other commands that operate a live service."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    del app
