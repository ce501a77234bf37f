"""``idempotent=True`` with the default in-memory store on a broker other processes can reach:
one warning per connect that duplicates across workers or restarts are not suppressed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from eventwire.reliability.idempotency import SQLiteIdempotencyStore
from eventwire.runtime.app import App

WARNING = "duplicates across workers of a group or after a restart are not suppressed"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and WARNING in r.getMessage()
    ]


def app_with(url: str, *, idempotent: bool, store: SQLiteIdempotencyStore | None = None) -> App:
    app = App(url, name="billing", idempotency_store=store)

    @app.subscriber("orders", group="billing", idempotent=idempotent)
    async def charge(body: dict[str, object]) -> None:
        pass

    @app.subscriber("audit", group="billing", idempotent=idempotent)
    async def record(body: dict[str, object]) -> None:
        pass

    return app


async def test_a_shared_broker_with_the_in_memory_store_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventwire")
    async with app_with(f"sqlite:///{tmp_path / 'broker.db'}", idempotent=True):
        pass
    [line] = warnings_of(caplog)
    assert "billing: idempotent=True on" in line
    assert "charge" in line
    assert "record" in line
    assert "App(idempotency_store=...)" in line


@pytest.mark.parametrize("case", ["memory broker", "shared store", "not idempotent"])
async def test_no_warning_where_nothing_can_slip_through(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventwire")
    url = "memory://" if case == "memory broker" else f"sqlite:///{tmp_path / 'broker.db'}"
    store = SQLiteIdempotencyStore(tmp_path / "done.db") if case == "shared store" else None
    async with app_with(url, idempotent=case != "not idempotent", store=store):
        pass
    assert warnings_of(caplog) == []
