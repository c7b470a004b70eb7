"""Monitoring for real: the API's prediction log (written by serve's own
PredictionLog into Redis) drained into MariaDB, drift measured by dbt against
the champions' training references, the drift flow run as `make drift-check`
runs it (in a child process; on the session's Prefect server, not in
ephemeral mode, which would start a server per run), and a data refresh
through the warehouse.

One database (the run's `monitoring`), Redis db 12 of the run's block, MLflow home
in a temp folder; a 3,000-row synthetic file. The story, in fixture order:

1. base build (dbt) and both models trained and registered as champions,
   without training references (the first check must fill them in);
2. a calm check: predictions shaped like the training data, drift below the
   warning threshold, nothing triggered;
3. a drifted check: predictions on an unseen platform and ten years late; the
   error-severity drift test fails and the retrain subflow runs, which keeps
   the champions (same data) and says so;
4. a refresh: later years, a new platform, revised sales and stray codes go
   through the same build; the quarantine and reconciliation hold, history is
   kept, and the earlier predictions about the new releases meet their actuals.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
import sqlalchemy as sa

from ml import features
from ml.data.refresh import INVALID_PLATFORM, NEW_PLATFORM, RARE_PLATFORM, write_refresh
from ml.data.synthetic import write_csv
from ml.modeling import evaluate, registry, train
from ml.modeling.names import NameReference
from ml.monitoring import drift
from ml.monitoring import reference as drift_reference
from ml.monitoring import runs as monitoring_runs
from ml.monitoring.drain import CONSUMER, GROUP, drain
from ml.monitoring.stream import STREAM
from ml.settings import ROOT
from ml.warehouse.dbt_runner import run_dbt
from ml.warehouse.mart import mart_fingerprint, read_ml_mart, read_written_names
from serve.prediction_log import PredictionLog
from tests.helpers import current_run, free_port, isolated_settings

pytestmark = pytest.mark.slow

REDIS_DB = 12
EDGE_REDIS_DB = 13
BASE_ROWS = 3000
# Per model and check: above the var drift_min_rows (500), so drift is judged.
PREDICTIONS = 700
PER_ENTRY = 100
FLOW_TIMEOUT_SECONDS = 1200


def query(settings, sql: str, **params) -> pd.DataFrame:
    engine = sa.create_engine(settings.sqlalchemy_url(reader=True))
    try:
        with engine.connect() as connection:
            return pd.read_sql(sa.text(sql), connection, params=params)
    finally:
        engine.dispose()


def edge_redis_url(settings) -> str:
    """The drain edge cases' Redis db, in this run's block like REDIS_DB (an
    absolute db 13 was shared by two runs on one stack, and failed both)."""
    db = current_run(settings.run_dir).redis_db(EDGE_REDIS_DB)
    return settings.redis_url.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("monitoring")


@pytest.fixture(scope="module")
def settings(stack_settings, home):
    base = home / "base"
    write_csv(base / "vgsales.csv", BASE_ROWS, seed=7)
    settings = isolated_settings(stack_settings, "monitoring", REDIS_DB, home)
    settings = dataclasses.replace(
        settings, vgsales_seeds_dir=str(base), api_port=free_port()
    )
    server = sa.create_engine(settings.sqlalchemy_url().replace(f"/{settings.mariadb_database}?", "/?"))
    with server.begin() as connection:
        names = connection.execute(
            sa.text("select schema_name from information_schema.schemata where schema_name like :p"),
            {"p": f"{settings.mariadb_database}%"},
        ).scalars().all()
        for name in names:
            connection.execute(sa.text(f"drop database `{name}`"))
    server.dispose()
    for url in (settings.redis_url, edge_redis_url(settings)):
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
    return settings


@pytest.fixture(scope="module")
def base_build(settings, home):
    result = run_dbt(["build", "--no-use-colors"], settings, log=lambda line: None,
                     target_path=home / "target")
    assert result.ok, [r["unique_id"] for r in result.results if r["status"] in ("error", "fail")]
    return result


@pytest.fixture(scope="module")
def champions(settings, base_build):
    """Both models registered as champions, as a pipeline run from before
    training references existed would have left them (no reference), with
    the warehouse's name reference as the pipeline fits them (it is part of
    a version's fingerprint)."""
    frame = read_ml_mart(settings)
    names = NameReference.from_frame(read_written_names(settings))
    out = {}
    for model_name in features.MODEL_NAMES:
        fitted = train.fit(model_name, frame, names=names)
        registration = registry.register(fitted, evaluate.evaluate(fitted, frame), settings, {})
        assert registration.promoted, registration.reason
        out[model_name] = (registration, fitted.pipeline)
    return out


def log_predictions(settings, champions, model_name, frame, *, tag: str) -> list[str]:
    """Predict `frame`'s rows with the champion and log them as the API does."""
    registration, pipeline = champions[model_name]
    inputs = features.model_input(model_name, frame)
    predictions = features.to_sales(model_name, pipeline.predict(inputs)).tolist()
    # The API logs the request fields a model does not read (prerelease's year) too.
    logged = inputs.assign(**{
        f.name: frame[f.name].astype("float64").to_numpy()
        for f in features.spec(model_name).request_only
    })
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in logged.to_dict("records")
    ]
    log = PredictionLog(settings.redis_url, settings.prediction_log_max_bytes)
    request_ids = []
    for start in range(0, len(records), PER_ENTRY):
        request_id = f"{tag}-{uuid.uuid4().hex[:12]}"
        chunk = slice(start, start + PER_ENTRY)
        log.record("/test/batch", request_id, model_name, str(registration.version),
                   records[chunk], predictions[chunk], [[] for _ in records[chunk]])
        request_ids.append(request_id)
    log.flush(timeout=30)
    return request_ids


def training_like(settings, model_name: str, seed: int) -> pd.DataFrame:
    spec = features.spec(model_name)
    rows = train.fitting_rows(spec, read_ml_mart(settings))
    return rows.sample(PREDICTIONS, replace=True, random_state=seed).reset_index(drop=True)


def run_drift_check(settings, prefect, home, name: str) -> tuple[dict, str]:
    """`python -m flows.drift_check` in a child process with `settings` as its
    env, on the session's Prefect server (tests/system/conftest.py)."""
    report = home / name / "outcome.json"
    env = {**os.environ, **settings.as_env(), **prefect.client_env()}
    done = subprocess.run(
        [sys.executable, "-m", "flows.drift_check", "--report", str(report),
         "--reports-dir", str(home / name / "reports")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=FLOW_TIMEOUT_SECONDS,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-8000:]
    return json.loads(report.read_text()), output


@pytest.fixture(scope="module")
def calm_check(settings, champions, prefect_server, home):
    ids = []
    for seed, model_name in enumerate(features.MODEL_NAMES):
        frame = training_like(settings, model_name, seed)
        ids += log_predictions(settings, champions, model_name, frame, tag="calm")
    return run_drift_check(settings, prefect_server, home, "calm")


@pytest.fixture(scope="module")
def refresh_file(settings, home):
    out = home / "refresh" / "vgsales.csv"
    summary = write_refresh(Path(settings.vgsales_seeds_dir) / "vgsales.csv", out, seed=3)
    return out, summary


@pytest.fixture(scope="module")
def drifted_check(settings, champions, calm_check, refresh_file, prefect_server, home):
    shifted = training_like(settings, "global_from_regional", 11)
    shifted["platform"] = "Stadia"  # never seen in training
    log_predictions(settings, champions, "global_from_regional", shifted, tag="shifted")
    late = training_like(settings, "prerelease", 12)
    late["year"] = late["year"] + 10
    late["platform_age_years"] = late["platform_age_years"] + 10
    log_predictions(settings, champions, "prerelease", late, tag="late")
    # Questions about releases only the refresh will bring (later years).
    path, summary = refresh_file
    raw = pd.read_csv(path, keep_default_na=False)
    future = raw[raw.Year.isin([str(y) for y in summary.added_years])
                 & (raw.Platform != INVALID_PLATFORM) & (raw.Platform != RARE_PLATFORM)]
    future = future.head(100).rename(columns=str.lower).assign(year=lambda f: f.year.astype(float))
    for model_name in features.MODEL_NAMES:
        log_predictions(settings, champions, model_name, future, tag="future")
    outcome = run_drift_check(settings, prefect_server, home, "drifted")
    performance = query(settings, f"select * from `{settings.mariadb_database}`.mon_prediction_performance")
    return outcome, performance


@pytest.fixture(scope="module")
def refreshed(settings, drifted_check, refresh_file, home):
    before = query(settings, f"select release_id from `{settings.mariadb_database}`.fct_sales")
    path, summary = refresh_file
    refreshed_settings = dataclasses.replace(settings, vgsales_seeds_dir=str(path.parent))
    build = run_dbt(["build", "--no-use-colors"], refreshed_settings, log=lambda line: None,
                    target_path=home / "target")
    check = drift.run_checks(refreshed_settings, log=lambda line: None)
    return dict(before=before, build=build, check=check, summary=summary, refresh_csv=path)


# -- the calm check ---------------------------------------------------------------


def test_calm_check_drains_every_prediction_once(settings, calm_check):
    outcome, _ = calm_check
    drained = outcome["drained"]
    entries = 2 * PREDICTIONS // PER_ENTRY
    assert drained["entries"] == entries
    assert drained["rows"] == drained["inserted"] == 2 * PREDICTIONS
    assert drained["trimmed_unread"] == drained["malformed"] == drained["dropped"] == 0
    landed = query(
        settings,
        f"select model_name, count(*) as n, count(distinct request_id) as requests "
        f"from `{settings.mariadb_database}`.fct_predictions where request_id like 'calm-%' "
        "group by model_name",
    )
    assert set(landed.n) == {PREDICTIONS} and set(landed.requests) == {PREDICTIONS // PER_ENTRY}
    client = redis.Redis.from_url(settings.redis_url)
    assert client.xpending(STREAM, GROUP)["pending"] == 0
    client.close()


def test_calm_check_fills_in_the_missing_training_references(settings, champions, calm_check):
    versions = query(
        settings,
        f"select model_name, model_version, data_digest, train_split "
        f"from `{settings.raw_database}`.raw_model_versions",
    )
    assert {(r.model_name, r.model_version) for r in versions.itertuples()} == {
        (name, registration.version) for name, (registration, _) in champions.items()
    }
    assert set(versions.train_split) == {"split_random", "all"}  # prerelease: every labelled row
    outcome, _ = calm_check
    assert not any("no training reference" in note for note in outcome["notes"])


def test_predictions_like_the_training_data_trigger_nothing(calm_check):
    outcome, _ = calm_check
    assert outcome["decision"] == "none" and outcome["retrain"] is None
    assert outcome["action"].startswith("No retrain")
    psi = pd.DataFrame(outcome["psi"])
    on_predictions = psi[psi.drift_source == "predictions"]
    assert len(on_predictions) == sum(len(features.spec(m).features) for m in features.MODEL_NAMES)
    assert on_predictions.is_evaluated.all()
    assert (on_predictions.current_rows == PREDICTIONS).all()
    assert (on_predictions.psi < 0.1).all(), on_predictions[["feature", "psi"]]
    assert (on_predictions.drift_status == "ok").all()


def test_the_champions_own_data_has_no_batch_drift(calm_check):
    # Python's reference bins and dbt's binning of the same rows agree exactly.
    psi = pd.DataFrame(calm_check[0]["psi"])
    batch = psi[psi.drift_source == "batch"]
    assert len(batch) and (batch.current_rows == batch.reference_rows).all()
    assert np.allclose(batch.psi.astype(float), 0.0, atol=1e-12)


def test_calm_check_report_and_monitoring_run(settings, calm_check):
    outcome, _ = calm_check
    page = Path(outcome["report_path"])
    html = page.read_text()
    n_features = sum(len(features.spec(m).features) for m in features.MODEL_NAMES)
    assert html.count("data:image/png;base64,") == n_features
    assert "No retrain" in html and page.with_suffix(".md").exists()
    run = registry.client(settings).get_run(
        outcome["monitoring_run_id"]
    )
    assert run.data.tags["decision"] == "none" and run.data.tags["retrained"] == "false"
    assert run.data.metrics["psi.batch.prerelease.platform_age_years"] == pytest.approx(0.0, abs=1e-12)
    assert "perf.prerelease.v1.mae.all" in run.data.metrics


# -- the drifted check ------------------------------------------------------------


def test_shifted_predictions_fail_the_drift_test_and_retrain(settings, champions, drifted_check):
    (outcome, output), _ = drifted_check
    assert outcome["decision"] == "retrain"
    psi = pd.DataFrame(outcome["psi"]).set_index(["drift_source", "model_name", "feature"])
    platform = psi.loc[("predictions", "global_from_regional", "platform")]
    year = psi.loc[("predictions", "prerelease", "platform_age_years")]
    assert platform.drift_status == year.drift_status == "error"
    assert platform.psi >= 0.25 and year.psi >= 0.25
    assert platform.unseen_rate >= 0.45
    assert "drift_psi_below_error_threshold" in outcome["reason"]
    assert "global_from_regional v1 `platform` on predictions" in outcome["reason"]
    assert "Error-severity drift: retraining" in output


def test_a_retrain_that_does_not_win_leaves_the_champions(settings, champions, drifted_check,
                                                           prefect_server):
    (outcome, _), _ = drifted_check
    retrain = outcome["retrain"]
    assert retrain and retrain["flow_run_id"]
    assert [m["model_name"] for m in retrain["models"]] == list(features.MODEL_NAMES)
    client = registry.client(settings)
    for model in retrain["models"]:
        assert not model["promoted"] and model["alias"] == "champion", model
        assert "unchanged" in model["reason"], model
        registration = champions[model["model_name"]][0]
        champion = client.get_model_version_by_alias(model["model_name"], "champion")
        assert int(champion.version) == registration.version, (champion, registration)
    assert "the champion stays" in outcome["action"]
    # The retrain is a real flow run of the pipeline, named after the drift.
    with sqlite3.connect(prefect_server.database) as db:
        names = dict(db.execute("select id, name from flow_run").fetchall())
    name = names.get(retrain["flow_run_id"]) or names.get(retrain["flow_run_id"].replace("-", ""))
    assert name and name.startswith("retrain: "), (retrain["flow_run_id"], names)
    assert "global_from_regional.platform PSI" in name, name


def test_the_retrain_is_recorded_and_not_repeated_on_the_same_data(settings, drifted_check):
    (outcome, _), _ = drifted_check
    run = registry.client(settings).get_run(
        outcome["monitoring_run_id"]
    )
    assert run.data.tags["decision"] == "retrain" and run.data.tags["retrained"] == "true"
    assert run.data.metrics["psi.predictions.global_from_regional.platform"] >= 0.25
    champions = drift_reference.record_champions(settings)
    identity = monitoring_runs.CheckIdentity.of(champions, mart_fingerprint(settings))
    assert monitoring_runs.earlier_retrain(settings, identity) == outcome["monitoring_run_id"]
    assert "Retrain run" in Path(outcome["report_path"]).read_text()


# -- the refresh ------------------------------------------------------------------


def test_refresh_builds_with_quarantine_and_reconciliation_intact(refreshed):
    build = refreshed["build"]
    assert build.ok, [r["unique_id"] for r in build.results if r["status"] in ("error", "fail")]
    statuses = {r["unique_id"].split(".")[2]: r["status"] for r in build.results}
    assert statuses["assert_raw_rows_reconcile_to_fct_and_rejected"] == "pass"
    assert statuses["fct_sales_history"] == "success"


def test_a_new_platform_becomes_a_member_and_stray_codes_stay_quarantined(settings, refreshed):
    database = settings.mariadb_database
    platform = query(settings, f"select * from `{database}`.dim_platform "
                               "where platform_code = :code", code=NEW_PLATFORM)
    assert len(platform) == 1
    row = platform.iloc[0]
    assert (row.manufacturer, row.platform_kind) == ("Unknown", "unknown")
    assert pd.isna(row.generation) and pd.isna(row.launch_year) and not row.is_unknown
    on_new = query(settings, f"select count(*) as n from `{database}`.ml_release_features "
                             "where platform = :code", code=NEW_PLATFORM).n.iloc[0]
    assert on_new >= 0.9 * refreshed["summary"].new_platform_rows
    rejected = query(settings, f"select platform_code, reason_code, count(*) as n "
                               f"from `{database}`.rejected_vgsales where platform_code in "
                               "(:invalid, :rare) group by platform_code, reason_code",
                     invalid=INVALID_PLATFORM, rare=RARE_PLATFORM)
    assert {(r.platform_code, r.reason_code, r.n) for r in rejected.itertuples()} == {
        (INVALID_PLATFORM, "unknown_platform", 2),
        (RARE_PLATFORM, "unknown_platform", 3),
    }


def test_refresh_adds_releases_and_keeps_every_earlier_one(settings, refreshed):
    after = query(settings, f"select release_id from `{settings.mariadb_database}`.fct_sales")
    before = set(refreshed["before"].release_id)
    assert before <= set(after.release_id)
    added = len(after) - len(before)
    assert 0.8 * refreshed["summary"].added_rows <= added <= refreshed["summary"].added_rows + 5


def test_history_keeps_the_sales_as_of_each_load(settings, refreshed):
    database = settings.mariadb_database
    history = query(
        settings,
        "select load_id, load_file_sha256, release_id, "
        "na_sales + eu_sales + jp_sales + other_sales as regional "
        f"from `{database}`.fct_sales_history",
    )
    loads = query(settings, f"select invocation_id, file_sha256 from `{settings.raw_database}`"
                            ".seed_load_audit where seed_name = 'vgsales' order by loaded_at")
    assert len(loads) == 2 and loads.file_sha256.nunique() == 2
    # One batch per load, the whole accepted file each time.
    per_load = history.groupby("load_id").release_id.count()
    assert list(per_load.index.sort_values()) == sorted(loads.invocation_id)
    first, second = loads.invocation_id
    assert per_load[first] == len(refreshed["before"])
    after = query(settings, f"select count(*) as n from `{database}`.fct_sales").n.iloc[0]
    assert per_load[second] == after
    # The sales of a release as of each load, side by side.
    wide = history.pivot(index="release_id", columns="load_id", values="regional")
    both = wide.dropna()
    raised = both[both[second] != both[first]]
    assert len(raised) >= 0.8 * refreshed["summary"].revised_rows
    assert (raised[second] > raised[first]).all()  # this refresh only raised sales
    changes = query(
        settings,
        f"select load_number, change_kind, count(*) as n from `{database}`.mon_sales_revisions "
        "group by load_number, change_kind",
    )
    counts = {(r.load_number, r.change_kind): r.n for r in changes.itertuples()}
    assert counts[(1, "added")] == per_load[first]
    assert counts[(2, "revised")] == len(raised)
    assert counts[(2, "added")] == after - len(refreshed["before"])
    assert (2, "removed") not in counts


def test_reloading_the_same_file_adds_no_history(settings, refreshed, home):
    path = refreshed["refresh_csv"]
    # The seed loads the file again (a new load of the same content).
    again = run_dbt(
        ["build", "--select", "resource_type:seed", "fct_sales_history", "--no-use-colors"],
        dataclasses.replace(settings, vgsales_seeds_dir=str(path.parent)),
        log=lambda line: None, target_path=home / "target",
    )
    assert again.ok
    audit = query(settings, f"select count(*) as n from `{settings.raw_database}`.seed_load_audit "
                            "where seed_name = 'vgsales'")
    loads = query(settings, "select count(distinct load_id) as n from "
                            f"`{settings.mariadb_database}`.fct_sales_history")
    assert (audit.n.iloc[0], loads.n.iloc[0]) == (3, 2)


def test_the_new_batch_shows_drift_and_actuals_meet_earlier_predictions(refreshed, drifted_check):
    check = refreshed["check"]
    batch = check.drift[(check.drift.drift_source == "batch")
                        & (check.drift.model_name == "global_from_regional")].set_index("feature")
    assert batch.loc["platform", "unseen_rate"] > 0 and batch.loc["platform", "psi"] > 0.1
    years = [str(y) for y in refreshed["summary"].added_years]
    _, performance_before = drifted_check
    assert not performance_before.period_label.isin(years).any()
    after = check.performance[check.performance.period_label.isin(years)]
    assert set(after.model_name) == set(features.MODEL_NAMES)
    assert (after.matched_predictions > 0).all() and (after.mae >= 0).all()


# -- the drain's edge cases (own Redis db, same warehouse) -----------------------------


@pytest.fixture
def edge_settings(settings, base_build):
    settings = dataclasses.replace(
        settings, redis_url=edge_redis_url(settings)
    )
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    yield settings, client
    client.close()


def _entries(client, n: int, tag: str) -> None:
    for number in range(n):
        client.xadd(
            STREAM,
            {"ts": "1767225600", "endpoint": "/edge", "request_id": f"{tag}-{number}",
             "model": "prerelease", "version": "999",
             "features": json.dumps([{"platform": "ZZ"}]), "predictions": "[0.5]",
             "unseen": '[["platform"]]'},
        )


def test_drain_rereads_entries_a_crashed_drain_left_pending(edge_settings):
    settings, client = edge_settings
    _entries(client, 5, "crash")
    client.xgroup_create(STREAM, GROUP, id="0")
    client.xreadgroup(GROUP, CONSUMER, {STREAM: ">"}, count=3)  # read, then "crashed"
    outcome = drain(settings, log=lambda line: None)
    assert (outcome.entries, outcome.replayed, outcome.inserted) == (5, 3, 5)
    assert client.xpending(STREAM, GROUP)["pending"] == 0
    again = drain(settings, log=lambda line: None)
    assert (again.entries, again.inserted) == (0, 0)


def test_what_the_byte_cap_refuses_is_reported_exactly(edge_settings):
    """A stream at its cap takes no more entries; each refused prediction is
    counted once, as a drop record the next drain lands beside the rows."""
    settings, client = edge_settings
    records = [{"platform": "ZZ", "genre": "Misc", "year": 2001.0}] * 3
    dropped = []
    log = PredictionLog(settings.redis_url, max_bytes=2000, on_dropped=dropped.append)
    for number in range(10):
        log.record("/edge", f"cap-{number}", "prerelease", "999", records, [0.5] * 3, [[]] * 3)
    log.flush(timeout=30)
    outcome = drain(settings, log=lambda line: None)
    assert outcome.rows + outcome.dropped == 30
    assert outcome.rows >= 3 and outcome.dropped >= 3 and outcome.dropped == sum(dropped)
    assert "could not log" in outcome.describe()
    losses = query(settings, f"select reason, sum(predictions) as n from "
                             f"`{settings.raw_database}`.raw_prediction_log_losses "
                             "where reason = 'byte_cap' group by reason")
    assert int(losses.n.iloc[0]) == outcome.dropped
    # Landed entries freed their bytes: the stream takes entries again.
    assert client.xlen(STREAM) == 0
    log.record("/edge", "cap-again", "prerelease", "999", records, [0.5] * 3, [[]] * 3)
    log.flush(timeout=30)
    again = drain(settings, log=lambda line: None)
    assert (again.rows, again.dropped) == (3, 0)
