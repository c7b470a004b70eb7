"""`serve.model.compiled` reproduces `pipeline.predict` exactly, or refuses.

Unit tests on small fitted pipelines of the shapes `ml.modeling.pipelines`
builds (the served models themselves are checked at load and in
tests/system/test_serve.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from ml.modeling.pipelines import (
    ByRequestShape,
    known_categories,
    label_encoded_forest,
    native_categorical_boosting,
)
from serve.model.compiled import NotCompilable, compile_pipeline, verify

PLATFORMS = ["Wii", "PS2", "X360", "DS", "PC", "GBA", "N64"]
GENRES = ["Sports", "Action", "Puzzle", "Racing"]
CATEGORICAL = ["platform", "genre"]
NUMERIC = ["year", "na_sales", "eu_sales"]


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
    })
    frame.loc[rng.random(n) < 0.1, "year"] = np.nan
    y = frame["na_sales"] * 2 + frame["eu_sales"] + (frame["platform"] == "Wii") + rng.normal(0, 0.05, n)
    probe = frame.sample(150, random_state=1).reset_index(drop=True)
    probe.loc[:9, "platform"] = "Never Seen"
    probe.loc[10:19, "genre"] = "Unheard Of"
    probe.loc[20:29, "na_sales"] = np.nan
    return frame, y, probe


# The two shapes `ml.modeling.pipelines` builds, smaller, and the forest
# with infrequent categories grouped as the booster's encoder does it.
SHAPES = {
    "ordinal + random forest": lambda: label_encoded_forest(CATEGORICAL, NUMERIC).set_params(
        model__n_estimators=15),
    "infrequent ordinal + native categorical histogram boosting": lambda: (
        native_categorical_boosting(CATEGORICAL, NUMERIC).set_params(
            encode__categories__min_frequency=40, model__max_iter=60)),
    "infrequent ordinal + random forest": lambda: label_encoded_forest(CATEGORICAL, NUMERIC)
    .set_params(model__n_estimators=10, encode__categories__min_frequency=40),
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


def test_a_model_routed_by_request_shape_compiles_to_the_same_routes(data):
    """`ByRequestShape` (keyed here on `na_sales` in place of the series
    count): each record goes to the compiled pipeline the model sends it to."""
    frame, y, probe = data
    frame = frame.assign(series_prior_titles=frame["na_sales"])
    probe = probe.assign(series_prior_titles=probe["na_sales"])
    router = ByRequestShape(
        titled=native_categorical_boosting(CATEGORICAL, [*NUMERIC, "series_prior_titles"])
        .set_params(model__max_iter=40),
        untitled=native_categorical_boosting(CATEGORICAL, ["year"]).set_params(model__max_iter=40),
    ).fit(frame, y)
    compiled = compile_pipeline(router)
    ok, detail = verify(compiled, router, probe)
    assert ok, detail
    assert probe["series_prior_titles"].isna().sum() == 10
    assert known_categories(router) == known_categories(router.titled_)


def test_a_disagreement_is_reported(data):
    frame, y, probe = data
    pipeline = SHAPES["ordinal + random forest"]().fit(frame, y)
    other = SHAPES["ordinal + random forest"]().set_params(model__random_state=1).fit(frame, y)
    ok, detail = verify(compile_pipeline(other), pipeline, probe)
    assert not ok and detail.startswith("row 0")


def test_unsupported_steps_are_refused(data):
    frame, y, _ = data
    linear = Pipeline([
        ("encode", ColumnTransformer([("n", "passthrough", ["na_sales", "eu_sales"])])),
        ("model", Ridge()),
    ]).fit(frame, y)
    with pytest.raises(NotCompilable, match="Ridge"):
        compile_pipeline(linear)
    for encoder, reason in ((OneHotEncoder(handle_unknown="ignore"), "OneHotEncoder"),
                            (OrdinalEncoder(), "handle_unknown")):
        other = Pipeline([
            ("encode", ColumnTransformer([("c", encoder, ["platform"])])),
            ("model", RandomForestRegressor(n_estimators=2)),
        ]).fit(frame, y)
        with pytest.raises(NotCompilable, match=reason):
            compile_pipeline(other)


def test_known_categories_come_from_the_encoders(data):
    frame, y, _ = data
    pipeline = SHAPES["infrequent ordinal + native categorical histogram boosting"]().fit(frame, y)
    known = known_categories(pipeline)
    assert known == {"platform": frozenset(PLATFORMS), "genre": frozenset(GENRES)}
