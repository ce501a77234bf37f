"""CLI layer: turn command-line text (broker URL, MODULE:APP, JSON, headers) into checked values."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from eventwire.cli.errors import CLIError, scrub
from eventwire.core.errors import ConfigurationError, InvalidHeaderError
from eventwire.core.headers import validate_headers
from eventwire.core.url import BrokerURL
from eventwire.runtime import broker_url as _runtime_url

# One definition of each, in the runtime (the CLI's default once disagreed with the App's).
BROKER_URL_ENV = _runtime_url.ENV_BROKER_URL
DEFAULT_BROKER_URL = _runtime_url.DEFAULT_BROKER_URL

log = logging.getLogger("eventwire.cli")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedBroker:
    """A broker URL that parsed and names a known scheme, and where it came from."""

    url: BrokerURL
    source: str  # "--broker", the environment variable's name, or "default"


def broker_url(flag: str | None) -> ResolvedBroker:
    """The URL from ``--broker``, else ``$EVENTWIRE_BROKER_URL``, else the embedded SQLite file."""
    if flag:
        raw, source = flag, "--broker"
    elif os.environ.get(BROKER_URL_ENV):
        raw, source = os.environ[BROKER_URL_ENV], BROKER_URL_ENV
    else:
        raw, source = DEFAULT_BROKER_URL, "default"
    from eventwire.brokers.catalog import open_broker, profile_for

    try:
        url = BrokerURL.parse(raw)
        profile_for(url)  # data-only profile modules: no client library is imported here
        # The adapter checks its own options (paths, query flags) when built, before any
        # connection: build one and drop it so a bad URL fails before the app is imported.
        open_broker(url)
    except ConfigurationError as exc:
        where = "" if source == "--broker" else f" (from {source})"
        raise CLIError(scrub(f"{exc}{where}", _password_in(raw))) from None
    return ResolvedBroker(url=url, source=source)


def _password_in(raw: str) -> str | None:
    # Text that failed to parse as a URL (no scheme, say) can still hold "user:password@host";
    # find the password by hand so the error line can mask it.
    userinfo, at, _ = raw.rpartition("@")
    if not at:
        return None
    _, colon, password = userinfo.rpartition("://")[2].partition(":")
    return password if colon and password else None


def announce(resolved: ResolvedBroker) -> None:
    """Log the one line that says the default broker is in use (after other checks passed)."""
    if resolved.source != "default":
        return
    # The default lives under the working directory; create its folder so a first run works.
    Path(resolved.url.path.removeprefix("/")).parent.mkdir(parents=True, exist_ok=True)
    log.info(
        "no --broker and no %s set: using the embedded SQLite broker %s",
        BROKER_URL_ENV,
        resolved.url,
    )


def announce_read(resolved: ResolvedBroker) -> None:
    """For a read command on the default broker: say, on stderr, which file it reads (and
    create nothing, unlike ``announce``)."""
    if resolved.source != "default":
        return
    import typer

    typer.echo(
        f"no --broker and no {BROKER_URL_ENV} set: reading the embedded SQLite broker "
        f"{resolved.url}",
        err=True,
    )


def _import_target(module_ref: str) -> ModuleType:
    # Like `python -m`, resolve imports from the working directory first (a console script's
    # sys.path starts at its bin/ directory instead).
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if module_ref.endswith(".py") or os.sep in module_ref or "/" in module_ref:
        path = Path(module_ref)
        if not path.is_file():
            raise CLIError(f"no file {module_ref!r}: give a path to a .py file or a module name")
        name = path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CLIError(f"cannot load {module_ref!r} as Python: give a .py file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # Let the file import its sibling modules, as `python file.py` would.
        sys.path.insert(0, str(path.resolve().parent))
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(module_ref)


def load_app(target: str) -> object:
    """Import ``MODULE:APP`` (APP defaults to ``app``) and return the object it names."""
    module_ref, _, attr = target.partition(":")
    attr = attr or "app"
    if not module_ref or not attr.isidentifier():
        raise CLIError(
            f"{target!r} is not MODULE:APP: write it like examples.orders.service:app "
            "or path/to/service.py:app"
        )
    try:
        module = _import_target(module_ref)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_ref
        if module_ref == missing or module_ref.startswith(f"{missing}."):
            raise CLIError(
                f"cannot import module {module_ref!r}: check the name and run from the "
                "directory that contains it (or set PYTHONPATH)"
            ) from None
        raise CLIError(
            f"module {module_ref!r} imports {missing!r}, which is not installed: install it"
        ) from None
    except CLIError:
        raise
    except Exception as exc:  # noqa: BLE001  # any error of the user's module: one line
        # The user's module itself failed while importing; say where, not a traceback.
        raise CLIError(
            f"importing {module_ref!r} failed with {type(exc).__name__}: {exc}: fix that module"
        ) from None
    if not hasattr(module, attr):
        raise CLIError(
            f"module {module_ref!r} has no attribute {attr!r}: name the App object after ':'"
        )
    obj: object = getattr(module, attr)
    if not callable(getattr(obj, "serve", None)) and callable(obj) and _takes_no_arguments(obj):
        obj = _call_factory(obj, f"{module_ref}:{attr}")
    if not callable(getattr(obj, "serve", None)):
        raise CLIError(
            f"{module_ref}:{attr} is a {type(obj).__name__}, not an eventwire App: "
            "point at the object created with App(...) or a function returning it"
        )
    return obj


def _takes_no_arguments(obj: Callable[..., object]) -> bool:
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: not a factory
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in params)  # fmt: skip


def _call_factory(factory: Callable[[], object], target: str) -> object:
    """``MODULE:FACTORY``: a function that builds the app is a normal way to make one."""
    try:
        return factory()
    except CLIError:
        raise
    except Exception as exc:  # noqa: BLE001  # any error of the user's factory: one line
        raise CLIError(
            f"{target}() failed with {type(exc).__name__}: {exc}: fix that factory"
        ) from None


def json_body(data: str) -> bytes:
    """``--data`` as compact JSON bytes: inline JSON, or ``@path`` to read it from a file."""
    import orjson

    if data.startswith("@"):
        path = Path(data[1:])
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise CLIError(
                f"cannot read --data file {str(path)!r} ({exc.strerror}): check the path"
            ) from None
        origin = f"file {str(path)!r}"
    else:
        text = data.encode()
        origin = "--data"
    try:
        return orjson.dumps(orjson.loads(text))
    except orjson.JSONDecodeError as exc:
        raise CLIError(
            f"{origin} is not valid JSON ({exc}): pass a JSON document, "
            'for example --data \'{"order_id": "o-1"}\''
        ) from None


def headers(pairs: Sequence[str]) -> dict[str, str]:
    """``--header K=V`` options as a dict, each one checked like any outgoing header."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CLIError(f"--header {pair!r} is not NAME=VALUE: write it like --header tenant=a")
        parsed[name] = value
    try:
        validate_headers(parsed)
    except InvalidHeaderError as exc:
        raise CLIError(f"{exc}") from None
    return parsed
