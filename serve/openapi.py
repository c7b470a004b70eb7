"""The OpenAPI document, generated from the routes and their pydantic models.

Each route is declared once with `Api.route(...)`, which registers it with
Flask and records its body and response models; `/openapi.json` is built
from those records by pydantic's JSON Schema generator, so the document
cannot drift from the validation. `/docs` renders the same document as a
self-contained HTML page (no JavaScript, no CDN: the service runs offline).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask
from pydantic import BaseModel, TypeAdapter

Schema = type[BaseModel] | TypeAdapter


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    summary: str
    description: str
    body: Schema | None
    responses: dict[int, tuple[str, Schema | None]]
    admin: bool
    produces: str = "application/json"
    tags: tuple[str, ...] = field(default_factory=tuple)


class Api:
    """Routes with their documentation, and the document built from them."""

    def __init__(self, title: str, version: str, description: str) -> None:
        self.title = title
        self.version = version
        self.description = description
        self.operations: list[Operation] = []

    def route(
        self,
        app: Flask | Blueprint,
        path: str,
        method: str,
        *,
        summary: str,
        responses: dict[int, tuple[str, Schema | None]],
        body: Schema | None = None,
        admin: bool = False,
        produces: str = "application/json",
        tags: tuple[str, ...] = (),
    ) -> Callable:
        """Register the decorated view at `path` and document it."""

        def decorator(view: Callable) -> Callable:
            app.add_url_rule(path, view.__name__, view, methods=[method])
            self.operations.append(
                Operation(
                    path=path,
                    method=method.lower(),
                    summary=summary,
                    description=(view.__doc__ or "").strip(),
                    body=body,
                    responses=responses,
                    admin=admin,
                    produces=produces,
                    tags=tags,
                )
            )
            return view

        return decorator

    def document(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document."""
        inputs = []
        for op in self.operations:
            if op.body is not None:
                inputs.append((id(op.body), "validation", _adapter(op.body)))
            for _, schema in op.responses.values():
                if schema is not None:
                    inputs.append((id(schema), "serialization", _adapter(schema)))
        refs, definitions = TypeAdapter.json_schemas(
            inputs, by_alias=True, ref_template="#/components/schemas/{model}"
        )
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            entry: dict[str, Any] = {
                "summary": op.summary,
                "description": op.description,
                "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_') or 'root'}",
                "tags": list(op.tags),
                "responses": {},
            }
            if op.body is not None:
                entry["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": refs[(id(op.body), "validation")]}},
                }
            for status, (text, schema) in op.responses.items():
                response: dict[str, Any] = {"description": text}
                if schema is not None:
                    media = "application/json" if status != 200 else op.produces
                    response["content"] = {media: {"schema": refs[(id(schema), "serialization")]}}
                elif status == 200 and op.produces != "application/json":
                    response["content"] = {op.produces: {"schema": {"type": "string"}}}
                entry["responses"][str(status)] = response
            if op.admin:
                entry["security"] = [{"bearer": []}]
            paths.setdefault(op.path, {})[op.method] = entry
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version, "description": self.description},
            "paths": paths,
            "components": {
                "schemas": definitions.get("$defs", definitions),
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }


def _adapter(schema: Schema) -> TypeAdapter:
    return schema if isinstance(schema, TypeAdapter) else TypeAdapter(schema)


def docs_page(document: dict[str, Any]) -> str:
    """A readable HTML page of `document`: operations, then schemas."""
    info = document["info"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(info['title'])}</title>",
        "<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem;color:#222}code,pre{font:13px ui-monospace,monospace}"
        "pre{background:#f5f5f5;padding:.6rem;overflow-x:auto}"
        "details{margin:.3rem 0 1rem}.m{display:inline-block;min-width:3.5rem;font-weight:bold}"
        "h3{margin-bottom:.2rem}</style></head><body>",
        f"<h1>{html.escape(info['title'])} <small>{html.escape(info['version'])}</small></h1>",
        f"<p>{html.escape(info['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p><h2>Operations</h2>",
    ]
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            parts.append(
                f"<h3 id='{html.escape(op['operationId'])}'><span class='m'>{method.upper()}</span>"
                f"<code>{html.escape(path)}</code> — {html.escape(op['summary'])}</h3>"
            )
            if op.get("security"):
                parts.append("<p>Requires <code>Authorization: Bearer &lt;API_ADMIN_TOKEN&gt;</code>.</p>")
            if op["description"]:
                parts.append(f"<p>{html.escape(op['description'])}</p>")
            if "requestBody" in op:
                parts.append(_schema_block("Request body", op["requestBody"]["content"]["application/json"]["schema"]))
            for status, response in op["responses"].items():
                schema = next(iter(response.get("content", {}).values()), {}).get("schema")
                label = f"{status}: {response['description']}"
                parts.append(_schema_block(label, schema) if schema else f"<p>{html.escape(label)}</p>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in document["components"]["schemas"].items():
        parts.append(f"<h3 id='schema-{html.escape(name)}'>{html.escape(name)}</h3>")
        parts.append(f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _schema_block(label: str, schema: dict[str, Any]) -> str:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        return f"<p>{html.escape(label)}: <a href='#schema-{html.escape(name)}'>{html.escape(name)}</a></p>"
    return (
        f"<details><summary>{html.escape(label)}</summary>"
        f"<pre>{html.escape(json.dumps(schema, indent=2))}</pre></details>"
    )
