"""What serving needs from the registry: find, verify and load champions.

Kept apart from `ml.modeling.registry` (logging, registering, the champion
gate) so that an API worker imports neither training, evaluation nor plotting
code: this module needs MLflow, skops and the feature schema only.

A stored model is data, not code, and whoever can write the artifact store
must not be able to make a worker run theirs. So a version is loaded only
when the sha256 of its artifact files matches the digest recorded on the
version when it was registered (`artifact_digest`), its MLmodel names the
skops format, and skops accepts it with the trusted types listed here; the
MLmodel file's own list of trusted types and `mlflow.sklearn.load_model`
(which would honour a pickle format) are never used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import skops.io
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from sklearn.pipeline import Pipeline
from skops.io.exceptions import UntrustedTypesFoundException

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
    "ml.modeling.pipelines.ByRequestShape",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "sklearn.utils.validation.check_array",
]
# The version tag holding the sha256 of `ARTIFACT_FILES`, set at registration.
DIGEST_TAG = "artifact_sha256"
# What decides what gets loaded: the flavour description and the payload.
# (MLflow adds files such as `registered_model_meta` after registration.)
MODEL_FILE = "model.skops"
ARTIFACT_FILES = ("MLmodel", MODEL_FILE)


class ArtifactRefused(ValueError):
    """A stored model failed verification; the message names no path or secret."""


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


def is_server(settings: Settings) -> bool:
    """Whether the registry is a tracking server (not a local store)."""
    return settings.mlflow_tracking_uri.startswith(("http://", "https://"))


def client(settings: Settings) -> MlflowClient:
    """A client on the settings' registry (the tracking server, or a local
    store); also points the fluent API there."""
    uri = settings.mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    with _one_process_creating(Path(uri.removeprefix("sqlite:///"))):
        mlflow_client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # creates tracking tables
        mlflow_client.search_registered_models(max_results=1)  # and the registry's
    return mlflow_client


@contextlib.contextmanager
def _one_process_creating(database: Path) -> Iterator[None]:
    """Hold a lock beside a local SQLite store while its tables may be created.

    MLflow creates them on a store's first use, and processes doing so at once
    fail (`table _alembic_tmp_tags already exists`): the API's instances all
    start together on one store. Under the lock the first creates them and the
    others, in turn, find them. A registry server creates its own, once.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(f"{database.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


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
    with tempfile.TemporaryDirectory(prefix="vgsales-model-") as folder:
        pipeline = load_verified(_download(model_name, version, folder),
                                 model_version.tags.get(DIGEST_TAG, ""))
    return Champion(pipeline=pipeline, info=_info(mlflow_client, model_version))


def verify_stored(model_name: str, version: str | int, settings: Settings) -> None:
    """`ArtifactRefused` unless the version's stored files still hash to the
    digest recorded at registration (a reload checks a served version again:
    its files may have changed since it was loaded)."""
    mlflow_client = client(settings)
    recorded = mlflow_client.get_model_version(model_name, str(version)).tags.get(DIGEST_TAG, "")
    with tempfile.TemporaryDirectory(prefix="vgsales-model-") as folder:
        _check_digest(_download(model_name, version, folder), recorded)


def _download(model_name: str, version: str | int, folder: str) -> Path:
    """The version's stored files, copied into `folder` (through the server
    when the registry is one)."""
    return Path(mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{model_name}/{version}", dst_path=folder))


def artifact_digest(model_dir: Path) -> str:
    """sha256 over the names and contents of `ARTIFACT_FILES` in `model_dir`."""
    digest = hashlib.sha256()
    for name in ARTIFACT_FILES:
        path = model_dir / name
        if not path.is_file():
            raise ArtifactRefused(f"the model artifact has no {name}")
        with path.open("rb") as handle:
            digest.update(f"{name}\0".encode())
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def stored_digest(model_uri: str) -> str:
    """The artifact digest of a logged model as stored, read back from the store
    (recorded on the version when it is registered)."""
    with tempfile.TemporaryDirectory(prefix="vgsales-model-") as folder:
        return artifact_digest(Path(mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=folder)))


def load_verified(model_dir: Path, recorded: str) -> Pipeline:
    """The pipeline in `model_dir`, if its files hash to `recorded` and skops
    finds only trusted types in it; `ArtifactRefused` otherwise."""
    _check_digest(model_dir, recorded)
    flavour = (yaml.safe_load((model_dir / "MLmodel").read_text()) or {}).get("flavors", {})
    stored_format = (flavour.get("sklearn") or {}).get("serialization_format")
    if stored_format != "skops":
        raise ArtifactRefused(f"serialization format {stored_format!r} refused: only skops loads")
    try:
        return skops.io.load(model_dir / MODEL_FILE, trusted=SKOPS_TRUSTED_TYPES)
    except UntrustedTypesFoundException as error:
        raise ArtifactRefused(f"untrusted types in the model: {error}") from None


def _check_digest(model_dir: Path, recorded: str) -> None:
    if not recorded:
        raise ArtifactRefused(
            f"no {DIGEST_TAG} tag: registered before artifacts were verified; "
            "register it again (make pipeline)"
        )
    found = artifact_digest(model_dir)
    if found != recorded:
        raise ArtifactRefused(
            f"artifact digest {found[:16]} differs from the {recorded[:16]} recorded "
            "at registration: the stored files were changed"
        )
