"""The prediction API: a Flask application factory.

`create_app()` builds everything (settings, metrics, prediction log, model
state) when called, never at import. Under gunicorn each worker calls it once
(`serve/gunicorn_conf.py`), loading the champions named in the instance
directory; see `serve.model.state` for how `/admin/reload` reaches every worker.
The routes live in `serve.routes`, one blueprint per area.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from ml.settings import Settings, load_settings
from serve import errors, prediction_counts, schemas
from serve.edge.limits import REQUEST_ID_PATTERN
from serve.metrics import Metrics
from serve.model.state import ModelState
from serve.prediction_log import PredictionLog
from serve.routes import API, docs, operations, predictions
from serve.services import KEY, Services

REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


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
    # Behind one proxy, ours (serve/edge/): the client address and scheme are
    # the last hop's X-Forwarded-For and X-Forwarded-Proto, which nginx sets
    # (replacing any a client sent); nothing earlier in them is trusted.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
    app.config["MAX_CONTENT_LENGTH"] = schemas.MAX_BODY_BYTES
    metrics = Metrics(instance / "metrics" if instance is not None else None)
    state = ModelState(
        settings,
        instance,
        on_loaded=lambda m: metrics.model_version.labels(m.name).set(float(m.version)),
    )
    predictions_log = PredictionLog(
        settings.redis_url,
        settings.prediction_log_max_bytes,
        on_written=metrics.log_written.inc,
        on_dropped=metrics.log_dropped.inc,
        # Served by gunicorn: what a killed worker held is counted by another.
        counts_dir=(prediction_counts.folder(settings.run_dir, settings.redis_url)
                    if instance is not None else None),
    )
    app.extensions[KEY] = Services(settings, state, metrics, predictions_log)
    blueprints = (predictions.bp, operations.bp, docs.bp)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    document = API.document([blueprint.name for blueprint in blueprints])
    app.extensions[docs.DOCUMENT] = document
    _install_hooks(app, metrics)
    errors.install(app)
    state.start()
    return app


def _install_hooks(app: Flask, metrics: Metrics) -> None:
    # Generated ids are random: a prefix and a counter let anyone predict the
    # next ones. Request ids only label requests (the prediction log keys its
    # rows by stream entry id), but they are echoed and logged, so they
    # should not tell one client about another's traffic.
    @app.before_request
    def start_timer():
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID.fullmatch(given) else secrets.token_hex(16)

    @app.after_request
    def finish(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.count_request(endpoint, request.method, response.status_code,
                              time.perf_counter() - g.started)
        response.headers["X-Request-ID"] = g.request_id
        return response
