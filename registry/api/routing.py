"""Declarative routes: each route names its roles, request and response models, and errors, so that one
wrapper authenticates, parses and validates, and the OpenAPI document is generated from the same table."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pydantic
from aiohttp import web

from registry import errors
from registry.api.errors import validation_details
from registry.api.state import POOL, SERVICES, SETTINGS
from registry.keys import store as key_store
from registry.roles import Principal, Role

__all__ = ["Api", "Call", "RouteSpec", "parse_json", "path_uuid"]

B = TypeVar("B", bound=pydantic.BaseModel)


@dataclass(slots=True)
class Call(Generic[B]):
    """One authenticated, parsed request, as a handler sees it."""

    request: web.Request
    principal: Principal | None
    body: Any = None
    query: Any = None

    @property
    def pool(self) -> Any:
        return self.request.app[POOL]

    @property
    def settings(self) -> Any:
        return self.request.app[SETTINGS]

    @property
    def services(self) -> Any:
        return self.request.app[SERVICES]

    @property
    def actor(self) -> Principal:
        assert self.principal is not None, "route declared public but needs a principal"
        return self.principal


Handler = Callable[[Call[Any]], Awaitable[web.StreamResponse | tuple[int, Any] | pydantic.BaseModel]]


@dataclass(slots=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    roles: frozenset[Role] | None  # None: public
    body: type[pydantic.BaseModel] | None = None
    multipart: dict[str, Any] | None = None  # OpenAPI schema of a multipart body
    query: type[pydantic.BaseModel] | None = None
    response: type[pydantic.BaseModel] | None = None
    status: int = 200
    text_response: str | None = None  # media type of a non-JSON response
    errors: tuple[int, ...] = ()
    description: str = ""
    extra_responses: dict[int, type[pydantic.BaseModel]] = field(default_factory=dict)


def path_uuid(call: Call[Any], name: str = "id") -> uuid.UUID:
    """A UUID path parameter; a malformed one names nothing that exists, so it is a 404."""
    raw = call.request.match_info[name]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise errors.NotFound(f"no such {name}: {raw!r} is not a valid id", code="not_found") from None


async def authenticate(request: web.Request) -> Principal:
    """The principal behind ``Authorization: Bearer <key>``. Raises ``Unauthorized``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise errors.Unauthorized("missing Authorization header (expected: Bearer <key>)")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("malformed Authorization header (expected: Bearer <key>)")
    async with request.app[POOL].acquire() as conn:
        principal = await key_store.principal_for_key(conn, token.strip())
    if principal is None:
        raise errors.Unauthorized("unknown or revoked API key", code="invalid_key")
    return principal


async def parse_json(request: web.Request, model: type[B]) -> B:
    if request.content_type != "application/json":
        raise errors.UnsupportedMediaType(
            f"expected Content-Type application/json, got {request.content_type or 'none'}"
        )
    raw = await request.read()
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.BadRequest(f"malformed JSON body: {exc}", code="invalid_json") from None
    if b"\\u0000" in raw:
        # PostgreSQL text cannot hold NUL; refuse it here rather than fail at the database.
        raise errors.BadRequest("strings must not contain the NUL character (\\u0000)", code="invalid_json")
    try:
        # JSON mode: strict types, yet a UUID, enum or datetime may arrive as its JSON string.
        return model.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        raise errors.BadRequest(
            "request body is invalid: " + _first_problem(exc),
            code="validation_error",
            details=validation_details(exc),
        ) from None


def _parse_query(request: web.Request, model: type[B]) -> B:
    data: dict[str, Any] = {}
    if any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        raise errors.BadRequest("query must not contain the NUL character", code="validation_error")
    for key in request.query:
        values = request.query.getall(key)
        data[key] = values if len(values) > 1 else values[0]
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise errors.BadRequest(
            "query is invalid: " + _first_problem(exc),
            code="validation_error",
            details=validation_details(exc),
        ) from None


def _first_problem(exc: pydantic.ValidationError) -> str:
    e = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in e["loc"])
    return f"{where}: {e['msg']}" if where else e["msg"]


class Api:
    """The table of routes; ``install`` adds them to an app."""

    def __init__(self) -> None:
        self.routes: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tags: tuple[str, ...],
        roles: frozenset[Role] | None,
        **kw: Any,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            errs = set(kw.pop("errors", ()))
            if roles is not None:
                errs |= {401, 403}
            if kw.get("body") is not None or kw.get("query") is not None:
                errs.add(400)
            if kw.get("body") is not None:
                errs |= {413, 415}
            spec = RouteSpec(
                method=method,
                path=path,
                handler=handler,
                summary=summary,
                tags=tags,
                roles=roles,
                errors=tuple(sorted(errs)),
                description=(handler.__doc__ or "").strip(),
                **kw,
            )
            self.routes.append(spec)
            return handler

        return decorate

    def install(self, app: web.Application) -> None:
        for spec in self.routes:
            app.router.add_route(spec.method, spec.path, _wrap(spec))


def _wrap(spec: RouteSpec) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        principal = None
        if spec.roles is not None:
            principal = await authenticate(request)
            if principal.role not in spec.roles:
                allowed = ", ".join(sorted(spec.roles))
                raise errors.Forbidden(
                    f"role {principal.role} may not call {spec.method} {spec.path} (allowed: {allowed})",
                    code="forbidden",
                )
        call: Call[Any] = Call(request=request, principal=principal)
        if spec.query is not None:
            call.query = _parse_query(request, spec.query)
        if spec.body is not None:
            call.body = await parse_json(request, spec.body)
        result = await spec.handler(call)
        if isinstance(result, web.StreamResponse):
            return result
        status = spec.status
        if isinstance(result, tuple):
            status, result = result
        if isinstance(result, pydantic.BaseModel):
            return web.Response(
                body=result.model_dump_json(by_alias=True), status=status, content_type="application/json"
            )
        return web.json_response(result, status=status)

    handle.__name__ = spec.handler.__name__
    return handle
