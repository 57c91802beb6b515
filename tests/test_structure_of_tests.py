"""The test suite's own layout: helpers live in tests/support/, fixtures in conftest.py, and
no test module imports another test module or conftest.py (pytest loads conftest.py itself;
importing a test module runs its collection twice and hides what is shared)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import REPO

TESTS = REPO / "tests"
TEST_MODULES = sorted(TESTS.glob("test_*.py"))
SUPPORT_MODULES = sorted((TESTS / "support").rglob("*.py"))
#: bench/ reuses the tests' helpers too.
BENCH_MODULES = sorted((REPO / "bench").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from . import x`` counts as the package's ``x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}".lstrip(".") for alias in node.names)
    return found


def forbidden(module: str) -> bool:
    """A test module or conftest, under any spelling (``tests.test_x``, ``test_x``, ...)."""
    last = module.rsplit(".", 1)[-1]
    return last == "conftest" or last.startswith("test_")


@pytest.mark.parametrize(
    "path", TEST_MODULES + SUPPORT_MODULES + BENCH_MODULES, ids=lambda p: str(p.relative_to(REPO))
)
def test_no_module_imports_a_test_module_or_conftest(path: Path) -> None:
    bad = sorted(module for module in imported_modules(path) if forbidden(module))
    assert not bad, (
        f"{path.relative_to(REPO)} imports {bad}: move what it shares into tests/support/ "
        "(helpers) or tests/conftest.py (fixtures)"
    )


def test_the_check_sees_every_spelling(tmp_path: Path) -> None:
    module = tmp_path / "test_example.py"
    module.write_text(
        "import os\nfrom tests.test_report import write_json\nfrom tests import conftest\n"
        "import test_workflow\nfrom tests.support.paths import REPO\n"
    )
    bad = {name for name in imported_modules(module) if forbidden(name)}
    assert bad == {"tests.test_report", "tests.conftest", "test_workflow"}


def test_conftest_holds_only_fixtures() -> None:
    """Its functions are all fixtures; any other helper belongs in tests/support/."""
    tree = ast.parse((TESTS / "conftest.py").read_text(encoding="utf-8"))
    for node in tree.body:
        assert not isinstance(node, ast.ClassDef), f"conftest.py: class {node.name}"
        if isinstance(node, ast.FunctionDef):
            decorators = [ast.unparse(d) for d in node.decorator_list]
            assert any(d.startswith("pytest.fixture") for d in decorators), (
                f"conftest.py: {node.name} is not a fixture; move it to tests/support/"
            )
