"""The layers import one way (docs/ARCHITECTURE.md), as the import-linter contract in pyproject.toml says.

`make test` runs `lint-imports` over the tree itself; these tests prove the contract holds and that it
would catch an import running back up the layers or sideways between the features."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import patience

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cli", "api", "ingest", "search", "audit", "users", "tenants", "embeddings", "models", "core")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=patience(),
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_tree_keeps_the_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "statement"),
    [
        ("core/settings.py", "import api.app"),  # core reaching up to an edge
        ("models/document.py", "import ingest.repository"),  # a table reaching up to a feature
        ("embeddings/base.py", "import search.service"),
        ("tenants/service.py", "import audit.service"),  # a lower feature reaching up
        ("search/service.py", "import ingest.service"),  # features on one layer stay independent
        ("api/app.py", "import cli.main"),  # nothing imports the command line
    ],
)
def test_an_import_against_the_layers_breaks_it(tmp_path: Path, module: str, statement: str) -> None:
    tree = _copy(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{statement}  # noqa\n")
    result = _lint(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout


ROUTE_BODY_MAX_LINES = 15
ROUTE_METHODS = frozenset({"get", "post", "put", "patch", "delete"})


def _route_functions() -> list[tuple[str, str, int]]:
    """(module, function, lines of its body) for every function an `APIRouter` decorator registers."""
    found = []
    for path in sorted((ROOT / "api" / "routes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ROUTE_METHODS
                for d in node.decorator_list
            ):
                body_start = node.body[0].lineno
                found.append((path.name, node.name, (node.end_lineno or body_start) - body_start + 1))
    return found


def test_routes_are_thin() -> None:
    """A route parses, calls one service function and shapes the answer: its rules live in the services."""
    routes = _route_functions()
    assert len(routes) >= 15, routes  # every route was found
    too_long = [route for route in routes if route[2] > ROUTE_BODY_MAX_LINES]
    assert not too_long, too_long
