"""Champion models in a private MLflow registry, for the serve tests and bench.

`mart_frame(csv)` turns a vgsales-shaped CSV (the real file or one from
`ml.data.synthetic`) into a frame with the `ml_release_features` columns, without
a warehouse: point-in-time history and platform attributes come from
`ml.modeling.point_in_time` over the committed `ref_platforms` seed. It is test data, close enough
to the mart for the models to be realistic; the warehouse stays the source
of truth for real training.

`register_champions(settings, frame)` trains both models on it with the
project's own `ml.modeling.train.fit` and registers them with the `champion` alias in
`settings`' registry.
"""

from __future__ import annotations

import zlib
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np
import pandas as pd

from ml.features import MODEL_NAMES
from ml.modeling.point_in_time import LOOKED_UP, PointInTime, series_key
from ml.settings import ROOT, Settings

REF_PLATFORMS = ROOT / "dbt_project" / "seeds" / "ref_platforms.csv"
FIRST_TEST_YEAR = 2014


def reference_platforms() -> pd.DataFrame:
    """The committed `ref_platforms` seed, typed as `dim_platform` is read."""
    platforms = pd.read_csv(REF_PLATFORMS, keep_default_na=False)
    return platforms.assign(
        generation=pd.to_numeric(platforms["generation"], errors="coerce"),
        launch_year=pd.to_numeric(platforms["launch_year"], errors="coerce"),
    )


def mart_frame(csv: Path) -> pd.DataFrame:
    """Mart-shaped rows from a vgsales CSV (rows the warehouse would reject dropped)."""
    raw = pd.read_csv(csv, na_values=["N/A"], keep_default_na=False)
    platforms = reference_platforms()
    frame = pd.DataFrame({
        "release_id": raw["Rank"].astype(str),
        "name": raw["Name"].astype(str),
        "platform": raw["Platform"].astype(str),
        "genre": raw["Genre"].astype(str),
        "publisher": raw["Publisher"].fillna("Unknown").astype(str),
        "year": pd.to_numeric(raw["Year"], errors="coerce").astype("Int64"),
        "na_sales": raw["NA_Sales"].astype(float),
        "eu_sales": raw["EU_Sales"].astype(float),
        "jp_sales": raw["JP_Sales"].astype(float),
        "other_sales": raw["Other_Sales"].astype(float),
        "global_sales": raw["Global_Sales"].astype(float),
    })
    sales = frame[["na_sales", "eu_sales", "jp_sales", "other_sales"]]
    keep = (
        frame["platform"].isin(platforms["platform_code"])
        & (sales >= 0).all(axis=1)
        & (frame["name"].str.strip() != "")
        & frame["year"].between(1970, 2040).fillna(True).astype(bool)
    )
    frame = frame[keep].drop_duplicates("release_id").reset_index(drop=True)
    frame["decade"] = (frame["year"] // 10 * 10).astype("Int64")
    frame["log_global_sales"] = np.log1p(frame["global_sales"])
    frame["series_key"] = frame["name"].map(series_key)
    history = PointInTime(frame, reference_platforms()).history(frame, frame["year"])
    for column in LOOKED_UP:
        frame[column] = history[column].to_numpy()
    frame["platform_titles_that_year"] = frame.groupby(["platform", "year"])["name"].transform("size")
    frame["title_platform_count"] = frame.groupby("name")["platform"].transform("nunique")
    frame["split_random"] = np.where(
        frame["release_id"].map(lambda r: zlib.crc32(r.encode()) % 100 < 70), "train", "test"
    )
    frame["split_time"] = np.where(
        frame["year"].isna(), None,
        np.where(frame["year"].fillna(0) >= FIRST_TEST_YEAR, "test", "train"),
    )
    return frame


def _serving_tags(fitted, frame: pd.DataFrame) -> dict[str, str]:
    """The platform reference and an interval calibration from a one-origin
    backtest (the full backtest would cost minutes here)."""
    from ml.modeling import backtest, intervals
    from ml.modeling.point_in_time import PLATFORM_REFERENCE_TAG, reference_to_json

    if not fitted.spec.fit_on_all:
        return {}
    result = backtest.run(fitted.spec, frame, fitted.platforms, origins=(FIRST_TEST_YEAR,),
                          baselines=False)
    return {
        PLATFORM_REFERENCE_TAG: reference_to_json(fitted.platforms),
        intervals.INTERVAL_CALIBRATION_TAG: intervals.calibrate(result.residuals).to_json(),
    }


def register_champions(
    settings: Settings, frame: pd.DataFrame, *, models: tuple[str, ...] = MODEL_NAMES,
) -> dict[str, str]:
    """Train each model on `frame` with `ml.modeling.train.fit`, register it and make it
    the champion; publish `frame` as the Redis snapshot its runs name, as the
    training flow does. Returns the new version of each model.
    """
    import mlflow
    from mlflow import MlflowClient

    from ml.modeling import champions, registry
    from ml.modeling.train import fit
    from ml.warehouse import snapshot

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    redis_client = snapshot.connect(settings.redis_url)
    try:
        key = snapshot.publish(redis_client, frame, snapshot.DEFAULT_TTL_SECONDS)
    finally:
        redis_client.close()
    versions = {}
    for name in models:
        fitted = fit(name, frame, reference_platforms())
        experiment = f"serve-{name}"
        if client.get_experiment_by_name(experiment) is None:
            client.create_experiment(
                experiment, artifact_location=f"{settings.mlflow_artifact_root}/{experiment}"
            )
        mlflow.set_experiment(experiment)
        tags = {"snapshot_key": key, "data_digest": fitted.data_digest,
                "trained_at": fitted.trained_at.isoformat(timespec="seconds"),
                **fitted.version_tags, **_serving_tags(fitted, frame)}
        with mlflow.start_run(tags=tags):
            mlflow.log_metric("train_rows", fitted.n_train)
            # Stored as ml.modeling.registry stores it (skops, same trusted types and
            # signature) without its evaluation, which would cost minutes here.
            logged = mlflow.sklearn.log_model(
                fitted.pipeline, name="model", input_example=fitted.input_example,
                signature=registry.signature(fitted.spec),
                skops_trusted_types=registry.SKOPS_TRUSTED_TYPES,
                # Given, not inferred: inference imports the model in a subprocess.
                pip_requirements=[f"{n}=={installed_version(n)}" for n in registry.REQUIREMENTS],
            )
        digest = {champions.DIGEST_TAG: champions.stored_digest(logged.model_uri)}
        version = mlflow.register_model(logged.model_uri, name, tags=digest).version
        client.set_registered_model_alias(name, "champion", str(version))
        versions[name] = str(version)
    return versions
