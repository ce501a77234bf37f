"""Tests: sqlite URLs -> file paths and options, and one clear line when they are wrong."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from eventwire.brokers.catalog import open_broker
from eventwire.brokers.sqlite.options import SQLiteSettings
from eventwire.core.errors import ConfigurationError
from eventwire.core.url import BrokerURL


def settings(url: str) -> SQLiteSettings:
    return SQLiteSettings.from_url(BrokerURL.parse(url))


def test_three_slashes_is_relative_and_four_is_absolute() -> None:
    assert settings("sqlite:///data/broker.db").path == Path("data/broker.db")
    assert settings("sqlite:////var/lib/broker.db").path == Path("/var/lib/broker.db")
    assert settings("sqlite:///my%20file.db").path == Path("my file.db")


def test_options_are_read() -> None:
    s = settings("sqlite:///b.db?lease=5&retention=60&max_messages=100&busy_timeout=250")
    assert (s.lease, s.retention, s.max_messages, s.busy_timeout_ms) == (5.0, 60.0, 100, 250)
    assert settings("sqlite:///b.db?synchronous=full").synchronous == "FULL"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite://", "no file path"),
        ("sqlite:///:memory:", "memory://"),
        ("sqlite://host/b.db", "names a host"),
        ("sqlite:///b.db?lease=0", "lease"),
        ("sqlite:///b.db?lease=abc", "lease"),
        ("sqlite:///b.db?retention=-1", "retention"),
        ("sqlite:///b.db?max_messages=0", "max_messages"),
        ("sqlite:///b.db?synchronous=off", "synchronous"),
        ("sqlite:///b.db?leese=5", "leese"),
    ],
)
def test_bad_urls_fail_on_open_with_one_line(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        open_broker(url)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


async def test_relative_path_is_under_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_broker("sqlite:///sub/rel.db"):
        pass
    assert (tmp_path / "sub" / "rel.db").is_file()


async def test_directory_that_cannot_be_created_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    broker = open_broker(f"sqlite:///{blocker}/sub/b.db")
    with pytest.raises(ConfigurationError) as info:
        await broker.connect()
    await broker.aclose()
    assert "cannot create directory" in str(info.value)
    assert "\n" not in str(info.value)


async def test_file_that_is_not_a_database_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    broker = open_broker(f"sqlite:///{path}")
    with pytest.raises(ConfigurationError, match="cannot open sqlite broker file"):
        await broker.connect()
    await broker.aclose()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with open_broker(f"sqlite:///{path}"):
        pass
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    broker = open_broker(f"sqlite:///{path}")
    with pytest.raises(ConfigurationError, match="upgrade eventwire"):
        await broker.connect()
    await broker.aclose()
