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
print("\\n" + json.dumps(sorted(
    m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in {names!r})
)))
"""

HELP = (
    "from eventwire.cli.main import app\n"
    "for argv in (['--help'], ['run', '--help'], ['publish', '--help']):\n"
    "    try:\n        app(argv)\n"
    "    except SystemExit as e:\n        assert e.code == 0, (argv, e.code)"
)


def loaded_after(body: str, names: tuple[str, ...] = CLIENT_LIBRARIES) -> list[str]:
    """Modules under ``names`` that a fresh interpreter has loaded after running ``body``."""
    code = _PROBE.format(body=body, names=names)
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
        HELP,  # `eventwire --help`, in-process so sys.modules can be inspected afterwards
        "from eventwire.brokers.catalog import profiles\nassert profiles()",
        "from eventwire.runtime.app import App\nApp('memory://')",
    ],
    ids=["import", "import-cli", "help", "catalog-profiles", "runtime-app"],
)
def test_no_broker_client_is_imported(body: str) -> None:
    assert loaded_after(body) == []


def test_help_loads_no_broker_adapter() -> None:
    # Commands open brokers inside the command: help imports profiles (data), no adapter.
    adapters = tuple(
        f"eventwire.brokers.{name}.{module}"
        for name, module in [
            ("memory", "broker"),
            ("sqlite", "broker"),
            ("rabbitmq", "broker"),
            ("redis", "connection"),
            ("nats", "core"),
            ("nats", "jetstream"),
        ]
    )
    assert loaded_after(HELP, adapters) == []


def test_probe_sees_a_loaded_client() -> None:
    assert "redis" in loaded_after("import redis")


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
