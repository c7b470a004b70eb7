"""Fit a model's Pipeline on the train rows of its split.

`fit()` is free of Prefect and MLflow: it takes a mart frame (from
`ml.warehouse.mart.read_ml_mart` or a snapshot) and returns the fitted Pipeline
with what the registry needs to describe it (digest of the data, params).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from ml import features
from ml.features import ModelSpec
from ml.modeling import pipelines

# Rows of training input stored with the logged model as its example.
INPUT_EXAMPLE_ROWS = 5


@dataclass
class FittedModel:
    """A trained pipeline and the facts needed to log, compare and serve it."""

    model_name: str
    spec: ModelSpec
    pipeline: Pipeline
    n_train: int
    data_digest: str
    trained_at: datetime
    fit_seconds: float
    input_example: pd.DataFrame
    params: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Same data and same configuration give the same fingerprint."""
        payload = json.dumps(
            {"model": self.model_name, "data": self.data_digest, "params": self.params},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def data_digest(spec: ModelSpec, frame: pd.DataFrame) -> str:
    """Content hash of the columns a model reads, independent of row order.

    Only the rows the model can learn from and its inputs, label and split
    columns count, so a mart change elsewhere (a new column for another
    model, a fixed title) does not look like new data.
    """
    columns = ["release_id", *spec.columns, spec.label, *spec.splits]
    rows = features.training_rows(spec.name, frame)[columns]
    rows = rows.sort_values("release_id").reset_index(drop=True)
    hashes = pd.util.hash_pandas_object(rows, index=False).to_numpy()
    return hashlib.sha256(hashes.tobytes()).hexdigest()[:16]


def split_rows(spec: ModelSpec, frame: pd.DataFrame, split: str, part: str) -> pd.DataFrame:
    """Training rows of `frame` that are in `part` ('train'/'test') of `split`."""
    rows = features.training_rows(spec.name, frame)
    return rows[rows[split].astype(str) == part].reset_index(drop=True)


def _is_plain(value: object) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


def describe_params(pipeline: Pipeline, spec: ModelSpec) -> dict[str, str]:
    """Flat, string-valued configuration (every step's plain params), for MLflow."""
    params = {
        key: str(value)
        for key, value in sorted(pipeline.get_params(deep=True).items())
        if _is_plain(value) and not key.endswith(("memory", "verbose", "n_jobs"))
    }
    params["model_class"] = type(pipeline.named_steps["model"]).__name__
    params["features"] = ",".join(spec.columns)
    params["label"] = spec.label
    params["split"] = spec.split
    return params


def fit_pipeline(pipeline: Pipeline, spec: ModelSpec, rows: pd.DataFrame) -> Pipeline:
    """Fit `pipeline` on mart rows (inputs and label taken through the schema)."""
    return pipeline.fit(features.model_input(spec.name, rows), features.label(spec.name, rows))


def fit(model_name: str, frame: pd.DataFrame) -> FittedModel:
    """Train `model_name` on the train part of its split of the mart `frame`."""
    spec = features.spec(model_name)
    train = split_rows(spec, frame, spec.split, "train")
    if train.empty:
        raise ValueError(
            f"{model_name}: no training rows (column {spec.split!r} has no 'train' "
            f"value among {len(frame)} mart rows with label and year)"
        )
    started = time.perf_counter()
    with threadpool_limits(limits=pipelines.THREADS):
        pipeline = fit_pipeline(pipelines.build(spec), spec, train)
    fit_seconds = time.perf_counter() - started
    return FittedModel(
        model_name=model_name,
        spec=spec,
        pipeline=pipeline,
        n_train=len(train),
        data_digest=data_digest(spec, frame),
        trained_at=datetime.now(timezone.utc),
        fit_seconds=fit_seconds,
        input_example=features.model_input(model_name, train.head(INPUT_EXAMPLE_ROWS)),
        params=describe_params(pipeline, spec),
    )
