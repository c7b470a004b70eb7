"""`/openapi.json` and `/docs`, built once per app from the declared routes."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from serve.errors import json_response
from serve.routes import API

bp = Blueprint("docs", __name__)

DOCUMENT = "vgsales.openapi"
PAGE = "vgsales.docs_page"


@API.route(bp, "/openapi.json", "GET", summary="This document",
           responses={200: ("OpenAPI 3.1", None)}, tags=("docs",))
def openapi():
    """Generated from the routes' pydantic models."""
    return json_response(current_app.extensions[DOCUMENT])


@API.route(bp, "/docs", "GET", summary="Browsable documentation",
           responses={200: ("HTML", None)}, produces="text/html", tags=("docs",))
def docs():
    """The OpenAPI document as a static page."""
    return Response(current_app.extensions[PAGE], content_type="text/html; charset=utf-8")
