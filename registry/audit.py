"""The audit log: who read identity details or changed keys, when and why. Never PII in it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from registry.roles import Principal

__all__ = ["list_audit", "record"]


async def record(
    conn: asyncpg.Connection,
    actor: Principal | None,
    action: str,
    target_type: str,
    target_id: str | uuid.UUID,
    *,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry. ``actor`` None means the system (CLI, start-up)."""
    await conn.execute(
        """INSERT INTO audit_log (actor_key_id, actor_role, action, target_type, target_id, reason, details)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        actor.key_id if actor else None,
        actor.role.value if actor else "system",
        action,
        target_type,
        str(target_id),
        reason,
        details or {},
    )


async def list_audit(
    conn: asyncpg.Connection,
    *,
    actor: uuid.UUID | None = None,
    since: datetime | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, at, actor_key_id, actor_role, action, target_type, target_id, reason, details
           FROM audit_log
           WHERE ($1::uuid IS NULL OR actor_key_id = $1)
             AND ($2::timestamptz IS NULL OR at >= $2)
             AND ($3::bigint IS NULL OR id > $3)
           ORDER BY id LIMIT $4""",
        actor,
        since,
        after_id,
        limit,
    )
