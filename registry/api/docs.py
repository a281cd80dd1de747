"""``/v1/openapi.json`` and the ``/docs`` page (rendered here: the service makes no outside requests)."""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web

from registry.api.routing import Api, Call

__all__ = ["OPENAPI", "api"]

api = Api()
OPENAPI = web.AppKey("openapi", dict[str, Any])


@api.route(
    "GET",
    "/v1/openapi.json",
    summary="OpenAPI 3.1 document",
    tags=("docs",),
    roles=None,
    text_response="application/json",
)
async def openapi_json(call: Call[None]) -> web.Response:
    """This API, described as OpenAPI 3.1."""
    return web.json_response(call.request.app[OPENAPI])


@api.route(
    "GET", "/docs", summary="API documentation page", tags=("docs",), roles=None, text_response="text/html"
)
async def docs_page(call: Call[None]) -> web.Response:
    """A readable page of every route, its roles, request and response schemas."""
    return web.Response(text=render_docs(call.request.app[OPENAPI]), content_type="text/html")


def render_docs(doc: dict[str, Any]) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Avatar Registry API</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
        "code,pre{background:#f4f4f4}pre{padding:.5em;overflow:auto;font-size:12px}"
        ".m{font-weight:bold;display:inline-block;width:4.5em}"
        "section{border-top:1px solid #ddd;padding:.5em 0}"
        "</style></head><body>",
        f"<h1>{e(doc['info']['title'])} <small>{e(doc['info']['version'])}</small></h1>",
        f"<p>{e(doc['info'].get('description', ''))}</p>",
        "<p>Authentication: <code>Authorization: Bearer &lt;key&gt;</code>. Errors are "
        '<code>{"error": {"code", "message", "details"}}</code>. '
        "Machine-readable: <a href='/v1/openapi.json'>/v1/openapi.json</a>.</p>",
    ]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            parts.append(
                f"<section id='{e(op['operationId'])}'><h3><span class='m'>{e(method.upper())}</span>"
                f"<code>{e(path)}</code></h3><p><b>{e(op['summary'])}</b></p>"
            )
            if op.get("description"):
                parts.append(f"<p>{e(op['description'])}</p>")
            if op.get("parameters"):
                items = "".join(
                    f"<li><code>{e(p['name'])}</code> ({e(p['in'])}"
                    f"{', required' if p.get('required') else ''})"
                    f" {e(p.get('description', ''))}</li>"
                    for p in op["parameters"]
                )
                parts.append(f"<p>Parameters:</p><ul>{items}</ul>")
            if "requestBody" in op:
                parts.append(
                    f"<p>Request body:</p><pre>{e(json.dumps(op['requestBody']['content'], indent=1))}</pre>"
                )
            statuses = ", ".join(f"{s} {e(r['description'])}" for s, r in op["responses"].items())
            parts.append(f"<p>Responses: {statuses}</p></section>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        parts.append(f"<h4 id='schema-{e(name)}'>{e(name)}</h4><pre>{e(json.dumps(schema, indent=1))}</pre>")
    parts.append("</body></html>")
    return "".join(parts)
