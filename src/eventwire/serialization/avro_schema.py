"""Serialization layer: an Avro schema derived from a pydantic model, and Avro-ready values.

Types map as Avro users expect: ``str`` string, ``int`` long, ``float`` double, ``bool``
boolean, ``bytes`` bytes, ``X | None`` ``["null", X]``, ``list[X]`` array, ``dict[str, X]``
map, nested models records, ``Enum`` (string values) enums, ``datetime`` timestamp-micros,
``date`` date, ``UUID`` uuid, ``Decimal`` is refused (give a schema with its precision).
The record is named after the model's ``title`` (``ConfigDict(title=...)``), else its class.
A field's default becomes the Avro default, so adding a field with a default to the model
is a BACKWARD-compatible change.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic_core import PydanticUndefined

from eventwire.core.errors import ConfigurationError

_SIMPLE: dict[object, Any] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
    dt.datetime: {"type": "long", "logicalType": "timestamp-micros"},
    dt.date: {"type": "int", "logicalType": "date"},
    uuid.UUID: {"type": "string", "logicalType": "uuid"},
}


def avro_schema_for(model: type[pydantic.BaseModel], *, namespace: str | None = None) -> Any:
    """The Avro record schema (a JSON-ready dict) for ``model``."""
    return _Deriver(namespace).record(model)


def avro_ready(value: Any) -> Any:
    """``value`` (a ``model_dump()``) with enums as their symbols, ready for fastavro."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: avro_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [avro_ready(v) for v in value]
    return value


class _Deriver:
    def __init__(self, namespace: str | None) -> None:
        self._namespace = namespace
        self._defined: set[str] = set()

    def record(self, model: type[pydantic.BaseModel]) -> Any:
        # ``model_config = ConfigDict(title="Order")`` names the record: versions of a model
        # kept side by side as classes (OrderV1, OrderV2) must share the Avro name to resolve.
        name = str(model.model_config.get("title") or model.__name__)
        if name in self._defined:
            return name  # a second use refers to the first definition by name
        self._defined.add(name)
        fields = []
        for field_name, info in model.model_fields.items():
            avro_name = info.alias or field_name
            field: dict[str, Any] = {"name": avro_name, "type": self.type_of(info.annotation)}
            if info.default is not PydanticUndefined:
                field["default"] = _default(info.default)
                if field["default"] is None and isinstance(field["type"], list):
                    field["type"] = ["null", *[t for t in field["type"] if t != "null"]]
            if info.description:
                field["doc"] = info.description
            fields.append(field)
        schema: dict[str, Any] = {"type": "record", "name": name, "fields": fields}
        if self._namespace and len(self._defined) == 1:
            schema["namespace"] = self._namespace
        if model.__doc__ and model.__doc__ != pydantic.BaseModel.__doc__:
            schema["doc"] = model.__doc__.strip()
        return schema

    def type_of(self, annotation: Any) -> Any:  # noqa: PLR0911 - one answer per kind of type
        if annotation in _SIMPLE:
            return _SIMPLE[annotation]
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            return self.type_of(args[0])
        if origin in (typing.Union, types.UnionType):
            branches = [self.type_of(a) for a in args if a is not type(None)]
            return ["null", *branches] if type(None) in args else branches
        if origin in (list, tuple, set, frozenset) and args:
            return {"type": "array", "items": self.type_of(args[0])}
        if origin in (dict, Mapping) and len(args) == 2:
            if args[0] is not str:
                raise ConfigurationError(f"Avro maps have string keys, not {args[0]!r}")
            return {"type": "map", "values": self.type_of(args[1])}
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            return self.record(annotation)
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return self._enum(annotation)
        raise ConfigurationError(
            f"no Avro type for {annotation!r}: give the codec an .avsc schema instead"
        )

    def _enum(self, kind: type[enum.Enum]) -> Any:
        if kind.__name__ in self._defined:
            return kind.__name__
        symbols = [m.value for m in kind]
        if not all(isinstance(s, str) for s in symbols):
            raise ConfigurationError(f"Avro enum {kind.__name__} needs string values")
        self._defined.add(kind.__name__)
        return {"type": "enum", "name": kind.__name__, "symbols": symbols}


def _default(value: Any) -> Any:
    return avro_ready(pydantic.TypeAdapter(type(value)).dump_python(value, mode="json"))
