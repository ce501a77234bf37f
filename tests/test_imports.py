"""Architecture test: `import eventwire` and `eventwire --help` load no broker client library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CLIENT_LIBRARIES = ("aio_pika", "aiormq", "aiokafka", "confluent_kafka", "nats", "redis")

_PROBE = """
import json, sys
{body}
print("\\n" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {names!r})))
"""


def loaded_after(body: str) -> list[str]:
    code = _PROBE.format(body=body, names=set(CLIENT_LIBRARIES))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "body",
    [
        "import eventwire",
        "import eventwire.cli.main",
        # `eventwire --help`, in-process so sys.modules can be inspected afterwards.
        "from eventwire.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code",
        "from eventwire.cli.main import app\n"
        "for sub in ('run', 'publish'):\n"
        "    try:\n        app([sub, '--help'])\n"
        "    except SystemExit as e:\n        assert e.code == 0, e.code",
        "from eventwire.brokers.catalog import profiles\nassert profiles()",
    ],
    ids=["import", "import-cli", "help", "subcommand-help", "catalog-profiles"],
)
def test_no_broker_client_is_imported(body: str) -> None:
    assert loaded_after(body) == []


def test_console_script_help_exits_cleanly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "eventwire.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "publish" in done.stdout
