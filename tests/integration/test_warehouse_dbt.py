"""The dbt warehouse, built for real on MariaDB.

One `dbt build` (seeds, models, every test) over the real vgsales.csv (CI
always has it; without it the tests fail saying so), shared by the assertions
below, plus one build over a generated file with dirty rows of every kind the
warehouse quarantines. Both go to their own databases
(`vgsales_test_<run id>_warehouse*`).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import sqlalchemy as sa

from ml.data.synthetic import DIRTY_KINDS, dirty_counts, write_csv
from ml.warehouse.dbt_runner import dbt_environment, run_dbt
from ml.warehouse.validation_summary import build_summary
from tests.helpers import isolated_settings

pytestmark = pytest.mark.slow

ML_CONTRACT_COLUMNS = [
    "release_id", "name", "platform", "genre", "publisher", "year", "decade",
    "platform_manufacturer", "platform_kind", "platform_generation",
    "na_sales", "eu_sales", "jp_sales", "other_sales", "global_sales",
    "log_global_sales", "publisher_prior_titles", "publisher_prior_mean_log_sales",
    "series_key", "series_prior_titles", "series_prior_mean_log_sales",
    "platform_age_years", "platform_titles_that_year", "platform_titles_prior_year",
    "title_platform_count",
    "split_random", "split_time",
]  # fmt: skip
SCHEMA_SUFFIXES = ("", "_raw", "_staging", "_intermediate", "_dbt_test__audit")
SYNTHETIC_ROWS = 2000
REASON_COUNTS = "select reason_code, count(*) from rejected_vgsales group by reason_code"


def _fresh_databases(settings) -> None:
    """Drop what an earlier run left, so the build starts from nothing."""
    database = settings.mariadb_database
    engine = sa.create_engine(settings.sqlalchemy_url().replace(f"/{database}?", "/?"))
    with engine.begin() as connection:
        for suffix in SCHEMA_SUFFIXES:
            connection.execute(sa.text(f"drop database if exists `{database}{suffix}`"))
    engine.dispose()


def _build(settings, target):
    _fresh_databases(settings)
    lines: list[str] = []
    result = run_dbt(["build"], settings, log=lines.append, target_path=target)
    return result, lines


@pytest.fixture(scope="module")
def warehouse(warehouse_build, raw_csv, real_csv):
    """Settings, dbt result and output of the session's full build over the
    real file (tests/conftest.py `warehouse_build`, shared with the marts'
    readers and the digest test)."""
    assert raw_csv == real_csv  # `seeds_dir` holds the real file when it exists
    return warehouse_build.settings, warehouse_build.result, warehouse_build.lines


@pytest.fixture(scope="module")
def db(warehouse):
    settings = warehouse[0]
    engine = sa.create_engine(settings.sqlalchemy_url())
    yield engine
    engine.dispose()


def _scalar(engine, sql):
    with engine.connect() as connection:
        return connection.execute(sa.text(sql)).scalar_one()


def _rows(engine, sql):
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(sql))]


def _test_results(result):
    """Test name -> its entry in run_results."""
    return {
        r["unique_id"].split(".")[2]: r
        for r in result.results
        if r["unique_id"].startswith("test.")
    }


def test_build_passes_every_error_test(warehouse):
    _, result, lines = warehouse
    assert result.returncode == 0, "\n".join(lines[-40:])
    assert result.failed == 0 and result.errored == 0
    tests = _test_results(result)
    assert len(tests) > 100
    errors = [r for r in result.results if r["status"] in ("fail", "error")]
    assert errors == []
    assert any("PASS=" in line for line in lines)  # output was streamed


def test_raw_warnings_report_the_real_file_problems(warehouse):
    tests = _test_results(warehouse[1])
    expected = {
        "raw_vgsales_global_is_sum_of_regions": 10,
        "raw_vgsales_release_is_unique": 2,
        "raw_vgsales_name_follows_rule": 1,
        "accepted_year_not_before_platform_launch": 4,
    }
    for name, failures in expected.items():
        assert (tests[name]["status"], tests[name]["failures"]) == ("warn", failures)
    assert warehouse[1].warned == len(expected)


def test_every_raw_row_lands_once(db, warehouse):
    raw = _scalar(db, f"select count(*) from `{warehouse[0].raw_database}`.raw_vgsales")
    accepted = _scalar(db, "select count(*) from fct_sales")
    rejected = _scalar(db, "select count(*) from rejected_vgsales")
    assert raw == accepted + rejected
    assert _scalar(db, "select count(*) from rejected_vgsales where reason_code is null") == 0
    tests = _test_results(warehouse[1])
    assert tests["assert_raw_rows_reconcile_to_fct_and_rejected"]["status"] == "pass"


def test_real_file_rejections(db):
    reasons = dict(_rows(db, REASON_COUNTS))
    assert reasons == {"duplicate_release": 2, "invalid_name": 1}
    ranks = _rows(
        db,
        "select sales_rank from rejected_vgsales"
        " where reason_code = 'duplicate_release' order by 1",
    )
    assert ranks == [(15002,), (16130,)]
    assert _scalar(db, "select count(*) from fct_sales") == 16595


def test_unknown_year_rows_are_kept_on_the_unknown_member(db, warehouse):
    member = _rows(db, "select calendar_year, year_label from dim_year where year_id = -1")
    assert member == [(None, "unknown")]
    unknown = _scalar(
        db,
        "select count(*) from fct_sales as f"
        " join dim_year as y on f.year_id = y.year_id where y.is_unknown",
    )
    raw_na = _scalar(
        db,
        f"select count(*) from `{warehouse[0].raw_database}`.raw_vgsales"
        " where coalesce(Year, 'N/A') = 'N/A'",
    )
    rejected_na = _scalar(
        db, "select count(*) from rejected_vgsales where coalesce(year_raw, 'N/A') = 'N/A'"
    )
    assert unknown == raw_na - rejected_na > 0
    assert unknown == 270  # 271 N/A rows, one of them a rejected duplicate


def test_dimensions_hold_reference_data_and_unknown_members(db, warehouse):
    assert _scalar(db, "select count(*) from dim_platform where not is_unknown") == 34
    assert _scalar(db, "select count(*) from dim_platform where platform_id = -1") == 1
    assert _scalar(db, "select count(*) from dim_genre where not is_unknown") == 12
    psp = _rows(db, "select platform_code from dim_platform where platform_code like 'PS%'")
    assert {code for (code,) in psp} == {"PS", "PS2", "PS3", "PS4", "PS5", "PSP", "PSV"}
    assert _test_results(warehouse[1])["assert_unknown_members_exist"]["status"] == "pass"
    indexed = {row[4] for row in _rows(db, "show index from fct_sales")}
    keys = {"release_id", "game_id", "platform_id", "genre_id", "publisher_id", "year_id"}
    assert indexed >= keys


def test_ml_mart_has_contract_columns_one_row_per_release(db):
    columns = [row[0] for row in _rows(db, "show columns from ml_release_features")]
    assert columns[: len(ML_CONTRACT_COLUMNS)] == ML_CONTRACT_COLUMNS
    releases = _scalar(db, "select count(*) from fct_sales")
    assert _scalar(db, "select count(*) from ml_release_features") == releases
    assert _scalar(db, "select count(distinct release_id) from ml_release_features") == releases
    splits = dict(_rows(db, "select split_random, count(*) from ml_release_features group by 1"))
    assert 0.65 < splits["train"] / sum(splits.values()) < 0.75
    time_test = "select count(*) from ml_release_features where split_time = 'test'"
    assert _scalar(db, time_test) == 2746


def test_point_in_time_test_runs_and_catches_a_leak(warehouse, db, build_digest):
    # `build_digest` first: the leak run below rewrites this test's stored
    # failures, which the shared build's digest must not see.
    settings, result, _ = warehouse
    name = "assert_point_in_time_features_use_only_earlier_years"
    assert _test_results(result)[name]["status"] == "pass"
    release = _scalar(
        db, "select release_id from ml_release_features where year is not null limit 1"
    )
    bump = (
        "update ml_release_features set publisher_prior_titles = publisher_prior_titles {} 1"
        " where release_id = '{}'"
    )
    with db.begin() as connection:
        connection.execute(sa.text(bump.format("+", release)))
    try:
        leaked = run_dbt(
            ["test", "--select", name],
            settings,
            log=lambda _: None,
            target_path=result.target_path.parent / "leak",
        )
    finally:
        with db.begin() as connection:
            connection.execute(sa.text(bump.format("-", release)))
    assert leaked.returncode != 0
    assert _test_results(leaked)[name]["failures"] == 1


def test_validation_summary_of_the_build(warehouse):
    settings, result, _ = warehouse
    summary = build_summary(result.target_path, settings)
    assert summary.ok
    assert summary.totals["evaluated"] == len(_test_results(result))
    assert summary.totals["warned"] == result.warned
    warned = [t for t in summary.tests if t.status == "warn"]
    assert all(t.stored_failures for t in warned)
    shares = {t.name: t.failing_share for t in summary.tests if t.failing_share is not None}
    assert shares and all(0 <= share < 1 for share in shares.values())
    assert all(shares[t.name] > 0 for t in warned if t.unit == "rows")
    for test in warned:
        assert summary.samples.get(test.unique_id), test.name
    assert "tests evaluated" in summary.markdown


def test_docs_generate_and_everything_is_described(warehouse, warehouse_docs):
    # `dbt docs generate` over the build, once per session (tests/conftest.py).
    target = warehouse_docs
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    undocumented = []
    for unique_id, node in catalog["nodes"].items():
        if not unique_id.startswith(("model.", "seed.")):
            continue
        described = manifest["nodes"][unique_id]
        if not described["description"].strip():
            undocumented.append(unique_id)
        columns = {k.lower(): v["description"] for k, v in described["columns"].items()}
        undocumented += [
            f"{unique_id}.{c}" for c in node["columns"] if not columns.get(c.lower(), "").strip()
        ]
    assert undocumented == []
    exposures = {e["name"] for e in manifest["exposures"].values()}
    assert exposures >= {"global_from_regional", "prerelease"}


def test_sqlfluff_lint_is_clean(warehouse, tmp_path):
    """As `make lint` runs it: sqlfluff's findings as JSON, then what they say."""
    settings = warehouse[0]
    sqlfluff = str(sys.executable).rsplit("/", 1)[0] + "/sqlfluff"
    report = tmp_path / "sqlfluff.json"
    with report.open("w") as out:
        lint = subprocess.run(
            [sqlfluff, "lint", "models", "tests", "--format", "json", "--nofail"],
            cwd=settings.dbt_project_dir, env=dbt_environment(settings),
            stdout=out, stderr=subprocess.PIPE, text=True,
        )
    assert lint.returncode == 0, lint.stderr[-3000:]
    said = subprocess.run([sys.executable, "scripts/sqlfluff_report.py", str(report)],
                          cwd=settings.root, capture_output=True, text=True)
    sql_files = [p for folder in ("models", "tests")
                 for p in (settings.dbt_project_dir / folder).rglob("*.sql")]
    assert said.returncode == 0, said.stdout[-3000:]
    assert said.stdout.strip() == (f"[lint] sqlfluff checked {len(sql_files)} SQL file(s) "
                                   "(dbt models and tests): no violations")


@pytest.fixture(scope="module")
def dirty_warehouse(stack_settings, tmp_path_factory):
    """A build over a generated file with dirty rows of every kind."""
    home = tmp_path_factory.mktemp("warehouse_dirty")
    seeds = home / "seeds"
    seeds.mkdir()
    write_csv(seeds / "vgsales.csv", n_rows=SYNTHETIC_ROWS, seed=11, dirty_share=0.02)
    settings = dataclasses.replace(
        isolated_settings(stack_settings, "warehouse_dirty", 0, home),
        vgsales_seeds_dir=str(seeds),
    )
    result, lines = _build(settings, home / "target")
    engine = sa.create_engine(settings.sqlalchemy_url())
    yield settings, result, lines, engine
    engine.dispose()


def test_dirty_rows_are_quarantined_by_reason_and_cleaned_tests_pass(dirty_warehouse):
    _, result, lines, engine = dirty_warehouse
    assert result.returncode == 0, "\n".join(lines[-40:])
    reasons = dict(_rows(engine, REASON_COUNTS))
    expected = dirty_counts(SYNTHETIC_ROWS, 0.02)
    assert set(expected) == set(DIRTY_KINDS)
    assert reasons == {kind: n for kind, n in expected.items() if n}
    accepted = _scalar(engine, "select count(*) from fct_sales")
    assert accepted + sum(reasons.values()) == SYNTHETIC_ROWS
    warned = {name for name, r in _test_results(result).items() if r["status"] == "warn"}
    assert {
        "raw_vgsales_name_follows_rule",
        "raw_vgsales_year_in_range",
        "raw_vgsales_platform_is_known",
        "raw_vgsales_genre_is_known",
        "raw_vgsales_global_is_sum_of_regions",
        "raw_vgsales_release_is_unique",
        "unique_vgsales_Rank",
    } <= warned
