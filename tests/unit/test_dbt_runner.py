"""Unit tests of ml.warehouse.dbt_runner's result parsing and environment (the real
dbt runs are in tests/integration/test_warehouse_dbt.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml.settings import load_settings
from ml.warehouse import dbt_runner
from ml.warehouse.dbt_runner import DbtResult, dbt_environment


def _result(statuses, returncode=0):
    results = [{"unique_id": f"node.{i}", "status": s} for i, s in enumerate(statuses)]
    run_results = {"metadata": {"invocation_id": "abc"}, "results": results}
    return DbtResult(("build",), returncode, Path("target"), run_results)


def test_counts_group_statuses_as_people_read_a_build():
    result = _result(["success", "pass", "pass", "warn", "fail", "error", "skipped"], 1)
    counts = (result.passed, result.warned, result.failed, result.errored, result.skipped)
    assert counts == (3, 1, 1, 1, 1)
    assert result.invocation_id == "abc"
    assert not result.ok


def test_a_run_without_results_has_no_counts():
    result = DbtResult(("build",), 2, Path("target"), None)
    assert result.results == [] and result.passed == 0 and result.invocation_id is None


def test_environment_is_the_settings_plus_process_basics(monkeypatch):
    monkeypatch.setenv("MARIADB_DATABASE", "from_the_shell")
    monkeypatch.setenv("SOME_SECRET_OF_THE_CALLER", "x")
    settings = load_settings(environ={"MARIADB_DATABASE": "vgsales_unit"})
    env = dbt_environment(settings)
    assert env["MARIADB_DATABASE"] == "vgsales_unit"
    assert "SOME_SECRET_OF_THE_CALLER" not in env
    assert env["PATH"]
    assert set(env) <= set(settings.as_env()) | set(dbt_runner.PASSTHROUGH)


def test_missing_dbt_says_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setattr(dbt_runner.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(FileNotFoundError, match="project venv"):
        dbt_runner.dbt_executable()
