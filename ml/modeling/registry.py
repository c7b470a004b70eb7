"""MLflow tracking and Model Registry with a champion gate.

One experiment per model (artifacts kept by the registry server, or under
`settings.mlflow_artifact_root` with a local store; never `./mlruns`), one
registered model per model name, and two aliases:

- `champion`: the served version. A new version takes it only when it is
  better on the spec's held-out metric (`backtest_r2_shapes_mean` for
  `prerelease`, the weighted mean over request shapes of a model fitted on
  every labelled row, so with no held-out rows of its own;
  `random_test_rmse` for `global_from_regional`) than the current
  champion's recorded value by more than the spec's `gate_margin`, the
  stated noise of that metric between equally good fits. A smaller gain,
  or a tie, keeps the champion; the reason names the margin.
- `challenger`: the newest version that did not win, with the reason in the
  run and version tags `gate.decision` / `gate.reason`.

Idempotence: a model's fingerprint (model name, digest of the data it read,
every pipeline parameter; see `FittedModel.fingerprint`) is stored on its
version. When a version with the same fingerprint already carries a gate
decision, nothing new is logged or registered and that decision is returned,
so a rerun on unchanged data neither demotes the champion nor piles up
identical versions. A version left without a decision by a killed run is
judged on the rerun instead of being registered twice.

Known limit: the gate compares the challenger's held-out metric with the
value recorded when the champion was trained. When the data changes, the two
were measured on different held-out rows.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec

from ml.features import ModelSpec
from ml.modeling.champions import (
    CHALLENGER,
    CHAMPION,
    DIGEST_TAG,
    SKOPS_TRUSTED_TYPES,
    client,
    current_champion,
    is_server,
    stored_digest,
)
from ml.modeling.evaluate import Evaluation
from ml.modeling.intervals import INTERVAL_CALIBRATION_TAG
from ml.modeling.names import NAME_REFERENCE_TAG
from ml.modeling.point_in_time import (
    LOOKED_UP,
    PLATFORM_REFERENCE_TAG,
    reference_to_json,
)
from ml.modeling.train import FittedModel
from ml.settings import Settings

# Differences below this are float noise between identical fits, not progress.
TOLERANCE = 1e-9
# Pinned instead of inferred: inference re-imports the model in a subprocess,
# which costs seconds per run and can pick up unrelated packages.
REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "scipy", "skops")


@dataclass(frozen=True)
class Registration:
    """Outcome of `register`: which version, which alias, and why."""

    model_name: str
    run_id: str
    version: int
    alias: str | None
    promoted: bool
    reason: str
    reused: bool = False


def experiment_id(mlflow_client: MlflowClient, settings: Settings, model_name: str) -> str:
    """The model's experiment, created where the registry keeps artifacts."""
    experiment = mlflow_client.get_experiment_by_name(model_name)
    if experiment is None:
        # A server stores artifacts itself (uploads go through it, so any
        # host can register); a local store keeps them under the root.
        location = None if is_server(settings) else (
            (Path(settings.mlflow_artifact_root) / model_name).resolve().as_uri())
        try:
            return mlflow_client.create_experiment(model_name, artifact_location=location)
        except MlflowException:
            # Another process created it between our lookup and create.
            experiment = mlflow_client.get_experiment_by_name(model_name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        mlflow_client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def signature(spec: ModelSpec) -> ModelSignature:
    """Input schema from the feature schema (not inferred from an example)."""
    inputs = Schema(
        [
            ColSpec("string" if f.kind == "category" else "double", f.name, required=f.required)
            for f in spec.features
        ]
    )
    outputs = Schema([TensorSpec(np.dtype("float64"), (-1,))])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _alias_of(mlflow_client: MlflowClient, version: ModelVersion) -> str | None:
    aliases = mlflow_client.get_model_version(version.name, version.version).aliases
    for alias in (CHAMPION, CHALLENGER):
        if alias in aliases:
            return alias
    return None


def _same_fingerprint(
    mlflow_client: MlflowClient, model_name: str, fingerprint: str
) -> ModelVersion | None:
    """The newest version registered with `fingerprint`, if any."""
    try:
        versions = mlflow_client.search_model_versions(
            f"name = '{model_name}' and tags.fingerprint = '{fingerprint}'"
        )
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version), default=None)


def _gate(
    mlflow_client: MlflowClient, spec: ModelSpec, candidate_version: str, value: float
) -> tuple[bool, str]:
    """Whether the candidate takes the champion alias, and why (or why not)."""
    champion = current_champion(mlflow_client, spec.name)
    metric = spec.held_out_metric
    if champion is None:
        return True, f"first champion: no version had the {CHAMPION} alias"
    if champion.version == candidate_version:
        return True, f"version {candidate_version} already is the {CHAMPION}"
    if DIGEST_TAG not in champion.tags:
        return True, (
            f"{CHAMPION} version {champion.version} has no {DIGEST_TAG} and cannot be "
            "served (its artifacts cannot be verified); the newer model is taken"
        )
    recorded = mlflow_client.get_run(champion.run_id).data.metrics.get(metric)
    if recorded is None:
        return True, (
            f"{CHAMPION} version {champion.version} has no recorded {metric}; "
            "the metric changed, so the newer model is taken"
        )
    margin = value - recorded if spec.greater_is_better else recorded - value
    direction = "higher" if spec.greater_is_better else "lower"
    comparison = (
        f"{metric} {value:.6f} vs {CHAMPION} version {champion.version}'s "
        f"{recorded:.6f} ({direction} is better)"
    )
    noise = max(spec.gate_margin, TOLERANCE)
    if margin > noise:
        return True, f"beats the {CHAMPION}: {comparison}" + _margin_note(spec, margin)
    if abs(margin) <= TOLERANCE:
        return False, f"ties the {CHAMPION}, which stays: {comparison}"
    if margin > 0:
        return False, (f"within the noise, the {CHAMPION} stays: {comparison}"
                       + _margin_note(spec, margin))
    return False, f"worse than the {CHAMPION}: {comparison}"


def _margin_note(spec: ModelSpec, margin: float) -> str:
    """How the gain compares with the stated margin (the gate's noise rule)."""
    if spec.gate_margin <= TOLERANCE:
        return ""
    return (f"; gain {margin:.4f} against a stated margin of {spec.gate_margin} "
            "(2.5 times the spread between refits that differ only in their seed)")


def _decide(
    mlflow_client: MlflowClient, spec: ModelSpec, version: ModelVersion, value: float
) -> Registration:
    """Apply the gate to a registered version and record the decision on it."""
    promoted, reason = _gate(mlflow_client, spec, version.version, value)
    alias = CHAMPION if promoted else CHALLENGER
    mlflow_client.set_registered_model_alias(spec.name, alias, version.version)
    if promoted and CHALLENGER in version.aliases:
        mlflow_client.delete_registered_model_alias(spec.name, CHALLENGER)
    decision = {"gate.decision": alias, "gate.reason": reason}
    for key, text in decision.items():
        mlflow_client.set_tag(version.run_id, key, text)
        mlflow_client.set_model_version_tag(spec.name, version.version, key, text)
    return Registration(
        model_name=spec.name,
        run_id=version.run_id,
        version=int(version.version),
        alias=alias,
        promoted=promoted,
        reason=reason,
    )


def _serving_tags(fitted: FittedModel, evaluation: Evaluation) -> dict[str, str]:
    """What serving needs beside the pipeline: the platform reference it
    describes platforms from, the name reference it resolves names with, and
    the interval calibration."""
    tags = {}
    if fitted.platforms is not None and any(c in LOOKED_UP for c in fitted.spec.columns):
        tags[PLATFORM_REFERENCE_TAG] = reference_to_json(fitted.platforms)
    if fitted.names is not None:
        tags[NAME_REFERENCE_TAG] = fitted.names.to_tag()
    if evaluation.calibration is not None:
        tags[INTERVAL_CALIBRATION_TAG] = evaluation.calibration.to_json()
    return tags


def _requirements() -> list[str]:
    return [f"{name}=={installed_version(name)}" for name in REQUIREMENTS]


def _log_run(fitted: FittedModel, evaluation: Evaluation) -> str:
    """Log params, metrics, reports and the model into the active run; model URI."""
    spec = fitted.spec
    mlflow.log_params(fitted.params)
    mlflow.log_metrics(evaluation.metrics)
    mlflow.log_metric("fit_seconds", fitted.fit_seconds)
    mlflow.log_text(evaluation.to_markdown(), "evaluation.md")
    tables = [
        ("evaluation", "scores", evaluation.scores),
        ("evaluation", "segments", evaluation.segments),
        ("evaluation", "importance", evaluation.importance),
    ]
    if evaluation.backtest is not None:
        tables.append(("backtest", "scores", evaluation.backtest.scores))
    if evaluation.coverage is not None:
        tables.append(("backtest", "coverage", evaluation.coverage))
    with tempfile.TemporaryDirectory() as folder:
        for artifact_dir, name, table in tables:
            path = Path(folder) / artifact_dir / f"{name}.csv"
            path.parent.mkdir(exist_ok=True)
            table.to_csv(path, index=False)
            mlflow.log_artifact(str(path), artifact_dir)
    # matplotlib is imported only where a run is logged.
    from ml.modeling.plots import importance_figure

    mlflow.log_figure(
        importance_figure(evaluation.importance, f"{spec.name}: feature importance"),
        "evaluation/importance.png",
    )
    info = mlflow.sklearn.log_model(
        fitted.pipeline,
        name="model",
        signature=signature(spec),
        input_example=fitted.input_example,
        pip_requirements=_requirements(),
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )
    return info.model_uri


def register(
    fitted: FittedModel,
    evaluation: Evaluation,
    settings: Settings,
    tags: dict[str, str] | None = None,
) -> Registration:
    """Log `fitted` with its evaluation, register it and run the champion gate.

    `tags` (dataset digest, dbt invocation id, git sha...) go on the run and
    the model version, next to the model's own fingerprint and data digest.
    """
    spec = fitted.spec
    mlflow_client = client(settings)
    experiment = experiment_id(mlflow_client, settings, spec.name)
    previous = _same_fingerprint(mlflow_client, spec.name, fitted.fingerprint)
    # A version without an artifact digest cannot be served: register afresh.
    if previous is not None and DIGEST_TAG in previous.tags:
        decided = previous.tags.get("gate.decision")
        if decided:
            return Registration(
                model_name=spec.name,
                run_id=previous.run_id,
                version=int(previous.version),
                alias=_alias_of(mlflow_client, previous),
                promoted=False,
                reason=(
                    f"unchanged: version {previous.version} has the same fingerprint "
                    f"{fitted.fingerprint} (data {fitted.data_digest}, same params) and "
                    f"was already judged ({decided}: {previous.tags.get('gate.reason')}); "
                    "nothing new registered"
                ),
                reused=True,
            )
        return _decide(mlflow_client, spec, previous, evaluation.held_out_value)

    identity = {
        "model_name": spec.name,
        "fingerprint": fitted.fingerprint,
        "data_digest": fitted.data_digest,
        "trained_at": fitted.trained_at.isoformat(timespec="seconds"),
        "held_out_metric": spec.held_out_metric,
        **fitted.version_tags,
        **_serving_tags(fitted, evaluation),
    }
    all_tags = {**(tags or {}), **identity}
    with mlflow.start_run(experiment_id=experiment, tags=all_tags):
        model_uri = _log_run(fitted, evaluation)
        version = mlflow.register_model(
            model_uri, spec.name, tags={**all_tags, DIGEST_TAG: stored_digest(model_uri)}
        )
        version = mlflow_client.get_model_version(spec.name, version.version)
        return _decide(mlflow_client, spec, version, evaluation.held_out_value)
