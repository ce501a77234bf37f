"""``eventwire schema``: evolution gated by ``check`` against the real Apicurio registry (exit
1 naming the field), the other commands on Apicurio and on the local file registry, and
one-line errors for what a user can get wrong."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from eventwire.cli.main import app as cli
from eventwire.serialization.registry_file import FileSchemaRegistry
from eventwire.serialization.registry_http import HTTPSchemaRegistry
from eventwire.testing.services import service_url

runner = CliRunner()


def order(*extra: dict[str, Any], amount: str = "int") -> dict[str, Any]:
    fields = [{"name": "order_id", "type": "string"}, {"name": "amount", "type": amount}]
    return {"type": "record", "name": "Order", "fields": fields + list(extra)}


V1 = order()
WITH_DEFAULT = order({"name": "currency", "type": "string", "default": "EUR"})
TYPE_CHANGED = order(amount="string")
REQUIRED_ADDED = order({"name": "currency", "type": "string"})


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, schema in [
        ("v1", V1),
        ("with_default", WITH_DEFAULT),
        ("type_changed", TYPE_CHANGED),
        ("required_added", REQUIRED_ADDED),
    ]:
        out[name] = tmp_path / f"{name}.avsc"
        out[name].write_text(json.dumps(schema, indent=2))
    return out


def schema(*args: str) -> Any:
    return runner.invoke(cli, ["schema", *args])


def set_level(registry: str, subject: str, level: str) -> None:
    async def go() -> None:
        client: Any
        if registry.startswith("http"):
            client = HTTPSchemaRegistry(registry)
        else:
            client = FileSchemaRegistry(registry.removeprefix("file://"))
        async with client:
            await client.set_compatibility_level(subject, level)

    asyncio.run(go())


@pytest.mark.registry
def test_evolution_is_gated_by_check_on_apicurio(files: dict[str, Path]) -> None:
    registry = service_url("registry")
    subject = f"cli-orders-{uuid.uuid4().hex[:10]}-value"
    done = schema("register", subject, str(files["v1"]), "--registry", registry)
    assert done.exit_code == 0, done.output
    assert "version 1" in done.output
    set_level(registry, subject, "BACKWARD")

    ok = schema("check", subject, str(files["with_default"]), "-r", registry)
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("compatible:")
    assert "(BACKWARD)" in ok.output

    changed = schema("check", subject, str(files["type_changed"]), "-r", registry)
    assert changed.exit_code == 1, changed.output
    assert "field 'Order.amount': type changed from int to string" in changed.output

    required = schema("check", subject, str(files["required_added"]), "-r", registry, "--json")
    assert required.exit_code == 1
    verdict = json.loads(required.output)
    assert verdict["compatible"] is False
    assert verdict["level"] == "BACKWARD"
    assert any("'Order.currency' was added without a default" in m for m in verdict["messages"])

    # the compatible change registers as version 2; the refused one cannot be registered
    assert schema("register", subject, str(files["with_default"]), "-r", registry).exit_code == 0
    refused = schema("register", subject, str(files["type_changed"]), "-r", registry)
    assert refused.exit_code == 2
    assert refused.output.count("\n") == 1
    assert "HTTP 409" in refused.output

    listed = json.loads(schema("list", subject, "-r", registry, "--json").output)
    assert listed["versions"] == [1, 2]
    shown = json.loads(schema("show", subject, "-r", registry, "--json", "-v", "1").output)
    assert json.loads(shown["schema"]) == V1
    assert shown["compatibility"] == "BACKWARD"
    diffed = schema("diff", subject, str(files["type_changed"]), "-r", registry)
    assert diffed.exit_code == 0
    assert '+      "type": "string"' in diffed.output
    assert "backward: field 'Order.amount'" in diffed.output


@pytest.mark.parametrize(
    ("level", "change", "compatible"),
    [
        ("FORWARD", "required_added", True),  # old readers skip the new field
        ("FORWARD", "type_changed", False),
        ("FULL", "with_default", True),
        ("FULL", "required_added", False),
        ("BACKWARD_TRANSITIVE", "with_default", True),
        ("NONE", "type_changed", True),
    ],
)
def test_levels_on_the_file_registry(
    files: dict[str, Path], tmp_path: Path, level: str, change: str, compatible: bool
) -> None:
    registry = f"file://{tmp_path / 'schemas.json'}"
    assert schema("register", "s", str(files["v1"]), "-r", registry).exit_code == 0
    set_level(registry, "s", level)
    result = schema("check", "s", str(files[change]), "-r", registry, "--json")
    assert result.exit_code == (0 if compatible else 1), result.output
    assert json.loads(result.output)["compatible"] is compatible


def test_file_registry_from_the_environment(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTWIRE_SCHEMA_REGISTRY_URL", f"file://{tmp_path / 'env.json'}")
    assert schema("register", "a-value", str(files["v1"])).exit_code == 0
    assert schema("list").output.split() == ["a-value"]
    listed = json.loads(schema("list", "--json").output)
    assert listed == {"subjects": ["a-value"], "possibly_capped": False}
    assert "no difference" in schema("diff", "a-value", str(files["v1"])).output


def test_one_line_errors(files: dict[str, Path], tmp_path: Path) -> None:
    missing = schema("check", "s", str(tmp_path / "nope.avsc"), "-r", f"file://{tmp_path}/r.json")
    assert missing.exit_code == 2
    assert missing.output.startswith("eventwire: error: cannot read schema file")
    bad = tmp_path / "bad.avsc"
    bad.write_text('{"type": "record", "fields": 3}')
    invalid = schema("register", "s", str(bad), "-r", f"file://{tmp_path}/r.json")
    assert invalid.exit_code == 2
    assert "not a valid Avro schema" in invalid.output
    down = schema("list", "-r", "http://admin:Sekr1t-pw@127.0.0.1:9/apis")
    assert down.exit_code == 2
    assert down.output.count("\n") == 1
    assert "unavailable" in down.output
    assert "Sekr1t-pw" not in down.output
    wrong = schema("list", "-r", "ftp://x")
    assert wrong.exit_code == 2
    assert "unsupported schema registry URL" in wrong.output
    unknown = schema("register", "s", str(files["v1"]), "--type", "xml", "-r", "x.json")
    assert "unknown schema type 'xml'" in unknown.output
    nothing = schema("show", "nope", "-r", f"file://{tmp_path}/r.json")
    assert nothing.exit_code == 2
    assert "subject 'nope' not found" in nothing.output


def test_a_list_as_long_as_the_usual_server_cap_says_it_may_be_cut_short(tmp_path: Path) -> None:
    from eventwire.serialization.registry import SUBJECT_LIST_CAP, Schema

    path = tmp_path / "many.json"

    async def seed() -> None:
        async with FileSchemaRegistry(str(path)) as client:
            await client.register("s0000", Schema(schema='"string"'))

    def subjects(count: int) -> None:  # copies of the one registered subject, written at once
        data = json.loads(path.read_text())
        data["subjects"] = {f"s{n:04d}": data["subjects"]["s0000"] for n in range(count)}
        path.write_text(json.dumps(data))

    asyncio.run(seed())
    subjects(SUBJECT_LIST_CAP - 1)
    below = schema("list", "--json", "-r", f"file://{path}")
    assert below.exit_code == 0, below.output
    assert json.loads(below.stdout)["possibly_capped"] is False
    assert "warning" not in below.stderr
    subjects(SUBJECT_LIST_CAP)
    at_cap = schema("list", "-r", f"file://{path}")
    assert at_cap.exit_code == 0
    assert len(at_cap.stdout.split()) == SUBJECT_LIST_CAP
    assert "there may be more" in at_cap.stderr
