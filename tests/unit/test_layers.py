"""The dependency arrows point one way (docs/contracts.md, "Layout").

`serve` and `flows` use `ml`; `ml` never imports them, and `serve` never
imports `flows`. Inside `ml`, reporting and monitoring use modelling and the
warehouse layer, never the reverse. Imports are read with `ast`, so an import
inside a function (which a runtime check of `sys.modules` could miss) counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ml.settings import ROOT

# (package whose modules are checked, packages they must not import)
FORBIDDEN = [
    ("ml", ("serve", "flows")),
    ("serve", ("flows",)),
    ("ml.modeling", ("ml.reporting", "ml.monitoring")),
    ("ml.warehouse", ("ml.reporting", "ml.monitoring")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module `source` (the text of `module`) imports, relative ones resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            # `from ml import reporting` imports the package ml.reporting.
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(package: str, banned: tuple[str, ...]) -> list[str]:
    folder = ROOT.joinpath(*package.split("."))
    found = []
    for path in sorted(folder.rglob("*.py")):
        module = module_name(path)
        names = imported(path.read_text(), module, is_package=path.name == "__init__.py")
        found += [
            f"{path.relative_to(ROOT)} imports {name}"
            for name in sorted(names)
            if any(within(name, ban) for ban in banned)
        ]
    return found


@pytest.mark.parametrize(("package", "banned"), FORBIDDEN, ids=[p for p, _ in FORBIDDEN])
def test_no_import_points_the_wrong_way(package, banned):
    assert ROOT.joinpath(*package.split(".")).is_dir(), package
    assert violations(package, banned) == []


def test_the_reader_sees_every_form_of_import():
    source = (
        "import serve.app\n"
        "from flows.pipeline import flow\n"
        "from ml import reporting\n"
        "from ..monitoring import drift\n"
        "def late():\n"
        "    from . import charts\n"
    )
    names = imported(source, "ml.modeling.train")
    assert {"serve.app", "flows.pipeline", "ml.reporting", "ml.monitoring.drift"} <= names
    assert "ml.modeling.charts" in names
    assert "ml.monitoring" in imported("from .. import monitoring", "ml.modeling.train")
    assert "ml.warehouse.engine" in imported(
        "from .engine import connect", "ml.warehouse", is_package=True
    )
