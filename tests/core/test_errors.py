"""Architecture tests: every public exception class eventwire defines is an ``EventwireError``."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import eventwire
from eventwire.brokers._support.envelope import EnvelopeError
from eventwire.core.errors import DecodeError, EventwireError
from eventwire.reliability.idempotency import EffectEndedTransactionError

SRC = Path(eventwire.__file__).parent
BUILTIN_EXCEPTIONS = frozenset(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
)
# Outside the tree on purpose, each with its reason.
OUTSIDE = {
    "core/errors.py": {"EventwireError"},  # the root itself
    "cli/errors.py": {"CLIError"},  # the CLI's exit signal: caught by the CLI, never escapes
}


def _base_names(node: ast.ClassDef) -> set[str]:
    return {
        base.id if isinstance(base, ast.Name) else base.attr
        for base in node.bases
        if isinstance(base, ast.Name | ast.Attribute)
    }


def test_no_public_exception_class_hangs_off_a_builtin_exception_alone() -> None:
    # Private control-flow exceptions (``_Stopping``) never leave their module; public ones
    # must be catchable as EventwireError, so none may root itself in Exception/RuntimeError.
    strays = []
    for path in sorted(SRC.rglob("*.py")):
        where = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = _base_names(node)
            if not bases & BUILTIN_EXCEPTIONS or node.name in OUTSIDE.get(where, set()):
                continue
            if not any(name.endswith("Error") and name not in BUILTIN_EXCEPTIONS for name in bases):
                strays.append(f"{where}: {node.name}({', '.join(sorted(bases))})")
    assert not strays, "exception classes outside the EventwireError tree: " + "; ".join(strays)


def test_the_classes_defined_outside_core_join_the_tree() -> None:
    assert issubclass(EnvelopeError, DecodeError)
    assert issubclass(EffectEndedTransactionError, EventwireError)
    assert issubclass(EffectEndedTransactionError, RuntimeError)  # as caught before
