"""Every name the README and docs/ put in backticks still exists.

A doc that names a make target, a module (`python -m ...`, `ml.modeling.x`),
a function of one, a file, a setting or a dbt model is checked against the
checkout, so a rename leaves no stale instruction behind. Names are read
statically (files, the Makefile, `ast`), so nothing is imported or run.
"""

from __future__ import annotations

import ast
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("ml", "serve", "flows", "bench", "tests")
TOP_FOLDERS = ("ml/", "serve/", "flows/", "bench/", "tests/", "scripts/", "docs/",
               "dbt_project/", "docker/", "seeds/", ".ci/")
DBT_PREFIXES = ("stg_", "int_", "dim_", "fct_", "ml_", "mon_", "ref_")
SPANS = re.compile(r"`([^`\n]+)`")


@cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([a-z][a-z0-9-]*):", text, re.M))


@cache
def tracked_code() -> str:
    """Every tracked file but the docs themselves, as one text."""
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    texts = []
    for name in names:
        path = ROOT / name
        if (path.suffix in {".md", ".png", ".csv"} or not path.is_file()
                or path == Path(__file__).resolve()):
            continue
        try:
            texts.append(path.read_text())
        except UnicodeDecodeError:
            continue
    return "\n".join(texts)


def generated(path: str) -> bool:
    """A path the project writes (gitignored: reports, targets, results)."""
    # A folder pattern (`target/`) matches only what lies inside it.
    return subprocess.run(["git", "check-ignore", "--no-index", path, f"{path}/file"],
                          cwd=ROOT, capture_output=True).returncode == 0


def module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def defined_names(path: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    if path.name == "__init__.py":
        names.update(p.stem for p in path.parent.iterdir() if p.suffix == ".py" or p.is_dir())
    return frozenset(names)


def python_name_problem(dotted: str) -> str | None:
    """None if `dotted` is a module, or a module followed by names defined in it."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = module_file(".".join(parts[:cut]))
        if path is None:
            continue
        rest = parts[cut:]
        if not rest or rest[0] in defined_names(path):
            return None
        return f"{'.'.join(parts[:cut])} defines no {rest[0]!r}"
    return "no such module"


def dbt_names() -> frozenset[str]:
    project = ROOT / "dbt_project"
    names = {p.stem for p in project.rglob("*.sql") if "target" not in p.parts}
    names |= {p.stem for p in project.rglob("*.csv") if "target" not in p.parts}
    for yml in project.rglob("*.yml"):
        if "target" not in yml.parts:
            names |= set(re.findall(r"name:\s*([a-z_][a-z0-9_]*)", yml.read_text()))
    return frozenset(names)


def problem(span: str) -> str | None:
    span = span.strip()
    if m := re.fullmatch(r"make ([a-z][a-z0-9-]*)(?: .*)?", span):
        return None if m.group(1) in make_targets() else "no such make target"
    if m := re.fullmatch(r"(?:\S+ )?python -m ([\w.]+)(?: .*)?", span):
        return None if module_file(m.group(1)) else "no such module"
    if (re.fullmatch(r"[\w./-]+", span) and span.startswith(TOP_FOLDERS)
            and not re.search(r"[*<]", span)):
        path = span.split("::")[0].rstrip("/")
        return None if (ROOT / path).exists() or generated(path) else "no such file"
    if m := re.fullmatch(r"((?:%s)(?:\.\w+)+)(?:\(.*\))?" % "|".join(PACKAGES), span):
        return python_name_problem(m.group(1))
    if re.fullmatch(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+", span):
        return None if re.search(rf"\b{span}\b", tracked_code()) else "named nowhere in the code"
    if re.fullmatch(r"(?:%s)[a-z0-9_]+" % "|".join(DBT_PREFIXES), span):
        return None if span in dbt_names() else "no such dbt model, seed or column"
    return None


def named(doc: Path) -> list[tuple[int, str]]:
    found = []
    in_fence = False
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        if not in_fence:
            found += [(number, span) for span in SPANS.findall(line)]
    return found


@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(ROOT).as_posix() for d in DOCS])
def test_every_name_a_doc_gives_exists(doc):
    stale = [f"{doc.name}:{number}: `{span}`: {why}"
             for number, span in named(doc) if (why := problem(span))]
    assert stale == []


@pytest.mark.parametrize(("span", "expected"), [
    ("make run", None), ("make no-such-target", "no such make target"),
    ("python -m flows.pipeline", None), ("python -m flows.nothing", "no such module"),
    ("ml/settings.py", None), ("ml/nothing.py", "no such file"),
    ("ml.settings.load_settings", None),
    ("ml.settings.nothing", "ml.settings defines no 'nothing'"),
    ("ml.modeling.champions", None), ("ml.settings.load_settings(root)", None),
    ("ml.modeling.registry.load_champion(name)", "ml.modeling.registry defines no 'load_champion'"),
    ("API_PORT", None), ("NO_SUCH_SETTING_ANYWHERE", "named nowhere in the code"),
    ("fct_sales", None), ("fct_nothing_here", "no such dbt model, seed or column"),
])
def test_the_checker_tells_a_stale_name(span, expected):
    assert problem(span) == expected
