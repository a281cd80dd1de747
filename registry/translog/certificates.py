"""Issuing registration certificates: the avatar's registration leaf, a checkpoint covering it, the proof.

The statement format and its offline verification are in ``verify_cert``; this module gathers what goes in
it from the database and signs it with the log's current key.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import asyncpg

from registry import errors
from registry.services import Services
from registry.translog import store
from registry.translog.keys import LogKeys
from registry.translog.leaves import decode_leaf
from registry.translog.signer import sign_if_grown
from registry.translog.verify_cert import FINGERPRINT_KEYS, REGISTRATION_KIND, sign_statement

__all__ = ["covering_checkpoint", "issue_certificate", "require_log_keys"]


def require_log_keys(services: Services) -> LogKeys:
    """The log's signing keys. Raises ``NotReady`` if this process was built without them."""
    if services.log_keys is None:
        raise errors.NotReady("the transparency log has no signing key configured", code="log_not_ready")
    return services.log_keys


async def covering_checkpoint(conn: asyncpg.Connection, keys: LogKeys, size: int) -> store.StoredCheckpoint:
    """Return a checkpoint signed by the current key of a tree of at least ``size`` leaves, signing one now
    (under the signer's lock, so it stays consistent with every other) if the newest is older.

    Raises ``NotReady`` if the tree itself is smaller than ``size`` (the leaf's transaction has not
    committed).
    """
    checkpoint = await store.latest_checkpoint_by_key(conn, keys.key_id)
    if checkpoint is None or checkpoint.tree_size < size:
        await sign_if_grown(conn, keys)
        checkpoint = await store.latest_checkpoint_by_key(conn, keys.key_id)
    if checkpoint is None or checkpoint.tree_size < size:
        raise errors.NotReady(
            f"no checkpoint covers {size} leaves yet", code="log_not_ready", details={"tree_size": size}
        )
    return checkpoint


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def issue_certificate(pool: asyncpg.Pool, services: Services, avatar_id: uuid.UUID) -> dict[str, Any]:
    """Return the avatar's registration certificate, ``{"jws", "leaf_index", "checkpoint",
    "inclusion_proof"}``.

    Finds the avatar's ``avatar.registered`` leaf, makes sure a checkpoint by the current key covers it
    (signing one now if needed), proves the leaf's inclusion in it, and signs the statement described in
    ``verify_cert`` (JWS, EdDSA). Call it after the registration's transaction has committed.
    Raises ``NotFound`` if the avatar has no registration leaf, ``NotReady`` without a signing key.
    """
    keys = require_log_keys(services)
    async with pool.acquire() as conn:
        entry = await store.find_leaf(conn, avatar_id, REGISTRATION_KIND)
        if entry is None:
            raise errors.NotFound(
                f"no registration of avatar {avatar_id} in the log", code="certificate_not_found"
            )
        checkpoint = await covering_checkpoint(conn, keys, entry.index + 1)
        proof = await store.inclusion_proof(conn, entry.index, checkpoint.tree_size)
    leaf = decode_leaf(entry.leaf)
    proof_b64 = [_b64(h) for h in proof]
    note = checkpoint.note.decode("utf-8")
    claims = {
        "iss": keys.origin,
        "iat": int(time.time()),
        "avatar_id": str(avatar_id),
        "owner_operator_id": leaf.get("owner_operator_id"),
        "fingerprints": {k: leaf[k] for k in FINGERPRINT_KEYS if k in leaf},
        "leaf_index": entry.index,
        "leaf": _b64(entry.leaf),
        "checkpoint": note,
        "inclusion_proof": proof_b64,
    }
    return {
        "jws": sign_statement(claims, keys.signer),
        "leaf_index": entry.index,
        "checkpoint": note,
        "inclusion_proof": proof_b64,
    }
