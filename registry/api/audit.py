"""``GET /v1/audit``: the audit log, for admins."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from registry import audit
from registry.api.routing import Api, Call
from registry.api.schemas import QueryModel
from registry.roles import Role

__all__ = ["api"]

api = Api()


class AuditQuery(QueryModel):
    actor: uuid.UUID | None = Field(default=None, description="The acting key's id.")
    since: datetime | None = None
    cursor: int | None = Field(default=None, ge=0, description="`next_cursor` of the previous page.")
    limit: int = Field(default=100, ge=1, le=1000)


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor_key_id: uuid.UUID | None
    actor_role: str
    action: str
    target_type: str
    target_id: str
    reason: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditEntry]
    next_cursor: int | None


@api.route(
    "GET",
    "/v1/audit",
    summary="Read the audit log",
    tags=("audit",),
    roles=frozenset({Role.ADMIN}),
    query=AuditQuery,
    response=AuditPage,
)
async def list_audit(call: Call[None]) -> AuditPage:
    """Entries in order, filtered by actor and time, with cursor pagination."""
    q: AuditQuery = call.query
    async with call.pool.acquire() as conn:
        rows = await audit.list_audit(conn, actor=q.actor, since=q.since, after_id=q.cursor, limit=q.limit)
    entries = [AuditEntry(**dict(r)) for r in rows]
    return AuditPage(entries=entries, next_cursor=entries[-1].id if len(entries) == q.limit else None)
