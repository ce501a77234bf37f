"""Serialization layer: ``FileSchemaRegistry``, a schema registry kept in one JSON file.

For development and tests with no server: same ids-are-global, versions-per-subject model as
the REST registries, and the default level BACKWARD. Compatibility is enforced for Avro (by
the rules in ``avro_compat``); Protobuf and JSON Schema versions are accepted unchecked, and
``check_compatibility`` says so in its messages. Writes replace the file atomically; one
process at a time should write it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from eventwire.core.errors import ConfigurationError
from eventwire.serialization.avro_compat import problems_for
from eventwire.serialization.registry import (
    Compatibility,
    RegisteredSchema,
    RegistryError,
    Schema,
    SchemaNotFoundError,
    SchemaReference,
    check_level,
)

DEFAULT_LEVEL: Final = "BACKWARD"


class FileSchemaRegistry:
    """The ``SchemaRegistry`` protocol over a JSON file (created on first write)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<FileSchemaRegistry {self.path}>"

    async def __aenter__(self) -> FileSchemaRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        return None

    async def register(self, subject: str, schema: Schema) -> int:
        async with self._lock:
            data = self._load()
            versions = data["subjects"].setdefault(subject, [])
            for schema_id in versions:
                if _same(data["schemas"][str(schema_id)], schema):
                    return int(schema_id)
            verdict = self._verdict(data, subject, schema)
            if not verdict.compatible:
                raise RegistryError(
                    f"schema is incompatible with subject {subject!r} ({verdict.level}): "
                    + "; ".join(verdict.messages),
                    status=409,
                )
            schema_id = next(
                (int(i) for i, s in data["schemas"].items() if _same(s, schema)),
                len(data["schemas"]) + 1,
            )
            data["schemas"][str(schema_id)] = _dump(schema)
            versions.append(schema_id)
            self._save(data)
            return schema_id

    async def lookup(self, subject: str, schema: Schema) -> RegisteredSchema:
        data = self._load()
        for number, schema_id in enumerate(self._versions(data, subject), 1):
            if _same(data["schemas"][str(schema_id)], schema):
                return RegisteredSchema(
                    subject=subject, version=number, schema_id=schema_id, schema=schema
                )
        raise SchemaNotFoundError(f"schema not registered under subject {subject!r}", status=404)

    async def schema_by_id(self, schema_id: int) -> Schema:
        found = self._load()["schemas"].get(str(schema_id))
        if found is None:
            raise SchemaNotFoundError(f"schema {schema_id} not found", status=404, code=40403)
        return _schema(found)

    async def version(self, subject: str, version: int | Literal["latest"]) -> RegisteredSchema:
        data = self._load()
        ids = self._versions(data, subject)
        number = len(ids) if version == "latest" else int(version)
        if not 1 <= number <= len(ids):
            raise SchemaNotFoundError(
                f"subject {subject!r} has no version {version}", status=404, code=40402
            )
        schema_id = ids[number - 1]
        return RegisteredSchema(
            subject=subject,
            version=number,
            schema_id=schema_id,
            schema=_schema(data["schemas"][str(schema_id)]),
        )

    async def subjects(self) -> list[str]:
        return sorted(s for s, ids in self._load()["subjects"].items() if ids)

    async def versions(self, subject: str) -> list[int]:
        return list(range(1, len(self._versions(self._load(), subject)) + 1))

    async def compatibility_level(self, subject: str) -> str:
        config = self._load()["config"]
        return str(config.get(subject, config.get("", DEFAULT_LEVEL)))

    async def set_compatibility_level(self, subject: str, level: str) -> None:
        async with self._lock:
            data = self._load()
            data["config"][subject] = check_level(level)
            self._save(data)

    async def check_compatibility(self, subject: str, schema: Schema) -> Compatibility:
        return self._verdict(self._load(), subject, schema)

    # -- the file -------------------------------------------------------------------------

    def _verdict(self, data: dict[str, Any], subject: str, schema: Schema) -> Compatibility:
        config = data["config"]
        level = str(config.get(subject, config.get("", DEFAULT_LEVEL)))
        ids = data["subjects"].get(subject) or []
        if not ids:
            return Compatibility(compatible=True, level=level, messages=("first version",))
        if schema.schema_type != "AVRO":
            return Compatibility(
                compatible=True,
                level=level,
                messages=("not checked: the file registry checks Avro schemas only",),
            )
        previous = [
            _parse_json(data["schemas"][str(i)]["schema"])
            for i in ids
            if data["schemas"][str(i)].get("schemaType", "AVRO") == "AVRO"
        ]
        found = problems_for(level, _parse_json(schema.schema), previous)
        return Compatibility(compatible=not found, level=level, messages=tuple(found))

    def _versions(self, data: dict[str, Any], subject: str) -> list[int]:
        ids = data["subjects"].get(subject)
        if not ids:
            raise SchemaNotFoundError(f"subject {subject!r} not found", status=404, code=40401)
        return [int(i) for i in ids]

    def _load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {"schemas": {}, "subjects": {}, "config": {}}
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read schema registry file {self.path}: {exc}"
            ) from exc
        try:
            data = orjson.loads(raw)
            for part in ("schemas", "subjects", "config"):
                data.setdefault(part, {})
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise ConfigurationError(
                f"schema registry file {self.path} is not a registry file (JSON object): {exc}"
            ) from exc
        return dict(data)

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _dump(schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {"schema": schema.schema, "schemaType": schema.schema_type}
    if schema.references:
        out["references"] = [
            {"name": r.name, "subject": r.subject, "version": r.version} for r in schema.references
        ]
    return out


def _schema(stored: dict[str, Any]) -> Schema:
    return Schema(
        schema=stored["schema"],
        schema_type=stored.get("schemaType", "AVRO"),
        references=tuple(SchemaReference(**r) for r in stored.get("references", ())),
    )


def _same(stored: dict[str, Any], schema: Schema) -> bool:
    return _schema(stored) == schema


def _parse_json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"stored Avro schema is not JSON: {exc}") from exc
