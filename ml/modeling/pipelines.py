"""The sklearn Pipelines: encoders and estimator saved as one object.

Everything a prediction needs (category encoding, unseen-category handling)
lives inside the Pipeline that MLflow stores, so the API loads one artifact
and feeds it `ml.features.model_input()` frames. No loose encoder files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from ml.features import ModelSpec
from ml.settings import load_settings

SEED = 42

# The original design's forest, kept verbatim as the reference run.
ORIGINAL_FOREST = dict(
    n_estimators=50,
    max_depth=15,
    min_samples_split=5,
    min_samples_leaf=5,
    random_state=SEED,
)

# Categories seen fewer times than this in training share one "infrequent"
# code: 425 of the 502 publishers in the time split's train years have under
# 20 titles, and one code for them generalises better than hundreds of tiny
# groups (and keeps the publisher under the booster's 255-category limit).
MIN_CATEGORY_COUNT = 20
# HistGradientBoosting takes at most 255 categories per feature. At 16.6k
# rows MIN_CATEGORY_COUNT leaves about 80 publishers; on a mart of a million
# rows most publishers pass it (bench_train found 502), so the rarest beyond
# the 254 most frequent also join the infrequent group.
MAX_BOOSTING_CATEGORIES = 255

# Chosen on the time split of the real mart: feature subsampling
# (max_features=0.5) gained about 0.01 R² over the defaults for every seed
# tried; a fixed number of iterations instead of early stopping keeps all
# train rows for the trees. Deeper/shallower trees and more regularisation
# moved R² by less than the seed-to-seed noise (about 0.01).
BOOSTING = dict(
    learning_rate=0.05,
    max_iter=250,
    early_stopping=False,
    max_leaf_nodes=31,
    min_samples_leaf=20,
    max_features=0.5,
    random_state=SEED,
)

# OpenMP threads for fitting and scoring. On the 2-core machine this runs on,
# shared with MariaDB and dbt, one thread fitted the booster 6-9x faster than
# two (threads spin while waiting for a busy core).
THREADS = 1


def boosting() -> dict[str, object]:
    """BOOSTING, with the iterations the settings ask for (VGSALES_BOOSTING_ITERATIONS,
    0 for the tuned number): the test suite fits small models through it."""
    iterations = load_settings().vgsales_boosting_iterations
    return {**BOOSTING, "max_iter": iterations} if iterations else dict(BOOSTING)


def label_encoded_forest(categorical: list[str], numeric: list[str]) -> Pipeline:
    """The original design: categories label-encoded, then a RandomForest.

    Label encoding is an ordinal code per sorted category; a category unseen
    in training gets -1 instead of failing the request.
    """
    encode = ColumnTransformer(
        [
            (
                "categories",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=-1,
                    encoded_missing_value=-1,
                ),
                categorical,
            ),
            ("numbers", "passthrough", numeric),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline(
        [("encode", encode), ("model", RandomForestRegressor(n_jobs=1, **ORIGINAL_FOREST))]
    )


def native_categorical_boosting(categorical: list[str], numeric: list[str]) -> Pipeline:
    """HistGradientBoosting splitting on categories as sets, not as ordinals.

    Rare categories share one code (MIN_CATEGORY_COUNT); categories unseen in
    training and missing values become NaN, which the booster routes like the
    missing values it learnt from (or to the larger child if it saw none).
    """
    encode = ColumnTransformer(
        [
            (
                "categories",
                OrdinalEncoder(
                    min_frequency=MIN_CATEGORY_COUNT,
                    max_categories=MAX_BOOSTING_CATEGORIES,
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                ),
                categorical,
            ),
            ("numbers", "passthrough", numeric),
        ],
        verbose_feature_names_out=False,
    )
    model = HistGradientBoostingRegressor(
        categorical_features=list(range(len(categorical))), **boosting()
    )
    return Pipeline([("encode", encode), ("model", model)])


# What a request gives only with a title: the series history (`name`) and,
# sent beside it, the platforms list (`title_platform_count`).
TITLE_FEATURES = ("series_prior_titles", "series_prior_mean_log_sales", "title_platform_count")
# A row without a title has no series count (a titled row's is a count, 0 included).
UNTITLED_WHEN_MISSING = "series_prior_titles"


class ByRequestShape(RegressorMixin, BaseEstimator):
    """Two pipelines, each row answered by the one fitted for what it gives:
    `titled` (every feature) when the series count is known, `untitled` (no
    title features at all) when the request sent no title.

    One model fitted on titled rows reads a missing title as a title with no
    history; masking a share of training rows instead cost the full request
    more than it gained the untitled one (docs/forecast.md). Both are fitted
    on every row; a row's route depends on its own input only.
    """

    def __init__(self, titled: Pipeline | None = None, untitled: Pipeline | None = None) -> None:
        self.titled = titled
        self.untitled = untitled

    def fit(self, X: pd.DataFrame, y) -> ByRequestShape:
        self.titled_ = clone(self.titled).fit(X, y)
        self.untitled_ = clone(self.untitled).fit(X, y)
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        untitled = X[UNTITLED_WHEN_MISSING].isna().to_numpy()
        out = np.empty(len(X), dtype=np.float64)
        for rows, model in ((~untitled, self.titled_), (untitled, self.untitled_)):
            if rows.any():
                out[rows] = model.predict(X[rows])
        return out


def build(spec: ModelSpec) -> Pipeline | ByRequestShape:
    """The untrained pipeline of a model spec."""
    if spec.name == "global_from_regional":
        return label_encoded_forest(spec.categorical, spec.numeric)
    if spec.request_shapes:
        return ByRequestShape(
            titled=native_categorical_boosting(spec.categorical, spec.numeric),
            untitled=native_categorical_boosting(
                spec.categorical, [n for n in spec.numeric if n not in TITLE_FEATURES]),
        )
    return native_categorical_boosting(spec.categorical, spec.numeric)


def final_pipeline(model: object) -> object:
    """The pipeline that reads every column: the model itself, or a
    `ByRequestShape`'s titled one (its encoders know every category)."""
    return model.titled_ if isinstance(model, ByRequestShape) else model


def regressor(model: object) -> object:
    """The estimator at the end of the pipeline that reads every column."""
    return final_pipeline(model).steps[-1][1]


def known_categories(model: object) -> dict[str, frozenset[str]]:
    """Per input column, the categories the pipeline's encoders were fitted on.

    Works on any fitted pipeline whose first step is a `ColumnTransformer`
    (its encoders fitted on frames, as `ml.features.model_input` builds them):
    it is how the API, and the goal that checks the API's names, tell a
    category the model knows from one it never saw.
    """
    steps = getattr(final_pipeline(model), "steps", None)
    transformer = steps[0][1] if steps else None
    if not isinstance(transformer, ColumnTransformer):
        return {}
    known: dict[str, frozenset[str]] = {}
    for _, fitted, _ in transformer.transformers_:
        columns = getattr(fitted, "feature_names_in_", None)
        if columns is None or not hasattr(fitted, "categories_"):
            continue
        for column, categories in zip(columns, fitted.categories_):
            known[str(column)] = frozenset(c for c in categories.tolist() if isinstance(c, str))
    return known
