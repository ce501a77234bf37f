"""Serialization layer: payload -> (body, content type) on publish, body -> handler argument.

The decoder is chosen once per handler from its first parameter's annotation:

* a pydantic ``BaseModel`` subclass -> ``model_validate_json``
* ``dict`` / ``list`` / ``Any`` / no annotation -> JSON (orjson), type-checked for dict/list
* ``bytes`` -> the raw body; ``str`` -> the body as UTF-8 text
* ``eventwire.Message`` -> the raw ``Message``
* any other type (``list[Order]``, ``dict[str, int]``, a TypedDict...) -> pydantic ``TypeAdapter``
* ``Annotated[T, codec]`` with a schema codec (Avro, Protobuf, JSON Schema) -> that codec's
  async decoder into ``T`` (the runtime awaits it: the writer's schema may need a registry
  call); a generated Protobuf message class alone -> the Confluent wire format decoded with it

Failures raise ``DecodeError`` (the body is not what it claims: bad JSON, bad UTF-8) or its
subclass ``ValidationError`` (well-formed but not a valid instance); the runtime dead-letters
both at once with ``reason`` taken from the exception class.

The message's content type is checked first. JSON and typed decoders read JSON
(``application/json``, ``*/*+json``), text (``text/*``: JSON is text) and bodies whose producer
named no type (``application/octet-stream``, the envelope default, or none); ``str`` reads the
same; ``bytes`` and ``Message`` take anything. Any other type (``application/x-pickle``...) is
refused with ``UnsupportedContentTypeError`` (reason ``unsupported content type``) unless a
codec was registered for it with ``register_content_type``: then its ``loads`` turns the body
into the Python value the handler's type is validated from.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias, cast

import pydantic

from eventwire.core.errors import ConfigurationError, DecodeError, MessageError, ValidationError
from eventwire.core.message import DEFAULT_CONTENT_TYPE, Message
from eventwire.serialization import json

TEXT_CONTENT_TYPE: Final = "text/plain; charset=utf-8"
JSON_CONTENT_TYPE: Final = json.JSON_CONTENT_TYPE

Decoder: TypeAlias = Callable[[Message], Any]
Loads: TypeAlias = Callable[[bytes], Any]
# What a schema codec's ``decoder_for`` returns; ``inspect.iscoroutinefunction`` tells them apart.
AsyncDecoder: TypeAlias = Callable[[Message], Awaitable[Any]]

_NO_ANNOTATION: Final = object()


class UnsupportedContentTypeError(DecodeError):
    """The message's content type is one no decoder of its handler (nor a registered codec)
    can read: decoding it as JSON anyway would hand the handler nonsense."""

    reason = "unsupported content type"


# Exact content types seen on nearly every message, answered without parsing.
_READABLE_FAST: Final = frozenset(
    {"", DEFAULT_CONTENT_TYPE, JSON_CONTENT_TYPE, "application/json", TEXT_CONTENT_TYPE}
)
_CODECS: dict[str, Loads] = {}


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def register_content_type(content_type: str, loads: Loads) -> None:
    """Let JSON and typed handlers read bodies of ``content_type`` (its parameters ignored):
    ``loads(body)`` returns the value (dict, list...) the handler's type is validated from."""
    _CODECS[_media_type(content_type)] = loads


def _readable_as_text(content_type: str) -> bool:
    if content_type in _READABLE_FAST:
        return True
    media = _media_type(content_type)
    return (
        media in ("", DEFAULT_CONTENT_TYPE, "application/json")
        or media.endswith("+json")
        or media.startswith("text/")
    )


def _foreign_loads(message: Message) -> Loads | None:
    """None when the body is read as JSON text, else the registered codec of its type;
    ``UnsupportedContentTypeError`` when it has none."""
    content_type = message.content_type
    if _readable_as_text(content_type):
        return None
    loads = _CODECS.get(_media_type(content_type))
    if loads is None:
        raise UnsupportedContentTypeError(
            f"no codec reads content type {content_type[:100]!r} (register one with "
            "eventwire.serialization.codec.register_content_type)"
        )
    return loads


def encode_payload(payload: object) -> tuple[bytes, str]:
    """The wire body and content type for ``payload``; ``MessageError`` for unsupported types."""
    if isinstance(payload, pydantic.BaseModel):
        return payload.model_dump_json().encode("utf-8"), JSON_CONTENT_TYPE
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload), DEFAULT_CONTENT_TYPE
    if isinstance(payload, str):
        return payload.encode("utf-8"), TEXT_CONTENT_TYPE
    if isinstance(payload, dict | list):
        return json.dumps(payload), JSON_CONTENT_TYPE
    raise MessageError(
        f"cannot publish a {type(payload).__name__}: pass a pydantic model, dict, list, "
        "str or bytes"
    )


def decoder_for(annotation: object = _NO_ANNOTATION) -> Decoder:
    """The function turning a delivered ``Message`` into the handler's first argument."""
    schema_decoder = _schema_decoder(annotation)
    if schema_decoder is not None:
        return schema_decoder
    for candidates, decoder in _FIXED:
        if any(annotation is c for c in candidates):
            return decoder
    if annotation is dict or annotation is list:
        return _json_of_type(annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return _model_decoder(annotation)
    return _adapter_decoder(annotation)


def _schema_decoder(annotation: object) -> Decoder | None:
    """A schema codec's decoder when the annotation asks for one; no codec library is
    imported unless it does (``import eventwire`` stays light)."""
    if typing.get_origin(annotation) is typing.Annotated:
        target, *metadata = typing.get_args(annotation)
        for item in metadata:
            make = getattr(item, "decoder_for", None)
            if callable(make):
                return cast("Decoder", make(target))
        return decoder_for(target)  # other metadata: decoded as the bare type, as always
    if isinstance(annotation, type) and any(
        base.__module__.startswith("google.protobuf") and base.__name__ == "Message"
        for base in annotation.__mro__[1:]
    ):
        from eventwire.serialization.protobuf import unregistered_decoder

        return unregistered_decoder(annotation)
    return None


def _identity(message: Message) -> Message:
    return message


def _decode_bytes(message: Message) -> bytes:
    return message.body


def _decode_text(message: Message) -> str:
    if not _readable_as_text(message.content_type):
        raise UnsupportedContentTypeError(
            f"a str handler reads text, not content type {message.content_type[:100]!r}"
        )
    try:
        return message.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"body is not valid UTF-8 text: {exc}") from exc


def _decode_json_any(message: Message) -> Any:
    loads = _foreign_loads(message)
    return json.loads(message.body) if loads is None else loads(message.body)


def _json_of_type(expected: type) -> Decoder:
    def decode(message: Message) -> Any:
        value = _decode_json_any(message)
        if not isinstance(value, expected):
            raise ValidationError(
                f"expected a JSON {'object' if expected is dict else 'array'}, "
                f"got {type(value).__name__}"
            )
        return value

    return decode


def _translate(exc: pydantic.ValidationError) -> DecodeError:
    # pydantic reports unparsable JSON (and bad UTF-8) as a validation error of type
    # "json_invalid"; that is a decode problem, not a schema problem, for the DLQ reason.
    if any(err["type"] == "json_invalid" for err in exc.errors()):
        return DecodeError(f"body is not valid JSON: {exc}")
    return ValidationError(str(exc))


_FIXED: Final[tuple[tuple[tuple[object, ...], Decoder], ...]] = (
    ((_NO_ANNOTATION, Any, object), _decode_json_any),
    ((Message,), _identity),
    ((bytes,), _decode_bytes),
    ((str,), _decode_text),
)


def _model_decoder(model: type[pydantic.BaseModel]) -> Decoder:
    # The validator itself (what model_validate_json calls): this runs for every message.
    validate_json = model.__pydantic_validator__.validate_json

    def decode(message: Message) -> Any:
        try:
            if message.content_type in _READABLE_FAST:
                return validate_json(message.body)
            loads = _foreign_loads(message)
            if loads is None:
                return validate_json(message.body)
            return model.model_validate(loads(message.body))
        except pydantic.ValidationError as exc:
            raise _translate(exc) from exc

    return decode


def _adapter_decoder(annotation: object) -> Decoder:
    try:
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(cast("Any", annotation))
    except pydantic.PydanticSchemaGenerationError as exc:
        raise ConfigurationError(f"cannot decode messages into {annotation!r}: {exc}") from exc

    def decode(message: Message) -> Any:
        loads = _foreign_loads(message)
        try:
            if loads is None:
                return adapter.validate_json(message.body)
            return adapter.validate_python(loads(message.body))
        except pydantic.ValidationError as exc:
            raise _translate(exc) from exc

    return decode
