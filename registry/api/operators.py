"""``/v1/operators``: create operators, their identity verification and its revocation."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from registry import audit, errors
from registry.api.keys import KeyCreated, key_out
from registry.api.routing import Api, Call, path_uuid
from registry.api.schemas import Reason, StrictModel
from registry.keys import store as key_store
from registry.operators import store
from registry.operators.identity import verify_identity
from registry.pii import field_context
from registry.roles import Principal, Role
from registry.services import Services
from registry.translog.log import append_leaf

__all__ = ["api"]

api = Api()


class OperatorCreate(StrictModel):
    display_name: str = Field(min_length=1, max_length=100)


class OperatorOut(BaseModel):
    id: uuid.UUID
    display_name: str
    identity_status: str = Field(description="`unverified` · `verified` · `revoked`")
    created_at: datetime
    verified_at: datetime | None
    assurance: str | None
    revoked_at: datetime | None


class OperatorCreated(BaseModel):
    operator: OperatorOut
    key: KeyCreated = Field(description="The operator's own API key, shown once.")


class NonceOut(BaseModel):
    nonce: str
    expires_at: datetime


class IdentitySubmit(StrictModel):
    attestation: str = Field(min_length=10, max_length=16384, description="Compact JWS from the provider.")


class RevokeIdentity(StrictModel):
    reason: str = Field(min_length=3, max_length=500)


class IdentityOut(BaseModel):
    operator: OperatorOut
    issuer: str | None
    subject: str | None = Field(description="The provider's pseudonymous person id.")
    legal_name: str | None
    id_number: str | None


def operator_out(op: store.Operator) -> OperatorOut:
    return OperatorOut(
        id=op.id,
        display_name=op.display_name,
        identity_status=op.identity_status,
        created_at=op.created_at,
        verified_at=op.verified_at,
        assurance=op.assurance,
        revoked_at=op.revoked_at,
    )


def identity_out(services: Services, rec: store.IdentityRecord) -> IdentityOut:
    """An operator's identity with its PII decrypted: only ever for staff, after an audit record."""
    op = str(rec.operator.id)

    def decrypt(blob: bytes | None, field: str) -> str | None:
        return services.pii.decrypt(blob, context=field_context(op, field)) if blob else None

    return IdentityOut(
        operator=operator_out(rec.operator),
        issuer=rec.issuer,
        subject=rec.subject,
        legal_name=decrypt(rec.legal_name_enc, "legal_name"),
        id_number=decrypt(rec.id_number_enc, "id_number"),
    )


def require_self(principal: Principal, operator_id: uuid.UUID) -> None:
    """An operator key acts only for its own operator."""
    if principal.role is Role.OPERATOR and principal.operator_id != operator_id:
        raise errors.Forbidden("an operator key may act only for its own operator", code="forbidden")


@api.route(
    "POST",
    "/v1/operators",
    summary="Create an operator",
    tags=("operators",),
    roles=frozenset({Role.PLATFORM, Role.ADMIN}),
    body=OperatorCreate,
    response=OperatorCreated,
    status=201,
)
async def create_operator(call: Call[OperatorCreate]) -> OperatorCreated:
    """Create an operator account (one real adult person, verified next) and its operator key."""
    async with call.pool.acquire() as conn, conn.transaction():
        op = await store.create_operator(conn, call.body.display_name)
        rec, key = await key_store.create_key(
            conn, Role.OPERATOR, operator_id=op.id, label="operator", created_by=call.actor.key_id
        )
        await audit.record(conn, call.actor, "key.create", "api_key", rec.id, details={"role": "operator"})
    return OperatorCreated(operator=operator_out(op), key=KeyCreated(**key_out(rec).model_dump(), key=key))


@api.route(
    "GET",
    "/v1/operators/{id}",
    summary="Get an operator",
    tags=("operators",),
    roles=frozenset({Role.OPERATOR, Role.STAFF, Role.ADMIN}),
    response=OperatorOut,
    errors=(404,),
)
async def get_operator(call: Call[None]) -> OperatorOut:
    """Profile and identity status; no personal data."""
    operator_id = path_uuid(call)
    require_self(call.actor, operator_id)
    async with call.pool.acquire() as conn:
        return operator_out(await store.get_operator(conn, operator_id))


@api.route(
    "POST",
    "/v1/operators/{id}/identity/nonce",
    summary="Get a one-time identity nonce",
    tags=("identity",),
    roles=frozenset({Role.OPERATOR}),
    response=NonceOut,
    status=201,
    errors=(404,),
)
async def issue_nonce(call: Call[None]) -> NonceOut:
    """A one-time nonce that the next attestation must carry in its `nonce` claim."""
    operator_id = path_uuid(call)
    require_self(call.actor, operator_id)
    async with call.pool.acquire() as conn, conn.transaction():
        await store.get_operator(conn, operator_id)
        nonce, expires_at = await store.issue_nonce(conn, operator_id, call.settings.nonce_ttl_s)
    return NonceOut(nonce=nonce, expires_at=expires_at)


@api.route(
    "POST",
    "/v1/operators/{id}/identity",
    summary="Submit an identity attestation",
    tags=("identity",),
    roles=frozenset({Role.OPERATOR}),
    body=IdentitySubmit,
    response=OperatorOut,
    errors=(404, 409),
)
async def submit_identity(call: Call[IdentitySubmit]) -> OperatorOut:
    """Verify a provider's attestation (compact JWS, `typ` `idv-attestation+jwt`) and bind it to this
    operator. Each failed check is a 400 with its own code (`attestation_signature`, `attestation_malformed`,
    `attestation_issuer`, `attestation_audience`, `attestation_expired`, `attestation_nonce`,
    `attestation_replay`, `attestation_underage`, `attestation_assurance`); the same person verifying a
    second operator is a 409 `identity_in_use`."""
    operator_id = path_uuid(call)
    require_self(call.actor, operator_id)
    async with call.pool.acquire() as conn:
        op = await verify_identity(conn, call.services, operator_id, call.body.attestation)
    return operator_out(op)


@api.route(
    "GET",
    "/v1/operators/{id}/identity",
    summary="Read an operator's verified identity (audit-logged)",
    tags=("identity",),
    roles=frozenset({Role.STAFF, Role.ADMIN}),
    query=Reason,
    response=IdentityOut,
    errors=(404,),
)
async def read_identity(call: Call[None]) -> IdentityOut:
    """The identity details behind an operator, decrypted, for staff. Requires a `reason`; every read is
    recorded in the audit log (without the details themselves)."""
    operator_id = path_uuid(call)
    async with call.pool.acquire() as conn, conn.transaction():
        rec = await store.get_identity(conn, operator_id)
        await audit.record(
            conn, call.actor, "identity.read", "operator", operator_id, reason=call.query.reason
        )
    return identity_out(call.services, rec)


@api.route(
    "POST",
    "/v1/operators/{id}/identity/revoke",
    summary="Revoke an operator's identity",
    tags=("identity",),
    roles=frozenset({Role.STAFF, Role.ADMIN}),
    body=RevokeIdentity,
    response=OperatorOut,
    errors=(404,),
)
async def revoke_identity(call: Call[RevokeIdentity]) -> OperatorOut:
    """Set the identity `revoked`: the operator can no longer register avatars or go live."""
    operator_id = path_uuid(call)
    async with call.pool.acquire() as conn, conn.transaction():
        op = await store.revoke_identity(conn, operator_id, call.body.reason)
        await audit.record(
            conn, call.actor, "identity.revoke", "operator", operator_id, reason=call.body.reason
        )
        # The log gets a digest of the reason, never its text; livecheck nodes end the operator's sessions.
        await append_leaf(
            conn,
            {
                "kind": "operator.identity_revoked",
                "operator_id": str(operator_id),
                "reason_sha256": hashlib.sha256(call.body.reason.encode()).hexdigest(),
            },
        )
        await conn.execute(
            "SELECT pg_notify('live_control', $1)",
            json.dumps({"kind": "operator_revoked", "operator_id": str(operator_id)}),
        )
    return operator_out(op)
