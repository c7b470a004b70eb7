"""The README's data refresh, step by step: a newer `vgsales.csv` (written by
`python -m ml.data.refresh`) placed in the seeds folder, then what `make
pipeline` runs (`python -m ml.data.fetch`, then `python -m flows.pipeline`),
in a database of its own (vgsales_test_refresh, Redis db 15) that already
holds a load of the older file. The newer file reaches the warehouse, the
run's summary states what it added and revised (as `mon_sales_revisions`
lists), and the file the user placed is never replaced, not even with
VGSALES_CSV pointing at another file.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from ml.data.csv_check import check_raw_csv
from ml.data.refresh import NEW_PLATFORM
from ml.data.synthetic import write_csv
from ml.settings import ROOT
from ml.warehouse.dbt_runner import run_dbt
from tests.helpers import free_port, isolated_settings

pytestmark = pytest.mark.slow

REDIS_DB = 15
BASE_ROWS = 2000


def run(settings, *command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.as_env()}
    env.pop("PREFECT_API_URL", None)  # ephemeral Prefect, in the test's home
    return subprocess.run([sys.executable, *command], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)


def test_a_newer_file_in_seeds_goes_through_the_pipeline(stack_settings, tmp_path):
    base = write_csv(tmp_path / "downloads" / "vgsales.csv", BASE_ROWS, seed=21)
    seeds = tmp_path / "seeds"
    refresh = run(stack_settings, "-m", "ml.data.refresh", "--base", str(base),
                  "--out", str(seeds / "vgsales.csv"))
    assert refresh.returncode == 0, refresh.stderr
    placed = (seeds / "vgsales.csv").read_bytes()
    rows = check_raw_csv(seeds / "vgsales.csv").rows
    settings = dataclasses.replace(
        isolated_settings(stack_settings, "refresh", REDIS_DB, tmp_path / "home"),
        vgsales_seeds_dir=str(seeds), vgsales_csv=str(base), api_port=free_port(),
    )

    # The older file was loaded before (a build is all a load needs).
    first = run_dbt(["build", "--no-use-colors"],
                    dataclasses.replace(settings, vgsales_seeds_dir=str(base.parent)),
                    log=lambda line: None, target_path=tmp_path / "first-load")
    assert first.ok, first.status_counts

    data = run(settings, "-m", "ml.data.fetch", "--no-download")
    assert data.returncode == 0, data.stderr
    assert f"VGSALES_CSV={base} not used" in data.stderr
    assert f"not the Kaggle file ({rows:,} rows" in data.stderr

    flow = run(settings, "-m", "flows.pipeline")
    assert flow.returncode == 0, (flow.stdout + flow.stderr)[-8000:]
    assert "not the Kaggle file" in flow.stdout + flow.stderr
    assert (seeds / "vgsales.csv").read_bytes() == placed
    assert sorted(p.name for p in seeds.iterdir()) == ["vgsales.csv"]

    engine = sa.create_engine(settings.sqlalchemy_url())
    try:
        with engine.connect() as connection:
            loaded = connection.execute(sa.text(
                f"select count(*) from `{settings.raw_database}`.raw_vgsales")).scalar()
            new_platform = connection.execute(sa.text(
                "select count(*) from ml_release_features where platform = :code"),
                {"code": NEW_PLATFORM}).scalar()
            changes = dict(connection.execute(sa.text(
                "select change_kind, count(*) from mon_sales_revisions where load_number = 2"
                " group by change_kind")).all())
    finally:
        engine.dispose()
    assert loaded == rows
    assert new_platform > 0
    # `make pipeline` alone built what the load changed, and its summary says it.
    assert changes["added"] > 0 and changes["revised"] > 0 and "removed" not in changes
    assert (f"Load 2 (file `{settings.seed_sha256()[:12]}`" in flow.stdout
            and f"against load 1: {changes['added']:,} added, {changes['revised']:,} revised, "
                "0 removed releases." in flow.stdout), flow.stdout[-4000:]
    # The terminal gets the outcome and where the rest is: the full summary.
    summary = settings.run_dir / "pipeline_summary.md"
    assert f"Full summary (loads, data quality, row counts, metrics): {summary}" in flow.stdout
    assert "## Data quality" not in flow.stdout
    full = summary.read_text()
    assert "## Loads" in full and "Largest revisions of load 2" in full
    # dbt's own lines went to a file; the log kept the quarters and the totals.
    dbt_output = settings.run_dir / "dbt" / settings.mariadb_database / "dbt_output.log"
    assert " START " in dbt_output.read_text()
    assert " START " not in flow.stdout + flow.stderr
    assert "nodes done (full output: " in flow.stdout + flow.stderr
