"""SQL for ``operators``, ``identity_nonces`` and ``identity_jtis``. The caller owns the transaction."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from registry import errors

__all__ = [
    "IdentityRecord",
    "Operator",
    "consume_nonce",
    "create_operator",
    "get_identity",
    "get_operator",
    "issue_nonce",
    "record_jti",
    "revoke_identity",
    "set_verified",
]


@dataclass(frozen=True, slots=True)
class Operator:
    id: uuid.UUID
    display_name: str
    identity_status: str
    created_at: datetime
    verified_at: datetime | None
    assurance: str | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    """What staff may see of an operator's identity (decrypted by the caller)."""

    operator: Operator
    issuer: str | None
    subject: str | None
    legal_name_enc: bytes | None
    id_number_enc: bytes | None


def _operator(row: asyncpg.Record) -> Operator:
    return Operator(
        id=row["id"],
        display_name=row["display_name"],
        identity_status=row["identity_status"],
        created_at=row["created_at"],
        verified_at=row["verified_at"],
        assurance=row["assurance"],
        revoked_at=row["revoked_at"],
    )


async def create_operator(conn: asyncpg.Connection, display_name: str) -> Operator:
    row = await conn.fetchrow(
        """INSERT INTO operators (display_name) VALUES ($1)
           RETURNING id, display_name, identity_status, created_at, verified_at, assurance, revoked_at""",
        display_name,
    )
    return _operator(row)


async def get_operator(
    conn: asyncpg.Connection, operator_id: uuid.UUID, *, for_update: bool = False
) -> Operator:
    """Raises ``NotFound``."""
    sql = "SELECT id, display_name, identity_status, created_at, verified_at, assurance, revoked_at "
    sql += "FROM operators WHERE id = $1"
    if for_update:
        sql += " FOR UPDATE"
    row = await conn.fetchrow(sql, operator_id)
    if row is None:
        raise errors.NotFound(f"no such operator: {operator_id}", code="operator_not_found")
    return _operator(row)


async def get_identity(conn: asyncpg.Connection, operator_id: uuid.UUID) -> IdentityRecord:
    row = await conn.fetchrow(
        """SELECT id, display_name, identity_status, created_at, verified_at, assurance, revoked_at,
                  issuer, subject, legal_name_enc, id_number_enc
           FROM operators WHERE id = $1""",
        operator_id,
    )
    if row is None:
        raise errors.NotFound(f"no such operator: {operator_id}", code="operator_not_found")
    return IdentityRecord(
        operator=_operator(row),
        issuer=row["issuer"],
        subject=row["subject"],
        legal_name_enc=row["legal_name_enc"],
        id_number_enc=row["id_number_enc"],
    )


async def issue_nonce(conn: asyncpg.Connection, operator_id: uuid.UUID, ttl_s: int) -> tuple[str, datetime]:
    """A fresh one-time nonce bound to the operator; returns it with its expiry."""
    nonce = secrets.token_urlsafe(24)
    expires_at = await conn.fetchval(
        """INSERT INTO identity_nonces (nonce, operator_id, expires_at)
           VALUES ($1, $2, now() + $3::interval) RETURNING expires_at""",
        nonce,
        operator_id,
        timedelta(seconds=ttl_s),
    )
    return nonce, expires_at


async def consume_nonce(conn: asyncpg.Connection, operator_id: uuid.UUID, nonce: str) -> None:
    """Mark the nonce used. Raises ``AttestationError`` (``attestation_nonce``) when it was not issued to
    this operator, has expired, or was used before."""
    row = await conn.fetchrow(
        """SELECT operator_id, expires_at < now() AS expired, used_at FROM identity_nonces
           WHERE nonce = $1 FOR UPDATE""",
        nonce,
    )
    if row is None or row["operator_id"] != operator_id:
        raise errors.AttestationError(
            "attestation nonce was not issued to this operator", code="attestation_nonce"
        )
    if row["used_at"] is not None:
        raise errors.AttestationError("attestation nonce was already used", code="attestation_nonce")
    if row["expired"]:
        raise errors.AttestationError("attestation nonce has expired", code="attestation_nonce")
    await conn.execute("UPDATE identity_nonces SET used_at = now() WHERE nonce = $1", nonce)


async def record_jti(conn: asyncpg.Connection, issuer: str, jti: str) -> None:
    """Remember a token id. Raises ``AttestationError`` (``attestation_replay``) if it was seen before."""
    inserted = await conn.fetchval(
        "INSERT INTO identity_jtis (issuer, jti) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
        issuer,
        jti,
    )
    if inserted is None:
        raise errors.AttestationError(
            "attestation was presented before (its jti is already used)", code="attestation_replay"
        )


async def set_verified(
    conn: asyncpg.Connection,
    operator_id: uuid.UUID,
    *,
    issuer: str,
    subject: str,
    assurance: str,
    attestation_sha256: bytes,
    legal_name_enc: bytes | None,
    id_number_enc: bytes | None,
    id_number_index: bytes | None,
) -> Operator:
    """Record a verified identity. Raises ``Conflict`` (``identity_in_use``) when the same person
    (issuer and subject, or ID number) already verified another operator."""
    try:
        async with conn.transaction():  # a savepoint, so the caller's transaction survives the violation
            row = await conn.fetchrow(
                """UPDATE operators SET identity_status = 'verified', verified_at = now(), issuer = $2,
                          subject = $3, assurance = $4, attestation_sha256 = $5, legal_name_enc = $6,
                          id_number_enc = $7, id_number_index = $8
                   WHERE id = $1
                   RETURNING id, display_name, identity_status, created_at, verified_at, assurance,
                             revoked_at""",
                operator_id,
                issuer,
                subject,
                assurance,
                attestation_sha256,
                legal_name_enc,
                id_number_enc,
                id_number_index,
            )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name in ("operators_person_unique", "operators_id_number_unique"):
            raise errors.Conflict(
                "this person has already verified another operator", code="identity_in_use"
            ) from exc
        raise
    if row is None:
        raise errors.NotFound(f"no such operator: {operator_id}", code="operator_not_found")
    return _operator(row)


async def revoke_identity(conn: asyncpg.Connection, operator_id: uuid.UUID, reason: str) -> Operator:
    """Set the operator's identity ``revoked``. Raises ``NotFound``."""
    row = await conn.fetchrow(
        """UPDATE operators SET identity_status = 'revoked', revoked_at = coalesce(revoked_at, now()),
                  revoke_reason = $2
           WHERE id = $1
           RETURNING id, display_name, identity_status, created_at, verified_at, assurance, revoked_at""",
        operator_id,
        reason,
    )
    if row is None:
        raise errors.NotFound(f"no such operator: {operator_id}", code="operator_not_found")
    return _operator(row)
