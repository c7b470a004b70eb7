"""The drift check as a Prefect flow: drain, measure, report, retrain if needed.

Scheduled daily by `make deploy` (flows/deploy.py); run once with
`python -m flows.drift_check`. Thin on purpose: each step is a task calling
one `ml` function.

1. Drain the API's prediction log into the warehouse (`ml.monitoring.drain`).
2. Copy the registry's champions into the warehouse and make sure each has
   its training reference (`ml.monitoring.reference`).
3. Build the monitoring models and their drift tests (`ml.monitoring.drift`).
4. An error-severity drift test failed: run the pipeline flow as a subflow
   on the warehouse as it stands (`skip_dbt`), named after the reason. Its
   champion gate decides; a retrain that does not beat the champion leaves it
   in place, and the outcome says so. A retrain already tried on the same
   champions and data is not repeated.
5. Report: a Prefect markdown artifact, an HTML + markdown file under
   `reports/drift/`, and an MLflow run in `vgsales-monitoring`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.drift_check.tasks import (
    drain_prediction_log,
    fingerprint,
    measure_drift,
    record_champions,
    record_check,
)
from flows.pipeline.flow import vgsales_pipeline
from ml.monitoring import runs as monitoring_runs
from ml.monitoring.drift import RETRAIN
from ml.reporting.drift_report import Action, to_markdown
from ml.settings import load_settings

DRIFT_ARTIFACT = "vgsales-drift-check"
# Prefect flow-run names are for people: the start of the reason is enough.
RUN_NAME_LENGTH = 120


@dataclass
class RetrainOutcome:
    """What the retrain subflow did, per model."""

    flow_run_id: str
    models: list[dict] = field(default_factory=list)  # model_name, version, alias, promoted, reason

    def describe(self) -> str:
        parts = []
        for model in self.models:
            if model["promoted"]:
                parts.append(
                    f"{model['model_name']} version {model['version']} replaced the champion "
                    f"({model['reason']})"
                )
            else:
                parts.append(
                    f"{model['model_name']}: the champion stays ({model['reason']})"
                )
        return f"Retrain run {self.flow_run_id}: " + "; ".join(parts) + "."


@dataclass
class DriftOutcome:
    """Everything the drift check did; `--report` writes it as JSON."""

    flow_run_id: str
    decision: str  # retrain | warn | none
    reason: str
    action: str  # what followed the decision
    drained: dict
    notes: list[str]
    psi: list[dict]
    retrain: RetrainOutcome | None
    report_path: str
    monitoring_run_id: str

    def to_dict(self) -> dict:
        return asdict(self)


def _retrain(headline: str) -> RetrainOutcome:
    """The pipeline flow as a subflow on the current warehouse, named for why."""
    name = f"retrain: {headline}"[:RUN_NAME_LENGTH]
    report = vgsales_pipeline.with_options(flow_run_name=name)(skip_dbt=True)
    return RetrainOutcome(
        flow_run_id=report.flow_run_id,
        models=[
            dict(
                model_name=m.model_name,
                version=m.version,
                alias=m.alias,
                promoted=m.promoted,
                reason=m.reason,
            )
            for m in report.models
        ],
    )


@flow(name="vgsales-prediction-drain", persist_result=False)
def prediction_drain() -> dict:
    """Only step 1: land the prediction log in the warehouse.

    Scheduled hourly by `make deploy`, for a stack without the consumer: the
    stream holds at most PREDICTION_LOG_MAX_BYTES, which a busy API would
    fill long before a once-a-day drain.
    """
    return asdict(drain_prediction_log(load_settings()))


@flow(name="vgsales-drift-check", persist_result=False)
def drift_check(
    window_days: int | None = None, retrain: bool = True, reports_dir: str | None = None
) -> DriftOutcome:
    """Drain the prediction log, measure drift, retrain on error-level drift.

    `window_days`: how far back the prediction log counts (default: the dbt
    var `drift_window_days`, its one home). `retrain=False`
    only reports. `reports_dir`: where the HTML report goes (default
    `reports/drift/` in the project).
    """
    logger = get_run_logger()
    settings = load_settings()
    out_dir = Path(reports_dir) if reports_dir else settings.root / "reports" / "drift"
    drained = drain_prediction_log(settings)
    champions, notes = record_champions(settings)
    check = measure_drift(settings, window_days, [drained.describe(), *notes])
    identity = monitoring_runs.CheckIdentity.of(champions, fingerprint(settings))
    reason = check.reason()

    outcome: RetrainOutcome | None = None
    if check.decision != RETRAIN:
        action = "No retrain: no error-severity drift."
    elif not retrain:
        action = "Retrain disabled for this run (retrain=False): reported only."
    elif (earlier := monitoring_runs.earlier_retrain(settings, identity)) is not None:
        action = (
            f"No retrain: check {earlier} already retrained these champions "
            f"({identity.champions}) on this data (mart {identity.mart_fingerprint}) and "
            "they stayed. The drift is in the data, not the model: investigate the "
            "inputs, or adjust the reference by training on newer data."
        )
        logger.warning(action)
    else:
        logger.warning("Error-severity drift: retraining. %s", reason)
        outcome = _retrain(check.headline())
        action = outcome.describe()
        logger.info(action)

    decided = Action(decision=check.decision, reason=reason, outcome=action)
    page, run_id = record_check(
        settings, check, decided, identity, outcome is not None, out_dir
    )
    create_markdown_artifact(
        key=DRIFT_ARTIFACT,
        markdown=to_markdown(check, decided) + f"\n\nReport: `{page}`; MLflow run `{run_id}`.\n",
        description="Drift decision, PSI per feature, performance against actuals",
    )
    return DriftOutcome(
        flow_run_id=str(flow_run.id),
        decision=check.decision,
        reason=reason,
        action=action,
        drained=asdict(drained),
        notes=check.notes,
        psi=check.drift.astype(object).where(check.drift.notna(), None).to_dict("records"),
        retrain=outcome,
        report_path=str(page),
        monitoring_run_id=run_id,
    )
