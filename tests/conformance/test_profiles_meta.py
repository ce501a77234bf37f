"""Tests: every catalog profile has a conformance class, and the suite's docs map every case."""

from __future__ import annotations

import ast
from pathlib import Path

import eventwire.testing.conformance as conformance_pkg
from eventwire.brokers.catalog import profiles
from eventwire.testing.conformance.reconnect_cases import ReconnectCases
from eventwire.testing.conformance.suite import capability_map, case_names

HERE = Path(__file__).resolve().parent


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _profile_of(cls: ast.ClassDef) -> str:
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if "PROFILE" in names and isinstance(stmt.value, ast.Constant):
                return str(stmt.value.value)
    return ""


def covered_profiles() -> dict[str, list[str]]:
    """Profile name -> conformance classes in tests/conformance/test_*.py.

    Read from the source, not imported: a module whose client library or broker is missing
    still counts, and nothing is imported twice. The convention (conftest.py) is a direct
    ``ConformanceSuite`` subclass with a literal ``PROFILE = "<name>"``.
    """
    found: dict[str, list[str]] = {}
    for path in sorted(HERE.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                _base_name(base) == "ConformanceSuite" for base in node.bases
            ):
                found.setdefault(_profile_of(node), []).append(f"{path.name}::{node.name}")
    return found


def test_every_catalog_profile_has_a_conformance_class() -> None:
    covered = covered_profiles()
    missing = [p.name for p in profiles() if p.name not in covered]
    assert not missing, (
        f"catalog profiles without a conformance class: {missing}; add a "
        "ConformanceSuite subclass with PROFILE = '<name>' (see tests/conformance/conftest.py)"
    )


def test_every_conformance_class_names_a_catalog_profile() -> None:
    known = {p.name for p in profiles()}
    unknown = {name: where for name, where in covered_profiles().items() if name not in known}
    assert not unknown, f"conformance classes with an unknown or empty PROFILE: {unknown}"


def test_memory_is_covered_by_this_convention() -> None:
    assert "test_memory.py::TestMemoryConformance" in covered_profiles()["memory"]


def test_suite_docs_list_every_case() -> None:
    doc = conformance_pkg.__doc__ or ""
    # Reconnect cases are documented in reconnect_cases.py, which their author owns.
    own = [n for n in case_names() if n not in dir(ReconnectCases)]
    undocumented = [name for name in own if name not in doc]
    assert not undocumented, f"cases missing from the conformance docs: {undocumented}"


def test_capability_map_names_real_cases() -> None:
    cases = set(case_names())
    for requirement, names in capability_map().items():
        assert requirement
        assert set(names) <= cases
