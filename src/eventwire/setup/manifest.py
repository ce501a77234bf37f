"""Setup layer: the manifest of generated files and their hashes, so updates spare user edits."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from eventwire.core.errors import ConfigurationError

MANIFEST_NAME: Final = ".eventwire-manifest.json"
_SCHEMA: Final = 1


class Owner(StrEnum):
    """Who owns a generated file after it is written."""

    GENERATOR = "generator"  # refreshed by `init --update` unless the user changed it
    USER = "user"  # written once, never touched again


def digest(content: bytes) -> str:
    """The hash the manifest records for a file's content."""
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """What `init` generated last, with the options needed to generate it again."""

    name: str
    package: str
    broker: str
    pattern: str
    message_format: str
    monitoring: bool
    generator_version: str
    files: dict[str, tuple[Owner, str]] = field(default_factory=dict)  # path -> (owner, sha256)

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "schema": _SCHEMA,
            "name": self.name,
            "package": self.package,
            "broker": self.broker,
            "pattern": self.pattern,
            "format": self.message_format,
            "monitoring": self.monitoring,
            "generator_version": self.generator_version,
            "files": {
                path: {"owner": owner.value, "sha256": sha}
                for path, (owner, sha) in sorted(self.files.items())
            },
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        """The manifest in ``folder``, ``None`` if there is none; a one-line error if corrupt."""
        path = folder / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files = {
                str(p): (Owner(entry["owner"]), str(entry["sha256"]))
                for p, entry in data["files"].items()
            }
            return cls(
                name=str(data["name"]),
                package=str(data["package"]),
                broker=str(data["broker"]),
                pattern=str(data["pattern"]),
                message_format=str(data.get("format", "json")),
                monitoring=bool(data.get("monitoring", True)),
                generator_version=str(data.get("generator_version", "")),
                files=files,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ConfigurationError(
                f"{path} is unreadable or corrupt: restore it or delete the folder and run init"
            ) from None
