"""Broker layer: the profile capability table as Markdown, the one the README shows."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from eventwire.brokers.catalog import profiles
from eventwire.core.capabilities import Capabilities, Support

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("guarantee", "guarantee"),
    ("persistent", "persistent"),
    ("redelivery", "redelivery"),
    ("delayed_redelivery", "delayed retry"),
    ("dead_letter", "dead letters"),
    ("consumer_groups", "groups"),
    ("replay", "replay"),
    ("ordered_per_key", "order per key"),
    ("exclusive_in_flight", "prefetch=1 exclusive"),
    ("publish_dedup", "publish dedup"),
    ("survives_restart", "survives restart"),
    ("reconnects", "reconnects"),
)


def _cell(value: object) -> str:
    if isinstance(value, Support):
        return "no" if value is Support.NONE else value.value
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(getattr(value, "value", value))


def _row(name: str, schemes: tuple[str, ...], caps: Capabilities) -> str:
    urls = " ".join(f"`{s}://`" for s in schemes)
    cells = [_cell(getattr(caps, field)) for field, _ in _COLUMNS]
    return "| " + " | ".join([name, urls, *cells]) + " |"


def capability_table() -> str:
    """Every shipped profile's claims; each claim is proven by the conformance suite."""
    header = "| profile | URL | " + " | ".join(title for _, title in _COLUMNS) + " |"
    rule = "|" + "---|" * (len(_COLUMNS) + 2)
    rows = [_row(p.name, p.schemes, p.capabilities) for p in profiles()]
    return "\n".join([header, rule, *rows])


def _write_readme(path: str) -> None:
    readme = Path(path)
    text = readme.read_text(encoding="utf-8")
    start, end = "<!-- capability-table:start -->", "<!-- capability-table:end -->"
    block = f"{start}\n{capability_table()}\n{end}"
    readme.write_text(
        re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S),
        encoding="utf-8",
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write-readme"]:
        _write_readme(sys.argv[2] if len(sys.argv) > 2 else "README.md")
    else:
        sys.stdout.write(capability_table() + "\n")
