"""The prediction API: a Flask application factory.

`create_app()` builds everything (settings, metrics, prediction log, model
state) when called, never at import. Under gunicorn each worker calls it once
(`serve/gunicorn_conf.py`), loading the champions named in the instance
directory; see `serve.model.state` for how `/admin/reload` reaches every worker.

The single-prediction path avoids pandas: the body is validated by pydantic
straight from bytes, the record goes to the model's compiled predictor and
the answer is serialised by orjson. Batches build the pipeline's frame with
`ml.features.model_input`, exactly as training does.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import re
import time
import uuid
from pathlib import Path

import orjson
from flask import Flask, Response, g, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from ml.features import MODEL_NAMES
from ml.settings import Settings, load_settings
from serve import schemas
from serve.metrics import Metrics
from serve.model.state import ModelState
from serve.openapi import Api, docs_page
from serve.prediction_log import PredictionLog

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ERRORS = {
    400: ("Malformed JSON", schemas.ErrorResponse),
    422: ("Invalid field (the detail names it)", schemas.ErrorResponse),
    413: ("Body over the size limit", schemas.ErrorResponse),
    503: ("Model not loaded (see /ready)", schemas.ErrorResponse),
}


def create_app(
    settings: Settings | None = None,
    *,
    instance_dir: str | Path | None = None,
) -> Flask:
    """Build the API.

    `instance_dir` is the gunicorn instance's shared directory (champions
    file, Prometheus files); None builds a self-contained single-process app.
    The app keeps no writer password: it reads the warehouse as the reader.
    """
    settings = (settings or load_settings()).for_api()
    instance = Path(instance_dir) if instance_dir is not None else None
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = schemas.MAX_BODY_BYTES
    metrics = Metrics(instance / "metrics" if instance is not None else None)
    state = ModelState(
        settings,
        instance,
        on_loaded=lambda m: metrics.model_version.labels(m.name).set(float(m.version)),
    )
    predictions_log = PredictionLog(
        settings.redis_url,
        on_written=metrics.log_written.inc,
        on_dropped=metrics.log_dropped.inc,
    )
    api = Api(
        "vgsales prediction API",
        "1",
        "Global video game sales (millions) from regional sales (`/predict`, the "
        "original design) and before release (`/v1/forecast`). Categories unseen in "
        "training are accepted and listed in `unseen`.",
    )
    app.extensions["vgsales"] = {"state": state, "metrics": metrics, "log": predictions_log}
    _install_hooks(app, metrics)
    _install_error_handlers(app)

    def served(name: str):
        model = state.get(name)
        if model is None:
            raise _Unavailable(name, state.problems)
        return model

    def prediction(model, record: dict, endpoint: str) -> tuple[dict, list[str]]:
        value = model.predict_one(record)
        unseen = model.unseen(record)
        _count(metrics, model, 1, unseen)
        predictions_log.record(endpoint, g.request_id, model.name, model.version,
                               [record], [value], [unseen])
        return {"model": model.name, "version": model.version,
                "request_id": g.request_id, "global_sales": value}, unseen

    def batch(model, records: list[dict], endpoint: str) -> tuple[list[float], list[list[str]]]:
        values = model.predict_many(records).tolist()
        unseen = model.unseen_many(records)
        _count(metrics, model, len(records), [u for row in unseen for u in row])
        predictions_log.record(endpoint, g.request_id, model.name, model.version,
                               records, values, unseen)
        return values, unseen

    # -- predictions ------------------------------------------------------------

    @api.route(app, "/predict", "POST", body=schemas.PredictRequest,
               summary="Global sales from regional sales (original design)",
               responses={200: ("Prediction", schemas.PredictResponse), **_ERRORS},
               tags=("predict",))
    def predict():
        """Model `global_from_regional`. Field names are the vgsales.csv headers."""
        record = _parse(schemas.PredictRequest).__dict__
        body, unseen = prediction(served("global_from_regional"), record, "/predict")
        body["unseen"] = [schemas.ORIGINAL_NAMES.get(u, u) for u in unseen]
        return _json(body)

    @api.route(app, "/predict/batch", "POST", body=schemas.PredictBatch,
               summary="Batch form of /predict",
               responses={200: ("Predictions, in request order", schemas.BatchResponse), **_ERRORS},
               tags=("predict",))
    def predict_batch():
        """A JSON array of `/predict` bodies (size limits in the schema)."""
        records = [row.__dict__ for row in _parse(schemas.PredictBatch)]
        model = served("global_from_regional")
        values, unseen = batch(model, records, "/predict/batch")
        rows = [
            {"global_sales": v, "unseen": [schemas.ORIGINAL_NAMES.get(x, x) for x in u]}
            for v, u in zip(values, unseen)
        ]
        return _json({"model": model.name, "version": model.version,
                      "request_id": g.request_id, "predictions": rows})

    @api.route(app, "/v1/forecast", "POST", body=schemas.ForecastRequest,
               summary="Pre-release forecast of global sales",
               responses={200: ("Forecast", schemas.ForecastResponse), **_ERRORS},
               tags=("forecast",))
    def forecast():
        """Model `prerelease`. Give platform, genre, publisher and year; the
        point-in-time history (publisher's earlier releases, platform age and
        schedule) is looked up in the mart snapshot the model was trained on.
        Optional features given in the request are used as given."""
        record = _parse(schemas.ForecastRequest).__dict__
        model = served("prerelease")
        full = model.complete(record)
        body, unseen = prediction(model, full, "/v1/forecast")
        body["unseen"] = unseen
        body["features"] = full
        return _json(body)

    @api.route(app, "/v1/forecast/batch", "POST", body=schemas.ForecastBatch,
               summary="Batch form of /v1/forecast",
               responses={200: ("Forecasts, in request order", schemas.ForecastBatchResponse),
                          **_ERRORS},
               tags=("forecast",))
    def forecast_batch():
        """A JSON array of `/v1/forecast` bodies (size limits in the schema)."""
        model = served("prerelease")
        records = [model.complete(row.__dict__) for row in _parse(schemas.ForecastBatch)]
        values, unseen = batch(model, records, "/v1/forecast/batch")
        rows = [{"global_sales": v, "unseen": u, "features": r}
                for v, u, r in zip(values, unseen, records)]
        return _json({"model": model.name, "version": model.version,
                      "request_id": g.request_id, "predictions": rows})

    # -- operations --------------------------------------------------------------

    @api.route(app, "/health", "GET", summary="Liveness",
               responses={200: ("The process answers", schemas.Health)}, tags=("ops",))
    def health():
        """Answers as long as the worker runs, models or not."""
        return _json({"status": "ok"})

    @api.route(app, "/ready", "GET", summary="Readiness: every model loaded",
               responses={200: ("Ready", schemas.Readiness),
                          503: ("Some model is not loaded", schemas.Readiness)},
               tags=("ops",))
    def ready():
        """200 once this worker serves a version of every model, else 503."""
        state.check_for_reload()
        versions = state.versions()
        ok = all(versions[name] is not None for name in MODEL_NAMES)
        return _json({"ready": ok, "models": versions, "problems": state.problems},
                     200 if ok else 503)

    @api.route(app, "/model", "GET", summary="Served versions and their training facts",
               responses={200: ("Models", schemas.ModelsResponse)}, tags=("ops",))
    def model_info():
        """Version, training time, metrics and data digest of each served model."""
        return _json({"models": {n: m.describe() for n, m in state.all().items()},
                      "worker_pid": os.getpid()})

    @api.route(app, "/metrics", "GET", summary="Prometheus metrics (all workers)",
               responses={200: ("Text exposition format", None)},
               produces="text/plain", tags=("ops",))
    def metrics_view():
        """Request counts and latencies, predictions, unseen categories, served
        versions per worker, prediction-log health."""
        return Response(metrics.exposition(), content_type=metrics.content_type)

    @api.route(app, "/admin/reload", "POST", summary="Serve the registry's current champions",
               responses={200: ("Versions before and after", schemas.ReloadResponse),
                          401: ("Missing or wrong bearer token", schemas.ErrorResponse),
                          503: ("Registry unavailable", schemas.ErrorResponse)},
               admin=True, tags=("ops",))
    def admin_reload():
        """Resolves the `champion` alias of each model and loads any new version
        in every worker, without dropping requests (see serve/model/state.py). The
        answer comes once this worker serves the new versions."""
        _authorise(settings.api_admin_token)
        try:
            previous, current = state.reload()
        except Exception as error:  # noqa: BLE001 - the registry is a separate service
            log.exception("reload failed")
            return _error(503, "registry_unavailable", f"cannot reload: {error}")
        return _json({"previous": previous, "current": current,
                      "changed": previous != current, "problems": state.problems})

    @api.route(app, "/openapi.json", "GET", summary="This document",
               responses={200: ("OpenAPI 3.1", None)}, tags=("docs",))
    def openapi():
        """Generated from the routes' pydantic models."""
        return _json(document)

    @api.route(app, "/docs", "GET", summary="Browsable documentation",
               responses={200: ("HTML", None)}, produces="text/html", tags=("docs",))
    def docs():
        """The OpenAPI document as a static page."""
        return Response(page, content_type="text/html; charset=utf-8")

    document = api.document()
    page = docs_page(document)
    state.start()
    return app


# -- helpers ----------------------------------------------------------------------


class _Unavailable(Exception):
    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.problems = problems


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str,
                 detail: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail or []


def _parse(schema):
    """The validated body; a `_Refused` naming each bad field otherwise."""
    body = request.get_data(cache=False)
    try:
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return schema.model_validate_json(body)
        return schema.validate_json(body)
    except ValidationError as error:
        details = [
            {"field": _field_name(e["loc"]), "message": e["msg"]}
            for e in error.errors(include_url=False, include_input=False, include_context=False)
        ]
        malformed = any(e["type"] == "json_invalid" for e in error.errors(include_url=False))
        if malformed:
            raise _Refused(400, "invalid_json", "the body is not valid JSON", details) from None
        raise _Refused(422, "validation_error", "the body does not match the schema",
                       details) from None


def _field_name(loc: tuple) -> str:
    """`Year`, `[2].Year`, `["odd key"]`, or `body` for the body as a whole."""
    if not loc:
        return "body"
    name = ""
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
        elif IDENTIFIER.fullmatch(part):
            name += f".{part}" if name else part
        else:
            name += f"[{orjson.dumps(part).decode()}]"
    return name


def _authorise(token: str) -> None:
    if not token:
        raise _Refused(403, "reload_disabled", "API_ADMIN_TOKEN is not set on the server")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise _Refused(401, "unauthorised", "send Authorization: Bearer <API_ADMIN_TOKEN>")


def _count(metrics: Metrics, model, rows: int, unseen: list[str]) -> None:
    metrics.predictions.labels(model.name, model.version).inc(rows)
    for name in unseen:
        metrics.unseen.labels(model.name, name).inc()


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")


def _error(status: int, code: str, message: str, detail: list[dict] | None = None) -> Response:
    return _json({"error": code, "message": message, "detail": detail or [],
                  "request_id": getattr(g, "request_id", None)}, status)


def _install_hooks(app: Flask, metrics: Metrics) -> None:
    # Generated ids: a random prefix per app (worker) and a counter. A uuid4
    # per request costs a getrandom() call, during which the prediction-log
    # thread may take the GIL for a while (~0.1 ms a request when measured).
    prefix = uuid.uuid4().hex[:16]
    counter = itertools.count(1)

    @app.before_request
    def start_timer():
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else f"{prefix}-{next(counter):x}"

    @app.after_request
    def finish(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - g.started)
        response.headers["X-Request-ID"] = g.request_id
        return response


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(_Refused)
    def refused(error: _Refused):
        response = _error(error.status, error.code, error.message, error.detail)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(_Unavailable)
    def unavailable(error: _Unavailable):
        return _error(503, "model_unavailable",
                      f"model {error.name!r} is not loaded; see /ready",
                      [{"field": "model", "message": p} for p in error.problems])

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        detail = [{"field": "body", "message": error.description}] if error.code == 413 else []
        return _error(error.code or 500, code, error.description or code, detail)

    @app.errorhandler(Exception)
    def internal(error: Exception):
        log.exception("unhandled error")
        return _error(500, "internal_error", f"{type(error).__name__}; see the server log")
