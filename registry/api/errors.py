"""The only table from exception class to HTTP status, and the middleware that applies it.

Every 4xx/5xx leaves as ``{"error": {"code", "message", "details"}}`` (DESIGN §3): our own errors,
aiohttp's (404, 405, 413), and anything unexpected (500 ``internal``, logged, with no traceback sent).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
from aiohttp import web

from registry import errors
from registry.api.state import MAX_BODY_BYTES

__all__ = ["STATUS", "error_middleware", "error_response", "status_for"]

_logger = logging.getLogger(__name__)

STATUS: dict[type[errors.RegistryError], int] = {
    errors.BadRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.Unprocessable: 422,
    errors.NotReady: 503,
    errors.RegistryError: 500,
}

_AIOHTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def status_for(exc: errors.RegistryError) -> int:
    """The status of the most specific class in ``exc``'s MRO that the table names."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response(
        {"error": {"code": code, "message": message, "details": details}}, status=status, headers=headers
    )


def validation_details(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors, reduced to what a client needs: the field path, the problem, no input echo."""
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or None, "problem": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.RegistryError as exc:
        status = status_for(exc)
        if status >= 500:
            _logger.error("%s: %s", exc.code, exc.message)
        return error_response(status, exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _AIOHTTP_CODES.get(exc.status, "http_error")
        message = exc.reason.lower()
        if exc.status == 413:
            message = f"request body too large: at most {request.app[MAX_BODY_BYTES]} bytes"
        elif exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        elif exc.status == 404:
            message = f"no route for {request.path}"
        return error_response(exc.status, code, message, None)
    except Exception:
        _logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; the request id identifies it in the logs")
