"""CLI tests: every user mistake is one stderr line, exit code 2, no traceback, no password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventwire.cli.errors import scrub
from eventwire.cli.main import app

CANARY = "Canary-Pw-4d9f"
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"EVENTWIRE_BROKER_URL": "", **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("eventwire: error: ")
    assert "Traceback" not in out + err
    assert CANARY not in out + err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("run",), "Missing argument"),
        (("run", "x:app", "--concurrency", "abc"), "--concurrency"),
        (("run", "x:app", "--concurrency", "0"), "--concurrency"),
        (("run", "x:app", "--nope"), "No such option"),
        (("bogus",), "No such command"),
        (("publish", "orders.placed"), "--data"),
        (("publish", "t", "--data", "{}", "--header"), "--header"),
    ],
)
def test_usage_errors_are_one_line(args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(*invoke(*args), fragment, "--help")


def test_unknown_module_says_what_to_do() -> None:
    assert_one_line_error(*invoke("run", "no_such_module_xyz:app"), "cannot import", "PYTHONPATH")


def test_missing_attribute_names_it() -> None:
    assert_one_line_error(*invoke("run", "json:application"), "no attribute 'application'")


def test_object_that_is_not_an_app_is_refused() -> None:
    assert_one_line_error(*invoke("run", "json:dumps"), "not an eventwire App")


def test_bad_target_shape() -> None:
    assert_one_line_error(*invoke("run", "json:not-an-identifier"), "MODULE:APP")


def test_module_that_fails_on_import(tmp_path: Path) -> None:
    broken = tmp_path / "broken_service.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    assert_one_line_error(*invoke("run", f"{broken}:app"), "RuntimeError", "boom at import")


def test_module_file_that_does_not_exist(tmp_path: Path) -> None:
    assert_one_line_error(*invoke("run", f"{tmp_path}/nope.py:app"), "no file")


@pytest.mark.parametrize(
    "url",
    [
        f"foo://user:{CANARY}@localhost:1/",
        f"redis://user:{CANARY}@localhost:notaport/0",
        f"user:{CANARY}@localhost",
        f"sqlite://user:{CANARY}@somehost/x.db",
    ],
)
def test_bad_broker_url_never_shows_the_password(url: str) -> None:
    for args in (
        ("run", "json:dumps", "--broker", url),
        ("publish", "t", "--data", "{}", "-b", url),
    ):
        assert_one_line_error(*invoke(*args), "broker URL" if "sqlite" not in url else "sqlite")


def test_bad_broker_url_from_environment_is_named() -> None:
    code, out, err = invoke(
        "publish", "t", "--data", "{}", env={"EVENTWIRE_BROKER_URL": f"foo://u:{CANARY}@h/"}
    )
    assert_one_line_error(code, out, err, "EVENTWIRE_BROKER_URL")


def test_usage_error_quoting_a_url_is_scrubbed() -> None:
    code, out, err = invoke("publish", "t", "--data", "{}", f"--brokr=redis://u:{CANARY}@h/0")
    assert_one_line_error(code, out, err, "No such option")


@pytest.mark.parametrize("data", ["{not json", "", "[1,", "@/nonexistent/file.json"])
def test_bad_json(data: str) -> None:
    assert_one_line_error(*invoke("publish", "t", "--data", data, "-b", "memory://"), "--data")


@pytest.mark.parametrize("header", ["novalue", "=v", "bad name=v", "x=a\nb"])
def test_bad_header(header: str) -> None:
    assert_one_line_error(
        *invoke("publish", "t", "--data", "{}", "--header", header, "-b", "memory://"), "header"
    )


def test_version() -> None:
    code, out, _ = invoke("--version")
    assert code == 0
    assert out.strip().startswith("eventwire 0.")


def test_help_lists_commands() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    assert "run" in out
    assert "publish" in out


def test_scrub_masks_passwords_and_flattens() -> None:
    text = f"failed amqp://guest:{CANARY}@h:5672/ and\nredis://:{CANARY}@r:6379/0"
    cleaned = scrub(text)
    assert CANARY not in cleaned
    assert "\n" not in cleaned
    assert "amqp://guest:***@h:5672/" in cleaned
    assert json.dumps(cleaned)
