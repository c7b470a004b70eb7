"""`make dbt-changed` builds only what an edit changed (ml.warehouse.changed).

The session's build of the real file is production; its manifest is the
state. One model is edited in a copy of the dbt project, and the changed
build must run exactly that model, its children and their tests, into a
development database, reading everything else from production.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import sqlalchemy as sa

from ml.warehouse import engine as warehouse
from ml.warehouse.changed import build_changed

pytestmark = pytest.mark.slow

EDITED = "int_releases__prior_performance"
# Its children outside the monitoring tag (the drift flow builds those).
EXPECTED_MODELS = {EDITED, "ml_release_features"}


def test_a_changed_model_builds_only_itself_and_its_children(marts_settings, warehouse_build,
                                                            tmp_path):
    project = tmp_path / "dbt_project"
    shutil.copytree(marts_settings.dbt_project_dir, project,
                    ignore=shutil.ignore_patterns("target", "logs", "staged_seeds"))
    model = project / "models" / "intermediate" / "releases" / f"{EDITED}.sql"
    model.write_text(model.read_text() + "\n-- an analyst's edit\n")
    settings = dataclasses.replace(marts_settings, root=tmp_path, run_dir=tmp_path / "run")
    lines: list[str] = []

    result = build_changed(settings, state=warehouse_build.result.target_path, log=lines.append)

    assert result.ok, "\n".join(lines[-40:])
    ran = {r["unique_id"] for r in result.results}
    models = {node.split(".")[-1] for node in ran if node.startswith("model.")}
    assert models == EXPECTED_MODELS
    # Every test that ran tests one of them; none of the other ~200 ran.
    tests = {node for node in ran if node.startswith("test.")}
    assert tests and ran == tests | {f"model.vgsales.{m}" for m in models}
    nodes = json.loads((result.target_path / "manifest.json").read_text())["nodes"]
    for test in tests:
        assert set(nodes[test]["depends_on"]["nodes"]) & {f"model.vgsales.{m}" for m in models}
    # Built into the development database, from production's tables.
    dev = marts_settings.mariadb_database + "_dev"
    with warehouse.connect(marts_settings) as connection:
        built = connection.execute(sa.text(
            "select table_name from information_schema.tables where table_schema = :s"),
            {"s": dev}).scalars().all()
        rows = {db: connection.execute(sa.text(
            f"select count(*) from `{db}`.ml_release_features")).scalar_one()
            for db in (dev, marts_settings.mariadb_database)}
    assert "ml_release_features" in built and "fct_sales" not in built
    assert rows[dev] == rows[marts_settings.mariadb_database] > 0


def test_without_a_production_manifest_it_says_to_run_the_pipeline(marts_settings, tmp_path):
    settings = dataclasses.replace(marts_settings, run_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="make pipeline"):
        build_changed(settings, log=lambda line: None)
