"""Serialization layer: Avro schema-resolution rules, to say *why* two schemas are incompatible.

Registries answer "compatible: false" (Apicurio's ccompat API gives no reason at all), so
``eventwire schema check`` and the file registry apply the Avro specification's resolution
rules here and name the field at fault: a field added without a default, a type changed
beyond the allowed promotions, an enum symbol removed. Pure Python on parsed JSON: no Avro
library is needed to explain a refusal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

_PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
# writer type -> reader types that may read it (Avro spec, "Schema Resolution").
_PROMOTIONS: Final[Mapping[str, frozenset[str]]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
_NAMED: Final = frozenset({"record", "error", "enum", "fixed"})


def reader_problems(reader: Any, writer: Any) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (``[]``: it can)."""
    ctx = _Resolver(_names(reader), _names(writer))
    return ctx.check(reader, writer, _type_name(reader, ctx.reader_names) or "value")


def problems_for(level: str, new: Any, previous: Sequence[Any]) -> list[str]:
    """Problems of ``new`` as the next version after ``previous`` (oldest first) under
    ``level``; non-transitive levels look at the latest version only."""
    level = level.upper()
    if level == "NONE" or not previous:
        return []
    against = list(enumerate(previous, 1))
    if not level.endswith("_TRANSITIVE"):
        against = against[-1:]
    found: list[str] = []
    for number, old in against:
        if level.startswith(("BACKWARD", "FULL")):
            found += [
                f"new schema cannot read data written with version {number}: {p}"
                for p in reader_problems(new, old)
            ]
        if level.startswith(("FORWARD", "FULL")):
            found += [
                f"version {number} cannot read data written with the new schema: {p}"
                for p in reader_problems(old, new)
            ]
    return found


class _Resolver:
    def __init__(self, reader_names: dict[str, Any], writer_names: dict[str, Any]) -> None:
        self.reader_names = reader_names
        self.writer_names = writer_names
        self._seen: set[tuple[str, str]] = set()  # recursive records are checked once

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:  # noqa: PLR0911 - one rule per type
        reader = _deref(reader, self.reader_names)
        writer = _deref(writer, self.writer_names)
        if isinstance(writer, list):  # every writer branch must be readable
            return [p for branch in writer for p in self.check(reader, branch, path)]
        if isinstance(reader, list):
            if any(not self.check(branch, writer, path) for branch in reader):
                return []
            return [
                (
                    f"{path}: type changed: the reader's union "
                    f"{_describe(reader, self.reader_names)} has no branch for the writer's "
                    f"{_describe(writer, self.writer_names)}"
                )
            ]
        r_kind, w_kind = _kind(reader), _kind(writer)
        if r_kind != w_kind and r_kind not in _PROMOTIONS.get(w_kind, frozenset()):
            return [
                (
                    f"{path}: type changed from {_describe(writer, self.writer_names)} to "
                    f"{_describe(reader, self.reader_names)}"
                )
            ]
        if r_kind in ("record", "error"):
            return self._records(reader, writer, path)
        if r_kind == "enum":
            missing = [s for s in writer.get("symbols", ()) if s not in reader.get("symbols", ())]
            if missing and "default" not in reader:
                return [f"{path}: enum symbols {missing} removed (and the enum has no default)"]
            return []
        if r_kind == "fixed" and reader.get("size") != writer.get("size"):
            return [f"{path}: fixed size changed from {writer.get('size')} to {reader.get('size')}"]
        if r_kind == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]")
        if r_kind == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}")
        return []

    def _records(
        self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
    ) -> list[str]:
        key = (str(reader.get("name")), str(writer.get("name")))
        if key in self._seen:
            return []
        self._seen.add(key)
        short = [str(r.get("name", "")).rsplit(".", 1)[-1] for r in (reader, writer)]
        if short[0] != short[1] and writer.get("name") not in reader.get("aliases", ()):
            return [f"{path}: record name changed from {short[1]} to {short[0]}"]
        written = {f["name"]: f for f in writer.get("fields", ())}
        for f in writer.get("fields", ()):
            for alias in f.get("aliases", ()):
                written.setdefault(alias, f)
        found: list[str] = []
        for field in reader.get("fields", ()):
            name = field["name"]
            match = written.get(name) or next(
                (written[a] for a in field.get("aliases", ()) if a in written), None
            )
            where = f"{path}.{name}"
            if match is None:
                if "default" not in field:
                    found.append(
                        f"field '{where}' was added without a default (a required field): "
                        "data written before it cannot fill it"
                    )
                continue
            found += self.check(field["type"], match["type"], f"field '{where}'")
        return found


def _names(schema: Any, namespace: str = "", into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every named type defined in ``schema``, by full name and by short name."""
    names = {} if into is None else into
    if isinstance(schema, list):
        for branch in schema:
            _names(branch, namespace, names)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED and "name" in schema:
            ns = schema.get("namespace", namespace)
            short = str(schema["name"]).rsplit(".", 1)[-1]
            full = str(schema["name"])
            if "." not in full:
                full = f"{ns}.{short}" if ns else short
            names[full] = schema
            names.setdefault(short, schema)
            namespace = full.rsplit(".", 1)[0] if "." in full else ""
        for field in schema.get("fields", ()):
            _names(field.get("type"), namespace, names)
        for part in ("items", "values"):
            if part in schema:
                _names(schema[part], namespace, names)
        if isinstance(kind, dict | list):
            _names(kind, namespace, names)
    return names


def _deref(schema: Any, names: Mapping[str, Any]) -> Any:
    if isinstance(schema, str) and schema not in _PRIMITIVES:
        return names.get(schema, names.get(schema.rsplit(".", 1)[-1], schema))
    if isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
        return _deref(schema["type"], names)
    if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
        return schema["type"]  # {"type": "long", "logicalType": ...} reads as its base type
    if (
        isinstance(schema, dict)
        and isinstance(schema.get("type"), str)
        and schema["type"] not in _NAMED | {"array", "map"}
    ):
        return _deref(schema["type"], names)  # {"type": "SomeNamedType"}
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict):
        return str(schema.get("type"))
    return "union"


def _type_name(schema: Any, names: Mapping[str, Any]) -> str | None:
    schema = _deref(schema, names)
    return str(schema["name"]) if isinstance(schema, dict) and "name" in schema else None


def _describe(schema: Any, names: Mapping[str, Any]) -> str:
    schema = _deref(schema, names)
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(b, names) for b in schema) + "]"
    if isinstance(schema, dict):
        kind = str(schema.get("type"))
        if "name" in schema:
            return f"{kind} {schema['name']}"
        if kind == "array":
            return f"array<{_describe(schema['items'], names)}>"
        if kind == "map":
            return f"map<{_describe(schema['values'], names)}>"
        return kind
    return str(schema)
