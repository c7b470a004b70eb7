"""The one feature schema: what each model reads, in which type and range.

Training, the API's request validation and drift checks all go through this
module, so adding a feature is one edit here (plus the mart column it comes
from). Two models are served:

- `global_from_regional`: the original design's contract. Global sales is the
  sum of the regional columns by construction, so this model can only
  reproduce arithmetic; it is kept as the reference run next to the sum.
- `prerelease`: global sales forecast from what is known before release
  (platform, genre, publisher, year, the platform's reference attributes and
  point-in-time history, `ml.modeling.point_in_time`), trained on
  log1p(global sales) of every labelled year. Regional sales are absent.

`model_input()` turns either a mart frame or API-style records into the exact
frame a pipeline expects: categories as Python `str` (None when missing),
numbers as float64, so that MLflow's schema enforcement sees the same types
at logging and at serving time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

MODEL_NAMES = ("global_from_regional", "prerelease")

# Column types of the `ml_release_features` mart as Python reads it
# (`ml.warehouse.mart.read_ml_mart`): text that identifies is `str`, text that groups
# is `category`, nullable integers are `Int64`, measures are float64.
MART_DTYPES: dict[str, str] = {
    "release_id": "str",
    "name": "str",
    "platform": "category",
    "genre": "category",
    "publisher": "category",
    "year": "Int64",
    "decade": "Int64",
    "platform_manufacturer": "category",
    "platform_kind": "category",
    "platform_generation": "Int64",
    "na_sales": "float64",
    "eu_sales": "float64",
    "jp_sales": "float64",
    "other_sales": "float64",
    "global_sales": "float64",
    "log_global_sales": "float64",
    "publisher_prior_titles": "Int64",
    "publisher_prior_mean_log_sales": "float64",
    "series_key": "str",
    "series_prior_titles": "Int64",
    "series_prior_mean_log_sales": "float64",
    "platform_age_years": "Int64",
    "platform_titles_that_year": "Int64",
    "platform_titles_prior_year": "Int64",
    "title_platform_count": "Int64",
    "split_random": "category",
    "split_time": "category",
}

# Free-text categories: any non-empty string up to this length is accepted.
# Values the model never saw in training are encoded as "unknown" inside the
# pipeline (see ml.modeling.pipelines), never rejected: a new publisher is a normal
# pre-release question.
MAX_CATEGORY_LENGTH = 100


# A category must hold a character this matches: one that is not whitespace
# as `str.strip` sees it. Spelled out as \uXXXX
# ranges because the API publishes it in its JSON Schema, where `\S` follows
# ECMA's rules (U+0085 is not whitespace there, U+FEFF is) while pydantic's
# engine follows Unicode's: a shorthand would mean different things to a
# client and to the server. tests/unit/test_features.py checks it against
# `str.isspace` for every code point.
NOT_BLANK = (r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a"
             r"\u2028\u2029\u202f\u205f\u3000]")

Kind = Literal["category", "number"]


@dataclass(frozen=True)
class Feature:
    """One model input: name, kind, whether a request must carry it, range."""

    name: str
    kind: Kind
    description: str
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """What a model reads, what it predicts and how it is judged.

    `label` is a mart column; `log_label` says the model predicts
    log1p(sales) and `to_sales()` undoes it. `split` is the mart column that
    separates train from held-out rows; `held_out_metric` is the metric the
    champion gate compares; a challenger must beat the champion on it by
    more than `gate_margin` (the metric's noise between equally good fits).
    With `fit_on_all` the served model is fitted on
    every labelled row (its splits are scored by refitted copies, and the
    gate compares the rolling-origin backtest, `ml.modeling.backtest`).
    With `request_shapes` a request may leave optional context out (a title,
    a platforms list): training masks a share of rows and the backtest scores
    each shape (`ml.modeling.shapes`).
    """

    name: str
    features: tuple[Feature, ...]
    label: str
    log_label: bool
    split: str
    held_out_metric: str
    greater_is_better: bool
    extra_splits: tuple[str, ...] = ()
    fit_on_all: bool = False
    request_only: tuple[Feature, ...] = ()
    request_shapes: bool = False
    gate_margin: float = 0.0

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def request_features(self) -> tuple[Feature, ...]:
        """What a request carries: the model's inputs and `request_only` fields
        the features are derived from (the year, for `prerelease`)."""
        return (*self.request_only, *self.features)

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "category"]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "number"]

    @property
    def splits(self) -> tuple[str, ...]:
        """The served split first, then the ones only reported."""
        return (self.split, *self.extra_splits)


_PLATFORM = Feature("platform", "category", "platform code, e.g. PS4, Wii, PC")
_GENRE = Feature("genre", "category", "genre, e.g. Action, Sports")
# The years a request may name, for every year field of every endpoint. How
# far a model can forecast is narrower and its own (`horizon` in serving).
YEAR_RANGE = (1970, 2040)
_YEAR = Feature("year", "number", "release year", minimum=YEAR_RANGE[0], maximum=YEAR_RANGE[1])


def _sales(region: str) -> Feature:
    return Feature(
        f"{region}_sales", "number", f"{region.upper()} sales, millions",
        minimum=0, maximum=100,
    )


SPECS: dict[str, ModelSpec] = {
    "global_from_regional": ModelSpec(
        name="global_from_regional",
        features=(
            _PLATFORM,
            _YEAR,
            _GENRE,
            _sales("na"),
            _sales("eu"),
            _sales("jp"),
            _sales("other"),
        ),
        label="global_sales",
        log_label=False,
        split="split_random",
        held_out_metric="random_test_rmse",
        greater_is_better=False,
    ),
    "prerelease": ModelSpec(
        name="prerelease",
        features=(
            _PLATFORM,
            _GENRE,
            Feature("publisher", "category", "publisher; 'Unknown' if not known"),
            Feature(
                "platform_manufacturer", "category",
                "maker of the platform, e.g. Sony (looked up in ref_platforms)",
                required=False,
            ),
            Feature(
                "platform_kind", "category",
                "home, handheld or pc (looked up in ref_platforms)",
                required=False,
            ),
            Feature(
                "platform_generation", "number",
                "console generation, e.g. 8 for PS4 (looked up in ref_platforms)",
                required=False, minimum=1, maximum=12,
            ),
            Feature(
                "platform_age_years", "number",
                "release year minus the platform's launch year",
                required=False, minimum=-5, maximum=60,
            ),
            Feature(
                "publisher_prior_titles", "number",
                "titles by the publisher in the years before the data's as-of year",
                required=False, minimum=0, maximum=100_000,
            ),
            Feature(
                "publisher_prior_mean_log_sales", "number",
                "mean ln(1 + global sales) of those titles; empty if none",
                required=False, minimum=0, maximum=5,
            ),
            Feature(
                "series_prior_titles", "number",
                "titles of the same series in the years before the as-of year",
                required=False, minimum=0, maximum=10_000,
            ),
            Feature(
                "series_prior_mean_log_sales", "number",
                "mean ln(1 + global sales) of those titles; empty if none",
                required=False, minimum=0, maximum=5,
            ),
            Feature(
                "platform_titles_prior_year", "number",
                "releases on the platform in the year before the as-of year",
                required=False, minimum=0, maximum=100_000,
            ),
            Feature(
                "title_platform_count", "number",
                "platforms the title ships on",
                required=False, minimum=1, maximum=50,
            ),
        ),
        label="log_global_sales",
        log_label=True,
        split="split_time",
        extra_splits=("split_random",),
        held_out_metric="backtest_r2_shapes_mean",
        greater_is_better=True,
        fit_on_all=True,
        request_shapes=True,
        # Refits differing only in the booster's seed moved a shape's backtest
        # R² by 0.004 (docs/forecast.md); a smaller gain than 2.5 times that
        # is noise, not progress.
        gate_margin=0.01,
        # The year places the forecast in time (platform age, the as-of year
        # of every history feature) but is not an input: a tree cannot
        # extrapolate it past the data, whose last year is incomplete.
        request_only=(_YEAR,),
    ),
}


class FeatureError(ValueError):
    """Input that does not fit a model's schema; the message says where."""


def spec(model_name: str) -> ModelSpec:
    """The spec of `model_name`, or an error listing the known models."""
    try:
        return SPECS[model_name]
    except KeyError:
        raise FeatureError(
            f"unknown model {model_name!r}; expected one of {', '.join(MODEL_NAMES)}"
        ) from None


def _to_frame(data: pd.DataFrame | Iterable[Mapping[str, object]]) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    return pd.DataFrame.from_records(list(data))


def _category_values(column: pd.Series) -> pd.Series:
    """Text as Python str, missing as None, in an object column."""
    values = column.astype(object)
    return values.where(values.notna(), None).map(
        lambda v: v if v is None else str(v)
    ).astype(object)


def model_input(
    model_name: str, data: pd.DataFrame | Iterable[Mapping[str, object]]
) -> pd.DataFrame:
    """The frame `model_name`'s pipeline reads, from a mart frame or records.

    Only the model's columns are kept, in schema order; other columns (labels,
    regional sales for `prerelease`, ids) are dropped, so nothing unknown
    before release can leak in. A missing optional column becomes NaN; a
    missing required column is an error. Values are type-converted, not
    range-checked: untrusted input is checked by the API's schemas
    (serve/schemas.py, generated from this module's specs).
    """
    model = spec(model_name)
    frame = _to_frame(data)
    missing = [
        f.name for f in model.features if f.required and f.name not in frame.columns
    ]
    if missing:
        raise FeatureError(
            f"{model_name}: missing required column(s) {', '.join(missing)}; "
            f"expected {', '.join(model.columns)}"
        )
    out = pd.DataFrame(index=frame.index)
    for feature in model.features:
        if feature.name not in frame.columns:
            column = pd.Series(np.nan, index=frame.index)
        else:
            column = frame[feature.name]
        if feature.kind == "category":
            out[feature.name] = _category_values(column)
        else:
            try:
                out[feature.name] = pd.to_numeric(column).astype("float64")
            except (TypeError, ValueError) as exc:
                raise FeatureError(
                    f"{model_name}: column {feature.name!r} must be numeric: {exc}"
                ) from None
    return out.reset_index(drop=True)


def training_rows(model_name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Mart rows a model can learn from: label, year and served split known.

    Releases of unknown year are left out of both models: `prerelease` has no
    point-in-time history for them and no place in the time split, and the
    original design dropped them too.
    """
    model = spec(model_name)
    needed = [model.label, "year", model.split]
    return frame.dropna(subset=needed).reset_index(drop=True)


def label(model_name: str, frame: pd.DataFrame) -> pd.Series:
    """The training target of `model_name` from a mart frame, as float64."""
    return frame[spec(model_name).label].astype("float64").reset_index(drop=True)


def to_sales(model_name: str, predictions: np.ndarray) -> np.ndarray:
    """Model output as global sales in millions (undoes log1p, never negative)."""
    values = np.asarray(predictions, dtype="float64")
    if spec(model_name).log_label:
        values = np.expm1(values)
    return np.clip(values, 0.0, None)
