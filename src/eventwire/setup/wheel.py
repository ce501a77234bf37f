"""Setup layer: a wheel of the eventwire that runs ``init``, for the project to depend on.

eventwire is not on a package index the generated project can trust, so the project
depends on this wheel by a direct reference (never on a same-named package from an index:
dependency confusion). The wheel is packed from the installed package and its metadata,
byte for byte the same on every run (fixed timestamps, sorted entries), so ``init --update``
reports it unchanged until eventwire itself changes. Works for regular and editable installs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from importlib import metadata
from pathlib import Path

import eventwire
from eventwire.core.errors import ConfigurationError

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_WHEEL = "Wheel-Version: 1.0\nGenerator: eventwire init\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def wheel_name() -> str:
    """The file name of the wheel ``build_wheel`` makes."""
    return f"eventwire-{_distribution().version}-py3-none-any.whl"


def _distribution() -> metadata.Distribution:
    try:
        return metadata.distribution("eventwire")
    except metadata.PackageNotFoundError:
        raise ConfigurationError(
            "eventwire's package metadata is missing (run from a source tree?): install it "
            "with pip install . so that init can package it for the new project"
        ) from None


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel() -> bytes:
    """The wheel's bytes: every file of the ``eventwire`` package plus its dist-info."""
    dist = _distribution()
    package = Path(eventwire.__file__).resolve().parent
    files: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[f"eventwire/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    info = f"eventwire-{dist.version}.dist-info"
    files[f"{info}/METADATA"] = (dist.read_text("METADATA") or "").encode("utf-8")
    files[f"{info}/WHEEL"] = _WHEEL.encode("utf-8")
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        files[f"{info}/entry_points.txt"] = entry_points.encode("utf-8")
    record = [_record_line(name, data) for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode("utf-8")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return buffer.getvalue()
