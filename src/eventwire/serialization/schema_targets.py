"""Serialization layer: a decoded schema value turned into the handler's annotated type.

``dict`` / ``Any`` / no annotation take the decoded value as it is; a pydantic model is
validated from it (a failure is a ``ValidationError``, DLQ reason ``validation-error``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic

from eventwire.core.errors import ConfigurationError, ValidationError


def converter_for(annotation: object) -> Callable[[Any], Any]:
    """How a decoded dict becomes the handler's argument."""
    if annotation in (dict, Any, object, None):
        return _as_is
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        model = annotation

        def to_model(value: Any) -> Any:
            try:
                return model.model_validate(value)
            except pydantic.ValidationError as exc:
                raise ValidationError(str(exc)) from exc

        return to_model
    raise ConfigurationError(
        f"a schema codec decodes into dict or a pydantic model, not {annotation!r}"
    )


def _as_is(value: Any) -> Any:
    return value
