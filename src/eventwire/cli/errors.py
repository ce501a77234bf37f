"""CLI layer: each failure becomes one redacted stderr line and exit code 2, not a traceback."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from eventwire.core.errors import EventwireError
from eventwire.core.url import REDACTED

USAGE_EXIT = 2
INTERRUPTED_EXIT = 130

# scheme://user:password@ anywhere in a line; the password part is replaced, even when the
# text is a click message quoting argv or an exception message from a client library.
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@'\"]*):[^\s@'\"]*@")


class CLIError(Exception):
    """A user-facing failure: ``str()`` says what is wrong and what to do about it."""

    def __init__(self, message: str, *, exit_code: int = USAGE_EXIT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` on one line, with URL passwords and any of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _CREDENTIALS.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    return " ".join(text.split())


def fail_line(message: str, *secrets: str | None) -> str:
    """The single line printed for ``message``."""
    return f"eventwire: error: {scrub(message, *secrets)}"


def exit_with(message: str, *, exit_code: int = USAGE_EXIT) -> NoReturn:
    """Print ``message`` as one redacted line on stderr and exit."""
    typer.echo(fail_line(message), err=True)
    sys.exit(exit_code)


def _error_line(exc: typer.TyperException) -> str:
    ctx = getattr(exc, "ctx", None)  # set on usage errors: name the command's help
    path = getattr(ctx, "command_path", None) or "eventwire"
    return f"{exc.format_message()} (see '{path} --help')"


class OneLineErrorGroup(TyperGroup):
    """The root command group: runs commands without click's multi-line error boxes.

    Click and Typer print usage errors as a block (usage, hint, framed error); a script that
    reads stderr, or a person scanning a log, needs one line that names the problem and the
    fix. Everything below this group raises instead of printing, and ``main`` reports it.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except typer.TyperException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `eventwire`: show the help
                typer.echo(exc.format_message(), err=True)
                sys.exit(USAGE_EXIT)
            exit_with(_error_line(exc), exit_code=exc.exit_code)
        except typer.Abort:
            exit_with("interrupted", exit_code=INTERRUPTED_EXIT)
        except CLIError as exc:
            exit_with(str(exc), exit_code=exc.exit_code)
        except EventwireError as exc:
            # Library errors are written for users already (what is wrong, what to do).
            exit_with(f"{exc}", exit_code=USAGE_EXIT)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)
