"""What a request must be before a view uses it: a valid body, an admin token.

A body is JSON by its Content-Type too: browsers send `text/plain` and form
types cross-site without asking the server first (no CORS preflight), so
only `application/json` is read. JSON with a key given twice is refused
rather than letting the last value silently win, which is what parsers do
and two of them in a chain might not agree on.
"""

from __future__ import annotations

import hmac
import json
import re

import orjson
from flask import request
from pydantic import BaseModel, ValidationError

from serve.errors import Refused

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse(schema):
    """The validated body; a `Refused` naming each bad field otherwise."""
    if request.mimetype != "application/json":
        raise Refused(415, "unsupported_media_type",
                      "send the body as JSON with Content-Type: application/json")
    body = request.get_data(cache=False)
    if request.content_length is None and len(body) >= request.max_content_length:
        # A chunked body is cut at the limit without a word; reading on past
        # it raises Werkzeug's 413 (a body of exactly the limit included).
        request.stream.read(1)
    single = isinstance(schema, type) and issubclass(schema, BaseModel)
    if single and body.lstrip().startswith(b"["):
        message = (f"{request.path} takes one JSON object; for an array of them "
                   f"use {request.path}/batch")
        raise Refused(422, "validation_error", message, [{"field": "body", "message": message}])
    try:
        if single:
            parsed = schema.model_validate_json(body)
        else:
            parsed = schema.validate_json(body)
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
    # Checked on a body the schema accepted, so it is flat and small enough.
    json.loads(body, object_pairs_hook=_unique_keys)
    return parsed


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise Refused(422, "duplicate_key", "a key appears twice in one JSON object",
                      [{"field": field_name((twice,)), "message": "given more than once"}])
    return found


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
