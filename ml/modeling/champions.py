"""What serving needs from the registry: find, verify and load champions.

Kept apart from `ml.modeling.registry` (logging, registering, the champion
gate) so that an API worker imports neither training, evaluation nor plotting
code: this module needs MLflow, skops and the feature schema only.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from sklearn.pipeline import Pipeline

from ml import features
from ml.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
# Models are stored with skops, which refuses to load types it cannot vouch
# for. These are the ones our pipelines contain beyond skops' defaults; we
# write every artifact ourselves, so they are trusted by name here rather
# than by switching to pickle, which would trust everything.
SKOPS_TRUSTED_TYPES = [
    "functools.partial",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "sklearn.utils.validation.check_array",
]


class NoChampionError(LookupError):
    """No version of the model carries the `champion` alias yet."""


@dataclass(frozen=True)
class ChampionInfo:
    """What the API reports about the served model (GET /model)."""

    model_name: str
    version: int
    run_id: str
    trained_at: str
    data_digest: str
    fingerprint: str
    held_out_metric: str
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def held_out_value(self) -> float:
        return self.metrics[self.held_out_metric]


@dataclass(frozen=True)
class Champion:
    """The served pipeline and the facts about the version it came from."""

    pipeline: Pipeline
    info: ChampionInfo


def client(settings: Settings) -> MlflowClient:
    """A client on the settings' SQLite store; also points the fluent API there."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return MlflowClient(
        tracking_uri=settings.mlflow_tracking_uri,
        registry_uri=settings.mlflow_tracking_uri,
    )


def current_champion(mlflow_client: MlflowClient, model_name: str) -> ModelVersion | None:
    try:
        return mlflow_client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def _champion_version(mlflow_client: MlflowClient, model_name: str) -> ModelVersion:
    features.spec(model_name)  # fail early on a misspelt name
    champion = current_champion(mlflow_client, model_name)
    if champion is None:
        raise NoChampionError(
            f"model {model_name!r} has no {CHAMPION} in the registry; "
            "run the pipeline first (make pipeline)"
        )
    return champion


def _info(mlflow_client: MlflowClient, version: ModelVersion) -> ChampionInfo:
    run = mlflow_client.get_run(version.run_id)
    tags = dict(run.data.tags)
    return ChampionInfo(
        model_name=version.name,
        version=int(version.version),
        run_id=version.run_id,
        trained_at=tags.get("trained_at", ""),
        data_digest=tags.get("data_digest", ""),
        fingerprint=tags.get("fingerprint", ""),
        held_out_metric=tags.get("held_out_metric", features.spec(version.name).held_out_metric),
        metrics=dict(run.data.metrics),
        tags={k: v for k, v in tags.items() if not k.startswith("mlflow.")},
    )


def load_champion_with_info(model_name: str, settings: Settings) -> Champion:
    """The champion's sklearn Pipeline and its facts, from one alias lookup.

    Loading `models:/<name>/<version>` (not `@champion`) keeps the pipeline
    and the info consistent even if the alias moves in between.
    """
    mlflow_client = client(settings)
    return load_version(model_name, _champion_version(mlflow_client, model_name).version, settings)


def load_version(model_name: str, version: str | int, settings: Settings) -> Champion:
    """One given version's Pipeline and facts (the API pins the versions its
    workers serve, so a worker started later loads the same one)."""
    mlflow_client = client(settings)
    model_version = mlflow_client.get_model_version(model_name, str(version))
    pipeline = mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    return Champion(pipeline=pipeline, info=_info(mlflow_client, model_version))
