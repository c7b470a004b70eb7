"""Every project name a benchmark imports exists, including the imports made
inside functions (kept lazy so a benchmark loads only what it runs): a
rename elsewhere broke `make bench` twice without any test noticing."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from ml.settings import ROOT

PROJECT_PACKAGES = ("bench", "ml", "serve", "flows", "tests")
BENCH_FILES = sorted((ROOT / "bench").glob("*.py"))


def project_imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every `from <project module> import name` in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] in PROJECT_PACKAGES:
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
    return found


@pytest.mark.parametrize("path", BENCH_FILES, ids=lambda p: p.name)
def test_every_name_a_benchmark_imports_exists(path):
    missing = []
    for module, name, line in project_imports(path):
        imported = importlib.import_module(module)
        if not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{path.name}:{line}: {module}.{name}")
    assert not missing, missing
