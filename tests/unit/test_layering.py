"""The product stands alone: nothing in src/ imports the test kit (testkit/) or the tests."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "s3longbow"
TEST_CODE = ("longbow_testkit", "tests", "s3longbow.testing")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_product_never_imports_test_code() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert SRC / "__init__.py" in modules
    found = {
        f"{path.relative_to(SRC.parent)}: {name}"
        for path in modules
        for name in _imports(path)
        if any(name == test or name.startswith(f"{test}.") for test in TEST_CODE)
    }
    assert found == set()
    assert not (SRC / "testing").exists()
