"""CLI layer: the ``eventwire`` command; each command module imports heavy parts lazily."""

from __future__ import annotations

import typer

from eventwire.cli import (
    bench_commands,
    monitor_commands,
    ops_commands,
    schema_commands,
    setup_commands,
)
from eventwire.cli.errors import OneLineErrorGroup

app = typer.Typer(
    name="eventwire",
    help="Production-ready messaging for event-driven services.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=OneLineErrorGroup,
)
ops_commands.register(app)
monitor_commands.register(app)
bench_commands.register(app)
setup_commands.register(app)
schema_commands.register_commands(app)


def main() -> None:
    """Console-script entry point."""
    app()
