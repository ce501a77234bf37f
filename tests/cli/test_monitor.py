"""CLI tests: ``eventwire monitor`` shows what a running worker's /metrics says.

The live view is driven in a real terminal (tmux) and its screen compared with the worker's
own counters; ``--json`` and the parser are checked against the same worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventwire import Message
from eventwire.brokers.catalog import open_broker
from eventwire.observability.scrape import fetch_snapshot, parse_exposition
from eventwire.testing.spawn import free_port

HERE = Path(__file__).resolve().parent
EVENTWIRE = str(Path(sys.executable).with_name("eventwire"))
GOOD, POISON = 25, 3
KEY = ("monitor.events", "watchers", "watch")

SAMPLE = """\
# TYPE eventwire_messages_processed counter
eventwire_messages_processed_total{topic="t",group="g",handler="h"} 7.0
# TYPE eventwire_messages_dead_lettered counter
eventwire_messages_dead_lettered_total{topic="t",group="g",handler="h",reason="a"} 2.0
eventwire_messages_dead_lettered_total{topic="t",group="g",handler="h",reason="b"} 1.0
# TYPE eventwire_handlers_in_flight gauge
eventwire_handlers_in_flight{topic="t",group="g",handler="h"} 3.0
# TYPE eventwire_messages_published counter
eventwire_messages_published_total{topic="out"} 5.0
# TYPE process_cpu_seconds counter
process_cpu_seconds_total 1.5
"""


def test_parser_reads_eventwire_families_and_sums_dead_letter_reasons() -> None:
    snapshot = parse_exposition(SAMPLE, taken_at=0.0)
    figures = snapshot.subscribers[("t", "g", "h")]
    assert (figures.processed, figures.dead_lettered, figures.in_flight) == (7, 3, 3)
    assert figures.lag is None
    assert snapshot.published == {"out": 5}


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout} s")


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[str]:
    """A real `eventwire run` worker on a SQLite file, its /metrics on a free port."""
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [EVENTWIRE, "run", "monitor_worker:app", "--broker", url, "--http-port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    address = f"http://127.0.0.1:{port}"
    try:

        def serving() -> bool:
            try:
                return KEY in fetch_snapshot(address, timeout=1).subscribers
            except Exception:
                return False

        _wait(serving, 30, "the worker's /metrics")

        async def publish() -> None:
            async with open_broker(url) as broker:
                bodies = [{"n": i} for i in range(GOOD)] + [{"poison": True}] * POISON
                await broker.publish(
                    "monitor.events",
                    *(Message(body=json.dumps(b).encode(), id=uuid.uuid4().hex) for b in bodies),
                )

        asyncio.run(publish())

        def settled() -> bool:
            figures = fetch_snapshot(address).subscribers[KEY]
            return figures.processed == GOOD and figures.dead_lettered == POISON

        _wait(settled, 30, f"{GOOD} processed and {POISON} dead-lettered")
        yield address
    finally:
        process.terminate()
        process.wait(15)
    assert process.returncode == 0, log.read_text()


def test_json_snapshot_matches_the_worker(worker: str) -> None:
    done = subprocess.run(
        [EVENTWIRE, "monitor", "--worker", worker, "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    (row,) = json.loads(done.stdout)["subscribers"]
    assert (row["topic"], row["group"], row["handler"]) == KEY
    assert (row["processed"], row["dead_lettered"], row["failed"]) == (GOOD, POISON, POISON)


def test_live_view_in_a_terminal_shows_the_worker_counters(worker: str) -> None:
    tmux = shutil.which("tmux")
    if tmux is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is not installed (scripts/services.sh up installs it)")
        pytest.skip("tmux is not installed")
    session = f"ewmon{uuid.uuid4().hex[:8]}"
    # The pane is 160 wide; a COLUMNS inherited from the test runner would narrow the table.
    command = f"env -u COLUMNS -u LINES {EVENTWIRE} monitor --worker {worker} --interval 0.5"
    subprocess.run(
        [tmux, "new-session", "-d", "-s", session, "-x", "160", "-y", "30", command], check=True
    )
    try:
        screen = ""

        def shows_row() -> bool:
            nonlocal screen
            screen = subprocess.run(
                [tmux, "capture-pane", "-p", "-t", session],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            return "monitor.events" in screen and "msg/s" in screen

        try:
            _wait(shows_row, 20, "the monitor's table on screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen showed:\n{screen}") from None
        row = next(line for line in screen.splitlines() if "monitor.events" in line)
        cells = [c.strip() for c in row.strip("│┃ ").split("│")]
        # topic, group, handler, msg/s, processed, failed, retried, dead, in flight, lag
        assert cells[:3] == list(KEY)
        assert cells[4:8] == [str(GOOD), str(POISON), "0", str(POISON)], screen
        assert cells[9] == "-"  # this worker reports no lag (SQLite lag is not served yet)
    finally:
        subprocess.run([tmux, "kill-session", "-t", session], check=False)


def test_a_worker_that_is_not_there_is_one_line_exit_1() -> None:
    done = subprocess.run(
        [EVENTWIRE, "monitor", "--worker", f"http://127.0.0.1:{free_port()}", "--once"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "is the worker running with --http-port?" in done.stderr


def test_a_worker_given_without_scheme_is_a_usage_error() -> None:
    done = subprocess.run(
        [EVENTWIRE, "monitor", "--worker", "127.0.0.1:9000"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 2
    assert "like http://127.0.0.1:9000" in done.stderr
