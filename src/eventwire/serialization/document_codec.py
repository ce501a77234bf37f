"""Serialization layer: ``DocumentCodec``, the skeleton of codecs whose schema is one JSON document.

Avro (``.avsc``) and JSON Schema share it: the schema is given as a dict, a JSON file, or a
pydantic model; it is compiled once for the codec's library and registered as its JSON text.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any, ClassVar, TypeVar

import orjson
import pydantic

from eventwire.core.errors import ConfigurationError
from eventwire.serialization.registry import Schema, SchemaRegistry
from eventwire.serialization.schema_codec import (
    SchemaCodec,
    SubjectName,
    read_json_schema_file,
    topic_subject,
)

W = TypeVar("W")  # a writer schema, parsed for this codec's library

DocumentSource = str | os.PathLike[str] | dict[str, Any] | list[Any] | type[pydantic.BaseModel]


class DocumentCodec(SchemaCodec[W]):
    """A ``SchemaCodec`` built from one JSON schema document; subclasses compile it."""

    document_name: ClassVar[str]  # "Avro schema", "JSON Schema": in error messages
    document_article: ClassVar[str]  # "an", "a"
    in_memory_types: ClassVar[tuple[type, ...]]  # what is taken as the document itself

    def __init__(
        self,
        schema: DocumentSource,
        registry: SchemaRegistry,
        *,
        subject: SubjectName = topic_subject,
        auto_register: bool = True,
    ) -> None:
        super().__init__(registry, subject=subject, auto_register=auto_register)
        self.model = schema if isinstance(schema, type) else None
        raw = self._load(schema)
        self._compile(raw)
        self._schema = Schema(schema=orjson.dumps(raw).decode(), schema_type=self.schema_type)

    @property
    def schema(self) -> Schema:
        return self._schema

    @abstractmethod
    def _compile(self, raw: Any) -> None:
        """Ready ``raw`` for encoding; ``ConfigurationError`` if it is not a valid schema."""

    @abstractmethod
    def _from_model(self, model: type[pydantic.BaseModel]) -> Any:
        """The schema document a pydantic model stands for."""

    def _load(self, schema: DocumentSource) -> Any:
        if isinstance(schema, type):
            if not issubclass(schema, pydantic.BaseModel):
                raise ConfigurationError(
                    f"{self.document_article} {self.document_name} cannot come from {schema!r}"
                )
            return self._from_model(schema)
        if isinstance(schema, self.in_memory_types):
            return schema
        return read_json_schema_file(schema, self.document_name)  # type: ignore[arg-type]
