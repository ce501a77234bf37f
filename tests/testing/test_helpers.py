"""Tests: the shared test helpers (eventwire.testing.helpers) do what every test relies on."""

from __future__ import annotations

import asyncio
import socket

import pytest

from eventwire.testing import helpers


def test_scale_reads_the_test_scale_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(helpers.TEST_SCALE_ENV, raising=False)
    assert helpers.scale(3, 300) == 3
    monkeypatch.setenv(helpers.TEST_SCALE_ENV, " Full ")
    assert helpers.scale(3, 300) == 300
    monkeypatch.setenv(helpers.TEST_SCALE_ENV, "quick")
    assert helpers.scale(3, 300) == 3


def test_free_port_is_bindable_on_loopback() -> None:
    port = helpers.free_port()
    with socket.socket() as sock:
        sock.bind((helpers.LOOPBACK, port))  # nobody holds it
    assert 0 < port < 65536


async def test_wait_until_returns_once_true_and_names_what_timed_out() -> None:
    flag: list[bool] = []
    asyncio.get_running_loop().call_later(0.02, flag.append, True)
    await helpers.wait_until(lambda: bool(flag), 5.0)
    with pytest.raises(AssertionError, match=r"the moon not reached within 0\.1 s"):
        await helpers.wait_until(lambda: False, 0.1, what="the moon")
