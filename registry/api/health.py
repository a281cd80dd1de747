"""``/healthz``, ``/readyz`` and ``/metrics``."""

from __future__ import annotations

from typing import Any

import prometheus_client
from aiohttp import web
from pydantic import BaseModel

from registry import migrate
from registry.api.routing import Api, Call
from registry.api.state import READINESS

__all__ = ["api"]

api = Api()


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Any]


@api.route("GET", "/healthz", summary="Liveness", tags=("ops",), roles=None, response=Health)
async def healthz(call: Call[None]) -> Health:
    """The process is up."""
    return Health(status="ok")


@api.route(
    "GET",
    "/readyz",
    summary="Readiness",
    tags=("ops",),
    roles=None,
    response=Readiness,
    errors=(503,),
)
async def readyz(call: Call[None]) -> tuple[int, Readiness]:
    """Ready when the database answers and every migration is applied (and each part's own check passes)."""
    checks: dict[str, Any] = {}
    try:
        async with call.pool.acquire(timeout=2) as conn:
            todo = await migrate.pending(conn)
        checks["database"] = {"ok": True}
        checks["migrations"] = {"ok": not todo, "pending": [m.name for m in todo]}
    except Exception as exc:  # readiness reports any failure instead of raising it
        checks["database"] = {"ok": False, "detail": type(exc).__name__}
    for name, check in call.request.app[READINESS].items():
        ok, detail = await check(call.request.app)
        checks[name] = {"ok": ok, **detail}
    ready = all(c.get("ok") for c in checks.values())
    return (200 if ready else 503), Readiness(ready=ready, checks=checks)


@api.route(
    "GET",
    "/metrics",
    summary="Prometheus metrics",
    tags=("ops",),
    roles=None,
    text_response="text/plain; version=0.0.4",
)
async def metrics(call: Call[None]) -> web.Response:
    """Prometheus text exposition format."""
    resp = web.Response(body=prometheus_client.generate_latest())
    resp.content_type = "text/plain"
    resp.headers["Content-Type"] = prometheus_client.CONTENT_TYPE_LATEST
    return resp
