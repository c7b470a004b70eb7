"""The README's target table follows the Makefile."""

from __future__ import annotations

import re

from ml.settings import ROOT


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.MULTILINE))


def documented_targets() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("## What each target does", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in table.splitlines():
        if row.startswith("| `make "):
            first_cell = row.split("|")[1]
            names.update(name.removeprefix("make ") for name in re.findall(r"`([^`]+)`", first_cell))
    return names


def test_every_make_target_is_in_the_readme_table():
    targets = makefile_targets()
    assert {"run", "test", "test-fast", "deploy"} <= targets
    assert targets - documented_targets() == set()
    assert documented_targets() - targets == set()
