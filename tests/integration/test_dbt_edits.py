"""An analyst's edits to the dbt project: `make dbt-changed` builds only
what changed (ml.warehouse.changed), and a model contract stops a wrongly
typed column (docs/contracts.md).

The session's build of the real file is production; its manifest is the
state. Each test edits one model in a copy of the dbt project and builds
what changed into a development database, reading the rest from production.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from ml.warehouse import engine as warehouse
from ml.settings import Settings
from ml.warehouse.changed import build_changed

pytestmark = pytest.mark.slow

EDITED = "int_releases__prior_performance"
# Its children outside the monitoring tag (the drift flow builds those).
EXPECTED_MODELS = {EDITED, "ml_release_features"}


def edited_copy(settings: Settings, home: Path, model: str, edit) -> Settings:
    """Settings whose dbt project is a copy in `home` with `edit(sql)` applied to `model`."""
    project = home / "dbt_project"
    shutil.copytree(settings.dbt_project_dir, project,
                    ignore=shutil.ignore_patterns("target", "logs", "staged_seeds"))
    path = next(project.joinpath("models").rglob(f"{model}.sql"))
    path.write_text(edit(path.read_text()))
    return dataclasses.replace(settings, root=home, run_dir=home / "run")


def test_a_changed_model_builds_only_itself_and_its_children(marts_settings, warehouse_build,
                                                            tmp_path):
    settings = edited_copy(marts_settings, tmp_path, EDITED,
                           lambda sql: sql + "\n-- an analyst's edit\n")
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


def test_a_wrongly_typed_column_fails_the_build_with_dbts_contract_message(
        marts_settings, warehouse_build, tmp_path):
    # dim_genre's contract says genre_id is a bigint; the edit makes it text.
    settings = edited_copy(
        marts_settings, tmp_path, "dim_genre",
        lambda sql: sql.replace("-1 as genre_id", "'-1' as genre_id", 1))
    lines: list[str] = []

    result = build_changed(settings, state=warehouse_build.result.target_path, log=lines.append)

    assert not result.ok
    model = next(r for r in result.results if r["unique_id"] == "model.vgsales.dim_genre")
    assert model["status"] == "error"
    assert "enforced contract that failed" in model["message"], model["message"]
    assert re.search(r"genre_id +\| TEXT .*data type mismatch", model["message"]), model["message"]
    assert any("enforced contract that failed" in line for line in lines)
    # Failed before the table was created: the development database has none.
    with warehouse.connect(marts_settings) as connection:
        tables = connection.execute(sa.text(
            "select table_name from information_schema.tables where table_schema = :s"),
            {"s": marts_settings.mariadb_database + "_dev"}).scalars().all()
    assert not any(name.startswith("dim_genre") for name in tables)


@pytest.mark.parametrize("model, edit, message", [
    ("dim_genre", ("'Unknown' as genre_name", "null as genre_name"),
     "Column 'genre_name' cannot be null"),
    ("dim_platform", ("'unknown' as platform_kind", "'console' as platform_kind"),
     "platform_kind` failed for"),
], ids=["not_null", "check"])
def test_a_value_the_contract_forbids_fails_the_build_with_mariadbs_message(
        marts_settings, warehouse_build, tmp_path, model, edit, message):
    """Constraints of the contracts are enforced by MariaDB (strict mode, set in
    docker/mariadb/vgsales.cnf): the create fails on the first null, or on a
    value outside a check, before any table is swapped in, where a `not_null`
    or `accepted_values` test would have run afterwards."""
    settings = edited_copy(marts_settings, tmp_path, model,
                           lambda sql: sql.replace(*edit, 1))
    assert settings.dbt_project_dir.joinpath(
        f"models/marts/core/{model}.sql").read_text().count(edit[1]) == 1

    result = build_changed(settings, state=warehouse_build.result.target_path,
                           log=lambda line: None)

    assert not result.ok
    node = next(r for r in result.results if r["unique_id"] == f"model.vgsales.{model}")
    assert node["status"] == "error"
    assert message in node["message"], node["message"]
