"""The OpenAPI 3.1 document, generated from the route table and its pydantic models."""

from __future__ import annotations

import re
from typing import Any

import pydantic
from pydantic.json_schema import models_json_schema

from registry.api.routing import RouteSpec
from registry.api.schemas import ErrorBody

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{model}"
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    400: "Bad request: malformed JSON, unknown or invalid field, bad query",
    401: "Missing, unknown or revoked API key",
    403: "The key's role may not call this route",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    503: "Not ready",
}


def _query_params(model: type[pydantic.BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in prop.items() if k != "title"},
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def build_openapi(routes: list[RouteSpec], *, title: str, version: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document describing every route: auth, roles, bodies, responses and errors."""
    models: list[tuple[type[pydantic.BaseModel], Any]] = [(ErrorBody, "serialization")]
    for r in routes:
        if r.body is not None:
            models.append((r.body, "validation"))
        if r.response is not None:
            models.append((r.response, "serialization"))
        for m in r.extra_responses.values():
            models.append((m, "serialization"))
    unique = list(dict.fromkeys(models))
    refs, top = models_json_schema(unique, ref_template=_REF)
    components = dict(top.get("$defs", {}))

    def ref(model: type[pydantic.BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "operationId": r.handler.__name__,
            "summary": r.summary,
            "tags": list(r.tags),
            "responses": {},
        }
        desc = r.description
        if r.roles is not None:
            roles = ", ".join(f"`{x}`" for x in sorted(r.roles))
            desc = f"{desc}\n\nRoles: {roles}.".strip()
            op["security"] = [{"bearerKey": []}]
            op["x-roles"] = sorted(r.roles)
        else:
            op["security"] = []
        if desc:
            op["description"] = desc
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)[^}]*\}", r.path)
        ]
        if r.query is not None:
            params += _query_params(r.query)
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(r.body, "validation")}},
            }
        elif r.multipart is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": {"schema": r.multipart}},
            }
        ok: dict[str, Any] = {"description": _STATUS_TEXT.get(r.status, "OK")}
        if r.response is not None:
            ok["content"] = {"application/json": {"schema": ref(r.response, "serialization")}}
        elif r.text_response is not None:
            ok["content"] = {r.text_response.split(";")[0]: {"schema": {"type": "string"}}}
        op["responses"][str(r.status)] = ok
        for status, model in r.extra_responses.items():
            op["responses"][str(status)] = {
                "description": _STATUS_TEXT.get(status, "See schema"),
                "content": {"application/json": {"schema": ref(model, "serialization")}},
            }
        for status in r.errors:
            op["responses"].setdefault(
                str(status),
                {
                    "description": _STATUS_TEXT.get(status, "Error"),
                    "content": {"application/json": {"schema": ref(ErrorBody, "serialization")}},
                },
            )
        op["responses"].setdefault(
            "default",
            {
                "description": "Error",
                "content": {"application/json": {"schema": ref(ErrorBody, "serialization")}},
            },
        )
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.path)
        paths.setdefault(path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Avatar Registry: virtual-avatar registration, likeness protection, live compliance."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerKey": {"type": "http", "scheme": "bearer", "description": "An API key (`ark_…`)."}
            },
        },
    }
