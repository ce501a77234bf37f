"""Setup tests: the generated project installs in a fresh venv by its README alone.

``pip install .`` of this checkout builds an eventwire that works; its ``eventwire init``
writes a project that depends on eventwire by a direct reference to the wheel it packed
(never by a name an index could serve), and that project's own tests pass in a fresh venv
holding exactly the dependencies it declares (the metrics extra included).
"""

from __future__ import annotations

import re
import subprocess
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from eventwire.setup import scaffold, wheel

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(900)


def _venv(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    return where / "bin"


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False,
        timeout=timeout, env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )  # fmt: skip
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_project_depends_on_its_own_wheel_never_on_an_index_name(tmp_path: Path) -> None:
    plan = scaffold.plan_service(
        name="pinned-service", broker="rabbitmq", pattern="work-queue", directory=tmp_path / "p"
    )
    scaffold.write_service(plan)
    project = tomllib.loads((tmp_path / "p" / "pyproject.toml").read_text())
    deps = project["project"]["dependencies"]
    eventwire = [d for d in deps if d.startswith("eventwire")]
    assert eventwire == [
        f"eventwire[metrics,postgres,rabbitmq] @ {{root:uri}}/wheels/{wheel.wheel_name()}"
    ]
    readme = (tmp_path / "p" / "README.md").read_text()
    assert "pypi.org" not in readme  # no link to an index page for a name nobody holds
    assert "replace the direct reference" in readme  # how to switch to an index release
    packed = tmp_path / "p" / "wheels" / wheel.wheel_name()
    with zipfile.ZipFile(packed) as archive:
        names = set(archive.namelist())
        record = archive.read(next(n for n in names if n.endswith("dist-info/RECORD"))).decode()
    assert "eventwire/setup/templates/consumer.py.j2" in names
    assert "eventwire/py.typed" in names
    assert len(record.splitlines()) == len(names)
    assert packed.read_bytes() == wheel.build_wheel(), "the same bytes every time"


@pytest.fixture(scope="module")
def installed_eventwire(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``pip install .`` of this checkout (not editable: a built wheel)."""
    tool = _venv(tmp_path_factory.mktemp("tool") / "venv")
    _run(tool / "python", "-m", "pip", "install", "-q", REPO)
    assert re.search(r"\d+\.\d+", _run(tool / "eventwire", "--version"))
    return tool


# One pattern per profile keeps this to six installs; the e2e covers every pattern.
FRESH = [
    ("rabbitmq", "work-queue"),
    ("kafka", "pub-sub"),
    ("nats", "event-streaming"),
    ("nats-core", "work-queue"),
    ("redis", "event-streaming"),
    ("redis-pubsub", "pub-sub"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("broker", "pattern"), FRESH)
def test_init_from_the_installed_eventwire_then_a_fresh_venv_passes_its_tests(
    installed_eventwire: Path, tmp_path: Path, broker: str, pattern: str
) -> None:
    root = tmp_path / "fresh-service"
    _run(
        installed_eventwire / "eventwire", "init", "fresh-service", "--broker", broker,
        "--pattern", pattern, "--dir", root, cwd=tmp_path,
    )  # fmt: skip
    service = _venv(tmp_path / "service-venv")
    # What the generated README says, and nothing else.
    _run(service / "python", "-m", "pip", "install", "-q", "-e", ".[dev]", cwd=root)
    out = _run(service / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=root)
    assert " passed" in out
    assert "failed" not in out
    listed = _run(service / "python", "-m", "pip", "list", "--format=freeze")
    assert "prometheus_client" in listed.replace("-", "_")  # the metrics extra is declared
