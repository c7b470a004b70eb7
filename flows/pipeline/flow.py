"""The vgsales pipeline as a Prefect flow: warehouse, snapshot, models, API.

Thin on purpose: every step is a task in `flows.pipeline.tasks` calling one `ml`
function. The flow reads its settings from the environment (the entry point,
`flows.pipeline`, exports them before Prefect is imported); it takes none as a
parameter because Prefect stores flow parameters, and settings hold passwords.
"""

from __future__ import annotations

import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from flows.drift_check.tasks import record_training_reference
from flows.pipeline.summary import ModelOutcome, PipelineReport
from flows.pipeline.tasks import (
    build_warehouse,
    check_goals,
    describe_loads,
    document_model,
    evaluate_model,
    fit_model,
    name_reference,
    platform_reference,
    publish_report,
    register_model,
    signal_reload,
    snapshot_mart,
)
from ml.features import MODEL_NAMES, spec
from ml.settings import load_settings
from ml.warehouse.snapshot import DEFAULT_TTL_SECONDS
from ml.warehouse.validation_summary import Summary

SUMMARY_ARTIFACT = "vgsales-pipeline-summary"
METRICS_ARTIFACT = "vgsales-model-metrics"


@flow(name="vgsales-pipeline", persist_result=False)
def vgsales_pipeline(
    skip_dbt: bool = False,
    snapshot_ttl: int = DEFAULT_TTL_SECONDS,
    html_report_dir: str | None = None,
) -> PipelineReport:
    """Build the warehouse, snapshot the ML mart, train, evaluate, register and
    log each version's model card; with `html_report_dir`, also write the cards
    there and publish the analytics report (ml.reporting.analytics_report).

    Fails when dbt reports an error (a failed error-severity test included) or
    MariaDB stays unreachable through the retries; an unreachable Redis only
    degrades the run (see `snapshot_mart`).
    """
    logger = get_run_logger()
    settings = load_settings()
    quality = None if skip_dbt else build_warehouse(settings)
    if skip_dbt:
        logger.info("dbt skipped: using the mart as it stands")

    mart = snapshot_mart(settings, snapshot_ttl)
    report = PipelineReport(
        flow_run_id=str(flow_run.id),
        snapshot=mart.outcome,
        row_counts=_row_counts(mart.frame, quality),
        data_quality_markdown=quality.markdown if quality else None,
        dbt_warnings=quality.warnings if quality else [],
        loads=None if skip_dbt else describe_loads(settings),
    )
    tags = {
        "flow_run_id": report.flow_run_id,
        "mart_fingerprint": mart.outcome.fingerprint,
        "snapshot_key": mart.outcome.key or "none (degraded: read from MariaDB)",
    }
    platforms = platform_reference(settings)
    names = name_reference(settings)
    for model_name in MODEL_NAMES:
        fitted = fit_model(model_name, mart.frame, platforms, names)
        evaluation = evaluate_model(fitted, mart.frame, platforms)
        if fitted.spec.fit_on_all:
            report.goals_markdown = check_goals(fitted, evaluation, mart.frame, platforms)
        registration = register_model(fitted, evaluation, settings, tags)
        record_training_reference(settings, fitted, registration, mart.frame)
        document_model(settings, registration, html_report_dir)
        report.models.append(
            ModelOutcome(
                model_name=model_name,
                version=registration.version,
                alias=registration.alias,
                promoted=registration.promoted,
                reused=registration.reused,
                reason=registration.reason,
                run_id=registration.run_id,
                metrics=dict(evaluation.metrics),
                evaluation_markdown=evaluation.to_markdown(),
            )
        )

    if html_report_dir:
        logger.info("analytics report: %s", publish_report(settings, html_report_dir, tags))
    if any(model.promoted for model in report.models):
        report.reload = signal_reload(settings)
    else:
        report.reload = "No new champion: the API was not asked to reload."

    create_markdown_artifact(
        key=SUMMARY_ARTIFACT,
        markdown=report.to_markdown(),
        description="Loads, data quality, row counts, metrics vs baselines, registry outcome",
    )
    create_table_artifact(
        key=METRICS_ARTIFACT,
        table=report.metrics_rows(),
        description="Held-out metrics per model and the alias it was given",
    )
    if report.degraded:
        logger.warning("Run completed degraded: %s", mart.outcome.degraded)
    return report


def _row_counts(frame: pd.DataFrame, quality: Summary | None) -> dict[str, int]:
    """Rows of each tested relation (when dbt ran), then of the training frame
    and of each part of the splits the models use."""
    counts = dict(quality.row_counts) if quality else {}
    counts["training frame"] = len(frame)
    for column in dict.fromkeys(s for name in MODEL_NAMES for s in spec(name).splits):
        for split, n in frame[column].value_counts(dropna=False).sort_index().items():
            counts[f"training frame, {column} = {'null' if pd.isna(split) else split}"] = int(n)
    return counts
