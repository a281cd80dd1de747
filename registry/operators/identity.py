"""Identity verification: a provider's attestation checked, then bound to one operator (DESIGN §8)."""

from __future__ import annotations

import time
import uuid

import asyncpg

from registry import errors
from registry.attestations.verify import VerifiedAttestation, verify_attestation
from registry.operators import store
from registry.pii import blind_index, field_context
from registry.services import Services

__all__ = ["verify_identity"]


async def verify_identity(
    conn: asyncpg.Connection, services: Services, operator_id: uuid.UUID, token: str
) -> store.Operator:
    """Verify ``token`` and record the identity on the operator, all in one transaction.

    Raises ``AttestationError`` with the failed check's code, ``Conflict`` (``identity_in_use``,
    ``identity_revoked``, ``identity_mismatch``) and ``NotFound``. Nothing is written on failure.
    """
    settings = services.settings
    att: VerifiedAttestation = verify_attestation(
        token,
        keysets=services.keysets,
        audience=settings.audience,
        now=time.time(),
        min_assurance=settings.min_assurance,
        assurance_order=settings.assurance_levels,
    )
    async with conn.transaction():
        current = await store.get_operator(conn, operator_id, for_update=True)
        if current.identity_status == "revoked":
            raise errors.Conflict(
                "this operator's identity was revoked; it cannot verify again", code="identity_revoked"
            )
        existing = await store.get_identity(conn, operator_id)
        if existing.subject is not None and (existing.issuer, existing.subject) != (att.issuer, att.subject):
            raise errors.Conflict(
                "this operator is already verified as another person", code="identity_mismatch"
            )
        await store.record_jti(conn, att.issuer, att.jti)
        await store.consume_nonce(conn, operator_id, att.nonce)
        pii = services.pii
        op = str(operator_id)
        return await store.set_verified(
            conn,
            operator_id,
            issuer=att.issuer,
            subject=att.subject,
            assurance=att.assurance,
            attestation_sha256=att.digest,
            legal_name_enc=(
                pii.encrypt(att.legal_name, context=field_context(op, "legal_name"))
                if att.legal_name
                else None
            ),
            id_number_enc=(
                pii.encrypt(att.id_number, context=field_context(op, "id_number")) if att.id_number else None
            ),
            id_number_index=(
                blind_index(att.id_number, services.secrets.blind_index_key) if att.id_number else None
            ),
        )
