"""The champion gate on a real MLflow (SQLite registry in a temp folder).

Creating an MLflow SQLite store runs its migrations (seconds), so one empty
store is made per session and copied for each test that needs a fresh one.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from ml import features
from ml.modeling import champions, evaluate, registry, train
from ml.settings import ROOT, load_settings
from tests.helpers import isolated_settings
from tests.mart_sample import mart_frame

TAGS = {"git_sha": "0123abc", "dbt_invocation_id": "inv-1", "dataset_digest": "snap-1"}


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("mlflow_empty")
    settings = isolated_settings(load_settings(), "registry", 0, home)
    registry.client(settings).search_experiments()  # creates the tables
    return home / "mlflow.db"


@pytest.fixture
def settings(empty_store, tmp_path):
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    return isolated_settings(load_settings(), "registry", 0, tmp_path)


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    return mart_frame(1200, seed=2)


def trained(model_name: str, frame: pd.DataFrame):
    fitted = train.fit(model_name, frame)
    return fitted, evaluate.evaluate(fitted, frame)


def with_noisy_training_labels(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same mart with shuffled labels on train rows: a worse model, new data."""
    noisy = frame.copy()
    train_rows = noisy.index[noisy.split_time == "train"]
    for column in ("log_global_sales", "global_sales"):
        noisy.loc[train_rows, column] = (
            noisy.loc[train_rows, column].sample(frac=1, random_state=seed).to_numpy()
        )
    return noisy


@pytest.fixture(scope="module")
def good(mart):
    return trained("prerelease", mart)


@pytest.fixture(scope="module")
def worse(mart):
    return trained("prerelease", with_noisy_training_labels(mart, seed=1))


def versions(settings, model_name: str) -> list[int]:
    client = registry.client(settings)
    return sorted(int(v.version) for v in client.search_model_versions(f"name = '{model_name}'"))


def champion_version(settings, model_name: str) -> int:
    return champions.load_champion_with_info(model_name, settings).info.version


def run_tags(settings, run_id: str) -> dict[str, str]:
    return MlflowClient(settings.mlflow_tracking_uri).get_run(run_id).data.tags


def test_gate_promotes_only_a_strictly_better_model(settings, good, worse, mart):
    worse_fit, worse_eval = worse
    good_fit, good_eval = good
    assert good_eval.held_out_value > worse_eval.held_out_value

    first = registry.register(worse_fit, worse_eval, settings, TAGS)
    assert (first.promoted, first.alias, first.version) == (True, "champion", 1)
    assert "first champion" in first.reason

    better = registry.register(good_fit, good_eval, settings, TAGS)
    assert (better.promoted, better.alias, better.version) == (True, "champion", 2)
    assert better.reason.startswith("beats the champion: backtest_r2_shapes_mean")
    assert "against a stated margin of 0.01" in better.reason

    # A different, worse model: registered for the record, never served.
    other_worse = trained("prerelease", with_noisy_training_labels(mart, seed=2))
    challenger = registry.register(*other_worse, settings, TAGS)
    assert (challenger.promoted, challenger.alias, challenger.version) == (False, "challenger", 3)
    assert challenger.reason.startswith("worse than the champion")
    assert champion_version(settings, "prerelease") == 2
    tags = run_tags(settings, challenger.run_id)
    assert tags["gate.decision"] == "challenger"
    assert tags["gate.reason"] == challenger.reason

    # Same pipeline and metrics under a new fingerprint: a tie keeps the champion.
    tie = dataclasses.replace(good_fit, params={**good_fit.params, "note": "retagged"})
    tied = registry.register(tie, good_eval, settings, TAGS)
    assert (tied.promoted, tied.alias) == (False, "challenger")
    assert tied.reason.startswith("ties the champion, which stays")
    assert champion_version(settings, "prerelease") == 2

    # Better by less than the stated margin: noise, the champion stays.
    nudged = dataclasses.replace(good_fit, params={**good_fit.params, "note": "nudged"})
    within = registry.register(nudged, shifted(good_eval, 0.004), settings, TAGS)
    assert (within.promoted, within.alias) == (False, "challenger")
    assert within.reason.startswith("within the noise, the champion stays")
    assert "gain 0.0040 against a stated margin of 0.01" in within.reason
    assert champion_version(settings, "prerelease") == 2


def shifted(evaluation: evaluate.Evaluation, r2: float) -> evaluate.Evaluation:
    """The evaluation with the model's backtest R² raised by `r2` in every shape."""
    scores = evaluation.backtest.scores.copy()
    scores.loc[scores.candidate == "model", "r2"] += r2
    backtest = dataclasses.replace(evaluation.backtest, scores=scores)
    moved = dataclasses.replace(evaluation, backtest=backtest)
    assert moved.held_out_value == pytest.approx(evaluation.held_out_value + r2)
    return moved


def test_rerun_on_unchanged_data_registers_nothing_and_keeps_the_champion(settings, good, mart):
    fitted, evaluation = good
    first = registry.register(fitted, evaluation, settings, TAGS)
    # A rerun of the whole flow: fit and evaluate again on the same mart.
    refit, reevaluation = trained("prerelease", mart)
    rerun = registry.register(refit, reevaluation, settings, {**TAGS, "git_sha": "later"})
    assert rerun.reused and not rerun.promoted
    assert (rerun.version, rerun.alias, rerun.run_id) == (first.version, "champion", first.run_id)
    assert rerun.reason.startswith("unchanged: version 1 has the same fingerprint")
    assert versions(settings, "prerelease") == [1]
    assert champion_version(settings, "prerelease") == 1


def test_lower_is_better_for_global_from_regional(settings, mart):
    good_fit, good_eval = trained("global_from_regional", mart)
    noisy = mart.copy()
    train_rows = noisy.index[noisy.split_random == "train"]
    noisy.loc[train_rows, "global_sales"] = noisy.loc[train_rows, "global_sales"].to_numpy()[::-1]
    worse_fit, worse_eval = trained("global_from_regional", noisy)
    assert good_eval.held_out_metric == "random_test_rmse"
    assert worse_eval.held_out_value > good_eval.held_out_value

    assert registry.register(good_fit, good_eval, settings, TAGS).promoted
    worse = registry.register(worse_fit, worse_eval, settings, TAGS)
    assert (worse.promoted, worse.alias) == (False, "challenger")
    assert "lower is better" in worse.reason
    assert champion_version(settings, "global_from_regional") == 1


def test_a_version_left_undecided_by_a_killed_run_is_judged_on_rerun(settings, good):
    fitted, evaluation = good
    first = registry.register(fitted, evaluation, settings, TAGS)
    client = registry.client(settings)
    # What a kill between create_model_version and the gate leaves behind.
    client.delete_registered_model_alias("prerelease", "champion")
    client.delete_model_version_tag("prerelease", str(first.version), "gate.decision")
    rerun = registry.register(fitted, evaluation, settings, TAGS)
    assert (rerun.version, rerun.alias, rerun.promoted) == (first.version, "champion", True)
    assert versions(settings, "prerelease") == [1]


def test_champion_loads_and_predicts_on_api_records(settings, good, mart):
    fitted, evaluation = good
    registration = registry.register(fitted, evaluation, settings, TAGS)
    records = [
        {"platform": "PS4", "genre": "Shooter", "publisher": "Publisher 03", "year": 2016,
         "series_prior_titles": 2, "series_prior_mean_log_sales": 0.9},
        {"platform": "Unreleased", "genre": "Puzzle", "publisher": "Nobody Yet", "year": 2030},
    ]
    inputs = features.model_input("prerelease", records)
    pipeline = champions.load_champion_with_info("prerelease", settings).pipeline
    assert np.allclose(pipeline.predict(inputs), fitted.pipeline.predict(inputs))
    # The pyfunc flavour enforces the logged signature on the same frame.
    pyfunc = mlflow.pyfunc.load_model("models:/prerelease@champion")
    assert np.allclose(np.asarray(pyfunc.predict(inputs)), fitted.pipeline.predict(inputs))

    info = champions.load_champion_with_info("prerelease", settings).info
    assert (info.version, info.run_id) == (registration.version, registration.run_id)
    assert info.data_digest == fitted.data_digest
    assert info.held_out_metric == "backtest_r2_shapes_mean"
    assert info.held_out_value == pytest.approx(evaluation.held_out_value)
    assert info.tags["git_sha"] == "0123abc" and info.trained_at


def test_run_keeps_reports_under_the_artifact_root(settings, good):
    registration = registry.register(*good, settings, TAGS)
    client = registry.client(settings)
    experiment = client.get_experiment_by_name("prerelease")
    root = Path(settings.mlflow_artifact_root).resolve().as_uri()
    assert experiment.artifact_location.startswith(root)
    logged = {a.path for a in client.list_artifacts(registration.run_id, "evaluation")}
    expected = {f"evaluation/{name}" for name in ("importance.png", "segments.csv", "scores.csv")}
    assert expected <= logged
    run = client.get_run(registration.run_id)
    assert run.data.params["model_class"] == "HistGradientBoostingRegressor"
    assert run.data.metrics["backtest_r2_shapes_mean"] == pytest.approx(good[1].held_out_value)
    assert run.data.tags["dbt_invocation_id"] == "inv-1"


def test_version_records_what_it_was_fitted_on_and_its_backtest(settings, good, mart):
    """The names the model card reads from a registered version."""
    registration = registry.register(*good, settings, TAGS)
    client = registry.client(settings)
    run = client.get_run(registration.run_id)
    for name in ("backtest_r2_mean", "backtest_mae_mean", "backtest_rmse_mean",
                 "backtest_r2_h1", "backtest_r2_h2", "backtest_r2_h3",
                 "interval_coverage", "interval_width_median",
                 "baseline_median_backtest_r2_mean",
                 "baseline_label_encoded_forest_backtest_r2_mean",
                 "backtest_r2_shapes_mean", "backtest_shape_no_title_r2_mean",
                 "baseline_categorical_boosting_backtest_shape_no_title_r2_mean",
                 "interval_coverage_shape_no_title"):
        assert name in run.data.metrics, name
    version = client.get_model_version("prerelease", str(registration.version))
    labelled = mart.dropna(subset=["year"])
    years = f"{int(labelled.year.min())}-{int(labelled.year.max())}"
    for tags in (run.data.tags, version.tags):
        assert tags["fitted_rows"] == str(len(labelled))
        assert tags["fitted_years"] == years
        assert tags["data_last_year"].isdigit()
    logged = {a.path for a in client.list_artifacts(registration.run_id, "backtest")}
    assert logged == {"backtest/scores.csv", "backtest/coverage.csv"}


def test_load_champion_without_one_says_what_to_do(settings):
    with pytest.raises(champions.NoChampionError, match="no champion.*make pipeline"):
        champions.load_champion_with_info("prerelease", settings).pipeline


OPEN_THE_STORE = """
import dataclasses, sys, time
from pathlib import Path
from ml.modeling import champions
from ml.settings import load_settings

home, go, ready = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
settings = dataclasses.replace(
    load_settings(), mlflow_tracking_uri=f"sqlite:///{home / 'mlflow.db'}",
    mlflow_artifact_root=str(home / "artifacts"),
)
ready.touch()
while not go.exists():  # every process has imported MLflow: open at once
    time.sleep(0.01)
print(champions.client(settings).search_registered_models())
"""


def test_processes_opening_a_fresh_local_store_at_once_all_succeed(tmp_path):
    """The API's instances start together on one store: MLflow creating its
    tables from several processes at once used to fail all but one worker
    (`table _alembic_tmp_tags already exists`, seen in CI)."""
    go, ready = tmp_path / "go", [tmp_path / f"ready-{n}" for n in range(4)]
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN_THE_STORE, str(tmp_path), str(go), str(path)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for path in ready
    ]
    deadline = time.monotonic() + 120
    while not all(path.exists() for path in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    failed = [output[-2000:] for process, output in zip(processes, outputs)
              if process.returncode != 0]
    assert not failed, failed
    assert all(output.strip().endswith("[]") for output in outputs), outputs
