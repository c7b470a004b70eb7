"""`/openapi.json`, built once per app from the declared routes, and `/docs`:
Swagger UI over it, "Try it out" included.

Swagger UI's files come from the flask-swagger-ui package, which bundles
them (served under `/docs/`): no CDN, so the page works offline.
"""

from __future__ import annotations

from flask import Blueprint, current_app
from flask_swagger_ui import get_swaggerui_blueprint

from serve.errors import json_response
from serve.routes import API
from serve.services import services

bp = Blueprint("docs", __name__)
bp.register_blueprint(get_swaggerui_blueprint(
    "/docs", "/openapi.json",
    # No validator badge: it would send the document to validator.swagger.io.
    config={"app_name": API.title, "validatorUrl": None, "tryItOutEnabled": True},
))

DOCUMENT = "vgsales.openapi"


@API.route(bp, "/openapi.json", "GET", summary="This document",
           responses={200: ("OpenAPI 3.1", None)}, tags=("docs",))
def openapi():
    """Generated from the routes' pydantic models; a forecast's `year` is
    bounded by the last year the served model forecasts."""
    document = current_app.extensions[DOCUMENT]
    model = services().state.get("prerelease")
    last = None if model is None else model.last_forecast_year
    return json_response(document if last is None else _with_forecast_horizon(document, last))


def _with_forecast_horizon(document: dict, last: int) -> dict:
    """`document` with ForecastRequest's year at most `last` (a later year is
    a 422, so a client reading the schema never sends one)."""
    schemas = dict(document["components"]["schemas"])
    request = dict(schemas["ForecastRequest"])
    properties = dict(request["properties"])
    properties["year"] = {**properties["year"], "maximum": last}
    schemas["ForecastRequest"] = {**request, "properties": properties}
    return {**document, "components": {**document["components"], "schemas": schemas}}


@API.route(bp, "/docs", "GET", summary="Browsable documentation",
           responses={200: ("HTML", None)}, produces="text/html", tags=("docs",))
def docs():
    """The OpenAPI document as a static page."""
    return current_app.view_functions["docs.swagger_ui.show"]()
