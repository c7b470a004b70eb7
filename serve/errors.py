"""The API's one error shape, and the handlers that give every failure that shape.

Every 4xx/5xx body is `{"error", "message", "detail", "request_id"}`; views
raise `Refused` or `Unavailable`, and Werkzeug's own HTTP errors and any
unhandled exception are turned into the same shape here.
"""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from serve import schemas

log = logging.getLogger(__name__)

# The error responses every prediction route documents.
PREDICTION_ERRORS = {
    400: ("Malformed JSON", schemas.ErrorResponse),
    422: ("Invalid field (the detail names it)", schemas.ErrorResponse),
    413: ("Body over the size limit", schemas.ErrorResponse),
    415: ("Body not sent as application/json", schemas.ErrorResponse),
    503: ("Model not loaded (see /ready)", schemas.ErrorResponse),
}


class Unavailable(Exception):
    """A model this request needs is not loaded in this worker."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.problems = problems


class Refused(Exception):
    """A request the API answers with a 4xx: status, code, message, field details."""

    def __init__(self, status: int, code: str, message: str,
                 detail: list[dict] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail or []


def json_response(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str,
                   detail: list[dict] | None = None) -> Response:
    return json_response({"error": code, "message": message, "detail": detail or [],
                          "request_id": getattr(g, "request_id", None)}, status)


def _read_unread_body() -> None:
    """Read a body the view never reached (a 404, a 405 with a payload).

    Left unread on a keep-alive connection, it stalls gunicorn's gthread
    worker: the client's next request on that connection waits until it times
    out (schemathesis' unsupported-method check found it). A body over the
    size limit is left alone: reading it is what the limit prevents.
    """
    length = request.content_length
    if length is None or length <= schemas.MAX_BODY_BYTES:
        try:
            request.get_data(cache=False)
        except HTTPException:  # a chunked body past the limit: stop reading
            pass


def install(app: Flask) -> None:
    """Register the handlers that give every error the API's shape."""

    @app.errorhandler(Refused)
    def refused(error: Refused):
        response = error_response(error.status, error.code, error.message, error.detail)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(Unavailable)
    def unavailable(error: Unavailable):
        return error_response(503, "model_unavailable",
                              f"model {error.name!r} is not loaded; see /ready",
                              [{"field": "model", "message": p} for p in error.problems])

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        detail = [{"field": "body", "message": error.description}] if error.code == 413 else []
        response = error_response(error.code or 500, code, error.description or code, detail)
        _read_unread_body()
        # Werkzeug's own headers carry protocol duties (405's Allow, RFC 9110);
        # only its HTML content type is replaced.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def internal(error: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error",
                              f"{type(error).__name__}; see the server log")
