"""Shared fixtures: the real local stack, and settings isolated per test area.

Tests never touch the user's `vgsales` database, Redis db 0 or MLflow store:
each area gets its own `vgsales_test_<area>` database (covered by the writer's
`vgsales%` grant), its own Redis db number and a temporary MLflow/Prefect home.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from ml.settings import ROOT, Settings, load_settings

REAL_CSV = ROOT.parent / "shared" / "data" / "vgsales.csv"
SAMPLE_ROWS = 3000


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """Start (or reuse) the local MariaDB + Redis stack and return its settings."""
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), "up"], check=True)
    return load_settings()


def isolated_settings(base: Settings, area: str, redis_db: int, home: Path) -> Settings:
    """Settings for one test area: own database, Redis db, MLflow and Prefect home."""
    redis_url = base.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
    home.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(
        base,
        mariadb_database=f"vgsales_test_{area}",
        redis_url=redis_url,
        mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
        mlflow_artifact_root=str(home / "artifacts"),
        prefect_home=str(home / "prefect"),
    )


@pytest.fixture(scope="session")
def raw_csv(tmp_path_factory) -> Path:
    """The real vgsales.csv when present, otherwise a generated sample."""
    if REAL_CSV.exists():
        return REAL_CSV
    from ml.data.synthetic import write_csv  # generated, deterministic sample

    path = tmp_path_factory.mktemp("sample") / "vgsales.csv"
    write_csv(path, n_rows=SAMPLE_ROWS, seed=7)
    return path


@pytest.fixture(scope="session")
def seeds_dir(raw_csv, tmp_path_factory) -> Path:
    """A seeds folder holding only `vgsales.csv`, for VGSALES_SEEDS_DIR."""
    folder = tmp_path_factory.mktemp("seeds")
    shutil.copyfile(raw_csv, folder / "vgsales.csv")
    return folder


@pytest.fixture(scope="session")
def marts_settings(stack_settings, seeds_dir, tmp_path_factory) -> Settings:
    """Settings of a database whose seeds and models dbt built from `seeds_dir`.

    dbt's data tests are left out (they have their own tests and double the
    build time): this is for tests that only read the marts, which share one
    build per session.
    """
    from ml.warehouse.dbt_runner import run_dbt

    home = tmp_path_factory.mktemp("marts")
    settings = dataclasses.replace(
        isolated_settings(stack_settings, "marts", 0, home), vgsales_seeds_dir=str(seeds_dir)
    )
    result = run_dbt(
        ["build", "--no-use-colors", "--exclude", "resource_type:test"],
        settings,
        target_path=home / "dbt_target",
    )
    assert result.ok and result.errored == 0, f"dbt build failed: {result.status_counts}"
    return settings
