"""The feature schema: one definition serving training and the API."""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pandas as pd
import pytest

from ml import features
from ml.features import MART_DTYPES, MODEL_NAMES, SPECS, FeatureError
from tests.mart_sample import mart_frame

REGIONAL = ("na_sales", "eu_sales", "jp_sales", "other_sales")


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    return mart_frame(200, seed=1)


def good_record(model_name: str) -> dict[str, object]:
    record: dict[str, object] = {"platform": "PS4", "genre": "Action", "year": 2015}
    if model_name == "global_from_regional":
        record.update(na_sales=1.2, eu_sales=0.8, jp_sales=0.1, other_sales=0.3)
    else:
        record.update(publisher="Ubisoft", title_platform_count=3)
    return record


def test_every_model_reads_only_mart_columns():
    assert tuple(SPECS) == MODEL_NAMES
    for spec in SPECS.values():
        used = [*spec.columns, spec.label, *spec.splits]
        assert set(used) <= set(MART_DTYPES), spec.name


def test_prerelease_reads_nothing_unknown_before_release():
    columns = set(features.spec("prerelease").columns)
    assert not columns & {*REGIONAL, "global_sales", "log_global_sales"}
    assert features.spec("prerelease").log_label


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_model_input_from_mart_has_schema_columns_and_types(model_name, mart):
    spec = features.spec(model_name)
    frame = features.model_input(model_name, mart)
    assert list(frame.columns) == spec.columns
    assert len(frame) == len(mart)
    for name in spec.categorical:
        assert frame[name].dtype == object
        assert all(v is None or type(v) is str for v in frame[name])
    for name in spec.numeric:
        assert frame[name].dtype == np.float64


def test_nullable_integers_become_nan_not_pd_na(mart):
    frame = features.model_input("prerelease", mart)
    missing = mart["series_prior_mean_log_sales"].isna().to_numpy()
    assert missing.any()
    assert np.isnan(frame["series_prior_mean_log_sales"].to_numpy()[missing]).all()
    with_na = mart.assign(platform_age_years=pd.array([pd.NA] * len(mart), dtype="Int64"))
    ages = features.model_input("prerelease", with_na)["platform_age_years"]
    assert ages.dtype == np.float64 and ages.isna().all()


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_records_and_mart_rows_give_the_same_input(model_name, mart):
    """The API's records and training's mart rows go through one code path."""
    rows = mart.head(5)
    spec = features.spec(model_name)
    records = [
        {k: (None if pd.isna(v) else v) for k, v in row.items() if k in spec.columns}
        for row in rows.astype(object).to_dict("records")
    ]
    from_records = features.model_input(model_name, records)
    from_mart = features.model_input(model_name, rows)
    pd.testing.assert_frame_equal(from_records, from_mart)


def test_missing_optional_columns_become_nan():
    frame = features.model_input("prerelease", [good_record("prerelease")])
    assert frame.loc[0, "title_platform_count"] == 3.0
    assert math.isnan(frame.loc[0, "series_prior_mean_log_sales"])


def test_missing_required_column_is_named():
    record = good_record("global_from_regional")
    del record["jp_sales"]
    with pytest.raises(FeatureError, match="jp_sales"):
        features.model_input("global_from_regional", [record])


def test_non_numeric_value_is_an_error():
    record = {**good_record("prerelease"), "platform_generation": "next"}
    with pytest.raises(FeatureError, match="'platform_generation' must be numeric"):
        features.model_input("prerelease", [record])


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(FeatureError, match="prerelease"):
        features.spec("postrelease")


def test_to_sales_undoes_log1p_and_clips():
    sales = np.array([0.0, 0.5, 12.0])
    assert np.allclose(features.to_sales("prerelease", np.log1p(sales)), sales)
    assert features.to_sales("global_from_regional", np.array([-0.2, 1.5])).tolist() == [0.0, 1.5]


def test_training_rows_need_label_year_and_split(mart):
    rows = features.training_rows("prerelease", mart)
    assert rows["year"].notna().all() and rows["split_time"].notna().all()
    assert len(rows) == mart["year"].notna().sum()
    assert features.label("prerelease", rows).dtype == np.float64


def test_not_blank_matches_exactly_what_strip_keeps():
    """`NOT_BLANK` spells out `str.isspace` (what `str.strip` removes) for
    every code point, so the API's published pattern and pydantic agree."""
    pattern = re.compile(features.NOT_BLANK)
    disagree = [hex(code) for code in range(sys.maxunicode + 1)
                if bool(pattern.fullmatch(chr(code))) == chr(code).isspace()]
    assert disagree == []


def test_the_prediction_log_keeps_every_category_the_api_accepts():
    """fct_predictions casts platform and genre to dbt's `max_category_length`."""
    import yaml

    from ml.settings import ROOT

    project = yaml.safe_load((ROOT / "dbt_project" / "dbt_project.yml").read_text())
    assert project["vars"]["max_category_length"] == features.MAX_CATEGORY_LENGTH
    model = (ROOT / "dbt_project" / "models" / "marts" / "monitoring"
             / "fct_predictions.sql").read_text()
    for column in ("platform", "genre"):
        assert re.search(rf"'\$\.{column}'\)\s+as char\(\{{\{{ var\('max_category_length'\) \}}\}}\)",
                         model), column
