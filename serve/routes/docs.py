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
    """Generated from the routes' pydantic models."""
    return json_response(current_app.extensions[DOCUMENT])


@API.route(bp, "/docs", "GET", summary="Browsable documentation",
           responses={200: ("HTML", None)}, produces="text/html", tags=("docs",))
def docs():
    """The OpenAPI document as a static page."""
    return current_app.view_functions["docs.swagger_ui.show"]()
