"""The OpenAPI document, generated from the routes and their pydantic models.

Each route is declared once with `Api.route(...)`, which registers it with
Flask and records its body and response models; `/openapi.json` is built
from those records by pydantic's JSON Schema generator, so the document
cannot drift from the validation. `/docs` shows the same document in
Swagger UI (`serve.routes.docs`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    # The blueprint (or app) that serves it.
    group: str = ""


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
                    group=app.name,
                )
            )
            return view

        return decorator

    def document(self, groups: Sequence[str] = ()) -> dict[str, Any]:
        """The OpenAPI 3.1 document; operations in the order of `groups`
        (blueprint names), then as declared."""
        rank = {name: i for i, name in enumerate(groups)}
        operations = sorted(self.operations, key=lambda op: rank.get(op.group, len(rank)))
        inputs = []
        for op in operations:
            if op.body is not None:
                inputs.append((id(op.body), "validation", _adapter(op.body)))
            for _, schema in op.responses.values():
                if schema is not None:
                    inputs.append((id(schema), "serialization", _adapter(schema)))
        refs, definitions = TypeAdapter.json_schemas(
            inputs, by_alias=True, ref_template="#/components/schemas/{model}"
        )
        paths: dict[str, dict[str, Any]] = {}
        for op in operations:
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
