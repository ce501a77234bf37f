"""The schema libraries load only with the codec that needs them: ``import eventwire``, the
CLI's help and a JSON app load none of httpx, fastavro, protobuf or jsonschema."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("httpx", "fastavro", "google.protobuf", "jsonschema", "confluent_kafka")
PROBE = """
import json, sys
{body}
print("\\n" + json.dumps(sorted(m for m in sys.modules if any(
    m == p or m.startswith(p + ".") for p in {heavy!r}))))
"""


@pytest.mark.parametrize(
    "body",
    [
        "import eventwire",
        (
            "from eventwire.cli.main import app\n"
            "try:\n    app(['schema', '--help'])\nexcept SystemExit as e:\n    assert e.code == 0"
        ),
        (
            "from eventwire import App\napp = App('memory://lazy')\n"
            "@app.subscriber('t')\nasync def h(x: dict) -> None: ..."
        ),
        (
            "from eventwire.serialization.registry import open_registry\n"
            "open_registry('file:///tmp/unused.json')"
        ),
    ],
    ids=["import", "schema-help", "json-app", "file-registry"],
)
def test_no_schema_library_loaded(body: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
