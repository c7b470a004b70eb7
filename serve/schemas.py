"""Request and response bodies, derived from the one feature schema.

Request models are built from `ml.features.SPECS` (names, kinds, required
flags, ranges), so a feature added there is validated and documented here
without an edit. Validation is strict: a number must be a JSON number (not
"2006"), text must be a JSON string, NaN/Infinity and unknown fields are
refused, and every error names its field.

One naming convention: every endpoint's fields are the feature names
(`platform`, `na_sales`, ...), in requests and responses. `POST /predict`
also accepts the original design's body, whose names are the raw CSV headers
(`Platform`, `NA_Sales`, ...), so its existing clients keep working. A
feature stored as a whole number in the mart (`year`, counts) must be one
(2016 or 2016.0, not 2016.5). Sales are in millions of units, in and out.
Categories the model never saw are accepted and flagged: see `Prediction`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    create_model,
)
from pydantic_core import PydanticCustomError

from ml.features import MART_DTYPES, MAX_CATEGORY_LENGTH, NOT_BLANK, YEAR_RANGE, Feature, spec

# Largest batch accepted by the batch endpoints, and the largest body at all.
MAX_BATCH_ROWS = 1000
MAX_BODY_BYTES = 1024 * 1024

# The original design's JSON names: the vgsales.csv headers of the features.
ORIGINAL_NAMES = {
    "platform": "Platform",
    "year": "Year",
    "genre": "Genre",
    "na_sales": "NA_Sales",
    "eu_sales": "EU_Sales",
    "jp_sales": "JP_Sales",
    "other_sales": "Other_Sales",
}

# What every sales figure is counted in, request and response alike.
SALES_UNIT = "millions of units"

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def whole_number(feature: Feature) -> bool:
    """Whether the mart stores `feature` as an integer (`ml.features.MART_DTYPES`)."""
    return feature.kind == "number" and MART_DTYPES.get(feature.name) == "Int64"


def _json_number(value: object) -> object:
    # Lax integer parsing (so 2016.0 is 2016) would also take "2016" and true.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _field_type(feature: Feature) -> Any:
    if feature.kind == "category":
        # At least one non-blank character, as ml.features demands (and
        # publishes the same way to every client: `NOT_BLANK`).
        return Annotated[
            str,
            StringConstraints(min_length=1, max_length=MAX_CATEGORY_LENGTH, pattern=NOT_BLANK),
        ]
    if whole_number(feature):
        # Validated as an integer, handed on as a float like every other number.
        return Annotated[int, Field(ge=feature.minimum, le=feature.maximum, strict=False),
                         BeforeValidator(_json_number), AfterValidator(float)]
    return Annotated[float, Field(ge=feature.minimum, le=feature.maximum)]


# What a forecast request may carry beside the features: the title (its
# series history), the platforms it ships on (title_platform_count) and the
# launch year of a platform the reference does not know
# (`ml.modeling.point_in_time.PointInTime.complete` reads them).
_PLATFORM_CODE = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_CATEGORY_LENGTH, pattern=NOT_BLANK)
]
FORECAST_CONTEXT: dict[str, Any] = {
    "name": (
        Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NOT_BLANK)] | None,
        Field(None, description="title, e.g. 'FIFA 19': its series' earlier releases "
              "become features (optional)"),
    ),
    "platforms": (
        Annotated[list[_PLATFORM_CODE], Field(min_length=1, max_length=50)] | None,
        Field(None, description="every platform the title ships on; gives "
              "title_platform_count (optional)"),
    ),
    "platform_launch_year": (
        Annotated[float, Field(ge=YEAR_RANGE[0], le=YEAR_RANGE[1])] | None,
        Field(None, description="launch year of a platform missing from ref_platforms; "
              "gives platform_age_years (optional)"),
    ),
}


def record_model(
    model_name: str, class_name: str, *, original_names: bool,
    extra: dict[str, Any] | None = None,
) -> type[BaseModel]:
    """A pydantic model of one input record of `model_name`.

    Attribute and JSON names are the feature names (what
    `ml.features.model_input` reads); with `original_names` the CSV headers
    are accepted too. Optional features may be omitted or null. `extra`
    fields (name -> (type, Field)) are accepted beside the features.
    """
    fields: dict[str, Any] = dict(extra or {})
    for feature in spec(model_name).request_features:
        names = [feature.name]
        if original_names and feature.name in ORIGINAL_NAMES:
            names.append(ORIGINAL_NAMES[feature.name])
        alias = AliasChoices(*names)
        kind = _field_type(feature)
        if feature.required:
            fields[feature.name] = (
                kind, Field(validation_alias=alias, description=feature.description)
            )
        else:
            fields[feature.name] = (
                kind | None,
                Field(None, validation_alias=alias,
                      description=f"{feature.description} (optional)"),
            )
    return create_model(class_name, __config__=_STRICT, **fields)


def batch_of(model: type[BaseModel]) -> TypeAdapter:
    """A JSON array of 1 to `MAX_BATCH_ROWS` records of `model`."""
    return TypeAdapter(
        Annotated[list[model], Field(min_length=1, max_length=MAX_BATCH_ROWS)]
    )


PredictRequest = record_model("global_from_regional", "PredictRequest", original_names=True)
ForecastRequest = record_model(
    "prerelease", "ForecastRequest", original_names=False, extra=FORECAST_CONTEXT
)
PredictBatch = batch_of(PredictRequest)
ForecastBatch = batch_of(ForecastRequest)


class Prediction(BaseModel):
    """One prediction. `unseen` lists the request fields whose category the
    model never saw in training: the prediction is still made (the pipeline
    encodes them as unknown) but is less reliable."""

    global_sales: float = Field(description=f"predicted global sales, {SALES_UNIT}")
    unseen: list[str] = Field(description="fields with a category unseen in training")
    matched: dict[str, str] = Field(
        description="fields whose value was answered under another name, which "
        "was used: a name written another way (a publisher's later or label name, "
        "e.g. Sony Interactive Entertainment -> Sony Computer Entertainment; "
        "Switch -> NS; a genre of the newer taxonomy) or a difference of case (ps4)"
    )
    did_you_mean: dict[str, list[str]] = Field(
        description="for unseen fields: the closest known names (a publisher's "
        "other names suggest the name its history is filed under)"
    )


class Served(BaseModel):
    unit: str = Field(description="unit of every sales figure", examples=[SALES_UNIT])
    model: str = Field(description="registered model name")
    version: str = Field(description="registered model version")
    request_id: str = Field(description="X-Request-ID, echoed or generated")


class PredictResponse(Prediction, Served):
    pass


class Interval(BaseModel):
    level: float = Field(description="share of releases the interval should hold, e.g. 0.8")
    lower: float = Field(description="lower bound, millions of units")
    upper: float = Field(description="upper bound, millions of units")


class ForecastPrediction(Prediction):
    features: dict[str, str | float | None] = Field(
        description="the model's full input: the request plus the point-in-time "
        "features looked up in the snapshot the model was trained on"
    )
    interval: Interval | None = Field(
        description="conformal prediction interval, calibrated on the rolling-origin "
        "backtest's errors per request shape, genre and seen/unseen platform"
    )
    data_last_year: int | None = Field(
        description="last complete year of the data the model knows; history "
        "features stop there"
    )
    horizon: int | None = Field(
        description="years from data_last_year to the forecast year (the backtest "
        "measures 1 to 3, and a later year is refused with a 422 naming the last "
        "year forecast; 0 or less for a year the data covers)"
    )
    shape: str | None = Field(
        description="the request's shape (full, no_platforms, no_title, "
        "no_title_unseen_publisher): GET /model's `shapes` gives its backtest score"
    )


class ForecastResponse(ForecastPrediction, Served):
    pass


class BatchResponse(Served):
    predictions: list[Prediction]


class ForecastBatchResponse(Served):
    predictions: list[ForecastPrediction]


class ErrorDetail(BaseModel):
    field: str = Field(description="where: a JSON name, `[i].name` in a batch, or `body`")
    message: str


class ErrorResponse(BaseModel):
    error: str = Field(description="a machine-readable code, e.g. validation_error")
    message: str
    detail: list[ErrorDetail] = []
    request_id: str | None = None


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    models: dict[str, str | None] = Field(description="model name -> served version")
    problems: list[str] = []


class ShapeScore(BaseModel):
    request: str = Field(description="what a request of this shape carries")
    r2: float | None = Field(description="backtest mean log1p R²")
    mae: float | None = Field(description="backtest mean absolute error, log1p scale")
    interval_coverage: float | None = Field(description="share inside the 80% interval")
    baseline_r2: float | None = Field(
        description="HistGB on the four required fields, same rows: the bar to beat")


class ModelDescription(BaseModel):
    name: str
    version: str
    run_id: str
    trained_at: str | None = Field(description="UTC time of the training run")
    metrics: dict[str, float]
    data_digest: str | None = Field(description="digest of the training data snapshot")
    fast_path: bool = Field(description="single predictions skip pandas (verified equal)")
    fast_path_detail: str
    features: list[str]
    point_in_time_source: str | None = Field(
        description="where forecasts' point-in-time features are looked up (prerelease)"
    )
    fitted_rows: int | None = Field(description="labelled rows the model was fitted on")
    fitted_years: str | None = Field(description="first and last release year fitted, e.g. 1980-2016")
    data_last_year: int | None = Field(description="last complete year of the data")
    backtest: dict[str, float] = Field(
        description="rolling-origin backtest (log1p scale): backtest_r2_mean, "
        "backtest_r2_h1..h3, backtest_mae_mean, backtest_rmse_mean (full requests), "
        "backtest_r2_shapes_mean (the champion gate's mean over request shapes)"
    )
    shapes: dict[str, ShapeScore] | None = Field(
        description="the backtest per request shape (what a forecast's `shape` names); "
        "None for a model scored without shapes"
    )
    last_forecast_year: int | None = Field(
        description="the last year forecast; a later one is refused with a 422"
    )
    interval: dict[str, float | None] | None = Field(
        description="prediction intervals: level, backtest coverage, median width (millions)"
    )


class ModelsResponse(BaseModel):
    models: dict[str, ModelDescription]


class ReloadResponse(BaseModel):
    previous: dict[str, str | None]
    current: dict[str, str | None]
    changed: bool
    problems: list[str] = []
