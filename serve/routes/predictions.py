"""`/predict` (the original design's contract) and `/v1/forecast` (pre-release).

Fields are named as the features are, on every endpoint (`/predict` also
takes the CSV headers of the original design: `serve.schemas`). Categories
are resolved to the model's names before predicting, through the name
reference (a publisher's lineage, platform and genre names) and regardless
of case (`ml.modeling.names`); the response says which were, and suggests
known names for values still unseen.

The single-prediction path avoids pandas: the body is validated by pydantic
straight from bytes, the record goes to the model's compiled predictor and
the answer is serialised by orjson. Batches build the pipeline's frame with
`ml.features.model_input`, exactly as training does.
"""

from __future__ import annotations

from flask import Blueprint, g

from serve import schemas
from serve.errors import PREDICTION_ERRORS, Refused, Unavailable, json_response
from serve.request_checks import parse
from serve.routes import API
from serve.services import services

bp = Blueprint("predictions", __name__)


def _served(name: str):
    state = services().state
    model = state.get(name)
    if model is None:
        raise Unavailable(name, state.problems)
    return model


def _count(model, rows: int, unseen: list[str]) -> None:
    metrics = services().metrics
    metrics.predictions.labels(model.name, model.version).inc(rows)
    for name in unseen:
        metrics.unseen.labels(model.name, name).inc()


def _served_body(model) -> dict:
    return {"unit": schemas.SALES_UNIT, "model": model.name, "version": model.version,
            "request_id": g.request_id}


def _predict_one(model, record: dict, endpoint: str) -> dict:
    value = model.predict_one(record)
    unseen = model.unseen(record)
    _count(model, 1, unseen)
    services().log.record(endpoint, g.request_id, model.name, model.version,
                          [record], [value], [unseen])
    return {**_served_body(model), "global_sales": value, "unseen": unseen}


def _predict_many(model, records: list[dict], endpoint: str
                  ) -> tuple[list[float], list[list[str]]]:
    values = model.predict_many(records).tolist()
    unseen = model.unseen_many(records)
    _count(model, len(records), [u for row in unseen for u in row])
    services().log.record(endpoint, g.request_id, model.name, model.version,
                          records, values, unseen)
    return values, unseen


@API.route(bp, "/predict", "POST", body=schemas.PredictRequest,
           summary="Global sales from regional sales (original design)",
           responses={200: ("Prediction", schemas.PredictResponse), **PREDICTION_ERRORS},
           tags=("predict",))
def predict():
    """Model `global_from_regional`. Fields as on every endpoint (`platform`,
    `year`, `genre`, `na_sales`, ...); the original design's vgsales.csv
    headers (`Platform`, `NA_Sales`, ...) are accepted as aliases."""
    record = parse(schemas.PredictRequest).__dict__
    model = _served("global_from_regional")
    record, matched, suggestions = model.spellings.correct(record)
    body = _predict_one(model, record, "/predict")
    return json_response({**body, "matched": matched, "did_you_mean": suggestions})


@API.route(bp, "/predict/batch", "POST", body=schemas.PredictBatch,
           summary="Batch form of /predict",
           responses={200: ("Predictions, in request order", schemas.BatchResponse),
                      **PREDICTION_ERRORS},
           tags=("predict",))
def predict_batch():
    """A JSON array of `/predict` bodies (size limits in the schema)."""
    rows_in = parse(schemas.PredictBatch)
    model = _served("global_from_regional")
    spelled = [model.spellings.correct(row.__dict__) for row in rows_in]
    records = [record for record, _, _ in spelled]
    values, unseen = _predict_many(model, records, "/predict/batch")
    rows = [{"global_sales": v, "unseen": u, "matched": m, "did_you_mean": s}
            for v, u, (_, m, s) in zip(values, unseen, spelled)]
    return json_response({**_served_body(model), "predictions": rows})


@API.route(bp, "/v1/forecast", "POST", body=schemas.ForecastRequest,
           summary="Pre-release forecast of global sales",
           responses={200: ("Forecast", schemas.ForecastResponse), **PREDICTION_ERRORS},
           tags=("forecast",))
def forecast():
    """Model `prerelease`. Give platform, genre, publisher and year, and if
    known the title `name` and its `platforms`; the history (publisher's and
    series' earlier releases, the platform's catalogue) is looked up as of the
    data's last complete year, the platform's attributes in ref_platforms (or
    the request, for a platform it lacks). Optional features given in the
    request are used as given. The answer carries an 80% interval."""
    record = parse(schemas.ForecastRequest).__dict__
    model = _served("prerelease")
    _within_horizon(model, [record], batch=False)
    # Matched first, so the history is looked up under the known spelling.
    record, matched, suggestions = model.spellings.correct(record)
    full = model.complete(record)
    body = _predict_one(model, full, "/v1/forecast")
    return json_response({**body, **_forecast_context(model, full, body["global_sales"]),
                          "matched": matched, "did_you_mean": suggestions, "features": full})


def _forecast_context(model, record: dict, sales: float) -> dict:
    """Interval, the data's last year, the horizon and the request shape of one forecast."""
    return {"interval": model.interval(record, sales), "data_last_year": model.data_last_year,
            "horizon": model.horizon(record), "shape": model.shape(record)}


def _within_horizon(model, records: list[dict], batch: bool) -> None:
    """A 422 naming the last year forecast, for any record past it."""
    detail = [
        {"field": f"[{i}].year" if batch else "year", "message": problem}
        for i, record in enumerate(records)
        if (problem := model.beyond_horizon(record))
    ]
    if detail:
        raise Refused(422, "beyond_horizon",
                      f"the model forecasts up to {model.last_forecast_year}", detail)


@API.route(bp, "/v1/forecast/batch", "POST", body=schemas.ForecastBatch,
           summary="Batch form of /v1/forecast",
           responses={200: ("Forecasts, in request order", schemas.ForecastBatchResponse),
                      **PREDICTION_ERRORS},
           tags=("forecast",))
def forecast_batch():
    """A JSON array of `/v1/forecast` bodies (size limits in the schema)."""
    model = _served("prerelease")
    rows_in = [row.__dict__ for row in parse(schemas.ForecastBatch)]
    _within_horizon(model, rows_in, batch=True)
    spelled = [model.spellings.correct(row) for row in rows_in]
    records = model.complete_many([record for record, _, _ in spelled])
    values, unseen = _predict_many(model, records, "/v1/forecast/batch")
    rows = [{"global_sales": v, "unseen": u, "matched": m, "did_you_mean": s, "features": r,
             **_forecast_context(model, r, v)}
            for v, u, r, (_, m, s) in zip(values, unseen, records, spelled)]
    return json_response({**_served_body(model), "predictions": rows})
