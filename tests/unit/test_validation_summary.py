"""Unit tests of the validation summary: pure functions over small artifacts."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from ml.warehouse import validation_summary as vs

SEED = "seed.vgsales.vgsales"
FCT = "model.vgsales.fct_sales"


def _test_node(name, attached, test_type, severity="error", column=None):
    node = {
        "resource_type": "test",
        "name": name,
        "attached_node": attached,
        "column_name": column,
        "config": {"severity": severity.upper()},
        "original_file_path": "models/x.yml",
        "relation_name": f"`db_dbt_test__audit`.`{name}`",
    }
    if test_type != "singular":
        node["test_metadata"] = {"name": test_type, "kwargs": {}}
    return node


@pytest.fixture
def artifacts():
    manifest = {
        "nodes": {
            SEED: {"resource_type": "seed", "relation_name": "`db_raw`.`raw_vgsales`"},
            FCT: {"resource_type": "model", "relation_name": "`db`.`fct_sales`"},
            "test.a": _test_node("raw_name_rule", SEED, "matches_regex", "warn", "Name"),
            "test.b": _test_node("raw_unique", SEED, "unique_combination_of_columns", "warn"),
            "test.c": _test_node("fct_not_null", FCT, "not_null", column="game_id"),
            "test.d": _test_node("reconcile", None, "singular"),
            "test.e": _test_node("fct_range", FCT, "accepted_range", column="na_sales"),
        }
    }
    results = [
        {"unique_id": SEED, "status": "success"},
        {"unique_id": FCT, "status": "success"},
        {"unique_id": "test.a", "status": "warn", "failures": 1, "message": "Got 1"},
        {"unique_id": "test.b", "status": "warn", "failures": 2, "message": "Got 2"},
        {"unique_id": "test.c", "status": "pass", "failures": 0, "message": None},
        {"unique_id": "test.d", "status": "pass", "failures": 0, "message": None},
        {"unique_id": "test.e", "status": "fail", "failures": 4, "message": "Got 4"},
    ]
    run_results = {
        "metadata": {"invocation_id": "inv-1", "generated_at": "2026-01-01T00:00:00Z"},
        "results": results,
    }
    return run_results, manifest


def test_totals_count_each_status(artifacts):
    summary = vs.summarize(*artifacts)
    assert summary.totals == {
        "evaluated": 5,
        "passed": 2,
        "warned": 2,
        "failed": 1,
        "errored": 0,
        "skipped": 0,
    }
    assert not summary.ok
    assert summary.invocation_id == "inv-1"


def test_share_only_for_row_level_tests(artifacts):
    summary = vs.summarize(*artifacts, row_counts={SEED: 200, FCT: 100})
    by_name = {t.name: t for t in summary.tests}
    assert by_name["raw_name_rule"].failing_share == pytest.approx(1 / 200)
    assert by_name["fct_range"].failing_share == pytest.approx(0.04)
    assert by_name["raw_unique"].unit == "values"
    assert by_name["raw_unique"].failing_share is None
    assert by_name["reconcile"].unit == "findings"
    assert by_name["reconcile"].tested_relation is None
    assert summary.row_counts == {"db.fct_sales": 100, "db_raw.raw_vgsales": 200}


def test_problems_sorted_first_and_severity_read(artifacts):
    summary = vs.summarize(*artifacts)
    assert [t.status for t in summary.tests] == ["fail", "warn", "warn", "pass", "pass"]
    assert summary.tests[0].severity == "error"
    assert summary.tests[1].severity == "warn"
    assert len(summary.warnings) == 2
    assert "raw_name_rule" in summary.warnings[0]


def test_model_errors_are_reported_and_not_counted_as_tests(artifacts):
    run_results, manifest = artifacts
    run_results["results"][1] = {"unique_id": FCT, "status": "error", "message": "boom"}
    summary = vs.summarize(run_results, manifest)
    assert summary.totals["evaluated"] == 5
    assert summary.node_problems == [{"unique_id": FCT, "status": "error", "message": "boom"}]
    assert "did not build" in vs.to_markdown(summary)


def test_markdown_lists_failing_tests_with_counts_and_samples(artifacts):
    summary = vs.summarize(*artifacts, row_counts={SEED: 200, FCT: 100})
    summary = replace(summary, samples={"test.a": [{"Name": "a|b", "Rank": 7}]})
    text = vs.to_markdown(summary)
    assert "**5 tests evaluated: 2 passed, 2 warned, 1 failed, 0 errored, 0 skipped.**" in text
    assert "### FAIL: `fct_range`" in text
    assert "4 rows failing (4.000% of 100)" in text
    assert "| a\\|b | 7 |" in text
    assert "select * from `db_dbt_test__audit`.`fct_range`" in text


def test_json_round_trips(artifacts, tmp_path):
    summary = vs.summarize(*artifacts)
    md, data = vs.write_summary(summary, tmp_path)
    loaded = json.loads(data.read_text())
    assert loaded["totals"]["warned"] == 2
    assert loaded["ok"] is False
    assert {t["name"] for t in loaded["tests"]} >= {"raw_unique", "reconcile"}
    assert md.read_text().startswith("# Data validation summary")


def test_missing_artifacts_say_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="dbt build"):
        vs.load_artifacts(tmp_path)


def test_tested_relations_lists_nodes_tested_in_this_run(artifacts):
    run_results, manifest = artifacts
    assert vs.tested_relations(run_results, manifest) == {
        SEED: "`db_raw`.`raw_vgsales`",
        FCT: "`db`.`fct_sales`",
    }
    run_results["results"] = [r for r in run_results["results"] if r["unique_id"] != "test.c"]
    run_results["results"] = [r for r in run_results["results"] if r["unique_id"] != "test.e"]
    assert vs.tested_relations(run_results, manifest) == {SEED: "`db_raw`.`raw_vgsales`"}
