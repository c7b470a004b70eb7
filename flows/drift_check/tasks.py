"""The monitoring tasks: each calls one `ml` function and logs what it did.

Used by the drift flow (`flows.drift_check.flow`) and, for the training
reference, by the pipeline flow right after each registration. Like
`flows.pipeline.tasks`, tasks take `Settings` and open their own connections, and
Prefect's result cache is off.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.pipeline.tasks import MARIADB_RETRIES
from ml.modeling.registry import Registration
from ml.modeling.train import FittedModel
from ml.monitoring import reference as drift_reference
from ml.monitoring import runs as monitoring_runs
from ml.monitoring.drain import DrainOutcome, drain
from ml.monitoring.drift import DriftCheck, run_checks
from ml.reporting.drift_report import Action, write
from ml.settings import Settings
from ml.warehouse.landing import LandingTableMissing
from ml.warehouse.mart import mart_fingerprint, read_ml_mart


@task(cache_policy=NO_CACHE, **MARIADB_RETRIES)
def record_training_reference(
    settings: Settings, fitted: FittedModel, registration: Registration, frame: pd.DataFrame
) -> int:
    """The registered version's training reference, for the drift checks.

    A database whose landing tables are missing (dbt has not run on it since
    they were introduced) only loses the drift check of this version: the
    training run is not failed for it.
    """
    logger = get_run_logger()
    facts = drift_reference.VersionFacts(
        model_name=fitted.model_name,
        model_version=registration.version,
        run_id=registration.run_id,
        data_digest=fitted.data_digest,
    )
    try:
        rows = drift_reference.record_reference(settings, facts, frame)
    except LandingTableMissing as error:
        logger.warning("No training reference recorded, so no drift check for it: %s", error)
        return 0
    logger.info(
        "Training reference of %s version %s: %s bins",
        fitted.model_name, registration.version, rows,
    )
    return rows


@task(cache_policy=NO_CACHE, **MARIADB_RETRIES)
def drain_prediction_log(settings: Settings) -> DrainOutcome:
    """Land the API's new prediction-log entries in the warehouse."""
    logger = get_run_logger()
    outcome = drain(settings, log=logger.info)
    if outcome.trimmed_unread or outcome.malformed or outcome.dropped or outcome.vanished:
        logger.warning(outcome.describe())
    return outcome


@task(cache_policy=NO_CACHE, **MARIADB_RETRIES)
def record_champions(settings: Settings) -> tuple[dict, list[str]]:
    """Champions into the warehouse; missing references filled in or noted."""
    logger = get_run_logger()
    champions = drift_reference.record_champions(settings)
    notes = [
        f"{name} has no champion in the registry: nothing to check for it"
        for name, facts in champions.items()
        if facts is None
    ]
    notes += drift_reference.backfill_references(
        settings, champions, lambda: read_ml_mart(settings), log=logger.info
    )
    for note in notes:
        logger.warning(note)
    return champions, notes


@task(cache_policy=NO_CACHE)
def measure_drift(settings: Settings, window_days: int | None, notes: list[str]) -> DriftCheck:
    """dbt build of the monitoring models and drift tests; the tables read back."""
    logger = get_run_logger()
    check = run_checks(settings, window_days=window_days, notes=notes, log=logger.info)
    logger.info("Drift decision: %s. %s", check.decision, check.reason())
    return check


@task(cache_policy=NO_CACHE, **MARIADB_RETRIES)
def fingerprint(settings: Settings) -> str:
    """The mart's fingerprint: which data a retrain would learn from."""
    return mart_fingerprint(settings)


@task(cache_policy=NO_CACHE)
def record_check(
    settings: Settings,
    check: DriftCheck,
    action: Action,
    identity: monitoring_runs.CheckIdentity,
    retrained: bool,
    reports_dir: Path,
) -> tuple[Path, str]:
    """Write the HTML/markdown report and the MLflow monitoring run."""
    page = write(check, action, reports_dir)
    run_id = monitoring_runs.log_check(
        settings,
        check,
        identity=identity,
        decision=action.decision,
        reason=action.reason,
        retrained=retrained,
        tags={"flow_run_id": str(flow_run.id), "report": str(page)},
        report_files=[page, page.with_suffix(".md")],
    )
    return page, run_id


