"""Broker layer: URL query parameters read into an adapter's frozen options dataclass.

One reader for every adapter, so that each option and its default is written once, as a
dataclass field, and every adapter refuses unknown or malformed options in the same words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from eventwire.core.errors import ConfigurationError
from eventwire.core.url import BrokerURL

T = TypeVar("T")


def options_from_query(
    cls: type[T],
    url: BrokerURL,
    *,
    broker: str,
    fixed: Mapping[str, object] | None = None,
    reserved: Collection[str] = (),
) -> T:
    """``cls`` (a dataclass) built from ``url``'s query: each parameter names a field with a
    default and is read as that default's type (int, float, else text).

    ``fixed``: fields the rest of the URL gives (host, path, ...); they and ``reserved`` names
    cannot be set by the query. ``broker`` names the adapter in the ``ConfigurationError``.
    """
    fixed = fixed or {}
    settable = {
        field.name: field.default
        for field in dataclasses.fields(cls)  # type: ignore[arg-type]
        if field.default is not dataclasses.MISSING
        and field.name not in fixed
        and field.name not in reserved
    }
    values: dict[str, Any] = dict(fixed)
    for name, text in url.query.items():
        if name not in settable:
            raise ConfigurationError(
                f"unknown {broker} URL option {name!r}: use one of {', '.join(sorted(settable))}"
            )
        values[name] = _read(broker, name, text, settable[name])
    return cls(**values)


def _read(broker: str, name: str, text: str, default: object) -> object:
    # bool is an int subclass: no option is a bool today, and int("true") would be no reading.
    if isinstance(default, bool) or not isinstance(default, int | float):
        return text
    kind = int if isinstance(default, int) else float
    try:
        return kind(text)
    except ValueError:
        article = "an" if kind is int else "a"
        raise ConfigurationError(
            f"{broker} URL option {name}={text!r} must be {article} {kind.__name__}"
        ) from None
