"""Drift checks in MLflow: one run per check in the experiment `vgsales-monitoring`.

A run holds what a person scrolling MLflow needs next to the model runs:
the decision and its reason (tags), the PSI of every champion feature
(`psi.<source>.<model>.<feature>`), errors against actual sales per release
year (`perf.<model>.v<version>.<metric>`, step = year; the `all` period as
the metric without a step) and the drift report as artifacts.

It also remembers retrains: `earlier_retrain` finds a previous check that
already retrained the same champions on the same data, so a drift that a
retrain did not cure (the data moved, not the model) is reported daily
instead of retraining daily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

from ml.modeling import registry
from ml.monitoring.drift import DriftCheck
from ml.monitoring.reference import VersionFacts
from ml.settings import Settings

EXPERIMENT = "vgsales-monitoring"
PERFORMANCE_METRICS = ("mae", "rmse", "r2")
# MLflow caps tag values; the reason is also in the report artifact.
MAX_TAG_LENGTH = 4000


@dataclass(frozen=True)
class CheckIdentity:
    """What makes two checks "the same situation": champions and data."""

    champions: str  # e.g. "global_from_regional=1,prerelease=2"
    mart_fingerprint: str

    @classmethod
    def of(cls, champions: dict[str, VersionFacts | None], mart_fingerprint: str):
        listed = ",".join(
            f"{name}={facts.model_version if facts else 'none'}"
            for name, facts in sorted(champions.items())
        )
        return cls(champions=listed, mart_fingerprint=mart_fingerprint)


def _experiment(settings: Settings) -> tuple[mlflow.MlflowClient, str]:
    client = registry.client(settings)
    return client, registry.experiment_id(client, settings, EXPERIMENT)


def earlier_retrain(settings: Settings, identity: CheckIdentity) -> str | None:
    """Run id of an earlier check that retrained these champions on this data."""
    client, experiment = _experiment(settings)
    runs = client.search_runs(
        [experiment],
        filter_string=(
            "tags.decision = 'retrain' and tags.retrained = 'true' "
            f"and tags.champions = '{identity.champions}' "
            f"and tags.mart_fingerprint = '{identity.mart_fingerprint}'"
        ),
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id if runs else None


def _metric_name(*parts: object) -> str:
    """MLflow accepts letters, digits and `_-./ `; anything else becomes `_`."""
    text = ".".join(str(p) for p in parts)
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text)


def log_check(
    settings: Settings,
    check: DriftCheck,
    *,
    identity: CheckIdentity,
    decision: str,
    reason: str,
    retrained: bool,
    tags: dict[str, str],
    report_files: list[Path],
) -> str:
    """Record one check as an MLflow run; its run id."""
    client, experiment = _experiment(settings)
    all_tags = {
        **tags,
        "decision": decision,
        "reason": reason[:MAX_TAG_LENGTH],
        "retrained": str(retrained).lower(),
        "champions": identity.champions,
        "mart_fingerprint": identity.mart_fingerprint,
    }
    with mlflow.start_run(experiment_id=experiment, tags=all_tags) as run:
        evaluated = check.drift[check.drift.psi.notna()]
        mlflow.log_metrics(
            {
                _metric_name("psi", row.drift_source, row.model_name, row.feature): float(row.psi)
                for row in evaluated.itertuples()
            }
        )
        for row in check.performance.itertuples():
            for metric in PERFORMANCE_METRICS:
                value = getattr(row, metric)
                if pd.isna(value):
                    continue
                name = _metric_name("perf", row.model_name, f"v{row.model_version}", metric)
                if row.period_label == "all":
                    client.log_metric(run.info.run_id, name + ".all", float(value))
                else:
                    client.log_metric(
                        run.info.run_id, name, float(value), step=int(row.release_year)
                    )
        for path in report_files:
            mlflow.log_artifact(str(path), "drift_report")
        return run.info.run_id
