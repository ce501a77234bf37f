"""Helpers for tests with a real, private Prometheus: start it on a free port scraping one
target every second, and run PromQL over its HTTP API (bounded waits only).

Needs Debian's ``prometheus`` binary; missing it is a skip on a laptop and a failure in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .probes import free_port


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


@dataclass(frozen=True, slots=True)
class Prometheus:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    async def value_of(self, expression: str, expected: float, *, deadline: float = 60) -> float:
        """Query until ``expression`` has one sample equal to ``expected`` (or the deadline
        passes); the last value seen (None-safe assertion messages)."""
        seen: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(deadline):
                while self.process.poll() is None:
                    seen = await asyncio.to_thread(query, self.port, expression)
                    if len(seen) == 1 and float(seen[0]["value"][1]) == expected:
                        return expected
                    await asyncio.sleep(0.25)
        except TimeoutError:
            pass
        raise AssertionError(
            f"{expression} is {seen}, expected {expected}; "
            f"prometheus said: {self.log.read_text()[-1500:]}"
        )


@contextlib.asynccontextmanager
async def prometheus(tmp_path: Path, target_port: int) -> AsyncIterator[Prometheus]:
    """A private Prometheus scraping ``127.0.0.1:target_port`` as job ``worker`` every 1 s."""
    binary = prometheus_binary()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: worker\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
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
        yield Prometheus(web, server, log)
    finally:
        server.terminate()
        try:
            await asyncio.to_thread(server.wait, 30)
        except subprocess.TimeoutExpired:
            server.kill()
            await asyncio.to_thread(server.wait, 10)
