"""What a request must be before a view uses it: a valid body, an admin token."""

from __future__ import annotations

import hmac
import re

import orjson
from flask import request
from pydantic import BaseModel, ValidationError

from serve.errors import Refused

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse(schema):
    """The validated body; a `Refused` naming each bad field otherwise."""
    body = request.get_data(cache=False)
    single = isinstance(schema, type) and issubclass(schema, BaseModel)
    if single and body.lstrip().startswith(b"["):
        message = (f"{request.path} takes one JSON object; for an array of them "
                   f"use {request.path}/batch")
        raise Refused(422, "validation_error", message, [{"field": "body", "message": message}])
    try:
        if single:
            return schema.model_validate_json(body)
        return schema.validate_json(body)
    except ValidationError as error:
        details = [
            {"field": field_name(e["loc"]), "message": e["msg"]}
            for e in error.errors(include_url=False, include_input=False, include_context=False)
        ]
        malformed = any(e["type"] == "json_invalid" for e in error.errors(include_url=False))
        if malformed:
            raise Refused(400, "invalid_json", "the body is not valid JSON", details) from None
        raise Refused(422, "validation_error", "the body does not match the schema",
                      details) from None


def field_name(loc: tuple) -> str:
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


def authorise(token: str) -> None:
    """Pass only a request bearing `token`, compared in constant time."""
    if not token:
        raise Refused(403, "reload_disabled", "API_ADMIN_TOKEN is not set on the server")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise Refused(401, "unauthorised", "send Authorization: Bearer <API_ADMIN_TOKEN>")
