"""Liveness, readiness, served versions, metrics and the admin reload."""

from __future__ import annotations

import logging

from flask import Blueprint, Response

from ml.features import MODEL_NAMES
from serve import schemas
from serve.errors import error_response, json_response
from serve.request_checks import authorise
from serve.routes import API
from serve.services import services

log = logging.getLogger(__name__)

bp = Blueprint("operations", __name__)


@API.route(bp, "/health", "GET", summary="Liveness",
           responses={200: ("The process answers", schemas.Health)}, tags=("ops",))
def health():
    """Answers as long as the worker runs, models or not."""
    return json_response({"status": "ok"})


@API.route(bp, "/ready", "GET", summary="Readiness: every model loaded",
           responses={200: ("Ready", schemas.Readiness),
                      503: ("Some model is not loaded", schemas.Readiness)},
           tags=("ops",))
def ready():
    """200 once this worker serves a version of every model, else 503."""
    state = services().state
    state.check_for_reload()
    versions = state.versions()
    ok = all(versions[name] is not None for name in MODEL_NAMES)
    return json_response({"ready": ok, "models": versions, "problems": state.problems},
                         200 if ok else 503)


@API.route(bp, "/model", "GET", summary="Served versions and their training facts",
           responses={200: ("Models", schemas.ModelsResponse)}, tags=("ops",))
def model_info():
    """Version, training time, metrics and data digest of each served model."""
    return json_response({"models": {n: m.describe() for n, m in services().state.all().items()}})


@API.route(bp, "/metrics", "GET", summary="Prometheus metrics (all workers)",
           responses={200: ("Text exposition format", None)},
           produces="text/plain", tags=("ops",))
def metrics_view():
    """Request counts and latencies, predictions, unseen categories, served
    versions per worker, prediction-log health."""
    metrics = services().metrics
    return Response(metrics.exposition(), content_type=metrics.content_type)


@API.route(bp, "/admin/reload", "POST", summary="Serve the registry's current champions",
           responses={200: ("Versions before and after", schemas.ReloadResponse),
                      401: ("Missing or wrong bearer token", schemas.ErrorResponse),
                      503: ("Registry unavailable", schemas.ErrorResponse)},
           admin=True, tags=("ops",))
def admin_reload():
    """Resolves the `champion` alias of each model and loads any new version
    in every worker, without dropping requests (see serve/model/state.py). The
    answer comes once this worker serves the new versions."""
    authorise(services().settings.api_admin_token.get_secret_value())
    state = services().state
    try:
        previous, current = state.reload()
    except Exception:  # noqa: BLE001 - the registry is a separate service
        log.exception("reload failed")
        return error_response(503, "registry_unavailable",
                              "cannot reload: the model registry did not answer (see the server log)")
    return json_response({"previous": previous, "current": current,
                          "changed": previous != current, "problems": state.problems})
