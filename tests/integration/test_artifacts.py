"""A tampered model store cannot make a process run its code.

One model is registered the way the pipeline registers it (skops, the
artifact digest on the version); each test tampers with a copy of its stored
files and loads the copy as a worker would (`champions.load_verified`), and
one tampers with the store itself and loads through the registry.
(`tests/system/test_hostile.py` shows the API keeping its champion.)
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import mlflow
import pytest
import skops.io
import yaml
from mlflow import MlflowClient

from tests.api_server import register_champions
from ml.modeling import champions
from tests.helpers import isolated_settings
from tests.mart_sample import mart_frame

NAME = "global_from_regional"
REDIS_DB = 11


class Payload:
    """What an attacker stores instead of a model: creating it touches a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def store(stack_settings, tmp_path_factory):
    """`(settings, version, stored model folder)` of a registry holding one model."""
    settings = isolated_settings(stack_settings, "artifacts", REDIS_DB,
                                 tmp_path_factory.mktemp("artifacts"))
    version = register_champions(settings, mart_frame(800, seed=3), models=(NAME,))[NAME]
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    source = client.get_model_version(NAME, version).source  # models:/<model id>
    location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    return settings, version, Path(location.removeprefix("file://"))


@pytest.fixture
def copy(store, tmp_path) -> tuple[Path, str]:
    """A copy of the stored model folder and the digest recorded at registration."""
    settings, version, folder = store
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    recorded = client.get_model_version(NAME, version).tags[champions.DIGEST_TAG]
    target = tmp_path / "model"
    shutil.copytree(folder, target)
    return target, recorded


def rewrite_mlmodel(folder: Path, change) -> None:
    path = folder / "MLmodel"
    description = yaml.safe_load(path.read_text())
    change(description["flavors"]["sklearn"])
    path.write_text(yaml.safe_dump(description))


def test_the_registered_model_loads_and_its_digest_is_recorded(copy):
    folder, recorded = copy
    assert recorded == champions.artifact_digest(folder)
    pipeline = champions.load_verified(folder, recorded)
    assert hasattr(pipeline, "predict")


def test_changed_bytes_are_refused(copy):
    folder, recorded = copy
    payload = bytearray((folder / champions.MODEL_FILE).read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    (folder / champions.MODEL_FILE).write_bytes(bytes(payload))
    with pytest.raises(champions.ArtifactRefused, match="differs from the .* recorded"):
        champions.load_verified(folder, recorded)


def test_pickle_format_is_refused_and_never_unpickled(copy, tmp_path):
    folder, recorded = copy
    marker = tmp_path / "pickle-ran"
    (folder / "model.pkl").write_bytes(pickle.dumps(Payload(str(marker))))

    def to_pickle(flavour):
        flavour.update(serialization_format="pickle", pickled_model="model.pkl")

    rewrite_mlmodel(folder, to_pickle)
    with pytest.raises(champions.ArtifactRefused, match="differs"):
        champions.load_verified(folder, recorded)
    # An attacker who could also rewrite the version's tag is refused by format.
    with pytest.raises(champions.ArtifactRefused, match="format 'pickle' refused"):
        champions.load_verified(folder, champions.artifact_digest(folder))
    assert not marker.exists()


def test_trusted_types_come_from_the_code_not_the_store(copy, tmp_path):
    folder, _ = copy
    marker = tmp_path / "skops-ran"
    untrusted = f"{Payload.__module__}.Payload"
    skops.io.dump(Payload(str(marker)), folder / champions.MODEL_FILE)
    rewrite_mlmodel(folder, lambda f: f["skops_trusted_types"].append(untrusted))
    with pytest.raises(champions.ArtifactRefused, match="untrusted types"):
        champions.load_verified(folder, champions.artifact_digest(folder))
    assert not marker.exists()


def test_a_version_without_a_recorded_digest_is_refused(copy):
    folder, _ = copy
    with pytest.raises(champions.ArtifactRefused, match="no artifact_sha256 tag"):
        champions.load_verified(folder, "")


def test_the_registry_path_verifies_too(store, tmp_path):
    settings, version, folder = store
    backup = tmp_path / "backup"
    shutil.copytree(folder, backup)
    try:
        with (folder / "MLmodel").open("a") as handle:
            handle.write("# edited\n")
        with pytest.raises(champions.ArtifactRefused, match="the stored files were changed"):
            champions.load_version(NAME, version, settings)
    finally:
        shutil.rmtree(folder)
        shutil.copytree(backup, folder)
    assert hasattr(champions.load_version(NAME, version, settings).pipeline, "predict")


def test_mlflow_itself_refuses_to_deserialise_when_the_setting_says_so(store, monkeypatch):
    settings, version, _ = store
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    with pytest.raises(mlflow.exceptions.MlflowException, match="MLFLOW_ALLOW_PICKLE"):
        mlflow.sklearn.load_model(f"models:/{NAME}/{version}")
