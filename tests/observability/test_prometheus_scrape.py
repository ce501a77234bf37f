"""Observability test: a real, private Prometheus scrapes a worker's /metrics and answers a query.

Needs Debian's ``prometheus`` binary; missing it is a skip on a laptop and a failure in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from eventwire import App

from .probes import free_port, running, wait_until

pytestmark = pytest.mark.slow


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the prometheus binary is missing: apt-get install -y prometheus")
        pytest.skip("the prometheus binary is not installed (apt-get install -y prometheus)")
    return found


def query(port: int, expression: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            result: list[dict[str, Any]] = json.load(answer)["data"]["result"]
    except OSError:
        return []  # not up yet
    return result


async def test_prometheus_scrapes_the_worker(tmp_path: Path) -> None:
    binary = prometheus_binary()
    app = App(f"memory://prom-{free_port()}", name="scraped")

    @app.subscriber("scrape.events", group="workers")
    async def handle(payload: dict[str, Any]) -> None:
        return None

    async with app, running(app, http_port=0):
        for n in range(5):
            await app.publish("scrape.events", {"n": n})
        await wait_until(lambda: app.stats.processed == 5)
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: worker\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{app.http_port}']\n"
        )
        web = free_port()
        log = tmp_path / "prometheus.log"
        with log.open("wb") as sink:  # the child keeps its own copy of the descriptor
            server = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{web}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        try:
            expression = 'eventwire_messages_processed_total{job="worker",group="workers"}'
            found: list[dict[str, Any]] = []
            async with asyncio.timeout(60):
                while not found and server.poll() is None:
                    found = await asyncio.to_thread(query, web, expression)
                    if not found:
                        await asyncio.sleep(0.25)
            assert found, f"no sample; prometheus said: {log.read_text()[-2000:]}"
            assert float(found[0]["value"][1]) == 5
            assert found[0]["metric"]["handler"] == handle.__qualname__
        finally:
            server.terminate()
            server.wait(timeout=30)
