"""Avro resolution rules, used to name the field at fault when a change is refused."""

from __future__ import annotations

from typing import Any

import pytest

from eventwire.serialization.avro_compat import problems_for, reader_problems
from eventwire.serialization.registry import RegistryError, Schema
from eventwire.serialization.registry_file import FileSchemaRegistry


def record(*fields: dict[str, Any], name: str = "Order") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields)}


ID = {"name": "id", "type": "string"}
AMOUNT_INT = {"name": "amount", "type": "int"}


def test_field_added_with_default_is_backward_compatible() -> None:
    new = record(ID, AMOUNT_INT, {"name": "currency", "type": "string", "default": "EUR"})
    assert problems_for("BACKWARD", new, [record(ID, AMOUNT_INT)]) == []
    assert problems_for("FULL", new, [record(ID, AMOUNT_INT)]) == []


def test_required_field_added_is_named() -> None:
    new = record(ID, AMOUNT_INT, {"name": "currency", "type": "string"})
    [problem] = problems_for("BACKWARD", new, [record(ID, AMOUNT_INT)])
    assert "field 'Order.currency' was added without a default" in problem
    assert problems_for("FORWARD", new, [record(ID, AMOUNT_INT)]) == []  # old readers skip it


def test_type_change_is_named_and_promotions_allowed() -> None:
    [problem] = problems_for(
        "BACKWARD", record(ID, {"name": "amount", "type": "string"}), [record(ID, AMOUNT_INT)]
    )
    assert problem == (
        "new schema cannot read data written with version 1: "
        "field 'Order.amount': type changed from int to string"
    )
    widened = record(ID, {"name": "amount", "type": "long"})
    assert problems_for("BACKWARD", widened, [record(ID, AMOUNT_INT)]) == []
    assert problems_for("FORWARD", widened, [record(ID, AMOUNT_INT)])  # int cannot read long


def test_transitive_levels_look_at_every_version() -> None:
    v1 = record(ID)
    v2 = record(ID, {"name": "n", "type": "int", "default": 0})
    v3 = record({"name": "n", "type": "int", "default": 0})  # drops id, which had no default
    assert problems_for("FORWARD", v3, [v1, v2])
    nested_old = record(ID, {"name": "l", "type": {"type": "array", "items": "int"}})
    nested_new = record(ID, {"name": "l", "type": {"type": "array", "items": "string"}})
    [problem] = problems_for("BACKWARD_TRANSITIVE", nested_new, [nested_old, nested_old])[:1]
    assert "field 'Order.l'[]" in problem


@pytest.mark.parametrize(
    ("reader", "writer", "says"),
    [
        (
            {"type": "enum", "name": "S", "symbols": ["A"]},
            {"type": "enum", "name": "S", "symbols": ["A", "B"]},
            "enum symbols ['B'] removed",
        ),
        (["null", "string"], "int", "has no branch"),
        (
            {"type": "fixed", "name": "F", "size": 4},
            {"type": "fixed", "name": "F", "size": 8},
            "fixed size",
        ),
        (record(ID, name="A"), record(ID, name="B"), "record name changed from B to A"),
        ({"type": "map", "values": "int"}, {"type": "map", "values": "string"}, "{}"),
    ],
)
def test_other_rules(reader: Any, writer: Any, says: str) -> None:
    assert says in " ".join(reader_problems(reader, writer))


def test_unions_logical_types_and_named_references() -> None:
    assert reader_problems(["null", "string"], ["null", "string"]) == []
    assert reader_problems("long", {"type": "long", "logicalType": "timestamp-millis"}) == []
    line = {"type": "record", "name": "Line", "fields": [{"name": "sku", "type": "string"}]}
    old = record({"name": "a", "type": line}, {"name": "b", "type": "Line"})
    assert reader_problems(old, old) == []
    assert reader_problems(["null", "int"], ["null", "string"])  # the string branch fails


async def test_file_registry_enforces_avro_levels(tmp_path: Any) -> None:
    registry = FileSchemaRegistry(tmp_path / "r.json")
    import json

    v1 = Schema(schema=json.dumps(record(ID, AMOUNT_INT)))
    first = await registry.register("s", v1)
    assert await registry.register("s", v1) == first
    assert await registry.compatibility_level("s") == "BACKWARD"
    bad = Schema(schema=json.dumps(record(ID, {"name": "amount", "type": "string"})))
    with pytest.raises(RegistryError, match=r"Order\.amount"):
        await registry.register("s", bad)
    await registry.set_compatibility_level("s", "NONE")
    assert await registry.register("s", bad) == first + 1
    assert await registry.versions("s") == [1, 2]
    assert (await registry.version("s", "latest")).schema == bad
    assert (await registry.lookup("s", v1)).version == 1
    reopened = FileSchemaRegistry(tmp_path / "r.json")  # it is all in the file
    assert await reopened.schema_by_id(first) == v1
    assert await reopened.subjects() == ["s"]
