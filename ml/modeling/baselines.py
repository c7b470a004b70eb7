"""Baselines every prerelease score is shown beside, one function each.

A baseline gets the train and test mart rows of a split (or of a backtest
origin) and returns predictions for the test rows on the model's label scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ml import features
from ml.features import ModelSpec
from ml.modeling import pipelines

# A baseline gets the train and test mart rows of a split and returns
# predictions for the test rows on the model's label scale.
Baseline = Callable[[ModelSpec, pd.DataFrame, pd.DataFrame], np.ndarray]


def _sum_of_regions(spec: ModelSpec, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Global sales as the sum of the four regions: what the data defines."""
    regions = ["na_sales", "eu_sales", "jp_sales", "other_sales"]
    return test[regions].astype("float64").sum(axis=1).to_numpy()


def _train_median(spec: ModelSpec, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Every release forecast at the median of the training releases."""
    return np.full(len(test), features.label(spec.name, train).median())


# The request's four fields: what the simple baselines read.
_REQUEST_CATEGORIES, _REQUEST_NUMBERS = ["platform", "genre", "publisher"], ["year"]


def _on_request_fields(build: Callable, spec: ModelSpec, train: pd.DataFrame,
                       test: pd.DataFrame) -> np.ndarray:
    pipeline = build(_REQUEST_CATEGORIES, _REQUEST_NUMBERS)
    columns = _REQUEST_CATEGORIES + _REQUEST_NUMBERS
    as_text = {c: object for c in _REQUEST_CATEGORIES}
    pipeline.fit(train[columns].astype(as_text), features.label(spec.name, train))
    return pipeline.predict(test[columns].astype(as_text))


def _label_encoded_forest(
    spec: ModelSpec, train: pd.DataFrame, test: pd.DataFrame
) -> np.ndarray:
    """The original RandomForest on label-encoded platform/genre/publisher/year."""
    return _on_request_fields(pipelines.label_encoded_forest, spec, train, test)


def _categorical_boosting(
    spec: ModelSpec, train: pd.DataFrame, test: pd.DataFrame
) -> np.ndarray:
    """HistGB on the four request fields alone (platform, genre, publisher, year)."""
    return _on_request_fields(pipelines.native_categorical_boosting, spec, train, test)


BASELINES: dict[str, dict[str, Baseline]] = {
    "global_from_regional": {"sum": _sum_of_regions},
    "prerelease": {
        "median": _train_median,
        "label_encoded_forest": _label_encoded_forest,
        "categorical_boosting": _categorical_boosting,
    },
}
