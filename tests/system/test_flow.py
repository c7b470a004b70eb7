"""The pipeline flow for real: dbt on MariaDB, Redis, MLflow on SQLite, a
Prefect server, each isolated (the run's `flow` database, Redis db 3 of its
block, MLflow home in a temp folder, the session's Prefect server).

Two flow runs in all, through the same CLI `make run` uses (on the session's
Prefect server, tests/system/conftest.py, not in ephemeral mode: that costs
each run a server start; test_data_refresh covers it), each followed by
many assertions: a first run (dbt build, export to Redis, both models become
champions) and a rerun with a wrong Redis password and no dbt (degraded, yet
completes, and keeps the champions). Reuse of an unchanged mart's snapshot is
checked between them by calling the snapshot step's function directly.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from pandas.testing import assert_frame_equal

from flows.pipeline.summary import ModelOutcome, PipelineReport, SnapshotOutcome
from flows.pipeline.tasks import is_transient, request_reload
from ml.features import MODEL_NAMES
from ml.reporting.analytics_report import REPORTS_EXPERIMENT
from ml.settings import ROOT
from ml.warehouse import snapshot
from ml.warehouse.mart import mart_fingerprint, read_ml_mart
from tests.helpers import free_port, isolated_settings

REDIS_DB = 3
FLOW_TIMEOUT_SECONDS = 1200


@pytest.fixture(scope="module")
def flow_settings(stack_settings, seeds_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("flow")
    settings = isolated_settings(stack_settings, "flow", REDIS_DB, home)
    # No API on this port, so the runs never signal an API the user is running.
    settings = dataclasses.replace(
        settings, vgsales_seeds_dir=str(seeds_dir), api_port=free_port()
    )
    client = snapshot.connect(settings.redis_url)
    client.flushdb()
    client.close()
    return settings


def run_pipeline(settings, prefect, report: Path, *args: str) -> tuple[dict, str]:
    """`python -m flows.pipeline` in a child process with `settings` as its
    env, on the session's Prefect server (tests/system/conftest.py)."""
    env = {**os.environ, **settings.as_env(), **prefect.client_env()}
    done = subprocess.run(
        [sys.executable, "-m", "flows.pipeline", "--report", str(report), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=FLOW_TIMEOUT_SECONDS,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-8000:]
    return json.loads(report.read_text()), output


@pytest.fixture(scope="module")
def first_run_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("run1")


@pytest.fixture(scope="module")
def first_run(flow_settings, prefect_server, first_run_dir):
    return run_pipeline(
        flow_settings,
        prefect_server,
        first_run_dir / "report.json",
        "--html-report",
        str(first_run_dir / "html"),
    )


@pytest.fixture(scope="module")
def reuse_check(flow_settings, first_run):
    """What the snapshot step finds after the first run, mart unchanged."""
    fingerprint = mart_fingerprint(flow_settings)
    reads = []
    client = snapshot.connect(flow_settings.redis_url)
    key, frame, reused = snapshot.reuse_or_publish(
        client, fingerprint, lambda: reads.append(1) or read_ml_mart(flow_settings), ttl=600
    )
    client.close()
    return {"fingerprint": fingerprint, "key": key, "reused": reused, "reads": len(reads)}


@pytest.fixture(scope="module")
def degraded_rerun(flow_settings, prefect_server, first_run, reuse_check, tmp_path_factory):
    # The flows log in to Redis as their ACL user (Settings.redis_url_as).
    settings = dataclasses.replace(flow_settings, redis_flows_password="wrong")
    assert settings.redis_url_as("flows") != flow_settings.redis_url_as("flows")
    return run_pipeline(
        settings, prefect_server, tmp_path_factory.mktemp("run2") / "report.json", "--skip-dbt"
    )


def prefect_artifacts(prefect, flow_run_id: str) -> dict[str, object]:
    """Artifacts of a flow run, read from the Prefect server's SQLite store."""
    with sqlite3.connect(prefect.database) as connection:
        rows = connection.execute(
            "SELECT key, type, data FROM artifact WHERE flow_run_id = ?", (flow_run_id,)
        ).fetchall()
    return {key: (kind, json.loads(data)) for key, kind, data in rows}


@pytest.mark.slow
def test_first_run_publishes_the_mart_to_redis_exactly(flow_settings, first_run):
    report, _ = first_run
    outcome = report["snapshot"]
    assert not report["degraded"] and outcome["degraded"] is None
    assert outcome["reused"] is False
    assert outcome["key"].startswith(snapshot.KEY_PREFIX + ":")

    client = snapshot.connect(flow_settings.redis_url)
    latest_key = client.get(snapshot.LATEST_KEY).decode()
    from_redis = snapshot.fetch(client, latest_key)
    ttl = client.ttl(latest_key)
    client.close()
    assert latest_key == outcome["key"]
    assert 0 < ttl <= snapshot.DEFAULT_TTL_SECONDS
    # The Redis round trip of the real mart: exactly what MariaDB gives.
    from_mariadb = read_ml_mart(flow_settings)
    assert_frame_equal(from_redis, from_mariadb, check_exact=True)
    assert outcome["rows"] == len(from_mariadb) == report["row_counts"]["training frame"]
    assert len(from_mariadb) > 1000


@pytest.mark.slow
def test_first_run_makes_both_models_champions(flow_settings, first_run):
    report, _ = first_run
    assert [m["model_name"] for m in report["models"]] == list(MODEL_NAMES)
    # The registry too: MlflowClient otherwise takes the process-wide registry
    # URI, which an earlier test's ml.modeling.registry.client() may have set.
    client = MlflowClient(
        tracking_uri=flow_settings.mlflow_tracking_uri,
        registry_uri=flow_settings.mlflow_tracking_uri,
    )
    for model in report["models"]:
        assert model["promoted"], model["reason"]
        champion = client.get_model_version_by_alias(model["model_name"], "champion")
        assert champion.version == model["version"]
        run = client.get_run(champion.run_id)
        assert run.data.tags["snapshot_key"] == report["snapshot"]["key"]
        assert run.data.tags["flow_run_id"] == report["flow_run_id"]
        assert model["metrics"], "the metrics table needs the evaluation's metrics"
    assert "No API answered" in report["reload"]


@pytest.mark.slow
def test_first_run_summary_and_metrics_artifacts(flow_settings, prefect_server, first_run):
    report, _ = first_run
    markdown = report["markdown"]
    assert report["data_quality_markdown"], "dbt ran, so the summary has data quality"
    for heading in ("## Loads", "## Data quality", "## Row counts",
                    *(f"`{m}`" for m in MODEL_NAMES)):
        assert heading in markdown
    assert "Redis snapshot" in markdown and "published" in markdown
    # The first load of the file, and dbt's freshness of the load audit.
    assert report["loads"]["latest"].startswith("Load 1 (file `")
    assert "the first load recorded" in markdown and "Freshness: pass: " in markdown

    artifacts = prefect_artifacts(prefect_server, report["flow_run_id"])
    kind, summary = artifacts["vgsales-pipeline-summary"]
    assert kind == "markdown" and summary == markdown
    kind, table = artifacts["vgsales-model-metrics"]
    rows = json.loads(table)  # a table artifact stores its rows as a JSON string
    assert kind == "table"
    for model in report["models"]:
        metrics = {r["metric"]: r["value"] for r in rows if r["model"] == model["model_name"]}
        assert metrics == pytest.approx(model["metrics"])


@pytest.mark.slow
def test_unchanged_mart_reuses_the_snapshot(first_run, reuse_check):
    report, _ = first_run
    assert reuse_check["fingerprint"] == report["snapshot"]["fingerprint"]
    assert reuse_check["reused"] and reuse_check["reads"] == 0
    assert reuse_check["key"] == report["snapshot"]["key"]


@pytest.mark.slow
def test_rerun_without_redis_is_degraded_not_failed(first_run, degraded_rerun):
    report, output = degraded_rerun
    assert report["degraded"]
    assert report["snapshot"]["key"] is None
    assert "AuthenticationError" in report["snapshot"]["degraded"]
    assert "**Degraded**" in report["markdown"] and "completed, **degraded**" in report["markdown"]
    assert "dbt was skipped" in report["markdown"]
    assert "WARNING" in output and "degraded" in output
    # Same mart as the first run, read from MariaDB instead of Redis.
    assert report["snapshot"]["fingerprint"] == first_run[0]["snapshot"]["fingerprint"]
    assert report["snapshot"]["rows"] == first_run[0]["snapshot"]["rows"]


@pytest.mark.slow
def test_rerun_on_unchanged_data_keeps_the_champions(flow_settings, first_run, degraded_rerun):
    first, rerun = first_run[0], degraded_rerun[0]
    # The registry too: MlflowClient otherwise takes the process-wide registry
    # URI, which an earlier test's ml.modeling.registry.client() may have set.
    client = MlflowClient(
        tracking_uri=flow_settings.mlflow_tracking_uri,
        registry_uri=flow_settings.mlflow_tracking_uri,
    )
    for before, after in zip(first["models"], rerun["models"]):
        # Same rows (from MariaDB this time) and code: the registry recognises
        # the model, registers nothing and leaves the champion where it was.
        assert not after["promoted"] and after["reused"], after["reason"]
        assert (after["version"], after["alias"]) == (before["version"], "champion")
        champion = client.get_model_version_by_alias(after["model_name"], "champion")
        assert champion.version == before["version"]
        assert len(client.search_model_versions(f"name = '{after['model_name']}'")) == 1
    assert rerun["reload"] == "No new champion: the API was not asked to reload."


def test_transient_mariadb_errors_are_told_from_permanent_ones(stack_settings):
    refused = sa.create_engine(f"mysql+pymysql://x:y@127.0.0.1:{free_port()}/x")
    wrong = dataclasses.replace(stack_settings, mariadb_password="wrong")
    denied = sa.create_engine(wrong.sqlalchemy_url())
    errors = []
    for engine in (refused, denied):
        with pytest.raises(sa.exc.OperationalError) as caught:
            engine.connect()
        errors.append(caught.value)
    assert is_transient(errors[0]) and not is_transient(errors[1])


class _ReloadHandler(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_POST(self):
        self.seen.append((self.path, self.headers.get("Authorization")))
        ok = self.headers.get("Authorization") == "Bearer s3cret"
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b'{"reloaded": true}' if ok else b"{}")

    def log_message(self, *args):
        pass


def test_request_reload_sends_the_admin_token_and_tolerates_no_api():
    server = http.server.HTTPServer(("127.0.0.1", 0), _ReloadHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        assert request_reload(port, "s3cret")[0] == "reloaded"
        assert request_reload(port, "wrong")[0] == "refused"
    finally:
        server.shutdown()
        server.server_close()
    assert _ReloadHandler.seen == [
        ("/admin/reload", "Bearer s3cret"),
        ("/admin/reload", "Bearer wrong"),
    ]
    status, message = request_reload(free_port(), "s3cret", timeout=5)
    assert status == "absent" and "No API answered" in message


def test_summary_of_a_degraded_run_without_dbt():
    model = ModelOutcome(
        model_name="prerelease",
        version=3,
        alias="challenger",
        promoted=False,
        reused=False,
        reason="time_test_r2 0.41 does not beat the champion's 0.47",
        run_id="r1",
        metrics={"time_test_r2": 0.41, "cv_r2_mean": 0.4},
        evaluation_markdown="# prerelease\n\nHeld-out metric.\n\n## Test scores\n\n| a |\n|---|",
    )
    report = PipelineReport(
        flow_run_id="f1",
        snapshot=SnapshotOutcome("16595-1", 16595, degraded="Redis unavailable (ConnectionError: refused)"),
        row_counts={"training frame": 16595},
        models=[model],
        reload="No new champion: the API was not asked to reload.",
    )
    markdown = report.to_markdown()
    assert "Status: completed, **degraded**." in markdown
    assert "Redis unavailable (ConnectionError: refused)" in markdown
    assert "dbt was skipped" in markdown and "dbt warnings" not in markdown
    assert "| `prerelease` | 3 | challenger | time_test_r2 0.41 does not beat" in markdown
    # The model's own report sits under its section, one level down.
    assert "## Model `prerelease`\n\nHeld-out metric." in markdown
    assert "### Test scores" in markdown and "\n# prerelease" not in markdown
    assert report.metrics_rows() == [
        {"model": "prerelease", "version": 3, "alias": "challenger", "metric": m, "value": v}
        for m, v in model.metrics.items()
    ]
    assert json.loads(report.to_json())["degraded"] is True


@pytest.mark.slow
def test_first_run_publishes_the_analytics_report(flow_settings, prefect_server, first_run,
                                                  first_run_dir):
    report, _ = first_run
    page = (first_run_dir / "html" / "index.html").read_text(encoding="utf-8")
    assert "<html" in page[:500] and "data:image/png;base64," in page
    client = MlflowClient(
        tracking_uri=flow_settings.mlflow_tracking_uri,
        registry_uri=flow_settings.mlflow_tracking_uri,
    )
    experiment = client.get_experiment_by_name(REPORTS_EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.flow_run_id = '{report['flow_run_id']}'",
    )
    assert len(runs) == 1
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id)] == ["index.html"]
    # Prefect stores a link artifact as a markdown link.
    _, link = prefect_artifacts(prefect_server, report["flow_run_id"])["vgsales-analytics-report"]
    assert (first_run_dir / "html" / "index.html").resolve().as_uri() in link


@pytest.mark.slow
def test_first_run_logs_a_model_card_with_each_version(flow_settings, first_run, first_run_dir):
    report, _ = first_run
    client = MlflowClient(
        tracking_uri=flow_settings.mlflow_tracking_uri,
        registry_uri=flow_settings.mlflow_tracking_uri,
    )
    for model in report["models"]:
        run_id = client.get_model_version(model["model_name"], str(model["version"])).run_id
        logged = {a.path for a in client.list_artifacts(run_id)}
        assert {"model_card.md", "datasheet.md"} <= logged, logged
        card = Path(client.download_artifacts(run_id, "model_card.md", str(first_run_dir)))
        text = card.read_text(encoding="utf-8")
        assert f"# Model card: {model['model_name']}, version {model['version']}" in text
        # The copy beside the HTML report is the same card.
        written = first_run_dir / "html" / f"model_card_{model['model_name']}.md"
        assert written.read_text(encoding="utf-8") == text
    assert (first_run_dir / "html" / "datasheet.md").exists()

