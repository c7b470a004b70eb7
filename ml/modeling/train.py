"""Fit a model's Pipeline on the rows it is served from.

A model is fitted on the train part of its split, or, when its spec says
`fit_on_all`, on every labelled row: a forecast is made after the last
labelled year, so the served model should have seen all of them (its
configuration is judged by refitted copies, see `ml.modeling.backtest`).

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
from ml.modeling.names import NameReference
from ml.modeling.point_in_time import last_complete_year, platforms_of

# Rows of training input stored with the logged model as its example.
INPUT_EXAMPLE_ROWS = 5


@dataclass
class FittedModel:
    """A trained pipeline and the facts needed to log, compare and serve it."""

    model_name: str
    spec: ModelSpec
    pipeline: Pipeline | pipelines.ByRequestShape
    n_train: int
    data_digest: str
    trained_at: datetime
    fit_seconds: float
    input_example: pd.DataFrame
    params: dict[str, str] = field(default_factory=dict)
    fitted_years: tuple[int, int] | None = None
    data_last_year: int | None = None
    platforms: pd.DataFrame | None = None
    names: NameReference | None = None

    @property
    def version_tags(self) -> dict[str, str]:
        """What the registered version records about the rows it was fitted on."""
        first, last = self.fitted_years or ("", "")
        return {
            "fitted_rows": str(self.n_train),
            "fitted_years": f"{first}-{last}",
            "data_last_year": "" if self.data_last_year is None else str(self.data_last_year),
        }

    @property
    def fingerprint(self) -> str:
        """Same data, configuration and name reference give the same fingerprint
        (a changed reference is served only by a new version)."""
        identity = {"model": self.model_name, "data": self.data_digest, "params": self.params}
        if self.names is not None:
            identity["names"] = self.names.digest
        payload = json.dumps(identity, sort_keys=True)
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
    params["model_class"] = type(pipelines.regressor(pipeline)).__name__
    params["features"] = ",".join(spec.columns)
    params["label"] = spec.label
    params["split"] = spec.split
    params["fitted_on"] = "all labelled rows" if spec.fit_on_all else f"{spec.split} = train"
    return params


def fit_pipeline(pipeline: Pipeline, spec: ModelSpec, rows: pd.DataFrame) -> Pipeline:
    """Fit `pipeline` on mart rows (inputs and label taken through the schema)."""
    return pipeline.fit(features.model_input(spec.name, rows), features.label(spec.name, rows))


def fitting_rows(spec: ModelSpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the served model of `spec` is fitted on."""
    if spec.fit_on_all:
        return features.training_rows(spec.name, frame)
    return split_rows(spec, frame, spec.split, "train")


def fit(
    model_name: str,
    frame: pd.DataFrame,
    platforms: pd.DataFrame | None = None,
    names: NameReference | None = None,
) -> FittedModel:
    """Train `model_name` on its fitting rows of the mart `frame`.

    `platforms` is the platform reference (`dim_platform`) served with the
    model, so that a platform without releases yet is described; by default
    it is recovered from the mart rows. `names` is the name reference
    (`ml_written_names`) served with it, so that a request's names resolve
    as the warehouse resolves them.
    """
    spec = features.spec(model_name)
    train = fitting_rows(spec, frame)
    if train.empty:
        raise ValueError(
            f"{model_name}: no training rows among {len(frame)} mart rows "
            f"(label and year known{'' if spec.fit_on_all else f', {spec.split} = train'})"
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
        fitted_years=(int(train["year"].min()), int(train["year"].max())),
        data_last_year=last_complete_year(train["year"]),
        platforms=platforms_of(frame) if platforms is None else platforms,
        names=names,
    )
