"""Docs tests: the README's capability table is the catalog's data, not a copy that drifts."""

from __future__ import annotations

import re
from pathlib import Path

from eventwire.brokers.capability_table import capability_table

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"<!-- capability-table:start -->\n(.*?)<!-- capability-table:end -->", re.S)


def test_readme_capability_table_matches_the_catalog() -> None:
    found = BLOCK.search(README.read_text(encoding="utf-8"))
    assert found, "README lost its capability-table markers"
    assert found.group(1).strip() == capability_table(), (
        "README capability table is stale: run "
        "`.venv/bin/python -m eventwire.brokers.capability_table --write-readme`"
    )


def test_readme_commands_exist() -> None:
    text = README.read_text(encoding="utf-8")
    root = README.parent
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"bash {script}" in text
        assert (root / script).is_file()
    ci = (root / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test.sh" in ci, ".ci/run must call the README's test command"
