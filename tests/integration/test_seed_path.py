"""dbt never writes over the raw file, wherever the seeds folder and target are.

The reproduction: in a checkout whose `dbt_project/` is five folders
below a root, with a scratch folder `S` two folders below it, a relative
`VGSALES_SEEDS_DIR` to `S/real` and `--target-path S/target-real-ours` made
dbt write a seed's run SQL onto `S/real/vgsales.csv` itself. Here that layout
is rebuilt under a temp root, and dbt runs there as a user runs it from the
command line (`scripts/with-env dbt ...` in `dbt_project/`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ml.settings import ROOT
from tests.helpers import isolated_settings


def copy_checkout(dest: Path) -> None:
    """A fresh-clone-like copy of this checkout: tracked and unignored files.

    The working tree, not HEAD, so the test checks the code being edited; the
    shared venv is linked in, as `make venv` would have created one.
    """
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listing):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to((ROOT / ".venv").resolve())


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` with its size and modification time."""
    files = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                stat = path.stat()
                files[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return files


@pytest.fixture(scope="module")
def layout(stack_settings, raw_csv, tmp_path_factory):
    """The issue's layout: (root, checkout's dbt_project, S, real CSV, dbt runner)."""
    root = tmp_path_factory.mktemp("depth")
    checkout = root / "home" / "user" / "src" / "vgsales"
    project = checkout / "dbt_project"
    assert len(project.relative_to(root).parts) == 5
    copy_checkout(checkout)
    scratch = root / "tmp" / "S"
    real = scratch / "real" / "vgsales.csv"
    real.parent.mkdir(parents=True)
    shutil.copyfile(raw_csv, real)
    settings = isolated_settings(stack_settings, "seedpath", 15, root / "state")
    env = {
        **os.environ,
        **settings.as_env(),
        "VGSALES_SEEDS_DIR": os.path.relpath(real.parent, project),
        "DBT_PROFILES_DIR": str(project),
        "VGSALES_RUN_DIR": str(checkout / ".run"),
    }
    # Recomputed by the checkout's own ml.settings from VGSALES_SEEDS_DIR.
    del env["VGSALES_SEED_SHA256"]

    def dbt(*args: str, target: str) -> subprocess.CompletedProcess:
        # The log folder goes in the target too, so every file dbt writes
        # should be under `target`.
        command = [str(checkout / "scripts" / "with-env"), "dbt", *args,
                   "--no-use-colors", "--target-path", target,
                   "--log-path", os.path.join(target, "logs")]
        return subprocess.run(command, cwd=project, env=env, capture_output=True,
                              text=True, timeout=900)

    return root, project, scratch, real, dbt, settings


# (name, target path as given on the command line, relative to dbt_project/)
TARGETS = [
    ("issue reproduction", "../../../../../tmp/S/target-real-ours"),
    ("inside the project", "target"),
    ("beside the source", "../../../../../tmp/S/real/target"),
    ("deeper than the root", "../../../../../tmp/S/a/b/c/d/e/f/target"),
]


@pytest.mark.parametrize(("name", "target"), TARGETS, ids=[t[0] for t in TARGETS])
def test_seed_leaves_the_source_alone_and_writes_only_in_its_target(layout, name, target):
    root, project, _, real, dbt, _ = layout
    original = real.read_bytes()
    before = snapshot(root)
    done = dbt("seed", "--full-refresh", "--select", "vgsales.vgsales", target=target)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert real.read_bytes() == original
    target_dir = (project / target).resolve().relative_to(root)
    staged = project.relative_to(root) / "staged_seeds"
    changed = {
        path for path, facts in snapshot(root).items()
        if before.get(path) != facts
        and not Path(path).is_relative_to(target_dir)
        and not Path(path).is_relative_to(staged)
    }
    assert changed == set(), f"dbt wrote outside {target}: {sorted(changed)}"
    # What dbt read is the staged copy, byte for byte the source.
    copies = list((project / "staged_seeds").glob("*/vgsales.csv"))
    assert [copy.read_bytes() == original for copy in copies] == [True]


def test_build_with_the_issues_layout_leaves_the_source_alone(layout):
    root, project, _, real, dbt, _ = layout
    original = real.read_bytes()
    target = TARGETS[0][1]
    before = snapshot(root)
    done = dbt("build", "--exclude", "tag:monitoring", target=target)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert real.read_bytes() == original
    target_dir = (project / target).resolve().relative_to(root)
    changed = {
        path for path, facts in snapshot(root).items()
        if before.get(path) != facts and not Path(path).is_relative_to(target_dir)
    }
    assert changed == set(), f"dbt build wrote outside {target}: {sorted(changed)}"


def test_seed_without_a_staged_copy_fails_instead_of_reading_elsewhere(layout):
    """Plain dbt (no with-env, no staging) finds no raw seed and stops there."""
    root, project, _, real, _, settings = layout
    original = real.read_bytes()
    env = {**os.environ, **dataclasses.replace(
        settings, vgsales_seeds_dir=str(real.parent)).as_env()}
    env["VGSALES_SEED_SHA256"] = "0" * 64
    env["DBT_PROFILES_DIR"] = str(project)
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "dbt"), "seed", "--select", "vgsales.vgsales",
         "--target-path", str(root / "plain-target"), "--log-path", str(root / "plain-target")],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode != 0
    assert "depends on a node named 'vgsales' which was not found" in done.stdout, done.stdout[-2000:]
    assert real.read_bytes() == original
