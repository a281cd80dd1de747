"""SQL for ``api_keys``. The caller owns the connection and the transaction."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from registry import errors
from registry.roles import Principal, Role

__all__ = ["KeyRecord", "create_key", "get_key", "list_keys", "principal_for_key", "revoke_key"]

_PREFIX = "ark_"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: uuid.UUID
    prefix: str
    role: Role
    operator_id: uuid.UUID | None
    label: str
    created_at: datetime
    revoked_at: datetime | None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _record(row: asyncpg.Record) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        prefix=row["prefix"],
        role=Role(row["role"]),
        operator_id=row["operator_id"],
        label=row["label"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def create_key(
    conn: asyncpg.Connection,
    role: Role,
    *,
    operator_id: uuid.UUID | None = None,
    label: str = "",
    created_by: uuid.UUID | None = None,
) -> tuple[KeyRecord, str]:
    """Create a key; returns its record and the key itself (the only time it is seen).

    Raises ``BadRequest`` when ``operator_id`` is missing for (or given to) a role that needs it (or not),
    and ``NotFound`` for an unknown operator.
    """
    if (role is Role.OPERATOR) != (operator_id is not None):
        raise errors.BadRequest(
            "operator_id is required for role operator and not allowed for other roles",
            code="validation_error",
            details=[{"field": "operator_id", "problem": "required exactly when role is operator"}],
        )
    if operator_id is not None:
        exists = await conn.fetchval("SELECT 1 FROM operators WHERE id = $1", operator_id)
        if not exists:
            raise errors.NotFound(f"no such operator: {operator_id}", code="operator_not_found")
    key = _PREFIX + secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        """INSERT INTO api_keys (key_sha256, prefix, role, operator_id, label, created_by)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, prefix, role, operator_id, label, created_at, revoked_at""",
        _digest(key),
        key[: len(_PREFIX) + 6],
        role.value,
        operator_id,
        label,
        created_by,
    )
    return _record(row), key


async def principal_for_key(conn: asyncpg.Connection, key: str) -> Principal | None:
    """The principal of a live key, or ``None`` for an unknown or revoked one."""
    if not key.startswith(_PREFIX) or len(key) > 200:
        return None
    row = await conn.fetchrow(
        "SELECT id, role, operator_id FROM api_keys WHERE key_sha256 = $1 AND revoked_at IS NULL",
        _digest(key),
    )
    if row is None:
        return None
    return Principal(key_id=row["id"], role=Role(row["role"]), operator_id=row["operator_id"])


async def list_keys(conn: asyncpg.Connection, *, include_revoked: bool = False) -> list[KeyRecord]:
    rows = await conn.fetch(
        """SELECT id, prefix, role, operator_id, label, created_at, revoked_at FROM api_keys
           WHERE $1 OR revoked_at IS NULL ORDER BY created_at, id""",
        include_revoked,
    )
    return [_record(r) for r in rows]


async def get_key(conn: asyncpg.Connection, key_id: uuid.UUID) -> KeyRecord:
    row = await conn.fetchrow(
        "SELECT id, prefix, role, operator_id, label, created_at, revoked_at FROM api_keys WHERE id = $1",
        key_id,
    )
    if row is None:
        raise errors.NotFound(f"no such key: {key_id}", code="key_not_found")
    return _record(row)


async def revoke_key(conn: asyncpg.Connection, key_id: uuid.UUID) -> KeyRecord:
    """Revoke a key (idempotent). Raises ``NotFound``."""
    row = await conn.fetchrow(
        """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
           RETURNING id, prefix, role, operator_id, label, created_at, revoked_at""",
        key_id,
    )
    if row is None:
        raise errors.NotFound(f"no such key: {key_id}", code="key_not_found")
    return _record(row)
