"""Setup layer: write a generated tree all-or-nothing, or refresh it without losing user edits."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from eventwire.core.errors import ConfigurationError
from eventwire.setup.manifest import MANIFEST_NAME, Manifest, Owner, digest


@dataclass(frozen=True, slots=True, kw_only=True)
class FileOutcome:
    """What happened to one file."""

    path: str
    status: str  # created, recreated (was deleted), updated, unchanged, kept (user-changed),
    # kept (user-owned), removed (no longer generated), kept (no longer generated)
    lines: int


def _lines(content: bytes) -> int:
    """Lines of a text file; -1 for a binary one (the wheel), which has none to count."""
    if b"\0" in content:
        return -1
    return content.count(b"\n") + (0 if content.endswith(b"\n") or not content else 1)


def _os_error(where: Path, exc: OSError) -> ConfigurationError:
    reason = (exc.strerror or type(exc).__name__).lower()
    return ConfigurationError(f"cannot write to {where}: {reason}")


def _umask_mode() -> int:
    # mkdtemp makes 0700 folders; a scaffolded service should get the usual permissions.
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def create_tree(
    target: Path, files: dict[str, tuple[bytes, Owner]], manifest: Manifest
) -> list[FileOutcome]:
    """Write ``files`` into a new ``target`` via a sibling temp folder renamed into place."""
    if target.exists() and not target.is_dir():
        raise ConfigurationError(f"{target} exists and is not a folder: choose another --dir")
    if target.is_dir() and any(target.iterdir()):
        raise ConfigurationError(
            f"{target} is not empty: use --update to refresh generated files, or another --dir"
        )
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise _os_error(parent, exc) from None
    try:
        hashes: dict[str, tuple[Owner, str]] = {}
        for rel, (content, owner) in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            hashes[rel] = (owner, digest(content))
        (staging / MANIFEST_NAME).write_text(replace(manifest, files=hashes).to_json())
        staging.chmod(_umask_mode())
        if target.is_dir():
            target.rmdir()  # empty (checked above); rename needs the name free
        staging.rename(target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise _os_error(target, exc) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [FileOutcome(path=r, status="created", lines=_lines(c)) for r, (c, _) in files.items()]


def _write_atomic(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o666 & _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _decide(
    path: Path, rel: str, content: bytes, owner: Owner, old: Manifest, *, refresh_user: bool
) -> tuple[str, bytes | None, str]:
    """(status, content to write or None, hash to record) for one file."""
    new_hash = digest(content)
    previous = old.files.get(rel)
    if not path.exists():
        # A file the manifest knows was deleted since: put back, and said so.
        return ("recreated (was deleted)" if previous else "created"), content, new_hash
    current = path.read_bytes()
    current_hash = digest(current)
    if owner is Owner.USER and not refresh_user:
        return "kept (user-owned)", None, previous[1] if previous else current_hash
    if current_hash == new_hash:
        return "unchanged", None, new_hash
    if previous is not None and previous[1] == current_hash:
        return "updated", content, new_hash
    # Changed since we wrote it (or never ours): keep the user's version and say so.
    return "kept (user-changed)", None, previous[1] if previous else new_hash


def _drop_stale(
    target: Path,
    old: Manifest,
    files: dict[str, tuple[bytes, Owner]],
    hashes: dict[str, tuple[Owner, str]],
) -> list[FileOutcome]:
    """Files the last run generated and this one does not (a switch of format, say): a
    generated one the user never changed is removed, anything else is kept and said so."""
    outcomes = []
    for rel, (owner, recorded) in sorted(old.files.items()):
        path = target / rel
        if rel in files or not path.is_file():
            continue
        if owner is Owner.GENERATOR and digest(path.read_bytes()) == recorded:
            path.unlink()
            outcomes.append(FileOutcome(path=rel, status="removed (no longer generated)", lines=0))
            continue
        hashes[rel] = (owner, recorded)  # still tracked: a later run may generate it again
        outcomes.append(
            FileOutcome(
                path=rel, status="kept (no longer generated)", lines=_lines(path.read_bytes())
            )
        )
    return outcomes


def update_tree(
    target: Path,
    files: dict[str, tuple[bytes, Owner]],
    manifest: Manifest,
    *,
    refresh_user_files: set[str] | frozenset[str] = frozenset(),
) -> list[FileOutcome]:
    """Refresh generator-owned files in ``target``; never overwrite a file the user changed.

    ``refresh_user_files`` (a broker or pattern switch) are user-owned files that depend on
    what changed: refreshed like generated ones when the user has not edited them.
    """
    old = Manifest.read(target) if target.is_dir() else None
    if old is None:
        raise ConfigurationError(
            f"{target} has no {MANIFEST_NAME}: --update only refreshes a folder made by init"
        )
    try:  # refuse before touching anything if the folder is not writable
        probe_fd, probe = tempfile.mkstemp(dir=target)
        os.close(probe_fd)
        os.unlink(probe)
    except OSError as exc:
        raise _os_error(target, exc) from None
    plans = []
    for rel, (content, owner) in files.items():
        path = target / rel
        refresh = rel in refresh_user_files
        status, to_write, recorded = _decide(path, rel, content, owner, old, refresh_user=refresh)
        plans.append((rel, path, status, to_write, owner, recorded))
    outcomes: list[FileOutcome] = []
    hashes: dict[str, tuple[Owner, str]] = {}
    try:
        for rel, path, status, to_write, owner, recorded in plans:
            if to_write is not None:
                _write_atomic(path, to_write)
            hashes[rel] = (owner, recorded)
            outcomes.append(FileOutcome(path=rel, status=status, lines=_lines(path.read_bytes())))
        outcomes += _drop_stale(target, old, files, hashes)
        _write_atomic(
            target / MANIFEST_NAME, replace(manifest, files=hashes).to_json().encode("utf-8")
        )
    except OSError as exc:
        raise _os_error(target, exc) from None
    return outcomes
