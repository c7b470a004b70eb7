"""`serve.model.compiled` reproduces `pipeline.predict` exactly, or refuses.

Unit tests on small fitted pipelines of every supported shape (the served
models themselves are checked at load and in tests/test_serve.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    HistGradientBoostingRegressor,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    TargetEncoder,
)

from serve.model.compiled import (
    NotCompilable,
    compile_pipeline,
    known_categories,
    verify,
)

PLATFORMS = ["Wii", "PS2", "X360", "DS", "PC", "GBA", "N64"]
GENRES = ["Sports", "Action", "Puzzle", "Racing"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 800
    frame = pd.DataFrame({
        "platform": rng.choice(PLATFORMS, n, p=[0.3, 0.3, 0.2, 0.1, 0.05, 0.03, 0.02]),
        "genre": rng.choice(GENRES, n),
        "year": rng.integers(1985, 2017, n).astype(float),
        "na_sales": rng.exponential(0.3, n),
        "eu_sales": rng.exponential(0.2, n),
        "empty": np.nan,
    })
    frame.loc[rng.random(n) < 0.1, "year"] = np.nan
    y = frame["na_sales"] * 2 + frame["eu_sales"] + (frame["platform"] == "Wii") + rng.normal(0, 0.05, n)
    probe = frame.sample(150, random_state=1).reset_index(drop=True)
    probe.loc[:9, "platform"] = "Never Seen"
    probe.loc[10:19, "genre"] = "Unheard Of"
    probe.loc[20:29, "na_sales"] = np.nan
    return frame, y, probe


def _numbers():
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])


SHAPES = {
    "one-hot + forest": lambda: Pipeline([
        ("encode", ColumnTransformer([
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["platform", "genre"]),
            ("numbers", _numbers(), ["year", "na_sales", "eu_sales", "empty"]),
        ])),
        ("model", RandomForestRegressor(n_estimators=15, random_state=0)),
    ]),
    "ordinal + extra trees + passthrough remainder": lambda: Pipeline([
        ("encode", ColumnTransformer([
            ("categories", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
             ["platform", "genre"]),
        ], remainder="passthrough")),
        ("model", ExtraTreesRegressor(n_estimators=10, random_state=0)),
    ]),
    "target encoder + log target boosting": lambda: Pipeline([
        ("encode", ColumnTransformer([
            ("categories", TargetEncoder(), ["platform", "genre"]),
            ("numbers", SimpleImputer(), ["year", "na_sales", "eu_sales"]),
        ])),
        ("model", TransformedTargetRegressor(
            GradientBoostingRegressor(n_estimators=30, random_state=0),
            func=np.log1p, inverse_func=np.expm1)),
    ]),
    "infrequent ordinal + native categorical histogram boosting": lambda: Pipeline([
        ("encode", ColumnTransformer([
            ("categories", OrdinalEncoder(min_frequency=40, handle_unknown="use_encoded_value",
                                          unknown_value=np.nan, encoded_missing_value=np.nan),
             ["platform", "genre"]),
            ("numbers", "passthrough", ["year", "na_sales", "eu_sales"]),
        ], verbose_feature_names_out=False)),
        ("model", HistGradientBoostingRegressor(categorical_features=[0, 1], max_iter=60,
                                                random_state=0)),
    ]),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_compiled_predictions_are_bit_identical(data, shape):
    frame, y, probe = data
    pipeline = SHAPES[shape]().fit(frame, y)
    compiled = compile_pipeline(pipeline)
    ok, detail = verify(compiled, pipeline, probe)
    assert ok, detail
    record = {k: (None if isinstance(v, float) and np.isnan(v) else v)
              for k, v in probe.iloc[0].to_dict().items()}
    assert compiled.predict_one(record) == pipeline.predict(probe.iloc[:1])[0]


def test_a_disagreement_is_reported(data):
    frame, y, probe = data
    pipeline = SHAPES["one-hot + forest"]().fit(frame, y)
    other = SHAPES["one-hot + forest"]().set_params(model__random_state=1).fit(frame, y)
    ok, detail = verify(compile_pipeline(other), pipeline, probe)
    assert not ok and detail.startswith("row 0")


def test_unsupported_steps_are_refused(data):
    frame, y, _ = data
    linear = Pipeline([
        ("encode", ColumnTransformer([("n", SimpleImputer(), ["year", "na_sales"])])),
        ("model", Ridge()),
    ]).fit(frame, y)
    with pytest.raises(NotCompilable, match="Ridge"):
        compile_pipeline(linear)
    strict = Pipeline([
        ("encode", ColumnTransformer([("c", OneHotEncoder(), ["platform"])])),
        ("model", RandomForestRegressor(n_estimators=2)),
    ]).fit(frame, y)
    with pytest.raises(NotCompilable, match="handle_unknown"):
        compile_pipeline(strict)


def test_known_categories_come_from_the_encoders(data):
    frame, y, _ = data
    pipeline = SHAPES["infrequent ordinal + native categorical histogram boosting"]().fit(frame, y)
    known = known_categories(pipeline)
    assert known == {"platform": frozenset(PLATFORMS), "genre": frozenset(GENRES)}
